"""Throughput of the pose networks on this machine: inference (N=1, N=2) and a train step.

    python scripts/bench_model.py                       # HRNet-W32 and SBL R-50, batch 8
    python scripts/bench_model.py --models=hrnet_w32 --dtype=bfloat16 --iters=5
    python scripts/bench_model.py --models=vitpose_b --skip=infer2,train2   # beside PyTorch

For each model it measures, with compile time reported apart:
  * inference: ``predict_instances`` for N=1 (the baseline network) and N=2 (MIPNet, trunk
    once, lambda head on 2B rows), images (boxes) per second;
  * a full training step (forward, JointsMSE loss, backward, Adam update, BN statistics)
    for the baseline and for MIPNet N=2 (both lambda of every image in the batch).
When onnxruntime is installed (``pip install -e '.[onnx]'``), the ONNX export of the same
network (serve/onnx_export.py ``network_model``, same weights) is timed for inference too, with
its largest difference from JAX's heatmaps. When PyTorch is installed (``pip install -e
'.[torch]'``), the same architectures written in PyTorch (tests/oracles/torch_reference.py) are
timed in the same run and the ratios printed (ViTPose-B: tests/oracles/torch_vitpose.py, the
official layout; both without drop path).
Each model runs in its own process, with the XLA flags that mipnet_jax.runtime chooses for
its architecture (XLA reads them once per process). Prints a table and, last, one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import subprocess

import jax
import jax.numpy as jnp
import numpy as np
import optax

from mipnet_jax.core import runtime
from mipnet_jax.train.losses import keypoint_mse
from mipnet_jax.models import build_model, encode_lambda

# The test oracles (tests/oracles/): independent re-implementations of the references.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "tests", "oracles"))

MODELS = {
    "hrnet_w32": ({"name": "hrnet", "width": 32}, "hrnet_w32"),
    "hrnet_w48": ({"name": "hrnet", "width": 48}, "hrnet_w48"),
    "sbl_r50": ({"name": "simple_baseline", "depth": 50}, "resnet50"),
    "sbl_r101": ({"name": "simple_baseline", "depth": 101}, "resnet101"),
    "sbl_r152": ({"name": "simple_baseline", "depth": 152}, "resnet152"),
    # The PyTorch side (tests/oracles/torch_vitpose.py) has no stochastic depth: both run
    # without it (drop_path_rate 0; the official training uses 0.3).
    "vitpose_b": ({"name": "vitpose", "embed_dim": 768, "depth": 12, "num_heads": 12,
                   "drop_path_rate": 0.0}, "vitpose_b"),
}


def _timed(fn, args, iters, warmup, *, carry: bool):
  """Compile time and seconds per call of ``fn(*args)``. With ``carry`` the outputs are the
  next call's inputs (a train step with donated state)."""
  t0 = time.perf_counter()
  compiled = jax.jit(fn, donate_argnums=(0, 1, 2) if carry else ()).lower(*args).compile()
  compile_s = time.perf_counter() - t0

  def run(n, state):
    for _ in range(n):
      out = compiled(*state)
      jax.block_until_ready(out)
      state = out if carry else state
    return state

  state = run(warmup, args)
  t0 = time.perf_counter()
  run(iters, state)
  return compile_s, (time.perf_counter() - t0) / iters


def bench_inference(model, variables, images, n, iters, warmup):
  def predict(variables, images):
    return model.apply(variables, images, n, method=model.predict_instances)
  compile_s, sec = _timed(predict, (variables, images), iters, warmup, carry=False)
  return {"compile_s": compile_s, "img_per_s": images.shape[0] / sec}


