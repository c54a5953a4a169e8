"""scripts/compare_baseline.py end to end with a tiny budget on a tiny synthetic set."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import REPO_ROOT

SCRIPT = REPO_ROOT / "scripts" / "compare_baseline.py"
SPLITS = ("synthetic_val", "synthetic_val_pairs")


def test_compare_baseline_tiny(tmp_path):
  out = tmp_path / "cmp"
  argv = [sys.executable, str(SCRIPT), f"--out={out}", f"--data_root={tmp_path / 'syn'}",
          "--steps=3", "--batch=4", "--log_every=1", "--eval_every_epochs=100",
          "--num_train=6", "--num_val=6", "--seed=1"]
  done = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
  assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]

  table = (out / "comparison.md").read_text()
  assert "| model | N |" in table
  for name in ("baseline (HRNet)", "MIPNet, merged", "MIPNet, lambda=0 only", *SPLITS):
    assert name in table

  data = json.loads((out / "comparison.json").read_text())
  assert (data["steps"], data["batch"], data["seed"]) == (3, 4, 1)
  assert [(r["model"], r["N"]) for r in data["rows"]] == [
      ("baseline (HRNet)", 1), ("MIPNet, merged", 2), ("MIPNet, lambda=0 only", 2)]
  for row in data["rows"]:
    for split in SPLITS:
      for key in ("AP", "AP50", "AR"):
        value = row[split][key]
        assert isinstance(value, float) and -1.0 <= value <= 1.0, (row["model"], split, key)
  for run, n in (("baseline", 1), ("mipnet", 2)):
    summary = data["runs"][run]
    assert summary["num_instances"] == n and summary["step"] == 3
    assert set(summary["evals"]) == set(SPLITS)
    lines = [json.loads(x) for x in (out / run / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines if "loss" in x] == [1, 2, 3]
    assert any(f"{SPLITS[1]}/AP" in x for x in lines)
  assert data["runs"]["mipnet"]["evals"]["synthetic_val"]["metrics_lambda0"] is not None

  png = (out / "learning_curves.png").read_bytes()
  assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
  import matplotlib.image
  img = matplotlib.image.imread(out / "learning_curves.png")
  assert img.shape[0] >= 300 and img.shape[1] >= 800
