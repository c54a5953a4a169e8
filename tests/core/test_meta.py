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


# ---- declared skeletons and joint maps ------------------------------------------------------

def test_built_in_metas_pass_their_own_check():
  for m in meta.DATASETS.values():
    meta.check_meta(m)
  assert meta.KNOWN_SIGMAS["left_hip"] == meta.COCO.sigmas[11]
  assert meta.KNOWN_SIGMAS["head"] == meta.CROWDPOSE.sigmas[12]


def test_build_meta_by_names_and_indices():
  m = meta.build_meta("toy", ["neck", "left_wrist", "right_wrist"], [(1, "right_wrist")],
                      upper_body=["neck", 1], skeleton=[("neck", "left_wrist")])
  assert m.flip_pairs == ((1, 2),) and m.upper_body_ids == (0, 1) and m.skeleton == ((0, 1),)
  assert m.sigmas == (meta.CROWDPOSE.sigmas[13], meta.COCO.sigmas[9], meta.COCO.sigmas[10])
  np.testing.assert_array_equal(m.flip_permutation, [0, 2, 1])
  # Same as a built-in when declared the same way.
  limbs = meta.build_meta("crowdpose", meta.CROWDPOSE.keypoint_names, meta.CROWDPOSE.flip_pairs,
                          upper_body=meta.CROWDPOSE.upper_body_ids,
                          skeleton=meta.CROWDPOSE.skeleton)
  assert limbs == meta.CROWDPOSE


@pytest.mark.parametrize("fields,message", [
    (dict(keypoint_names=()), "toy: no joints declared"),
    (dict(flip_pairs=[(0, 0)]), "toy: flip_pairs[0] = (0, 0) is not a pair of two joints"),
    (dict(flip_pairs=[(0, 1), (1, 2)]), "toy: flip_pairs name a joint twice: ((0, 1), (1, 2))"),
    (dict(sigmas=(0.1, 0.0, 0.1)), "toy: sigmas must be positive, got (0.1, 0.0, 0.1)"),
    (dict(skeleton=[(0, 5)]), "toy: skeleton[0]: joint 5 out of range for 3 joints"),
    (dict(upper_body=[True]), "toy: upper_body: a joint is a name or an index, got True"),
])
def test_build_meta_errors(fields, message):
  args = dict(keypoint_names=("a", "b", "c"), sigmas=(0.1, 0.1, 0.1))
  args.update(fields)
  with pytest.raises(meta.MetaError) as info:
    meta.build_meta("toy", where="toy", **args)
  assert str(info.value) == message


def test_joint_map_by_name():
  j = meta.joint_map(meta.COCO, meta.CROWDPOSE, "limbs")
  assert (j.model_ids, j.data_ids) == (tuple(range(5, 17)), tuple(range(12)))
  assert j.sigmas == meta.CROWDPOSE.sigmas[:12] == meta.COCO.sigmas[5:]
  # The data's order, whatever the order asked; sets and names mix.
  j = meta.joint_map(meta.COCO, meta.COCO, "right_ankle,nose")
  assert j.names == ("nose", "right_ankle") and j.model_ids == j.data_ids == (0, 16)
  j = meta.joint_map(meta.COCO, meta.COCO, "limbs,nose")
  assert j.names == meta.COCO.keypoint_names[:1] + meta.COCO.keypoint_names[5:]
  full = meta.joint_map(meta.COCO, meta.OCHUMAN)
  assert not full.selects_from(meta.OCHUMAN) and full.sigmas == meta.COCO.sigmas
  assert full.model_ids == tuple(range(17))
  assert meta.joint_map(meta.COCO, meta.COCO, "limbs").selects_from(meta.COCO)
  assert meta.expand_joints(" limbs, nose ") == meta.JOINT_SETS["limbs"] + ("nose",)
  assert meta.expand_joints("") == ()
  with pytest.raises(meta.MetaError, match=r"^joints: the coco model has no head, neck; "):
    meta.joint_map(meta.COCO, meta.CROWDPOSE)
  with pytest.raises(meta.MetaError, match=r"^joints: 'elbow' is not a joint of crowdpose "):
    meta.joint_map(meta.COCO, meta.CROWDPOSE, "elbow")
