"""Evaluation driver: candidates layout, an oracle through discount/merge/NMS/metrics, the
protocol stamp, the end-to-end run on real images, and the confidence sweep."""

import dataclasses
import json

import numpy as np
import pytest

from mipnet_jax.eval import run as eval_job, run as evaluate, sweep
from mipnet_jax.data import boxes, coco_format
from mipnet_jax.core import meta


@pytest.fixture
def coco_config(load_config, shared_data):
  c = load_config("hrnet_w32_coco_256x192", "quick")
  c.data.root = str(shared_data / "coco")
  c.evals.coco_val.update(ann="test_coco.json", images=".",
                          det_file="test_coco_det_AP_H_56.json")
  return c


def test_flat_candidates_are_box_major_and_round_trip(tmp_path):
  kp = np.arange(2 * 3 * 17 * 3, dtype=np.float32).reshape(2, 3, 17, 3)
  c = evaluate.flat_candidates(kp, np.array([0.9, 0.5]), np.array([[1.0, 2.0], [0.5, 0.5]]),
                               np.array([7, 8]))
  np.testing.assert_array_equal(c.lam, [0, 1, 2, 0, 1, 2])
  np.testing.assert_array_equal(c.image_id, [7, 7, 7, 8, 8, 8])
  np.testing.assert_array_equal(c.keypoints[4], kp[1, 1])
  np.testing.assert_allclose(c.area[:3], 200 * 400)
  evaluate.save_candidates(str(tmp_path / "c.npz"), c)
  back = evaluate.load_candidates(str(tmp_path / "c.npz"))
  for name in ("keypoints", "box_score", "area", "image_id", "lam"):
    np.testing.assert_array_equal(getattr(back, name), getattr(c, name))


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
  protocol = evaluate.make_protocol(coco_config, "coco_val", "oracle")
  records, _ = coco_format.load_person_records(protocol.annotations, meta.COCO, "", (128, 96))
  c = evaluate.flat_candidates(_oracle(records, 2), np.ones(len(records)),
                               np.stack([r.scale for r in records]),
                               np.array([r.image_id for r in records]))
  results = evaluate.score_candidates(c, protocol)
  # lambda 1 copies of other people are duplicates of their own boxes' lambda 0: NMS removes
  # them (OKS 1 > 0.9), so every person is predicted once, with score 1.
  assert len(results) == len(records)
  assert {round(r["score"], 6) for r in results} == {1.0}
  assert evaluate.compute_metrics(results, protocol)["AP"] == pytest.approx(1.0)
  single = evaluate.score_candidates(c, dataclasses.replace(protocol, keep_lambda=1))
  # lambda 1 alone: each box predicts its neighbour, discounted by gamma = 0.9.
  assert max(r["score"] for r in single) == pytest.approx(0.9)


def test_eval_writes_stamped_files_on_real_images(coco_config, tmp_path):
  done = eval_job.run_eval(coco_config, str(tmp_path), show_progress=False)[0]
  metrics = json.loads(open(done["paths"]["metrics"]).read())
  assert metrics["protocol"]["boxes"] == "gt" and metrics["protocol"]["gamma"] == 0.9
  assert metrics["protocol"]["weights"].startswith("freshly initialised")
  assert done["counts"]["boxes"] == 12 and done["counts"]["candidates"] == 24
  results = json.loads(open(done["paths"]["results"]).read())
  assert isinstance(results, list) and 0 < len(results) <= 24
  assert len(results[0]["keypoints"]) == 51
  assert "results_coco_val_gt_N2_merged.json" in done["paths"]["results"]
  assert set(metrics["metrics"]) >= {"AP", "AP50", "AR"}


