"""The evaluation protocol: config.eval -> PostprocessSpec (keep_lambda -1 = merged, values
cast), one-line errors naming the config field, the tag of the output files, the stamp written
into them, the evaluated N and the split list."""

import dataclasses

import pytest

from mipnet_jax.core.meta import COCO, JointMap
from mipnet_jax.eval import protocol as protocol_lib
from mipnet_jax.eval.postprocess import PostprocessSpec
from mipnet_jax.eval.protocol import Protocol, evaluated_n, make_protocol, split_names

ROOT = "/nonexistent/coco"     # make_protocol only joins paths for COCO splits


@pytest.fixture
def config(load_config):
  c = load_config("hrnet_w32_coco_256x192", "quick")
  c.data.root = ROOT
  c.eval_data.coco_val.update(ann="test_coco.json", images=".",
                              det_file="test_coco_det_AP_H_56.json")
  return c


def eval_dict(**changes) -> dict:
  """config.eval as a bundle's config.json holds it (plain JSON values)."""
  out = dict(gamma=0.9, gamma_mode="power", in_vis_thre=0.2, nms="oks", nms_threshold=0.9,
             keep_lambda=-1, min_box_score=0.0)
  out.update(changes)
  return out


# ---- PostprocessSpec.from_eval ---------------------------------------------------------------

def test_from_eval_maps_keep_lambda_and_casts_values():
  assert PostprocessSpec.from_eval(eval_dict()) == PostprocessSpec()
  assert PostprocessSpec.from_eval(eval_dict(keep_lambda=-1)).keep_lambda is None
  assert PostprocessSpec.from_eval(eval_dict(keep_lambda=-3)).keep_lambda is None
  assert PostprocessSpec.from_eval(eval_dict(keep_lambda=0)).keep_lambda == 0
  one = PostprocessSpec.from_eval(eval_dict(keep_lambda=1))
  assert one.keep_lambda == 1 and type(one.keep_lambda) is int and one.mode == "lambda1"
  assert PostprocessSpec.from_eval(eval_dict()).mode == "merged"
  # JSON ints and strings (a hand-edited config.json) become the spec's types.
  spec = PostprocessSpec.from_eval(eval_dict(gamma=1, in_vis_thre="0.25", nms_threshold=1,
                                             min_box_score=0, keep_lambda="2"))
  assert spec == PostprocessSpec(gamma=1.0, in_vis_thre=0.25, nms_threshold=1.0,
                                 min_box_score=0.0, keep_lambda=2)
  for name in ("gamma", "in_vis_thre", "nms_threshold", "min_box_score"):
    assert type(getattr(spec, name)) is float, name
  assert type(spec.keep_lambda) is int


def test_from_eval_of_the_config_is_the_protocols_spec(config):
  config.eval.update(gamma=0.5, gamma_mode="constant", nms="soft_oks", nms_threshold=0.8,
                     in_vis_thre=0.3, keep_lambda=1, min_box_score=0.25)
  spec = PostprocessSpec.from_eval(config.eval)
  assert spec == PostprocessSpec(gamma=0.5, gamma_mode="constant", in_vis_thre=0.3,
                                 nms="soft_oks", nms_threshold=0.8, keep_lambda=1,
                                 min_box_score=0.25)
  assert make_protocol(config, "coco_val", "w").postprocess == spec


@pytest.mark.parametrize("field,value,message", [
    ("gamma_mode", "linear",
     "config.eval.gamma_mode must be 'power' or 'constant', got 'linear'"),
    ("nms", "greedy", "config.eval.nms must be 'oks', 'soft_oks' or 'none', got 'greedy'"),
])
def test_bad_postprocess_settings_name_the_config_field(config, field, value, message):
  with pytest.raises(ValueError) as info:
    PostprocessSpec(**{field: value})
  assert str(info.value) == message
  with pytest.raises(ValueError) as info:
    PostprocessSpec.from_eval(eval_dict(**{field: value}))
  assert str(info.value) == message
  config.eval[field] = value
  with pytest.raises(ValueError) as info:
    make_protocol(config, "coco_val", "w")
  assert str(info.value) == message


# ---- Protocol ---------------------------------------------------------------------------------

def test_protocol_of_the_config(config):
  p = make_protocol(config, "coco_val", "runs/x")
  assert p == Protocol(split="coco_val", dataset="coco", annotations=f"{ROOT}/test_coco.json",
                       boxes="gt", det_file="", num_instances=2, flip=True, decode="quarter",
                       input_hw=(128, 96), weights="runs/x", metric="coco",
                       area_rule="annotation", joints=JointMap(
                           COCO.keypoint_names, tuple(range(17)), tuple(range(17)),
                           COCO.sigmas), meta=COCO, postprocess=PostprocessSpec())
  assert p.max_dets == 20
  config.eval.boxes = "detections"
  p = make_protocol(config, "coco_val", "runs/x")
  assert (p.boxes, p.det_file) == ("detections", f"{ROOT}/test_coco_det_AP_H_56.json")


