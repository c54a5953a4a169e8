"""scripts/track_clip.py end to end on a short clip with the served tiny model: one JSON line
with the frame count and a row per person, the annotated video and JSONL written."""

import json
import subprocess
import sys

from conftest import REPO_ROOT


def test_track_clip_script_runs_and_reports(served_model, tmp_path):
  _, checkpoint, _ = served_model
  done = subprocess.run(
      [sys.executable, "scripts/track_clip.py",
       "--config=configs/hrnet_w32_synthetic_256x192.py:quick",
       f"--config.eval.checkpoint={checkpoint}", "--frames=8", "--det_every=4",
       f"--output_dir={tmp_path}"], cwd=REPO_ROOT, capture_output=True, text=True,
      timeout=300)
  assert done.returncode == 0, done.stderr[-2000:]
  line = json.loads(done.stdout.strip().splitlines()[-1])
  assert (line["bench"], line["frames"], line["det_every"]) == ("track_clip", 8, 4)
  assert line["weights"] == checkpoint
  assert set(line["rows"]) == {"C (apart, all frames)", "A (apart)", "B (apart)",
                               "A (crossing)", "B (crossing)"}
  for row in line["rows"].values():
    assert 0 <= row["found"] <= 8 and 0.0 <= row["same_id"] <= 1.0
  lines = (tmp_path / "out" / "walk.jsonl").read_text().splitlines()
  assert len(lines) == 8 and (tmp_path / "out" / "walk.mp4").is_file()
