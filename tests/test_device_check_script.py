"""scripts/device_check.sh --dry-run: both halves of the device check on this CPU, small. The batches
come from the synthetic set's pipeline; the "device" half runs XLA's own convolutions
(conv_impl=xla) against the CPU forms of the reference curve, the kind of difference a GPU
brings, and stays within the check's tolerance."""

import json
import subprocess

from conftest import REPO_ROOT


def test_device_check_dry_run_passes():
  done = subprocess.run(["bash", "scripts/device_check.sh", "--dry-run"], cwd=REPO_ROOT,
                        capture_output=True, text=True, timeout=900)
  assert done.returncode == 0, done.stderr[-3000:]
  lines = done.stdout.strip().splitlines()
  prepared = json.loads(next(ln for ln in lines if ln.startswith('{"prepared"')))
  assert (prepared["steps"], prepared["batches"]) == (6, 2)
  result = json.loads(lines[-1])
  assert result["device_check"] == "pass" and result["backend"] == "cpu"
  assert result["steps"] == 6 and result["max_rel"] <= result["tolerance"] == 0.02
  assert 0 < result["max_rel"]          # other kernels: the curves are close, not identical
  assert abs(result["cpu_final_loss"] - result["final_loss"]) <= 0.02 * result["cpu_final_loss"]