def test_tag_names_boxes_n_and_mode(config):
  p = make_protocol(config, "coco_val", "w")
  assert p.tag == "coco_val_gt_N2_merged"
  assert p.with_postprocess(keep_lambda=0).tag == "coco_val_gt_N2_lambda0"
  # gt boxes: the tag does not show min_box_score (it filters detections only).
  assert p.with_postprocess(min_box_score=0.5).tag == "coco_val_gt_N2_merged"
  config.eval.update(boxes="detections", min_box_score=0.5, keep_lambda=1)
  assert make_protocol(config, "coco_val", "w").tag == "coco_val_det0.5_N2_lambda1"
  config.eval.update(min_box_score=0.0, keep_lambda=-1, num_instances=3)
  assert make_protocol(config, "coco_val", "w").tag == "coco_val_det0_N3_merged"


def test_stamp_is_flat_and_has_every_field(config):
  config.eval.update(boxes="detections", min_box_score=0.3, keep_lambda=1, gamma=0.5,
                     gamma_mode="constant", nms="soft_oks", nms_threshold=0.7, in_vis_thre=0.1,
                     decode="dark", flip=False)
  stamp = make_protocol(config, "coco_val", "runs/x/checkpoints/7").stamp()
  assert stamp == {
      "split": "coco_val", "dataset": "coco", "annotations": f"{ROOT}/test_coco.json",
      "boxes": "detections", "det_file": f"{ROOT}/test_coco_det_AP_H_56.json",
      "num_instances": 2, "flip": False, "decode": "dark", "input_hw": (128, 96),
      "weights": "runs/x/checkpoints/7", "metric": "coco", "area_rule": "annotation",
      "max_dets": 20, "keypoints": list(COCO.keypoint_names), "model_joints": list(range(17)),
      "data_joints": list(range(17)), "sigmas": list(COCO.sigmas),
      "gamma": 0.5, "gamma_mode": "constant", "in_vis_thre": 0.1, "nms": "soft_oks",
      "nms_threshold": 0.7, "keep_lambda": 1, "min_box_score": 0.3}
  # Every field of both dataclasses, the spec's inline (no nested "postprocess" dict).
  names = ({f.name for f in dataclasses.fields(Protocol)} - {"postprocess", "joints", "meta"}
           ) | {f.name for f in dataclasses.fields(PostprocessSpec)} | {
               "keypoints", "model_joints", "data_joints", "sigmas"}
  assert set(stamp) == names
  merged = make_protocol(config, "coco_val", "w").with_postprocess(keep_lambda=None).stamp()
  assert merged["keep_lambda"] is None


def test_with_postprocess_changes_only_the_spec(config):
  p = make_protocol(config, "coco_val", "w")
  q = p.with_postprocess(keep_lambda=0, gamma=0.5)
  assert q.postprocess == PostprocessSpec(keep_lambda=0, gamma=0.5)
  assert dataclasses.replace(q, postprocess=p.postprocess) == p
  assert p.postprocess == PostprocessSpec()                   # frozen: p itself unchanged
  with pytest.raises(ValueError, match="config.eval.nms"):
    p.with_postprocess(nms="nope")


def test_protocol_errors_name_the_field(config):
  config.eval_data.coco_val.det_file = ""
  config.eval.boxes = "detections"
  with pytest.raises(ValueError, match=r"^config.eval.boxes='detections' but "
                                       r"config.eval_data.coco_val.det_file is empty$"):
    make_protocol(config, "coco_val", "x")
  config.eval.boxes = "gt"
  config.eval.keep_lambda = 2
  with pytest.raises(ValueError, match=r"^config.eval.keep_lambda=2 needs N > 2$"):
    make_protocol(config, "coco_val", "x")
  config.eval.keep_lambda = -1
  with pytest.raises(ValueError, match=r"^config.eval.splits: 'nope' is not in "
                                       r"config.eval_data \(coco_test_dev, coco_val, "
                                       r"crowdpose_test, ochuman_test, ochuman_val, ocpose_test\)$"):
    make_protocol(config, "nope", "x")
  config.eval.boxes = "detector"
  with pytest.raises(ValueError, match="^config.eval.boxes must be one of gt, gt_tight, "
                                       "detections, got 'detector'$"):
    make_protocol(config, "coco_val", "x")
  config.eval.boxes = "gt"
  config.eval.decode = "udp"
  with pytest.raises(ValueError, match="config.eval.decode must be 'quarter' or 'dark', got "
                                       "'udp'"):
    make_protocol(config, "coco_val", "x")


# ---- evaluated_n and split_names -----------------------------------------------------------

def test_evaluated_n(config):
  assert config.eval.num_instances == 0 and config.num_instances == 2
  assert evaluated_n(config) == 2                       # 0: the model's N
  config.num_instances = 3
  assert evaluated_n(config) == 3
  for k in (1, 4):
    config.eval.num_instances = k
    assert evaluated_n(config) == k
    assert make_protocol(config, "coco_val", "w").num_instances == k


