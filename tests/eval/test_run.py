"""One split with one protocol (eval/run.py): an oracle through discount, merge, NMS and the
metric; the whole evaluation of a tiny model on real images, its four stamped files checked
against the reference post-processing loop and pycocotools; the typed result's text."""

import json

import numpy as np
import pytest

from conftest import coco_sample_config, load_oracle, pycocotools_stats, random_variables
from mipnet_jax.core import meta
from mipnet_jax.data import coco_format
from mipnet_jax.eval import run as evaluate
from mipnet_jax.eval.candidates import Candidates, flat_candidates, load_candidates
from mipnet_jax.eval.postprocess import PostprocessSpec
from mipnet_jax.eval.protocol import Protocol, make_protocol
from mipnet_jax.models.build import build_model
from mipnet_jax.models.load import LoadedModel

REF = load_oracle("reference_postprocess")






def _oracle(records, num_instances):
  """Per box: lambda 0 = its own person, lambda 1 = its nearest other person (or itself)."""
  kp = []
  for r in records:
    own = np.concatenate([r.keypoints[:, :2], np.ones((len(r.keypoints), 1))], 1)
    other = r.others[0] if len(r.others) else r.keypoints
    other = np.concatenate([other[:, :2], np.ones((len(other), 1))], 1)
    kp.append(np.stack([own, other][:num_instances]))
  return np.asarray(kp, np.float32)


def test_oracle_predictions_score_ap_one_through_merge_and_nms(coco_config):
  protocol = make_protocol(coco_config, "coco_val", "oracle")
  records, _ = coco_format.load_person_records(protocol.annotations, meta.COCO, "", (128, 96))
  c = flat_candidates(_oracle(records, 2), np.ones(len(records)),
                      np.stack([r.scale for r in records]),
                      np.array([r.image_id for r in records]))
  results = evaluate.score_candidates(c, protocol)
  # lambda 1 copies of other people are duplicates of their own boxes' lambda 0: NMS removes
  # them (OKS 1 > 0.9), so every person is predicted once, with score 1.
  assert len(results) == len(records) == 12
  assert {round(r["score"], 6) for r in results} == {1.0}
  assert evaluate.compute_metrics(results, protocol)["AP"] == pytest.approx(1.0)
  single = evaluate.score_candidates(c, protocol.with_postprocess(keep_lambda=1))
  # lambda 1 alone: each box predicts its neighbour, discounted by gamma = 0.9.
  assert max(r["score"] for r in single) == pytest.approx(0.9)




@pytest.fixture(scope="module")
def evaluated(load_config, shared_data, tmp_path_factory):
  """(config, EvalResult) of the tiny N=2 model with random weights on the COCO sample's 12
  ground-truth boxes, with the lambda=0 mode."""
  config = coco_sample_config(load_config, shared_data)
  model = build_model(config.model, 2)
  loaded = LoadedModel(model, random_variables(model, (128, 96)), "random weights")
  protocol = make_protocol(config, "coco_val", loaded.weights)
  out = str(tmp_path_factory.mktemp("eval_split"))
  return config, evaluate.evaluate_split(config, loaded, protocol, out, show_progress=False,
                                         with_lambda0=True)


def test_evaluate_split_writes_the_four_stamped_files(evaluated):
  config, done = evaluated
  tag = "coco_val_gt_N2_merged"
  assert {k: v.rsplit("/", 1)[1] for k, v in done.paths.items()} == {
      "results": f"results_{tag}.json", "metrics": f"metrics_{tag}.json",
      "table": f"table_{tag}.txt", "candidates": f"candidates_{tag}.npz"}
  metrics = json.loads(open(done.paths["metrics"]).read())
  assert metrics["protocol"] == json.loads(json.dumps(done.protocol.stamp()))
  assert metrics["protocol"]["weights"] == "random weights"
  assert (metrics["protocol"]["boxes"], metrics["protocol"]["gamma"]) == ("gt", 0.9)
  assert metrics["metrics"] == done.metrics and metrics["counts"] == done.counts
  assert open(done.paths["table"]).read() == done.table() + "\n"
  # 12 ground-truth boxes of the sample (at 128x96), N=2 candidates each.
  assert (done.counts["boxes"], done.counts["candidates"]) == (12, 24)
  assert done.counts["boxes_loaded"] == str(evaluate.load_boxes(config, done.protocol)[1])


