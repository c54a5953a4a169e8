"""The detector-confidence sweep: oracle poses on detection boxes (AP follows the boxes),
``--mode=sweep``'s run of two tiny models re-derived from their saved candidates, the
script on saved candidates, and the typed result's text."""

import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import COCO_SAMPLE_DETS as DETS, REPO_ROOT, tiny_checkpoint
from mipnet_jax.core import meta
from mipnet_jax.data import boxes, coco_format
from mipnet_jax.eval import run as evaluate, sweep
from mipnet_jax.eval.candidates import flat_candidates, load_candidates, save_candidates
from mipnet_jax.eval.protocol import make_protocol





def detection_scores(config) -> list[float]:
  return [d["score"] for d in json.loads(open(f"{config.data.root}/{DETS}").read())]


def test_sweep_of_oracle_poses_on_detection_boxes(coco_config, tmp_path):
  """A perfect pose for each detection box's best-matching person: AP follows the boxes."""
  protocol = make_protocol(coco_config, "coco_val", "oracle")
  dets, _ = boxes.load_detections(f"{coco_config.data.root}/{DETS}", protocol.annotations, "",
                                  (128, 96))
  records, _ = coco_format.load_person_records(protocol.annotations, meta.COCO, "", (128, 96))
  kp, person = [], []
  for d in dets:
    same = [r for r in records if r.image_id == d.image_id]
    best = min(same, key=lambda r: np.abs(r.box - d.box).sum())
    kp.append([np.concatenate([best.keypoints[:, :2], np.ones((17, 1))], 1)])
    person.append(best.ann_id)
  c = flat_candidates(np.asarray(kp, np.float32), np.array([d.score for d in dets]),
                      np.stack([d.scale for d in dets]), np.array([d.image_id for d in dets]))
  p1 = protocol.with_postprocess(keep_lambda=None)
  p1 = type(p1)(**{**vars(p1), "boxes": "detections", "num_instances": 1})
  thresholds = (0.0, 0.5, 0.9999, 1.0)
  rows = sweep.sweep_rows({"oracle": (c, p1)}, thresholds)
  assert [r["oracle_boxes"] for r in rows] == [
      sum(s >= t for s in detection_scores(coco_config)) for t in thresholds] == [118, 18, 4, 0]
  assert rows[0]["oracle"] == pytest.approx(1.0)     # every person has some box
  # Each row is the metric of the candidates of the boxes at or above the threshold.
  for row, t in zip(rows, thresholds):
    kept = evaluate.score_candidates(c, p1, min_box_score=t)
    assert row["oracle"] == evaluate.compute_metrics(kept, p1)["AP"]
  # Perfect poses: precision 1 up to the recall of the people the kept boxes cover, so AP is
  # the share of the 101 recall points up to it (at every OKS threshold).
  for row, t in zip(rows, thresholds):
    covered = len({a for a, d in zip(person, dets) if d.score >= t})
    points = np.sum(np.linspace(0, 1, 101) <= covered / len(records) + 1e-12) if covered else 0
    assert row["oracle"] == pytest.approx(points / 101, abs=1e-12)
  assert [r["oracle"] for r in rows][::3] == [pytest.approx(1.0), 0.0]   # all 12 / none
  paths = sweep.write_sweep(rows, ["oracle"], str(tmp_path), "oracle: sweep")
  assert open(paths["png"], "rb").read(8) == b"\x89PNG\r\n\x1a\n"
  assert open(paths["txt"]).read() == "oracle: sweep\n" + sweep.format_sweep(rows,
                                                                             ["oracle"]) + "\n"
  assert json.loads(open(paths["json"]).read()) == {"title": "oracle: sweep", "rows": rows}


def test_format_sweep_and_sweep_result_summary():
  rows = [{"threshold": 0.0, "a": 0.5, "a_boxes": 10, "b": 0.25, "b_boxes": 10},
          {"threshold": 0.5, "a": 0.125, "a_boxes": 3, "b": 0.0, "b_boxes": 3}]
  table = "\n".join(["min score           a   boxes           b   boxes",
                     "     0.00      0.5000      10      0.2500      10",
                     "     0.50      0.1250       3      0.0000       3"])
  assert sweep.format_sweep(rows, ["a", "b"]) == table
  result = sweep.SweepResult("exp: split, AP vs detector confidence", ("a", "b"), rows,
                             {"txt": "/o/sweep.txt", "json": "/o/sweep.json",
                              "png": "/o/sweep.png"})
  assert result.summary() == (
      "exp: split, AP vs detector confidence\n" + table + "\n"
      '{"rows": [{"threshold": 0.0, "a": 0.5, "a_boxes": 10, "b": 0.25, "b_boxes": 10}, '
      '{"threshold": 0.5, "a": 0.125, "a_boxes": 3, "b": 0.0, "b_boxes": 3}], '
      '"png": "/o/sweep.png"}')


