"""OKS: hand-computed and equal to the reference's ``oks_iou`` bit for bit. (The NMS passes
are checked end to end against the reference loop in tests/eval/test_postprocess.py.)"""

import numpy as np
import pytest

from conftest import load_oracle
from mipnet_jax.eval import oks_nms as nms
from mipnet_jax.core.meta import get_meta

COCO_SIGMAS = get_meta("coco").sigmas
REF = load_oracle("reference_postprocess")


def test_oks_hand_computed_two_joints():
  g = np.array([[0.0, 0.0], [10.0, 10.0]])
  d = np.array([[3.0, 4.0], [10.0, 10.0]])       # joint 0 is 5 px away, joint 1 exact
  sigmas = (0.1, 0.2)
  # s = (100 + 300) / 2 + eps; e_0 = 25 / (2 * 0.1)^2 / 200 / 2 = 1.5625, e_1 = 0.
  value = nms.oks(g, d, 100.0, 300.0, sigmas)
  assert value == pytest.approx((np.exp(-1.5625) + 1.0) / 2, rel=1e-15)
  assert nms.oks(d, g, 300.0, 100.0, sigmas) == value      # symmetric, bit for bit
  assert nms.oks(g, g, 100.0, 300.0, sigmas) == 1.0
  ref = REF.oks_iou(np.c_[g, [1, 1]].ravel(), np.c_[d, [1, 1]].reshape(1, -1), 100.0,
                    np.array([300.0]), np.array(sigmas))
  assert ref[0] == value


def test_oks_equals_reference_oks_iou_bit_for_bit():
  rng = np.random.default_rng(0)
  kp = rng.normal(300, 40, (40, 17, 3)).astype(np.float32)
  area = rng.uniform(1e3, 1e5, 40)
  table = nms.oks(kp[:, None], kp[None, :], area[:, None], area[None, :], COCO_SIGMAS)
  flat = kp.reshape(40, -1)
  for i in range(0, 40, 7):
    ref = REF.oks_iou(flat[i], flat, area[i], area, np.array(COCO_SIGMAS))
    np.testing.assert_array_equal(table[i], ref)
