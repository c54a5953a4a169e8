"""mipnet_jax/main.py: the mode table, ``--mode=summary --json`` in a subprocess, and the
command line's one-line errors (exit 2): a misspelt ``--config.FIELD`` names the nearest
field, a renamed one (``evals``) the new name, a bad value says why, and a config file that
still sets a renamed field names the new one. Cheap modes only: nothing here builds a full
model."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from absl import flags

from conftest import REPO_ROOT
from mipnet_jax import main
from mipnet_jax.models import summary

QUICK = "--config=configs/hrnet_w32_synthetic_256x192.py:quick"


def run_main(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, "-m", "mipnet_jax.main", *args], cwd=REPO_ROOT,
                        capture_output=True, text=True, timeout=timeout)


def last_line(text: str) -> str:
  return [line for line in text.splitlines() if line.strip()][-1]


def test_modes_are_the_mode_flags_values():
  assert set(main.MODES) == set(flags.FLAGS["mode"].parser.enum_values) == {
      "summary", "data", "eval", "sweep", "train", "train_and_eval", "export", "predict"}
  assert all(callable(f) for f in main.MODES.values())


def test_summary_json_is_the_model_report(load_config):
  done = run_main("--config=configs/sbl_r50_coco_256x192.py:quick", "--mode=summary", "--json",
                  "--config.model.mimb_reduce=2")
  assert done.returncode == 0, done.stderr[-3000:]
  report = json.loads(last_line(done.stdout))
  config = load_config("sbl_r50_coco_256x192", "quick")
  config.model.mimb_reduce = 2
  want = json.loads(json.dumps(summary.model_report(config)))
  assert report["config"] == "sbl_r50_coco_256x192_quick" and report["num_instances"] == 2
  for key in ("params", "mimb_params", "macs", "paper_gflops", "xla_flops"):
    assert report[key] == want[key], key
  assert set(report["xla_flops"]) == {"1", "2", "3", "4"}
  # reduce=2 at base width 8: MIMB(64) before layer3 and MIMB(128) before layer4, each
  # 2*C*C/2 (F_ex) + 3*C/2 + 2*C/2 (Linear(2, C/2) and BN1d) + (C/2 + 1)*C (Linear(C/2, C)).
  mimb = lambda c: c * c + 3 * c // 2 + c + (c // 2 + 1) * c
  assert report["mimb_params"] == mimb(64) + mimb(128) == 31_392


def test_misspelt_override_names_the_nearest_field():
  done = run_main(QUICK, "--config.eval.spilts=x")
  assert done.returncode == 2 and done.stdout == ""
  assert last_line(done.stderr) == ("error: --config.eval.spilts: the config has no field "
                                    "'eval.spilts'; did you mean --config.eval.splits?")
  assert "Traceback" not in done.stderr


def test_renamed_override_names_eval_data():
  done = run_main(QUICK, "--config.evals.synthetic_val.det_file=x")
  assert done.returncode == 2 and done.stdout == ""
  assert last_line(done.stderr) == (
      "error: --config.evals.synthetic_val.det_file: config.evals was renamed: use "
      "--config.eval_data.synthetic_val.det_file")
  assert "Traceback" not in done.stderr


def test_bad_override_value_is_one_line():
  done = run_main(QUICK, "--config.eval.batch_size=abc")
  assert done.returncode == 2 and done.stdout == ""
  assert last_line(done.stderr) == ("error: --config override: flag --config.eval.batch_size=abc"
                                    ": invalid literal for int() with base 10: 'abc'")
  assert "Traceback" not in done.stderr


def test_config_file_that_still_sets_evals(tmp_path):
  path = tmp_path / "old_config.py"
  path.write_text(
      "import ml_collections\n"
      "from mipnet_jax import experiments\n\n\n"
      "def get_config(arg=None):\n"
      "  c = experiments.experiment('hrnet_w32', 'synthetic', (256, 192), 'quick')\n"
      "  c.unlock()\n"
      "  c.evals = ml_collections.ConfigDict(c.eval_data.to_dict())\n"
      "  return c\n")
  done = run_main(f"--config={path}", "--mode=summary")
  assert done.returncode == 2 and done.stdout == ""
  line = last_line(done.stderr)
  assert line.endswith("] ValueError: config.evals was renamed to config.eval_data"), line
  assert "Traceback" not in done.stderr


def test_config_errors_after_parsing_are_one_logged_line(tmp_path):
  done = run_main(QUICK, "--config.eval.splits=nope", "--mode=eval", f"--workdir={tmp_path}")
  assert done.returncode == 2 and done.stdout == ""
  assert last_line(done.stderr).endswith(
      "] ValueError: config.eval.splits: 'nope' is not in config.eval_data "
      "(synthetic_val, synthetic_val_pairs, synthetic_val_shared, synthetic_val_shared_tight)")
  assert list(tmp_path.iterdir()) == []             # nothing loaded, nothing written


# ---- config_override_error, in process ---------------------------------------------------

def test_config_override_error_lines():
  quick = [QUICK.replace("configs/", f"{REPO_ROOT}/configs/")]
  error = KeyError("whatever ml_collections says")
  assert main.config_override_error(quick + ["--config.eval.spilts=x"], error) == (
      "--config.eval.spilts: the config has no field 'eval.spilts'; did you mean "
      "--config.eval.splits?")
  assert main.config_override_error(quick + ["--config.zzzzzz=1"], error) == (
      "--config.zzzzzz: the config has no field 'zzzzzz'")          # nothing near: no hint
  # Renamed: named without loading the config at all.
  for argv in (quick, ["--config=/nonexistent.py"], []):
    assert main.config_override_error(argv + ["--config.evals.x.det_file=d"], error) == (
        "--config.evals.x.det_file: config.evals was renamed: use --config.eval_data.x.det_file")
  assert main.config_override_error(["--config.evals=1"], error) == (
      "--config.evals: config.evals was renamed: use --config.eval_data")
  # An existing field: the error's own first line when it is about an override, else None.
  bad = ValueError("flag --config.eval.batch_size=abc: invalid literal\nsecond line")
  assert main.config_override_error(quick + ["--config.eval.batch_size=abc"], bad) == (
      "--config override: flag --config.eval.batch_size=abc: invalid literal")
  assert main.config_override_error(quick + ["--config.eval.batch_size=8"],
                                    ValueError("unrelated")) is None
  # No override at all, or a config file that cannot be loaded: not ours to explain.
  assert main.config_override_error(quick + ["--mode=nope"], error) is None
  assert main.config_override_error(["--config=/nonexistent.py", "--config.eval.spilts=x"],
                                    error) is None


def test_config_of_reads_file_and_argument(tmp_path):
  config = main._config_of([f"--config={REPO_ROOT}/configs/sbl_r50_coco_256x192.py:quick,n=3"])
  assert (config.experiment, config.num_instances) == ("sbl_r50_coco_256x192_quick", 3)
  broken = tmp_path / "broken.py"
  broken.write_text("def get_config(arg=None):\n  raise RuntimeError('no')\n")
  assert main._config_of([f"--config={broken}"]) is None
  assert main._config_of(["--mode=summary"]) is None


@pytest.mark.parametrize("name,fields", [
    ("eval.splits", True), ("eval_data.synthetic_val.det_file", True), ("model.width", True),
    ("eval.spilts", False), ("evals", False)])
def test_field_paths(load_config, name, fields):
  paths = main._field_paths(load_config("hrnet_w32_synthetic_256x192", "quick"))
  assert (name in paths) == fields
