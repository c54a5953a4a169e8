"""Accelerator benchmark: train-step and inference speed, compile time, memory and MFU of the
pose networks on random inputs, for whatever devices JAX sees (GPU, TPU; CPU for a smoke run).

    python scripts/bench_accelerator.py                                   # the default grid
    python scripts/bench_accelerator.py --models=hrnet_w32 --resolutions=256x192 --ns=2 \
        --dtypes=bfloat16 --batch=64 --iters=20
    python scripts/bench_accelerator.py --batch_limits    # + largest batch per memory size

Imports only jax, flax, optax and numpy (with mipnet_jax.models and mipnet_jax.train.losses):
no grain, tensorflow-datasets, pycocotools, cv2 or ml_collections, so it runs on a machine
that has only a JAX stack (the lent GPU machines lack ml_collections too). Per (model, resolution, N, dtype), batch ``--batch`` per
device (data parallel over all devices):

* train step (forward of the trunk once and N lambda heads, JointsMSE, backward, Adam, BN
  statistics): compile seconds, step seconds (median), img/s;
* inference (``predict_instances``, uint8 crops in): compile seconds, img/s;
* memory: the compiled train step's buffers (``memory_analysis``: arguments + outputs +
  temporaries - aliased), and the device's peak bytes in use when it reports them;
* MFU: counted multiply-adds (models/cost.py, true convention) x 2 FLOPs, x 3 for a train step
  (forward + two backward products), per second, over the device's dense bf16 peak
  (PEAK_TFLOPS, public figures; ``--peak_tflops`` overrides; unknown device: no MFU).

``--batch_limits``: compiles the train step at two batch sizes more and, from the linear fit
of its memory, prints the largest batch per device that fits 16, 32, 80 and 141 GiB (on paper:
the compiler's buffer sizes, not a run; ``--limits_only`` skips the timing, so a CPU machine
can plan). Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from mipnet_jax.models.build import build_model
from mipnet_jax.models.cost import count_cost
from mipnet_jax.models.variables import random_variables
from mipnet_jax.core.normalize import normalize
from mipnet_jax.train.losses import instance_loss

MODELS = {
    "hrnet_w32": dict(name="hrnet", width=32),
    "hrnet_w48": dict(name="hrnet", width=48),
    "sbl_r50": dict(name="simple_baseline", depth=50),
    # the `:quick` widths, for smoke runs on CPU
    "tiny": dict(name="hrnet", width=8, stage_modules=(1, 1, 1), num_blocks=1, stem_width=16),
    "tiny_sbl": dict(name="simple_baseline", depth=50, base_width=8,
                     deconv_features=(16, 16, 16)),
}
# Dense bf16 peak TFLOP/s by device-kind substring (vendor datasheets); first match wins.
PEAK_TFLOPS = (("H200", 989.0), ("H100", 989.0), ("A100", 312.0), ("L40S", 362.0),
               ("L4", 121.0), ("A10", 125.0), ("V100", 125.0), ("TPU v6", 918.0),
               ("TPU v5p", 459.0), ("TPU v5 lite", 197.0), ("TPU v5e", 197.0),
               ("TPU v4", 275.0), ("TPU v3", 123.0))
MEMORY_GIB = (16, 32, 80, 141)


def device_peak_tflops(kind: str, override: float | None) -> float | None:
  if override:
    return override
  return next((peak for key, peak in PEAK_TFLOPS if key.lower() in kind.lower()), None)


def _timed(compiled, args, iters: int, warmup: int, carry: bool) -> float:
  """Median seconds per call; with ``carry`` each call's outputs feed the next."""
  for _ in range(warmup):
    out = compiled(*args)
    args = out if carry else args
  jax.block_until_ready(args)
  times = []
  for _ in range(iters):
    t0 = time.perf_counter()
    out = jax.block_until_ready(compiled(*args))
    times.append(time.perf_counter() - t0)
    args = out if carry else args
  return statistics.median(times)


def memory_bytes(compiled) -> int | None:
  """The compiled function's buffers: arguments + outputs + temporaries - aliased."""
  try:
    m = compiled.memory_analysis()
  except Exception:  # noqa: BLE001  (backends differ in what they implement)
    return None
  if m is None:
    return None
  return int(m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes
             - m.alias_size_in_bytes)


