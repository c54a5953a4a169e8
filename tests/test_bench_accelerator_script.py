"""scripts/bench_accelerator.py on CPU with the tiny model, in a process where grain,
tensorflow-datasets, pycocotools, cv2, TensorFlow, clu and ml_collections cannot be imported (the lent
accelerator machines have only a JAX stack): the table, and a JSON line whose MFU, memory and
multiply-adds are consistent; the batch limits' arithmetic by hand."""

import json
import subprocess
import sys

from conftest import REPO_ROOT

BLOCKED = ("grain", "tensorflow_datasets", "pycocotools", "cv2", "tensorflow", "clu",
           "ml_collections")
RUN = """
import runpy, sys
blocked = set(sys.argv[1].split(","))
class Block:
  def find_spec(self, name, path=None, target=None):
    if name.split(".")[0] in blocked:
      raise ImportError(f"{name} is blocked in this test")
sys.meta_path.insert(0, Block())
sys.argv = sys.argv[2:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def test_bench_accelerator_runs_on_a_bare_jax_stack():
  args = ["scripts/bench_accelerator.py", "--models=tiny", "--resolutions=64x64", "--ns=2",
          "--dtypes=float32", "--batch=2", "--iters=1", "--warmup=1", "--peak_tflops=1"]
  done = subprocess.run([sys.executable, "-c", RUN, ",".join(BLOCKED), *args], cwd=REPO_ROOT,
                        capture_output=True, text=True, timeout=600)
  assert done.returncode == 0, done.stderr[-3000:]
  lines = done.stdout.strip().splitlines()
  assert "cpu" in lines[0] and "peak 1.0 TFLOP/s" in lines[0]
  assert lines[1].startswith("tiny       64x64 N=2 float32  B=2")
  result = json.loads(lines[-1])
  assert (result["bench"], result["backend"], result["peak_tflops"]) == ("accelerator", "cpu", 1.0)
  row, = result["rows"]
  assert row["train_img_s"] > 0 and row["infer_img_s"] > 0 and row["train_memory_bytes"] > 0
  # MFU is 3 x 2 x MACs per step over the peak: recomputed from the row's own numbers.
  macs = row["gmacs_per_img"] * 1e9 * row["batch_per_device"] * row["devices"]
  assert abs(row["train_mfu"] - 6 * macs / row["train_step_s"] / 1e12) < 1e-9
  assert "batch_limits" not in row


def test_batch_limits_by_hand():
  from conftest import load_script
  bench = load_script("bench_accelerator")
  gib = 2 ** 30
  # 2 GiB fixed + 0.5 GiB per image: 16 GiB holds 28 images, 141 GiB 278.
  limits = bench.limits_from((8, 16), (6 * gib, 10 * gib))
  assert limits == {"16GiB": 28, "32GiB": 60, "80GiB": 156, "141GiB": 278}
  assert bench.limits_from((8, 16), (20 * gib, 40 * gib))["16GiB"] == 6
