"""Device check: train the quick synthetic model on an accelerator from batches saved on CPU,
and compare its loss curve with the CPU's.

    python scripts/device_check.py prepare --out=device_check_data    # CPU, full stack
    python scripts/device_check.py run --data=device_check_data       # the accelerator

``prepare`` (this machine: grain, the synthetic set) draws ``--batches`` training batches of the
`:quick` synthetic config (uint8 crops, their N-instance heatmap targets and weights, rendered
here), trains ``--steps`` steps on them in turn from seed 0 on the CPU, and saves the batches,
the model fields and the CPU loss curve to ``--out/batches.npz``. ``run`` (the accelerator:
only jax, flax, optax and numpy; no grain, cv2 or ml_collections) trains the same steps from the
same seed and prints, per step, both losses and their relative difference; it passes when every
step's loss is within ``--tolerance`` (relative, default 2%) of the CPU's and the mean
difference within a quarter of it (``MEAN_SHARE``; a tenth failed the CPU dry run on an
AVX2-only AMD EPYC: mean 0.20%, max 1.1% at step 6, from the kernels' order of summation). Convolutions run at full float32 precision on the device
(``jax_default_matmul_precision=highest``: no TF32), so the difference left is the order of
summation; the CPU dry run of the tests (``--conv_impl=xla`` against the CPU forms, the same
kind of difference) measured it. Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mipnet_jax.models.build import build_model  # noqa: E402
from mipnet_jax.models.variables import random_variables  # noqa: E402
from mipnet_jax.train.losses import instance_loss  # noqa: E402

FILE = "batches.npz"
MEAN_SHARE = 4          # the mean relative difference may reach tolerance / MEAN_SHARE


def make_step(model, n: int, lr: float):
  """A jitted Adam step (params, batch_stats, opt_state, images, target, weight) -> (..., loss),
  the training loss of train/step.py on pre-rendered targets."""
  tx = optax.adam(lr)

  def loss_fn(params, batch_stats, images, target, weight):
    return instance_loss(model, params, batch_stats, images, target.astype(jnp.float32),
                         weight, n)

  @jax.jit
  def step(params, batch_stats, opt_state, images, target, weight):
    (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        params, batch_stats, images, target, weight)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), batch_stats, opt_state, loss

  return step, tx


def train_curve(model_fields: dict, n: int, hw, batches: dict, steps: int, lr: float
                ) -> tuple[list[float], float]:
  """Losses of ``steps`` steps from seed 0 cycling the batches; and seconds per step."""
  model = build_model(model_fields, n)
  variables = random_variables(model, tuple(hw))   # the same numbers on every backend
  step, tx = make_step(model, n, lr)
  state = (variables["params"], variables["batch_stats"], tx.init(variables["params"]))
  count = len(batches["images"])
  losses, t0 = [], None
  for i in range(steps):
    b = i % count
    *state, loss = step(*state, batches["images"][b], batches["targets"][b],
                        batches["weights"][b])
    losses.append(float(loss))
    if i == 0:
      t0 = time.perf_counter()
  return losses, (time.perf_counter() - t0) / max(steps - 1, 1)


def prepare(a) -> None:
  """Batches of the quick synthetic config and the CPU curve (needs the full stack)."""
  from mipnet_jax.core.codec import render_heatmaps
  from mipnet_jax.data import inputs, pipeline
  from mipnet_jax.experiments import experiment
  # configs/hrnet_w32_synthetic_256x192.py:quick
  config = experiment("hrnet_w32", "synthetic", (256, 192), "quick")
  config.data.batch_size = a.batch
  ds, loading, _ = inputs.train_input(config, 0, 1)
  it = pipeline.iterate(ds, loading)
  images, targets, weights = [], [], []
  for _ in range(a.batches):
    batch = next(it)
    images.append(np.asarray(batch["image"]))
    targets.append(render_heatmaps(np.asarray(batch["target_windows"]),
                                   np.asarray(batch["target_weight"]),
                                   tuple(config.data.heatmap_hw), config.data.sigma)
                   .astype(np.float16))
    weights.append(np.asarray(batch["target_weight"], np.float32))
  fields = dict(config.model, conv_impl="cpu")
  data = dict(images=np.stack(images), targets=np.stack(targets), weights=np.stack(weights))
  losses, sec = train_curve(fields, config.num_instances, tuple(config.data.image_hw), data,
                            a.steps, config.optim.learning_rate)
  os.makedirs(a.out, exist_ok=True)
  meta = dict(model=fields, n=config.num_instances, hw=list(config.data.image_hw),
              steps=a.steps, lr=config.optim.learning_rate, cpu_losses=losses, cpu_step_s=sec,
              jax=jax.__version__)
  np.savez_compressed(os.path.join(a.out, FILE), meta=json.dumps(meta), **data)
  print(json.dumps(dict(prepared=os.path.join(a.out, FILE), steps=a.steps,
                        batches=a.batches, cpu_final_loss=losses[-1], cpu_step_s=sec)))


def run(a) -> int:
  """The accelerator side; 0 when the curves agree."""
  jax.config.update("jax_default_matmul_precision", "highest")
  with np.load(os.path.join(a.data, FILE)) as f:
    meta = json.loads(str(f["meta"]))
    data = {k: f[k] for k in ("images", "targets", "weights")}
  fields = dict(meta["model"], conv_impl=a.conv_impl)
  losses, sec = train_curve(fields, meta["n"], tuple(meta["hw"]), data, meta["steps"],
                            meta["lr"])
  cpu = np.asarray(meta["cpu_losses"])
  rel = np.abs(np.asarray(losses) - cpu) / np.abs(cpu)
  ok = bool(rel.max() <= a.tolerance and rel.mean() <= a.tolerance / MEAN_SHARE)
  for i in sorted(set(np.linspace(0, len(cpu) - 1, 11).astype(int))):
    print(f"step {i + 1:4d}  cpu {cpu[i]:.7f}  {jax.default_backend()} {losses[i]:.7f}  "
          f"rel {rel[i]:.2e}")
  print(json.dumps(dict(device_check="pass" if ok else "FAIL",
                        device=jax.devices()[0].device_kind, backend=jax.default_backend(),
                        jax=jax.__version__, cpu_jax=meta["jax"], steps=len(cpu),
                        max_rel=float(rel.max()), mean_rel=float(rel.mean()),
                        tolerance=a.tolerance, step_s=sec, cpu_step_s=meta["cpu_step_s"],
                        final_loss=losses[-1], cpu_final_loss=float(cpu[-1]))))
  return 0 if ok else 1


def main() -> int:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  sub = p.add_subparsers(dest="cmd", required=True)
  pp = sub.add_parser("prepare")
  pp.add_argument("--out", default="device_check_data")
  pp.add_argument("--steps", type=int, default=200)
  pp.add_argument("--batches", type=int, default=8)
  pp.add_argument("--batch", type=int, default=32)
  pr = sub.add_parser("run")
  pr.add_argument("--data", default="device_check_data")
  pr.add_argument("--conv_impl", default="auto", choices=("auto", "xla", "cpu"))
  pr.add_argument("--tolerance", type=float, default=0.02)
  a = p.parse_args()
  if a.cmd == "prepare":
    prepare(a)
    return 0
  return run(a)


if __name__ == "__main__":
  sys.exit(main())