def bench_onnx(model, variables, images, n, iters, warmup):
  """onnxruntime (CPU, all optimisations) on the exported network: img/s, export + session
  seconds, and the largest difference from JAX's heatmaps in units of their std."""
  try:
    import onnxruntime
    from mipnet_jax.serve import onnx_export, onnx_models
  except ImportError:
    return None
  if type(model) not in onnx_models.SEGMENTS:      # ViTPose: no ONNX graph
    return None
  t0 = time.perf_counter()
  proto = onnx_export.network_model(model, variables, n, images.shape[1:3])
  session = onnxruntime.InferenceSession(proto.SerializeToString(),
                                         providers=["CPUExecutionProvider"])
  build_s = time.perf_counter() - t0
  feed = {"images": np.ascontiguousarray(np.asarray(images).transpose(0, 3, 1, 2))}
  for _ in range(warmup):
    got = session.run(None, feed)[0]
  t0 = time.perf_counter()
  for _ in range(iters):
    got = session.run(None, feed)[0]
  sec = (time.perf_counter() - t0) / iters
  want = np.asarray(model.apply(variables, images, n, method=model.predict_instances))
  want = want.transpose(0, 1, 4, 2, 3)
  return {"compile_s": build_s, "img_per_s": images.shape[0] / sec,
          "max_err_in_std": float(np.abs(got - want).max() / want.std())}


def bench_train(model, variables, images, n, iters, warmup):
  """One step on B images x N instances (rows lambda-major), trunk shared by the N rows."""
  b = images.shape[0]
  tx = optax.adam(1e-3)
  hm_shape = (n * b, images.shape[1] // 4, images.shape[2] // 4, model.num_keypoints)
  rng = np.random.default_rng(0)
  target = jnp.asarray(rng.random(hm_shape, dtype=np.float32))
  weight = jnp.ones((n * b, model.num_keypoints), jnp.float32)
  lam = encode_lambda(jnp.repeat(jnp.arange(n), b), model.lambda_dim, model.lambda_code)

  def loss_fn(params, batch_stats, images):
    def forward(mdl, images):
      feats = mdl.trunk(images, train=True)
      feats = tuple(jnp.tile(f, (n, 1, 1, 1)) for f in feats)
      return mdl.head(feats, lam, train=True)
    pred, updates = model.apply({"params": params, "batch_stats": batch_stats}, images,
                                method=forward, mutable=["batch_stats"])
    return keypoint_mse(pred, target, weight), updates["batch_stats"]

  def train_step(params, batch_stats, opt_state, images):
    (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        params, batch_stats, images)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), batch_stats, opt_state, images

  params = variables["params"]
  args = (params, variables["batch_stats"], tx.init(params), images)
  compile_s, sec = _timed(train_step, args, iters, warmup, carry=True)
  return {"compile_s": compile_s, "img_per_s": b / sec}


def bench_torch(arch, batch, hw, iters, warmup):
  try:
    import torch_reference  # needs torch
  except ImportError:
    return None
  out = {}
  for train in (False, True):
    model = torch_reference.build_model(arch)
    r = torch_reference.measure_throughput(model, batch, hw, train=train, iters=iters,
                                           warmup=warmup)
    out["train" if train else "infer"] = r["img_per_s"]
  return out