def test_run_sweep_of_two_tiny_models_equals_its_saved_candidates(coco_config, tmp_path):
  """``--mode=sweep``: the N=1 baseline and N=2 MIPNet, each evaluated once on every detection
  (min_box_score 0, merged), then re-scored per threshold from the candidates it saved."""
  baseline = coco_config.copy_and_resolve_references()
  baseline.num_instances = 1
  _, _, coco_config.eval.baseline_checkpoint = tiny_checkpoint(baseline, tmp_path / "b")
  _, _, coco_config.eval.checkpoint = tiny_checkpoint(coco_config, tmp_path / "m")
  coco_config.eval.update(min_box_score=0.9, keep_lambda=0,          # the sweep overrides both
                          sweep_thresholds=(0.0, 0.5, 1.0))
  coco_config.eval.splits = "coco_val,coco_test_dev"                # the first split only
  done = sweep.run_sweep(coco_config, str(tmp_path / "work"), show_progress=False)
  out = tmp_path / "work" / "eval" / "sweep_coco_val"
  assert done.names == ("baseline", "mipnet")
  assert done.title == "hrnet_w32_coco_256x192_quick: coco_val, AP vs detector confidence"
  assert done.paths == {k: str(out / f"sweep.{k}") for k in ("txt", "json", "png")}
  assert json.loads((out / "sweep.json").read_text()) == {"title": done.title, "rows": done.rows}
  scores = detection_scores(coco_config)
  for name, n, ckpt in (("baseline", 1, tmp_path / "b"), ("mipnet", 2, tmp_path / "m")):
    tag = f"coco_val_det0_N{n}_merged"
    c = load_candidates(str(out / name / f"candidates_{tag}.npz"))
    assert len(c) == n * len(scores)                 # every detection, every lambda
    metrics = json.loads((out / name / f"metrics_{tag}.json").read_text())
    assert metrics["protocol"]["weights"] == str(ckpt)
    assert (metrics["protocol"]["min_box_score"], metrics["protocol"]["keep_lambda"]) == (
        0.0, None)
    protocol = make_protocol(coco_config, "coco_val", "")
    protocol = type(protocol)(**{**vars(protocol), "boxes": "detections", "num_instances": n,
                                 "det_file": metrics["protocol"]["det_file"]}
                              ).with_postprocess(min_box_score=0.0, keep_lambda=None)
    want = sweep.sweep_rows({name: (c, protocol)}, (0.0, 0.5, 1.0))
    for row, expected in zip(done.rows, want):
      assert row[name] == expected[name]
      assert row[f"{name}_boxes"] == expected[f"{name}_boxes"] == sum(
          s >= row["threshold"] for s in scores)
  assert [r["threshold"] for r in done.rows] == [0.0, 0.5, 1.0]
  assert done.summary().splitlines()[0] == done.title


def test_run_sweep_needs_detection_boxes(coco_config, tmp_path):
  coco_config.eval_data.coco_val.det_file = ""
  with pytest.raises(ValueError, match=r"^sweep: config.eval_data.coco_val.det_file is empty"):
    sweep.run_sweep(coco_config, str(tmp_path), show_progress=False)
  assert not (tmp_path / "eval").exists()


def _oracle(records):
  """Per box: lambda 0 = its own person, lambda 1 = its nearest other person (or itself)."""
  kp = []
  for r in records:
    own = np.concatenate([r.keypoints[:, :2], np.ones((len(r.keypoints), 1))], 1)
    other = r.others[0] if len(r.others) else r.keypoints
    other = np.concatenate([other[:, :2], np.ones((len(other), 1))], 1)
    kp.append(np.stack([own, other]))
  return np.asarray(kp, np.float32)


def test_confidence_sweep_script_on_saved_candidates(coco_config, tmp_path):
  protocol = make_protocol(coco_config, "coco_val", "oracle")
  records, _ = coco_format.load_person_records(protocol.annotations, meta.COCO, "", (128, 96))
  c = flat_candidates(_oracle(records), np.linspace(0.2, 1.0, len(records)),
                      np.stack([r.scale for r in records]),
                      np.array([r.image_id for r in records]))
  save_candidates(str(tmp_path / "m.npz"), c)
  out = subprocess.run(
      [sys.executable, str(REPO_ROOT / "scripts" / "confidence_sweep.py"), "--dataset", "coco",
       "--annotations", protocol.annotations, "--candidates", f"MIPNet={tmp_path / 'm.npz'}",
       "--thresholds", "0", "0.99", "--out", str(tmp_path / "sweep")],
      capture_output=True, text=True, check=True).stdout
  rows = json.loads((tmp_path / "sweep" / "sweep.json").read_text())["rows"]
  # The script's protocol is the default post-processing, merged over both lambdas.
  p2 = type(protocol)(**{**vars(protocol), "boxes": "detections"})
  assert rows == sweep.sweep_rows({"MIPNet": (c, p2)}, (0.0, 0.99))
  assert rows[0]["MIPNet"] == pytest.approx(1.0) and rows[0]["MIPNet_boxes"] == len(records)
  assert rows[1]["MIPNet_boxes"] == 1 and rows[1]["MIPNet"] < 1.0
  assert out.splitlines()[:4] == ["coco: AP vs detector confidence"] + sweep.format_sweep(
      rows, ["MIPNet"]).splitlines()
  assert (tmp_path / "sweep" / "sweep.png").exists()
