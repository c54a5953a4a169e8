"""MIPNet instance selection against hand-built cases (crop bounds, fallback, ordering)."""

import numpy as np

from mipnet_jax.core import codec
from mipnet_jax.data import instances

INPUT_HW = (256, 192)
IDENTITY = np.array([[1.0, 0, 0], [0, 1.0, 0]])


def _person(xy, v=2):
  k = np.zeros((17, 3), np.float32)
  k[: len(xy), :2] = xy
  k[: len(xy), 2] = v
  return k


def test_joints_outside_the_crop_lose_visibility():
  kp = _person([[10, 10], [192, 256], [192.5, 10], [-0.1, 5]])
  xy, vis = instances.transform_joints(kp, IDENTITY, INPUT_HW)
  # [0, w] x [0, h] is inside, bounds included (the authors' test is x > w or x < 0).
  np.testing.assert_array_equal(vis[:4], [1, 1, 0, 0])
  np.testing.assert_array_equal(xy[2], [0, 0])
  assert vis[4:].sum() == 0           # unlabelled joints stay invisible


def test_fallback_to_the_primary_and_ordering():
  primary = _person([[50, 50]] * 6)
  near = _person([[60, 60]] * 5)          # 5 visible joints in the crop: kept
  sparse = _person([[70, 70]] * 3)        # 3 visible joints: falls back to the primary
  outside = _person([[500, 500]] * 8)     # all outside the crop: falls back
  xy, vis = instances.select_instances(primary, np.stack([near, sparse, outside]), IDENTITY,
                                       4, INPUT_HW)
  assert xy.shape == (4, 17, 2) and vis.shape == (4, 17)
  np.testing.assert_array_equal(xy[1, 0], [60, 60])
  for slot in (2, 3):
    np.testing.assert_array_equal(xy[slot], xy[0])
    np.testing.assert_array_equal(vis[slot], vis[0])
  # No other person at all: every slot repeats the primary.
  xy2, _ = instances.select_instances(primary, np.zeros((0, 17, 3)), IDENTITY, 2, INPUT_HW)
  np.testing.assert_array_equal(xy2[1], xy2[0])


def test_the_slots_encode_through_the_codec_one_instance_at_a_time():
  """The targets of a box are codec.encode_heatmaps of its slots: a fallback slot gets
  exactly the primary's maps and weights."""
  primary = _person([[50, 50]] * 6)
  xy, vis = instances.select_instances(primary, np.zeros((0, 17, 3)), IDENTITY, 2, INPUT_HW)
  hm, w = codec.encode_heatmaps(xy, vis, INPUT_HW, (64, 48), 2.0)
  assert hm.shape == (2, 64, 48, 17) and w.shape == (2, 17)
  np.testing.assert_array_equal(w[:, :6], 1)
  np.testing.assert_array_equal(w[:, 6:], 0)
  np.testing.assert_array_equal(hm[0], hm[1])
  for slot in range(2):
    one_hm, one_w = codec.encode_heatmaps(xy[slot], vis[slot], INPUT_HW, (64, 48), 2.0)
    np.testing.assert_array_equal(hm[slot], one_hm)
    np.testing.assert_array_equal(w[slot], one_w)
  # Stride 4: the joint at (50, 50) peaks at int(50 / 4 + 0.5) = 13 on both axes.
  assert hm[0, 13, 13, 0] == 1.0 and hm[0].max(axis=(0, 1))[6:].max() == 0