def test_sweep_of_oracle_poses_on_detection_boxes(coco_config, tmp_path):
  """A perfect pose for each detection box's best-matching person: AP follows the boxes."""
  protocol = evaluate.make_protocol(coco_config, "coco_val", "oracle")
  dets, _ = boxes.load_detections(str(coco_config.data.root + "/test_coco_det_AP_H_56.json"),
                                  protocol.annotations, "", (128, 96))
  records, _ = coco_format.load_person_records(protocol.annotations, meta.COCO, "", (128, 96))
  kp = []
  for d in dets:
    same = [r for r in records if r.image_id == d.image_id]
    best = min(same, key=lambda r: np.abs(r.box - d.box).sum())
    kp.append([np.concatenate([best.keypoints[:, :2], np.ones((17, 1))], 1)])
  c = evaluate.flat_candidates(np.asarray(kp, np.float32), np.array([d.score for d in dets]),
                               np.stack([d.scale for d in dets]),
                               np.array([d.image_id for d in dets]))
  p1 = dataclasses.replace(protocol, boxes="detections", num_instances=1)
  thresholds = (0.0, 0.5, 0.9999)
  rows = sweep.run_sweep({"oracle": (c, p1)}, thresholds)
  raw = json.loads(open(coco_config.data.root + "/test_coco_det_AP_H_56.json").read())
  assert [r["oracle_boxes"] for r in rows] == [
      sum(d["score"] >= t for d in raw) for t in thresholds] == [118, 18, 4]
  assert rows[0]["oracle"] == pytest.approx(1.0)     # every person has some box
  assert rows[2]["oracle"] < rows[0]["oracle"]       # too strict a threshold loses people
  paths = sweep.write_sweep(rows, ["oracle"], str(tmp_path), "oracle: sweep")
  assert open(paths["png"], "rb").read(8) == b"\x89PNG\r\n\x1a\n"
  assert "0.50" in open(paths["txt"]).read()


def test_protocol_errors_name_the_field(coco_config):
  coco_config.evals.coco_val.det_file = ""
  coco_config.eval.boxes = "detections"
  with pytest.raises(ValueError, match="det_file is empty"):
    evaluate.make_protocol(coco_config, "coco_val", "x")
  coco_config.eval.boxes = "gt"
  coco_config.eval.keep_lambda = 2
  with pytest.raises(ValueError, match="keep_lambda=2 needs N > 2"):
    evaluate.make_protocol(coco_config, "coco_val", "x")
  with pytest.raises(ValueError, match="'nope' is not in config.evals"):
    evaluate.make_protocol(coco_config, "nope", "x")


def test_confidence_sweep_script_on_saved_candidates(coco_config, tmp_path):
  import subprocess
  import sys
  from conftest import REPO_ROOT
  protocol = evaluate.make_protocol(coco_config, "coco_val", "oracle")
  records, _ = coco_format.load_person_records(protocol.annotations, meta.COCO, "", (128, 96))
  c = evaluate.flat_candidates(_oracle(records, 2), np.linspace(0.2, 1.0, len(records)),
                               np.stack([r.scale for r in records]),
                               np.array([r.image_id for r in records]))
  evaluate.save_candidates(str(tmp_path / "m.npz"), c)
  out = subprocess.run(
      [sys.executable, str(REPO_ROOT / "scripts" / "confidence_sweep.py"), "--dataset", "coco",
       "--annotations", protocol.annotations, "--candidates", f"MIPNet={tmp_path / 'm.npz'}",
       "--thresholds", "0", "0.99", "--out", str(tmp_path / "sweep")],
      capture_output=True, text=True, check=True).stdout
  rows = json.loads((tmp_path / "sweep" / "sweep.json").read_text())["rows"]
  assert rows[0]["MIPNet"] == pytest.approx(1.0) and rows[0]["MIPNet_boxes"] == len(records)
  assert rows[1]["MIPNet_boxes"] == 1 and rows[1]["MIPNet"] < 1.0
  assert "MIPNet" in out and (tmp_path / "sweep" / "sweep.png").exists()


def test_eval_splits_are_a_comma_list_checked_before_the_model_loads(coco_config, tmp_path):
  coco_config.eval.splits = "coco_val, nope"
  assert eval_job.split_names(coco_config) == ["coco_val", "nope"]
  with pytest.raises(ValueError, match="'nope' is not in config.evals"):
    eval_job.run_eval(coco_config, str(tmp_path), show_progress=False)
  assert not (tmp_path / "eval").exists()