def run_worker(a) -> dict:
  """Benchmarks one model in this process (flags set before the first computation)."""
  cfg, torch_arch = MODELS[a.models]
  runtime.configure_cpu_xla(cfg["name"])
  hw = tuple(int(v) for v in a.image_hw.split("x"))
  skip = set(filter(None, a.skip.split(",")))
  images = jax.random.normal(jax.random.key(0), (a.batch, *hw, 3), jnp.float32)
  row = {"xla_flags": os.environ.get("XLA_FLAGS", "")}
  for n in (1, 2):
    model = build_model({**cfg, "dtype": a.dtype, "conv_impl": a.conv_impl}, n)
    variables = jax.jit(lambda m=model: m.init(
        jax.random.key(0), images[:1], jnp.zeros((1, m.lambda_dim)), train=False))()
    if f"infer{n}" not in skip:
      row[f"infer_n{n}"] = bench_inference(model, variables, images, n, a.iters, a.warmup)
      if not a.no_onnx and a.dtype == "float32":
        row[f"onnx_n{n}"] = bench_onnx(model, variables, images, n, a.iters, a.warmup)
    if f"train{n}" not in skip:
      row[f"train_n{n}"] = bench_train(model, variables, images, n, a.iters, a.warmup)
  if not a.no_torch:
    row["torch"] = bench_torch(torch_arch, a.batch, hw, a.iters, a.warmup)
  return row


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--models", default="hrnet_w32,sbl_r50")
  p.add_argument("--batch", type=int, default=8)
  p.add_argument("--image_hw", default="256x192")
  p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
  p.add_argument("--iters", type=int, default=5)
  p.add_argument("--warmup", type=int, default=1)
  p.add_argument("--conv_impl", default="auto", choices=("auto", "xla", "cpu"),
                 help="config.model.conv_impl (models/conv_kernels.py)")
  p.add_argument("--no_torch", action="store_true", help="skip the PyTorch side-by-side")
  p.add_argument("--no_onnx", action="store_true", help="skip the onnxruntime side-by-side")
  p.add_argument("--skip", default="", help="comma list of infer1,infer2,train1,train2")
  p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
  a = p.parse_args()
  if a.worker:
    print(json.dumps(run_worker(a)))
    return
  results = {}
  for name in a.models.split(","):
    if name not in MODELS:
      p.error(f"unknown model {name!r}; choose from {', '.join(MODELS)}")
    argv = [sys.executable, os.path.abspath(__file__), "--worker", f"--models={name}"] + [
        f"--{k}={v}" for k, v in (("batch", a.batch), ("image_hw", a.image_hw),
                                   ("dtype", a.dtype), ("iters", a.iters),
                                   ("conv_impl", a.conv_impl),
                                   ("warmup", a.warmup), ("skip", a.skip))]
    argv += [f"--{k}" for k in ("no_torch", "no_onnx") if getattr(a, k)]
    out = subprocess.run(argv, capture_output=True, text=True)
    if out.returncode:
      sys.exit(f"benchmark of {name} failed:\n{out.stderr[-3000:]}")
    results[name] = json.loads(out.stdout.strip().splitlines()[-1])
    _print_row(name, results[name])
  print(json.dumps({"bench": "model", "batch": a.batch, "image_hw": a.image_hw,
                    "dtype": a.dtype, "conv_impl": a.conv_impl, "results": results}))


def _print_row(name, row):
  """One block per model: img/s of JAX, ONNX Runtime and PyTorch side by side, the ratios
  to PyTorch, N=2 / N=1, and the ONNX heatmaps' largest difference from JAX's."""
  torch = row.get("torch") or {}
  print(f"\n{name}: img/s (compile s)  JAX          ONNX Runtime   PyTorch   JAX/PT  ORT/PT  "
        f"ORT err/std")
  for kind, n in (("infer", 1), ("infer", 2), ("train", 1), ("train", 2)):
    r = row.get(f"{kind}_n{n}")
    if r is None:
      continue
    o = row.get(f"onnx_n{n}") if kind == "infer" else None
    t = torch.get(kind) if n == 1 else None
    cells = [f"{r['img_per_s']:7.2f} ({r['compile_s']:5.1f})",
             f"{o['img_per_s']:7.2f} ({o['compile_s']:4.1f})" if o else " " * 14,
             f"{t:8.2f}" if t else " " * 8,
             f"{r['img_per_s'] / t:5.2f}x" if t else " " * 6,
             f"{o['img_per_s'] / t:5.2f}x" if (o and t) else " " * 6,
             f"{o['max_err_in_std']:.1e}" if o else ""]
    if n == 2 and f"{kind}_n1" in row:
      cells.append(f"N=2/N=1 {r['img_per_s'] / row[f'{kind}_n1']['img_per_s']:.2f}x (JAX)")
    print(f"  {kind} N={n}       " + "  ".join(cells))


if __name__ == "__main__":
  main()
