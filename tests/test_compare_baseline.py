"""scripts/compare_baseline.py end to end with a tiny budget on a tiny synthetic set: the table's
numbers are pycocotools' on each run's own results files, and the lambda=0 row is the
reference post-processing of MIPNet's saved candidates with lambda=0 alone."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO_ROOT, load_oracle, pycocotools_limb_sigmas, pycocotools_stats
from mipnet_jax.core.meta import get_meta
from mipnet_jax.eval.candidates import load_candidates
from mipnet_jax.eval.postprocess import Kept, coco_results

# One worker runs this module, so its module fixture runs once (pyproject: --dist loadgroup).
pytestmark = pytest.mark.xdist_group("compare_baseline")

SCRIPT = REPO_ROOT / "scripts" / "compare_baseline.py"
SPLITS = ("synthetic_val", "synthetic_val_pairs", "synthetic_val_shared",
          "synthetic_val_shared_tight")
ANNOTATIONS = {"synthetic_val": "person_keypoints_val.json",
               "synthetic_val_pairs": "person_keypoints_val_pairs.json",
               "synthetic_val_shared": "person_keypoints_val_shared.json",
               "synthetic_val_shared_tight": "person_keypoints_val_shared.json"}
# The shared splits: the model's 17 joints scored on the 12 limbs, OKS area 0.53 x box area.
BOXES = {"synthetic_val_shared_tight": "gttight"}


def oracle_stats(split: str, gt: str, results) -> list[float]:
  if "shared" in split:
    return pycocotools_stats(gt, results, pycocotools_limb_sigmas(), area_factor=0.53)
  return pycocotools_stats(gt, results)
COCO_KEYS = ("AP", "AP50", "AP75", "APM", "APL", "AR", "AR50", "AR75", "ARM", "ARL")
REF = load_oracle("reference_postprocess")




@pytest.fixture(scope="module")
def compared(tmp_path_factory):
  tmp = tmp_path_factory.mktemp("compare")
  out = tmp / "cmp"
  argv = [sys.executable, str(SCRIPT), f"--out={out}", f"--data_root={tmp / 'syn'}",
          "--steps=3", "--batch=4", "--log_every=1", "--eval_every_epochs=100",
          "--num_train=6", "--num_val=6", "--seed=1"]
  done = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
  assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
  return out, tmp / "syn", json.loads((out / "comparison.json").read_text())


def test_runs_and_their_summaries(compared):
  out, data_root, data = compared
  assert (data["steps"], data["batch"], data["seed"], data["data_root"]) == (
      3, 4, 1, str(data_root))
  assert [(r["model"], r["N"]) for r in data["rows"]] == [
      ("baseline (HRNet)", 1), ("MIPNet, merged", 2), ("MIPNet, lambda=0 only", 2)]
  for run, n in (("baseline", 1), ("mipnet", 2)):
    summary = data["runs"][run]
    assert json.loads((out / run / "summary.json").read_text()) == summary
    assert (summary["run"], summary["num_instances"], summary["step"]) == (run, n, 3)
    assert set(summary["evals"]) == set(SPLITS)
    lines = [json.loads(x) for x in (out / run / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines if "loss" in x] == [1, 2, 3]
    # One evaluation, at the end (eval_every_epochs=100): every metric of each split, and
    # AP_lambda0 for MIPNet only, as in its summary.
    scalars = {k: v for x in lines if any("/" in k for k in x) for k, v in x.items()}
    assert scalars.pop("step") == 3 and {x["step"] for x in lines if "/" in "".join(x)} == {3}
    want = {}
    for split in SPLITS:
      ev = summary["evals"][split]
      want.update({f"{split}/{k}": v for k, v in ev["metrics"].items()})
      if n == 1:
        assert ev["metrics_lambda0"] is None
      else:
        want[f"{split}/AP_lambda0"] = ev["metrics_lambda0"]["AP"]
    assert scalars == want


def test_reported_metrics_are_pycocotools_on_the_runs_results(compared):
  out, data_root, data = compared
  rows = {r["model"]: r for r in data["rows"]}
  for run, n, row in (("baseline", 1, "baseline (HRNet)"), ("mipnet", 2, "MIPNet, merged")):
    for split in SPLITS:
      tag = f"{split}_{BOXES.get(split, 'gt')}_N{n}_merged"
      stamp = json.loads((out / run / "eval" / "step_3" / f"metrics_{tag}.json").read_text())
      assert stamp["protocol"]["weights"] == "training step 3"
      results = out / run / "eval" / "step_3" / f"results_{tag}.json"
      gt = str(data_root / "annotations" / ANNOTATIONS[split])
      want = dict(zip(COCO_KEYS, oracle_stats(split, gt, str(results))))
      assert data["runs"][run]["evals"][split]["metrics"] == want == stamp["metrics"]
      assert rows[row][split] == {k: want[k] for k in ("AP", "AP50", "AR")}


def reference_results(c, keep_lambda, sigmas) -> list[dict]:
  """The reference post-processing loop on candidates ``c`` -> COCO results."""
  kept, scores = REF.reference_postprocess(c.keypoints, c.box_score, c.area, c.image_id, c.lam,
                                           sigmas, gamma=0.9,
                                           gamma_mode="power", keep_lambda=keep_lambda)
  return coco_results(c, Kept(np.array(kept, np.int64), np.array(scores)))


def test_lambda0_row_is_lambda0_alone_of_the_saved_candidates(compared):
  """MIPNet's results file is the merged post-processing of its saved candidates; the
  lambda=0 row is pycocotools on lambda=0 alone of the same candidates. (After 3 steps every
  AP is 0.0 and the lambda=1 poses nearly repeat the lambda=0 ones, so NMS drops them and the
  two rows coincide here; each is checked against its own derivation.)"""
  out, data_root, data = compared
  row = next(r for r in data["rows"] if r["model"] == "MIPNet, lambda=0 only")
  for split in SPLITS:
    folder = out / "mipnet" / "eval" / "step_3"
    tag = f"{split}_{BOXES.get(split, 'gt')}_N2_merged"
    c = load_candidates(str(folder / f"candidates_{tag}.npz"))
    np.testing.assert_array_equal(c.lam, np.tile([0, 1], len(c) // 2))
    # The shared splits' candidates hold the 12 limb joints only.
    sigmas = pycocotools_limb_sigmas() if "shared" in split else get_meta("coco").sigmas
    assert c.keypoints.shape[1] == len(sigmas)
    merged = json.loads((folder / f"results_{tag}.json").read_text())
    assert merged == json.loads(json.dumps(reference_results(c, None, sigmas)))
    results = reference_results(c, 0, sigmas)
    want = dict(zip(COCO_KEYS, oracle_stats(
        split, str(data_root / "annotations" / ANNOTATIONS[split]), results)))
    assert data["runs"]["mipnet"]["evals"][split]["metrics_lambda0"] == want
    assert row[split] == {k: want[k] for k in ("AP", "AP50", "AR")}


def test_table_and_plot(compared):
  out, data_root, data = compared
  lines = (out / "comparison.md").read_text().splitlines()
  assert lines[0] == (f"Synthetic crowd, HRNet-W32 quick, 3 steps x batch 4, seed 1, data "
                      f"{data_root}")
  assert lines[2] == ("| model | N | " + " | ".join(
      f"{s} {c}" for s in SPLITS for c in ("AP", "AP50", "AR")) + " |")
  for line, row in zip(lines[4:], data["rows"], strict=True):
    cells = [row["model"], str(row["N"])] + [f"{row[s][c]:.4f}" for s in SPLITS
                                             for c in ("AP", "AP50", "AR")]
    assert line == "| " + " | ".join(cells) + " |"
  png = (out / "learning_curves.png").read_bytes()
  assert png[:8] == b"\x89PNG\r\n\x1a\n"
  import matplotlib.image
  img = matplotlib.image.imread(out / "learning_curves.png")
  assert img.shape[:2] == (400, 1100)                   # figsize (11, 4) at dpi 100