class Setup:
  """One configuration's model, sharded inputs and jitted functions."""

  def __init__(self, arch: str, hw: tuple[int, int], n: int, dtype: str, batch: int):
    self.model = build_model(dict(MODELS[arch], num_keypoints=17, dtype=dtype), n)
    self.n, self.hw = n, hw
    devices = np.array(jax.devices())
    mesh = jax.sharding.Mesh(devices, ("data",))
    self.data = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
    self.repl = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    self.global_batch = batch * len(devices)
    # Random He-scaled weights from the host: no initialiser to compile (values do not
    # change a step's cost).
    self.host_variables = jax.device_get(random_variables(self.model, hw))
    self.variables = jax.device_put(self.host_variables, self.repl)
    rng = np.random.default_rng(0)
    self.images = jax.device_put(
        rng.integers(0, 256, (self.global_batch, *hw, 3), np.uint8), self.data)
    h, w = hw[0] // 4, hw[1] // 4
    self.target = jax.device_put(
        rng.random((self.global_batch, n, h, w, 17), np.float32), self.data)
    self.tx = optax.adam(1e-3)

  def _loss(self, params, batch_stats, images, target):
    weight = jnp.ones((*target.shape[:2], target.shape[-1]), jnp.float32)
    return instance_loss(self.model, params, batch_stats, images, target, weight, self.n)

  def train_step(self):
    """(jitted step, its arguments): (params, batch_stats, opt_state, images, target)."""
    def step(params, batch_stats, opt_state, images, target):
      (_, batch_stats), grads = jax.value_and_grad(self._loss, has_aux=True)(
          params, batch_stats, images, target)
      updates, opt_state = self.tx.update(grads, opt_state, params)
      return optax.apply_updates(params, updates), batch_stats, opt_state, images, target
    # Fresh copies from the host: the step donates its state, predict() keeps its own.
    params, batch_stats = jax.device_put((self.host_variables["params"],
                                          self.host_variables["batch_stats"]), self.repl)
    opt_state = jax.jit(self.tx.init, out_shardings=self.repl)(params)
    args = (params, batch_stats, opt_state, jnp.copy(self.images), jnp.copy(self.target))
    r, d = self.repl, self.data
    fn = jax.jit(step, in_shardings=(r, r, r, d, d), out_shardings=(r, r, r, d, d),
                 donate_argnums=(0, 1, 2))
    return fn, args

  def predict(self):
    fn = jax.jit(lambda v, x: self.model.apply(v, normalize(x), self.n,
                                               method=self.model.predict_instances))
    return fn, (self.variables, self.images)

  def forward_macs(self) -> float:
    """True multiply-adds of predict_instances on the global batch."""
    x = jax.ShapeDtypeStruct(self.images.shape, jnp.float32)
    return count_cost(lambda v, im: self.model.apply(v, im, self.n,
                                                     method=self.model.predict_instances),
                      self.variables, x).macs


def bench_one(arch, hw, n, dtype, batch, iters, warmup, peak) -> dict:
  """The module docstring's numbers for one configuration."""
  s = Setup(arch, hw, n, dtype, batch)
  row = dict(model=arch, hw=list(hw), n=n, dtype=dtype, batch_per_device=batch,
             devices=jax.device_count())
  fn, args = s.train_step()
  t0 = time.perf_counter()
  compiled = fn.lower(*args).compile()
  row["train_compile_s"] = time.perf_counter() - t0
  row["train_memory_bytes"] = memory_bytes(compiled)
  sec = _timed(compiled, args, iters, warmup, carry=True)
  row["train_step_s"], row["train_img_s"] = sec, s.global_batch / sec
  fn, args = s.predict()
  t0 = time.perf_counter()
  compiled = fn.lower(*args).compile()
  row["infer_compile_s"] = time.perf_counter() - t0
  row["infer_img_s"] = s.global_batch / _timed(compiled, args, iters, warmup, carry=False)
  macs = s.forward_macs()
  row["gmacs_per_img"] = macs / s.global_batch / 1e9
  if peak:
    total = peak * 1e12 * jax.device_count()
    row["train_mfu"] = 3 * 2 * macs / row["train_step_s"] / total
    row["infer_mfu"] = 2 * macs / (s.global_batch / row["infer_img_s"]) / total
  stats = jax.devices()[0].memory_stats() or {}
  row["device_peak_bytes"] = stats.get("peak_bytes_in_use")
  return row