def test_results_are_the_reference_loop_on_the_saved_candidates(evaluated):
  """The results file is exactly what the reference post-processing loop keeps from the saved
  candidates (rows, order and scores), and the metrics are pycocotools' on that file."""
  _, done = evaluated
  saved = load_candidates(done.paths["candidates"])
  for name in ("keypoints", "box_score", "area", "image_id", "lam"):
    np.testing.assert_array_equal(getattr(saved, name), getattr(done.candidates, name))
  np.testing.assert_array_equal(saved.lam, np.tile([0, 1], 12))
  rows, scores = REF.reference_postprocess(saved.keypoints, saved.box_score, saved.area,
                                           saved.image_id, saved.lam, meta.COCO.sigmas,
                                           gamma=0.9, gamma_mode="power")
  results = json.loads(open(done.paths["results"]).read())
  assert done.counts["results"] == len(results) == len(rows)
  assert [r["image_id"] for r in results] == saved.image_id[rows].tolist()
  assert [r["score"] for r in results] == scores
  for r, row in zip(results, rows):
    assert r["keypoints"] == saved.keypoints[row].astype(np.float64).ravel().tolist()
    assert r["category_id"] == 1
  stats = pycocotools_stats(done.protocol.annotations, done.paths["results"])
  assert list(done.metrics.values()) == stats
  assert list(done.metrics) == ["AP", "AP50", "AP75", "APM", "APL", "AR", "AR50", "AR75",
                                "ARM", "ARL"]


def test_lambda0_mode_is_scored_from_the_same_candidates(evaluated):
  _, done = evaluated
  rows, scores = REF.reference_postprocess(
      done.candidates.keypoints, done.candidates.box_score, done.candidates.area,
      done.candidates.image_id, done.candidates.lam, meta.COCO.sigmas, gamma=0.9,
      gamma_mode="power", keep_lambda=0)
  assert (done.candidates.lam[rows] == 0).all()
  single = done.protocol.with_postprocess(keep_lambda=0)
  results = evaluate.score_candidates(done.candidates, single)
  assert [r["score"] for r in results] == scores
  assert done.metrics_lambda0 == evaluate.compute_metrics(results, single)
  assert done.brief() == (f"  coco_val: AP {done.metrics['AP']:.4f} (merged, N=2), AP "
                          f"{done.metrics_lambda0['AP']:.4f} (lambda=0 only, baseline-style)")


def coco_protocol(split, annotations, num_instances, weights, spec) -> Protocol:
  """A hand-built protocol of the COCO keypoints scored as they are (no subset)."""
  return Protocol(split, "coco", annotations, "gt", "", num_instances, True, "quarter",
                  (128, 96), weights, metric="coco", area_rule="annotation",
                  joints=meta.joint_map(meta.COCO, meta.COCO), meta=meta.COCO, postprocess=spec)


def test_no_boxes_give_empty_candidates():
  protocol = coco_protocol("s", "a.json", 3, "w", PostprocessSpec())
  empty = evaluate.predict_candidates(None, None, [], protocol, "rgb", 8, show_progress=False)
  assert len(empty) == 0 and empty.keypoints.shape == (0, 17, 3)
  assert evaluate.score_candidates(empty, protocol) == []


def test_no_box_above_min_box_score_scores_zero(coco_config, tmp_path):
  """Detections all below eval.min_box_score: nothing runs, empty files, zero AP (no crash on
  the empty results list), and no lambda=0 mode for a protocol that keeps one lambda."""
  coco_config.eval.update(boxes="detections", min_box_score=1.01)
  model = build_model(coco_config.model, 2)
  loaded = LoadedModel(model, {}, "none")
  protocol = make_protocol(coco_config, "coco_val", "none")
  done = evaluate.evaluate_split(coco_config, loaded, protocol, str(tmp_path),
                                 show_progress=False, with_lambda0=True)
  assert (done.counts["boxes"], done.counts["candidates"], done.counts["results"]) == (0, 0, 0)
  assert json.loads(open(done.paths["results"]).read()) == []
  zero = {"AP": 0.0, "AP50": 0.0, "AP75": 0.0, "APM": 0.0, "APL": 0.0, "AR": 0.0, "AR50": 0.0,
          "AR75": 0.0, "ARM": 0.0, "ARL": 0.0}
  assert done.metrics == done.metrics_lambda0 == zero
  assert done.protocol.tag == "coco_val_det1.01_N2_merged"
  single = evaluate.evaluate_split(coco_config, loaded, protocol.with_postprocess(keep_lambda=1),
                                   str(tmp_path), show_progress=False, with_lambda0=True)
  assert single.metrics_lambda0 is None and single.metrics == zero


