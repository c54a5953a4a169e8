"""The Python API (serve/predictor.py): the config's model and its exported bundle give the
same poses; a pose's score and instance are the ones evaluation submits for the same boxes;
poses are sorted, boxes optional; the drawing marks secondary instances."""

import json

import numpy as np

from conftest import tiny_checkpoint
from mipnet_jax.data.image import read_image
from mipnet_jax.eval import run as evaluate
from mipnet_jax.eval.postprocess import PostprocessSpec
from mipnet_jax.eval.protocol import make_protocol
from mipnet_jax.models.load import LoadedModel
from mipnet_jax.serve import draw
from mipnet_jax.serve.predictor import Pose, Predictor



def test_bundle_and_config_predict_the_same_poses_on_a_whole_image(served_model, predictor, coco):
  image = read_image(str(coco / "000000000785.jpg"))
  bundled = Predictor.from_bundle(served_model[2])
  a, b = predictor(image), bundled(image)
  # One box, N=2 candidates: OKS-NMS keeps one or both.
  assert len(a) == len(b) and len(a) in (1, 2)
  for p, q in zip(a, b):
    np.testing.assert_array_equal(p.keypoints, q.keypoints)
    assert (p.score, p.lam, p.box_score) == (q.score, q.lam, q.box_score)
    np.testing.assert_array_equal(p.box, [0, 0, 640, 425])
  assert [p.score for p in a] == sorted((p.score for p in a), reverse=True)
  assert bundled.spec == predictor.spec == PostprocessSpec.from_eval(served_model[0].eval)
  assert (bundled.weights, predictor.weights) == ("random", served_model[1])
  assert predictor(image, np.zeros((0, 4))) == []


def test_poses_are_what_evaluation_submits_for_the_same_boxes(coco_config, coco, tmp_path):
  """Image 785's 22 detections: the Predictor's poses have the scores, instances and joint
  scores of the evaluation's results for that image; coordinates differ by float32 rounding
  (heatmap -> image on the device) only."""
  config = coco_config
  config.eval.boxes = "detections"
  model, variables, checkpoint = tiny_checkpoint(config, tmp_path / "ckpt")
  protocol = make_protocol(config, "coco_val", "random")
  done = evaluate.evaluate_split(config, LoadedModel(model, variables, "random"), protocol,
                                 str(tmp_path / "eval"), show_progress=False)
  want = [r for r in evaluate.score_candidates(done.candidates, protocol)
          if r["image_id"] == 785]
  dets = [d for d in json.loads((coco / "test_coco_det_AP_H_56.json").read_text())
          if d["image_id"] == 785]
  boxes, scores = np.array([d["bbox"] for d in dets]), np.array([d["score"] for d in dets])
  assert len(boxes) == done.counts["boxes"] - 96 == 22       # 96 boxes on the other images
  poses = Predictor.from_config(config, checkpoint)(read_image(str(coco / "000000000785.jpg")),
                                                    boxes, scores)
  # Evaluation lists an image's results in NMS keep order, i.e. by descending score. The
  # boxes sit at other places of other batches there: XLA:CPU's float32 results then differ
  # in the last bits (joint scores within 1e-6 relative, not bit for bit).
  assert len(poses) == len(want)
  np.testing.assert_allclose([p.score for p in poses], [r["score"] for r in want], rtol=1e-6)
  got = np.array([p.keypoints for p in poses])
  expected = np.array([r["keypoints"] for r in want]).reshape(len(want), 17, 3)
  np.testing.assert_allclose(got[..., 2], expected[..., 2], rtol=1e-6)
  np.testing.assert_allclose(got[..., :2], expected[..., :2], atol=1e-3, rtol=0)
  for pose in poses:           # the instance and box score of each pose are its candidate's
    i = np.abs(done.candidates.keypoints[:, :, :2] - pose.keypoints[:, :2]).max((1, 2)).argmin()
    assert np.abs(done.candidates.keypoints[i, :, :2] - pose.keypoints[:, :2]).max() < 1e-3
    # (Evaluation carries the detector's score through its batches as float32.)
    assert pose.lam == done.candidates.lam[i]
    assert np.float32(pose.box_score) == done.candidates.box_score[i]


def test_draw_marks_secondary_instances(predictor):
  rng = np.random.default_rng(0)
  kp = np.concatenate([rng.uniform(20, 100, (17, 2)), np.ones((17, 1))], 1)
  pose = Pose(kp, 0.9, 0, np.zeros(4), 1.0)
  image = np.zeros((120, 120, 3), np.uint8)
  own = predictor.draw(image, [pose])
  other = predictor.draw(image, [Pose(kp, 0.9, 1, np.zeros(4), 1.0)])
  assert image.max() == 0 and own.any() and other.any()
  assert (own > 0).sum() > (other > 0).sum()             # dotted limbs cover less
  assert tuple(own[int(kp[0, 1]), int(kp[0, 0])]) == draw.instance_color(0)
  # The lambda >= 1 pose is labelled "L1": drawn without its label, it covers less again.
  plain = draw.draw_pose(image.copy(), kp, predictor.meta, draw.instance_color(0),
                         min_score=predictor.spec.in_vis_thre, dashed=True)
  assert (other != plain).any() and (plain > 0).sum() < (other > 0).sum()
  assert not predictor.draw(image, [pose], min_score=0.95).any()