def batch_limits(arch, hw, n, dtype, sizes=(8, 16)) -> dict:
  """Largest batch per device under each of MEMORY_GIB, from the train step's compiled memory
  at two batch sizes (linear in the batch)."""
  used = []
  for b in sizes:
    fn, args = Setup(arch, hw, n, dtype, b).train_step()
    used.append(memory_bytes(fn.lower(*args).compile()))
  return {} if None in used else limits_from(sizes, used)


def limits_from(sizes, used) -> dict:
  """Bytes ``used`` at two batch ``sizes`` -> {"16GiB": largest batch, ...} of the line
  through them (fixed bytes + bytes per image)."""
  per_image = (used[1] - used[0]) / (sizes[1] - sizes[0])
  fixed = used[0] - per_image * sizes[0]
  return {f"{gib}GiB": max(int((gib * 2 ** 30 - fixed) // per_image), 0) for gib in MEMORY_GIB}


def print_row(r: dict) -> None:
  mem = r["train_memory_bytes"]
  mfu = (f"{100 * r['train_mfu']:5.1f}% {100 * r['infer_mfu']:5.1f}%" if "train_mfu" in r
         else "    -      -")
  print(f"{r['model']:10s} {r['hw'][0]}x{r['hw'][1]} N={r['n']} {r['dtype']:8s} "
        f"B={r['batch_per_device']:<4d} train {r['train_img_s']:8.1f} img/s "
        f"({r['train_compile_s']:5.1f} s)  infer {r['infer_img_s']:8.1f} img/s "
        f"({r['infer_compile_s']:5.1f} s)  mem {(mem or 0) / 2 ** 30:6.2f} GiB  MFU {mfu}"
        + (f"  limits {r['batch_limits']}" if r.get("batch_limits") else ""))


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--models", default="hrnet_w32,hrnet_w48,sbl_r50")
  p.add_argument("--resolutions", default="256x192,384x288")
  p.add_argument("--ns", default="1,2")
  p.add_argument("--dtypes", default="float32,bfloat16")
  p.add_argument("--batch", type=int, default=32, help="per device")
  p.add_argument("--iters", type=int, default=10)
  p.add_argument("--warmup", type=int, default=2)
  p.add_argument("--peak_tflops", type=float, default=None,
                 help="per-device peak for MFU (default: PEAK_TFLOPS by device kind)")
  p.add_argument("--batch_limits", action="store_true")
  p.add_argument("--limits_only", action="store_true",
                 help="only the batch limits (no timing): for planning on a CPU machine")
  a = p.parse_args()
  kind = jax.devices()[0].device_kind
  peak = device_peak_tflops(kind, a.peak_tflops)
  print(f"{jax.device_count()} x {kind} ({jax.default_backend()}), jax {jax.__version__}, "
        f"peak {peak or 'unknown'} TFLOP/s per device")
  rows = []
  for arch in a.models.split(","):
    for res in a.resolutions.split(","):
      hw = tuple(int(v) for v in res.split("x"))
      for n in (int(v) for v in a.ns.split(",")):
        for dtype in a.dtypes.split(","):
          if a.limits_only:
            row = dict(model=arch, hw=list(hw), n=n, dtype=dtype,
                       batch_limits=batch_limits(arch, hw, n, dtype))
            print(f"{arch:10s} {res} N={n} {dtype:8s} limits {row['batch_limits']}")
            rows.append(row)
            continue
          row = bench_one(arch, hw, n, dtype, a.batch, a.iters, a.warmup, peak)
          if a.batch_limits:
            row["batch_limits"] = batch_limits(arch, hw, n, dtype)
          print_row(row)
          rows.append(row)
  print(json.dumps(dict(bench="accelerator", device_kind=kind, backend=jax.default_backend(),
                        devices=jax.device_count(), jax=jax.__version__,
                        peak_tflops=peak, rows=rows)))


if __name__ == "__main__":
  main()