def hand_built(metrics_lambda0=None, keep_lambda=None) -> evaluate.EvalResult:
  protocol = coco_protocol("coco_val", "/a/ann.json", 2, "runs/x",
                           PostprocessSpec(keep_lambda=keep_lambda))
  empty = Candidates(np.zeros((0, 17, 3)), np.zeros(0), np.zeros(0), np.zeros(0), np.zeros(0))
  return evaluate.EvalResult(protocol, {"AP": 0.5, "AR": 0.25},
                             {"boxes": 2, "candidates": 4, "results": 3,
                              "boxes_loaded": "2 boxes"},
                             {"results": "/o/results.json"}, empty, metrics_lambda0)


def test_eval_result_text():
  result = hand_built({"AP": 0.125, "AR": 0.0})
  assert result.summary() == "\n".join([
      "coco_val (coco), coco_val_gt_N2_merged",
      "  split: coco_val",
      "  dataset: coco",
      "  annotations: /a/ann.json",
      "  boxes: gt",
      "  det_file: ",
      "  num_instances: 2",
      "  flip: True",
      "  decode: quarter",
      "  input_hw: (128, 96)",
      "  weights: runs/x",
      "  metric: coco",
      "  area_rule: annotation",
      "  max_dets: 20",
      f"  keypoints: {list(meta.COCO.keypoint_names)}",
      f"  model_joints: {list(range(17))}",
      f"  data_joints: {list(range(17))}",
      f"  sigmas: {list(meta.COCO.sigmas)}",
      "  gamma: 0.9",
      "  gamma_mode: power",
      "  in_vis_thre: 0.2",
      "  nms: oks",
      "  nms_threshold: 0.9",
      "  keep_lambda: None",
      "  min_box_score: 0.0",
      "  boxes 2, candidates 4, results 3, boxes_loaded 2 boxes",
      "         AP         AR",
      "     0.5000     0.2500",
      '{"split": "coco_val", "metrics": {"AP": 0.5, "AR": 0.25}, '
      '"results": "/o/results.json"}'])
  assert result.summary() == result.table() + "\n" + json.dumps(
      {"split": "coco_val", "metrics": {"AP": 0.5, "AR": 0.25}, "results": "/o/results.json"})
  assert result.brief() == ("  coco_val: AP 0.5000 (merged, N=2), AP 0.1250 (lambda=0 only, "
                            "baseline-style)")
  assert hand_built().brief() == "  coco_val: AP 0.5000 (merged, N=2)"
  single = hand_built(keep_lambda=1)
  assert single.brief() == "  coco_val: AP 0.5000 (lambda1, N=2)"
  assert single.table().splitlines()[0] == "coco_val (coco), coco_val_gt_N2_lambda1"


def test_gt_tight_protocol_loads_the_boxes_of_the_labelled_joints(coco_config):
  coco_config.eval.boxes = "gt_tight"
  protocol = make_protocol(coco_config, "coco_val", "w")
  found, report = evaluate.load_boxes(coco_config, protocol)
  records, _ = coco_format.load_person_records(protocol.annotations, meta.COCO, "", (128, 96))
  assert report.endswith("(tight boxes)") and len(found) == len(records) == 12
  for box, r in zip(found, records):
    xy = r.keypoints[r.keypoints[:, 2] > 0, :2]
    lo, hi = xy.min(0), xy.max(0)
    pad = np.maximum(0.1 * (hi - lo), (8 - 1.2 * (hi - lo)) / 2)
    h, w = r.image_hw
    want = np.concatenate([np.maximum(lo - pad, 0), np.minimum(hi + pad, [w - 1, h - 1])])
    np.testing.assert_allclose(np.concatenate([box.box[:2], box.box[:2] + box.box[2:]]), want,
                               atol=1e-3)
    assert box.source_id == r.ann_id and not np.array_equal(box.box, r.box)
