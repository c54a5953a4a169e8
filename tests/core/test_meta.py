"""Dataset metadata against independent sources (pycocotools' COCO sigmas, the CrowdPose
protocol)."""

import numpy as np
import pytest
from pycocotools.cocoeval import Params

from mipnet_jax.core import meta


def test_coco_sigmas_equal_pycocotools():
  np.testing.assert_allclose(meta.COCO.sigmas, Params(iouType="keypoints").kpt_oks_sigmas)
  assert meta.OCHUMAN.sigmas == meta.COCO.sigmas and meta.OCHUMAN.num_keypoints == 17


def test_crowdpose_layout():
  m = meta.get_meta("crowdpose")
  assert m.num_keypoints == 14 and m.keypoint_names[12:] == ("head", "neck")
  np.testing.assert_allclose(np.array(m.sigmas) * 10, [.79, .79, .72, .72, .62, .62, 1.07,
                                                       1.07, .87, .87, .89, .89, .79, .79])
  assert m.upper_body_ids == (0, 1, 2, 3, 4, 5, 12, 13)
  assert m.lower_body_ids == (6, 7, 8, 9, 10, 11)


@pytest.mark.parametrize("name", ["coco", "crowdpose"])
def test_flip_pairs_swap_left_and_right(name):
  m = meta.get_meta(name)
  perm = m.flip_permutation
  np.testing.assert_array_equal(perm[perm], np.arange(m.num_keypoints))   # an involution
  for a, b in m.flip_pairs:
    assert m.keypoint_names[a].replace("left", "right") == m.keypoint_names[b]
  unpaired = set(range(m.num_keypoints)) - {i for p in m.flip_pairs for i in p}
  assert all("left" not in m.keypoint_names[i] and "right" not in m.keypoint_names[i]
             for i in unpaired)


def test_unknown_dataset_is_named():
  with pytest.raises(ValueError, match="unknown dataset 'mpii'"):
    meta.get_meta("mpii")
