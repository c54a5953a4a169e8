"""Throughput of the real training step (``train/step.py`` ``jit_train_step``) and its collectives.

    python scripts/bench_train.py                     # HRNet-W32 256x192, batch 8, fp32
    python scripts/bench_train.py --steps 3 --skip_torch

Measures, for the full-size HRNet-W32 of ``experiments.experiment("hrnet_w32", "coco",
(256, 192))`` on this CPU:
  * the train step the trainer runs (``train/step.py`` ``jit_train_step`` on a 1-device mesh: uint8
    images normalised on device, Gaussian targets rendered on device from [B,N,K,4] windows,
    JointsMSE, backward, Adam with the reference's schedule, BN statistics, finite check),
    for N=1 (the baseline) and N=2 (MIPNet: trunk once, head on N x B rows); compile time
    apart, then steps/s and images (boxes)/s, and the N=2 / N=1 step-time ratio;
  * the official-style PyTorch train step (tests/oracles/torch_reference.py, N=1) when torch
    imports. The three steps run interleaved (one of each per round), so load from other
    jobs on the machine hits them alike; ratios are per-round medians;
  * the collectives of one step on a simulated 8-device data-parallel mesh
    (XLA_FLAGS=--xla_force_host_platform_device_count=8, per-device batch --batch), counted
    in the compiled HLO (lower + compile only): all-reduce / all-gather / reduce-scatter /
    collective-permute ops, the tensors they carry and their bytes (result shapes).
Each part runs in its own process with mipnet_jax.runtime's XLA flags for HRNet. Prints a
table and, last, one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time

import numpy as np

ARCH, DATASET, IMAGE_HW = "hrnet_w32", "coco", (256, 192)
COLLECTIVES = ("all-reduce", "all-gather", "reduce-scatter", "collective-permute",
               "all-to-all")
DTYPE_BYTES = {"pred": 1, "s8": 1, "u8": 1, "s16": 2, "u16": 2, "f16": 2, "bf16": 2,
               "s32": 4, "u32": 4, "f32": 4, "s64": 8, "u64": 8, "f64": 8, "c64": 8,
               "c128": 16}
_ARRAY = re.compile(r"\b(" + "|".join(DTYPE_BYTES) + r")\[([\d,]*)\]")
_INSTR = re.compile(r"^\s*(?:ROOT\s+)?%?[\w.\-]+\s*=\s*")

# The test oracles: the PyTorch re-implementation of the official models.
ORACLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests",
                       "oracles")


def _config():
  from mipnet_jax import experiments
  return experiments.experiment(ARCH, DATASET, IMAGE_HW)


def random_batch(batch: int, n: int, num_keypoints: int, image_hw, heatmap_hw, sigma: float,
                 seed: int = 0) -> dict:
  """Random uint8 images and valid targets: windows [B,N,K,4] int32, weight [B,N,K] float32
  (codec.heatmap_windows of random joints, ~80% labelled)."""
  from mipnet_jax.core.codec import heatmap_windows
  rng = np.random.default_rng(seed)
  h, w = image_hw
  joints = rng.uniform(0, 1, (batch, n, num_keypoints, 2)) * np.array([w, h])
  visible = (rng.random((batch, n, num_keypoints)) < 0.8).astype(np.float32)
  windows, weight = heatmap_windows(joints, visible, image_hw, heatmap_hw, sigma)
  image = rng.integers(0, 256, (batch, h, w, 3), dtype=np.uint8)
  return {"image": image, "target_windows": windows, "target_weight": weight}


def _setup(cfg, n: int, mesh):
  """(model, tx, jitted step) for N = n, as trainer.train_and_evaluate builds them."""
  from mipnet_jax.train import optim, step as train
  from mipnet_jax.models import build_model
  model = build_model(cfg.model, n)
  tx = optim.from_config(cfg, 1000)
  step_fn = train.jit_train_step(model, tx, n, cfg.data.sigma, mesh, train.dropout_key(cfg.seed))
  return model, tx, step_fn


def _state(model, tx, mesh, abstract: bool = False):
  import jax

  from mipnet_jax.train import sharding, step as train
  repl, _ = sharding.shardings(mesh)
  make = lambda: train.create_state(model, tx, IMAGE_HW, jax.random.key(0))
  if abstract:
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=repl),
                        jax.eval_shape(make))
  return jax.jit(make, out_shardings=repl)()


def worker_step(a) -> dict:
  """1-device mesh: compile and time N=1, N=2 (and torch), interleaved per round."""
  from mipnet_jax.core import runtime
  runtime.configure_cpu_xla("hrnet")
  import jax

  from mipnet_jax.train import sharding, step as train
  cfg = _config()
  mesh = sharding.make_mesh({"data": -1})
  out = {"xla_flags": os.environ.get("XLA_FLAGS", ""), "devices": jax.device_count()}
  runners, holders = {}, {}
  for n in (1, 2):
    model, tx, step_fn = _setup(cfg, n, mesh)
    local = random_batch(a.batch, n, cfg.model.num_keypoints, IMAGE_HW,
                         tuple(cfg.data.heatmap_hw), cfg.data.sigma, seed=n)
    batch = sharding.global_batch({k: local[k] for k in train.TRAIN_KEYS}, mesh)
    state = _state(model, tx, mesh)
    jax.block_until_ready(state)
    t0 = time.perf_counter()
    compiled = step_fn.lower(state, batch).compile()
    out[f"jax_n{n}"] = {"compile_s": time.perf_counter() - t0}
    holder = holders[f"jax_n{n}"] = {"state": state}

    def run(compiled=compiled, batch=batch, holder=holder):
      t0 = time.perf_counter()
      holder["state"], m = compiled(holder["state"], batch)
      jax.block_until_ready((holder["state"], m))
      holder["loss"] = float(m["loss"])
      return time.perf_counter() - t0
    runners[f"jax_n{n}"] = run
  torch_run = None if a.skip_torch else _torch_runner(a.batch)
  if torch_run is not None:
    runners["torch_n1"] = torch_run
  times = {name: [] for name in runners}
  for r in range(a.warmup + a.steps):
    for name, run in runners.items():
      t = run()
      if r >= a.warmup:
        times[name].append(t)
  for name, ts in times.items():
    row = out.setdefault(name, {})
    med = float(np.median(ts))
    row.update(sec_per_step=med, sec_mean=float(np.mean(ts)), sec_all=ts,
               steps_per_s=1 / med, img_per_s=a.batch / med)
    if name in holders:
      row["final_loss"] = holders[name]["loss"]
  if "jax_n2" in times:
    out["n2_over_n1"] = float(np.median(np.array(times["jax_n2"]) / np.array(times["jax_n1"])))
  if "torch_n1" in times:
    out["jax_n1_over_torch_img_per_s"] = float(
        np.median(np.array(times["torch_n1"]) / np.array(times["jax_n1"])))
  return out


def _torch_runner(batch: int):
  """The official-style step of torch_reference.measure_throughput (train(), JointsMSE on
  random targets, backward, Adam 1e-3), one step per call; None without torch."""
  sys.path.insert(0, ORACLES)
  try:
    import torch
    import torch_reference
  except ImportError:
    return None
  torch.manual_seed(0)
  model = torch_reference.build_model("hrnet_w32")
  model.train()
  gen = torch.Generator().manual_seed(0)
  h, w = IMAGE_HW
  x = torch.randn(batch, 3, h, w, generator=gen)
  lam = torch.zeros(batch, 2)
  target = torch.rand(batch, 17, h // 4, w // 4, generator=gen)
  tw = torch.ones(batch, 17)
  opt = torch.optim.Adam(model.parameters(), lr=1e-3)

  def run():
    t0 = time.perf_counter()
    opt.zero_grad(set_to_none=True)
    torch_reference.joints_mse_loss(model(x, lam), target, tw).backward()
    opt.step()
    return time.perf_counter() - t0
  return run


def count_collectives(hlo: str) -> dict:
  """{op: {"ops", "tensors", "bytes"}} of the collectives in HLO text (async pairs are
  counted once, at their -start; bytes are the result arrays' sizes)."""
  out = {op: {"ops": 0, "tensors": 0, "bytes": 0} for op in COLLECTIVES}
  for line in hlo.splitlines():
    m = _INSTR.match(line)
    if not m:
      continue
    rest = line[m.end():]
    if rest.startswith("("):           # tuple shape: up to the matching parenthesis
      depth = 0
      for i, ch in enumerate(rest):
        depth += (ch == "(") - (ch == ")")
        if depth == 0:
          break
      shape, rest = rest[:i + 1], rest[i + 1:].lstrip()
    else:
      shape, _, rest = rest.partition(" ")
    opcode = rest.split("(", 1)[0].strip()
    base = opcode.removesuffix("-start")
    if base not in out or opcode.endswith("-done"):
      continue
    arrays = _ARRAY.findall(shape)
    if opcode.endswith("-start") and base != "all-reduce" and len(arrays) > 1:
      arrays = arrays[len(arrays) // 2:]   # (operands, results): keep the results
    out[base]["ops"] += 1
    out[base]["tensors"] += len(arrays)
    out[base]["bytes"] += sum(DTYPE_BYTES[t] * int(np.prod([int(d) for d in dims.split(",")
                                                            if d] or [1]))
                              for t, dims in arrays)
  return out


def worker_collectives(a) -> dict:
  """8 simulated devices: lower + compile the step for N=1, 2 and count its collectives."""
  from mipnet_jax.core import runtime
  runtime.configure_cpu_xla("hrnet")
  import jax

  from mipnet_jax.train import sharding, step as train
  cfg = _config()
  mesh = sharding.make_mesh({"data": -1})
  _, data = sharding.shardings(mesh)
  devices = jax.device_count()
  out = {"xla_flags": os.environ.get("XLA_FLAGS", ""), "devices": devices,
         "global_batch": a.batch * devices}
  for n in (1, 2):
    model, tx, step_fn = _setup(cfg, n, mesh)
    state = _state(model, tx, mesh, abstract=True)
    local = random_batch(a.batch * devices, n, cfg.model.num_keypoints, IMAGE_HW,
                         tuple(cfg.data.heatmap_hw), cfg.data.sigma)
    batch = {k: jax.ShapeDtypeStruct(local[k].shape, local[k].dtype, sharding=data)
             for k in train.TRAIN_KEYS}
    t0 = time.perf_counter()
    hlo = step_fn.lower(state, batch).compile().as_text()
    param_bytes = sum(int(np.prod(x.shape)) * x.dtype.itemsize
                      for x in jax.tree.leaves(state.params))
    stats_bytes = sum(int(np.prod(x.shape)) * x.dtype.itemsize
                      for x in jax.tree.leaves(state.batch_stats))
    out[f"n{n}"] = {"compile_s": time.perf_counter() - t0, "param_bytes": param_bytes,
                    "batch_stats_bytes": stats_bytes, "collectives": count_collectives(hlo)}
  return out


def _spawn(mode: str, a, env: dict) -> dict:
  argv = [sys.executable, os.path.abspath(__file__), f"--worker={mode}",
          f"--steps={a.steps}", f"--warmup={a.warmup}", f"--batch={a.batch}"]
  if a.skip_torch:
    argv.append("--skip_torch")
  out = subprocess.run(argv, check=False, capture_output=True, text=True, env=env)
  if out.returncode:
    sys.exit(f"bench_train worker {mode} failed:\n{out.stderr[-3000:]}")
  return json.loads(out.stdout.strip().splitlines()[-1])


def _mb(b: float) -> str:
  return f"{b / 2 ** 20:8.2f} MiB"


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--steps", type=int, default=5, help="timed steps of each config")
  p.add_argument("--warmup", type=int, default=1, help="untimed steps after compiling")
  p.add_argument("--batch", type=int, default=8, help="images per step (per device)")
  p.add_argument("--skip_torch", action="store_true", help="no PyTorch side-by-side")
  p.add_argument("--skip_collectives", action="store_true", help=argparse.SUPPRESS)
  p.add_argument("--worker", default="", help=argparse.SUPPRESS)
  a = p.parse_args()
  if a.worker:
    fn = worker_step if a.worker == "step" else worker_collectives
    print(json.dumps(fn(a)))
    return
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  step = _spawn("step", a, env)
  print(f"\nHRNet-W32 {IMAGE_HW[0]}x{IMAGE_HW[1]} train step, batch {a.batch}, fp32, CPU, "
        f"{step['devices']} device, median of {a.steps} interleaved steps")
  print(f"  XLA_FLAGS: {step['xla_flags']}")
  print(f"  {'step':28s} {'compile s':>9s} {'s/step':>8s} {'steps/s':>8s} {'img/s':>7s}")
  labels = {"jax_n1": "jax N=1 (baseline)", "jax_n2": "jax N=2 (MIPNet)",
            "torch_n1": "torch N=1 (official-style)"}
  for key, label in labels.items():
    if key in step and "sec_per_step" in step[key]:
      r = step[key]
      comp = f"{r['compile_s']:9.1f}" if "compile_s" in r else f"{'-':>9s}"
      print(f"  {label:28s} {comp} {r['sec_per_step']:8.2f} {r['steps_per_s']:8.3f} "
            f"{r['img_per_s']:7.2f}")
  if "n2_over_n1" in step:
    print(f"  step time N=2 / N=1: {step['n2_over_n1']:.2f}x (goal < 2x: shared trunk)")
  if "jax_n1_over_torch_img_per_s" in step:
    print(f"  img/s jax N=1 / torch N=1: {step['jax_n1_over_torch_img_per_s']:.2f}x "
          f"(goal >= 1)")
  result = {"bench": "train", "arch": ARCH, "image_hw": list(IMAGE_HW), "batch": a.batch,
            "dtype": "float32", "step": step}
  if not a.skip_collectives:
    env8 = dict(env, XLA_FLAGS="--xla_force_host_platform_device_count=8")
    coll = _spawn("collectives", a, env8)
    print(f"\nCollectives per step, {coll['devices']}-device data-parallel mesh (global batch "
          f"{coll['global_batch']}), compiled HLO")
    for n in (1, 2):
      r = coll[f"n{n}"]
      c = r["collectives"]
      total = sum(v["bytes"] for v in c.values())
      print(f"  N={n}: all-reduce {c['all-reduce']['ops']} ops / "
            f"{c['all-reduce']['tensors']} tensors {_mb(c['all-reduce']['bytes'])}; "
            f"all-gather {c['all-gather']['ops']}, reduce-scatter {c['reduce-scatter']['ops']}"
            f", collective-permute {c['collective-permute']['ops']}, all-to-all "
            f"{c['all-to-all']['ops']}; total {_mb(total)}  (params {_mb(r['param_bytes'])},"
            f" BN stats {_mb(r['batch_stats_bytes'])}; compile {r['compile_s']:.0f} s)")
    result["collectives"] = coll
  for row in step.values():
    if isinstance(row, dict):
      row.pop("sec_all", None)
  print(json.dumps(result))


if __name__ == "__main__":
  main()