def test_split_names(config):
  assert split_names(config) == ["coco_val"]
  config.eval.splits = " coco_val, ochuman_val ,"
  assert split_names(config) == ["coco_val", "ochuman_val"]
  config.eval.splits = "coco_val,nope"
  with pytest.raises(ValueError) as info:
    split_names(config)
  assert str(info.value) == ("config.eval.splits: 'nope' is not in config.eval_data "
                             "(coco_test_dev, coco_val, crowdpose_test, ochuman_test, "
                             "ochuman_val, ocpose_test)")
  for empty in ("", " , "):
    config.eval.splits = empty
    with pytest.raises(ValueError) as info:
      split_names(config)
    assert str(info.value) == ("config.eval.splits names no split "
                               "(e.g. --config.eval.splits=coco_val)")


def test_box_kinds_and_decodes():
  assert protocol_lib.BOX_KINDS == ("gt", "gt_tight", "detections")
  assert protocol_lib.DECODES == ("quarter", "dark")


# ---- per-split options: boxes, joints, metric, area rule ------------------------------------

def test_ocpose_split_scores_the_limbs_with_the_box_area(config):
  p = make_protocol(config, "ocpose_test", "w")
  assert (p.dataset, p.meta.name, p.metric, p.area_rule, p.max_dets) == (
      "ocpose", "ocpose", "coco", "box_0.53", 20)
  assert p.joints.names == p.meta.keypoint_names == COCO.keypoint_names[5:]
  assert (p.joints.model_ids, p.joints.data_ids) == (tuple(range(5, 17)), tuple(range(12)))
  assert p.joints.sigmas == COCO.sigmas[5:]
  assert p.meta.flip_pairs == ((0, 1), (2, 3), (4, 5), (6, 7), (8, 9), (10, 11))
  stamp = p.stamp()
  assert (stamp["keypoints"], stamp["model_joints"], stamp["area_rule"], stamp["max_dets"]) == (
      list(COCO.keypoint_names[5:]), list(range(5, 17)), "box_0.53", 20)
  config.eval.boxes = "gt_tight"
  assert make_protocol(config, "ocpose_test", "w").tag == "ocpose_test_gttight_N2_merged"


def test_split_options_override_and_name_their_field(config):
  config.eval_data.coco_val.boxes = "gt_tight"
  p = make_protocol(config, "coco_val", "w")
  assert (p.boxes, p.det_file, p.tag) == ("gt_tight", "", "coco_val_gttight_N2_merged")
  config.eval_data.coco_val.update(boxes="tight", joints="limbs")
  with pytest.raises(ValueError, match=r"^config.eval_data.coco_val.boxes must be one of gt, "
                                       r"gt_tight, detections, got 'tight'$"):
    make_protocol(config, "coco_val", "w")
  config.eval_data.coco_val.boxes = ""
  p = make_protocol(config, "coco_val", "w")
  assert (p.boxes, p.joints.names) == ("gt", COCO.keypoint_names[5:])
  for field, value, message in (
      ("joints", "head,neck", "^config.eval_data.coco_val.joints: 'head' is not a joint of "
                              "coco \\(nose, left_eye, "),
      ("metric", "mpii", "^config.eval_data.coco_val.metric must be one of coco, crowdpose, got "
                         "'mpii'$"),
      ("area_rule", "segm", "^config.eval_data.coco_val.area_rule must be one of annotation, "
                            "box_0.53, got 'segm'$")):
    config.eval_data.coco_val.update(joints="", metric="", area_rule="")
    config.eval_data.coco_val[field] = value
    with pytest.raises(ValueError, match=message):
      make_protocol(config, "coco_val", "w")


def test_model_without_the_split_joints_names_the_missing_ones(config):
  config.eval_data.coco_val.update(dataset="crowdpose")
  with pytest.raises(ValueError, match=r"^config.eval_data.coco_val.joints: the coco model has "
                                       r"no head, neck; evaluate on the common joints"):
    make_protocol(config, "coco_val", "w")
  config.eval_data.coco_val.joints = "limbs"
  p = make_protocol(config, "coco_val", "w")
  assert (p.metric, p.area_rule, p.joints.data_ids) == ("crowdpose", "box_0.53",
                                                        tuple(range(12)))


def test_coco_model_on_crowdpose_shared_joints(config):
  p = make_protocol(config, "crowdpose_test", "w")
  assert (p.meta.name, p.metric, p.area_rule) == ("crowdpose", "crowdpose", "box_0.53")
  assert p.joints.names == COCO.keypoint_names[5:] and p.joints.data_ids == tuple(range(12))


def test_udp_geometry_decodes_udp_dark(config):
  """config.data.udp implies UDP-DARK decoding (config.eval.decode chooses for HRNet's
  geometry); the stamp records it."""
  config.data.udp = True
  for decode in ("quarter", "dark"):
    config.eval.decode = decode
    p = make_protocol(config, "coco_val", "w")
    assert (p.decode, p.udp, p.stamp()["decode"]) == ("udp_dark", True, "udp_dark")
  config.data.udp = False
  assert not make_protocol(config, "coco_val", "w").udp
