"""Test helper, not a test: one MIPNet train step on a 1-device and on an 8-device mesh.

Run by tests/train/test_distributed.py in a fresh process whose XLA_FLAGS hold
``--xla_force_host_platform_device_count=8`` (JAX reads it when its backend starts):

    python tests/train/_sharding_worker.py OUT.npz CKPT_DIR

Both meshes live in this one process and get the same state and the same global batch; the
step is ``train.jit_train_step`` on each mesh (state replicated, batch split over "data"),
with an identity transformation before Adam that keeps the step's gradients in the
opt_state. OUT.npz holds, per mesh ("one/..." and "eight/..."), the loss, the gradients, the
new batch_stats and the new params, flattened by key path, and "restored/..." the 8-device
state after a round trip through ``checkpoints.save_train_state`` /
``checkpoints.restore_newest_readable`` into a
1-device sharding (CKPT_DIR).
"""

from __future__ import annotations

import sys
import time

import numpy as np

from mipnet_jax.core import runtime

runtime.configure_cpu_xla("hrnet")     # the production flags, before JAX starts

import grain
import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from mipnet_jax import checkpoints, experiments
from mipnet_jax.core import codec
from mipnet_jax.models import build_model
from mipnet_jax.train import optim, sharding
from mipnet_jax.train import step as train

IMAGE_HW = (64, 64)
HEATMAP_HW = (16, 16)
BATCH = 8
NUM_INSTANCES = 2


def config():
  """The quick synthetic MIPNet config at 64x64 (HRNet needs sides divisible by 32)."""
  c = experiments.experiment("hrnet_w32", "synthetic", (256, 192), "quick")
  c.data.update(image_hw=IMAGE_HW, heatmap_hw=HEATMAP_HW, sigma=2.0, batch_size=BATCH)
  return c


def random_state(model, tx, rng: np.random.Generator) -> train.TrainState:
  """A state drawn like the reference's init (conv kernels N(0, 0.001), linear layers
  U(+-1/sqrt(fan_in))) with non-trivial BatchNorm parameters, without compiling the init."""
  shapes = jax.eval_shape(lambda: train.create_state(model, tx, IMAGE_HW, jax.random.key(0)))

  def fill(path, x):
    name = jax.tree_util.keystr(path)
    if name.endswith(("['scale']", "['var']")):
      return (1.0 + 0.1 * rng.random(x.shape)).astype(np.float32)
    if name.endswith("['kernel']") and len(x.shape) == 4:
      return (0.001 * rng.standard_normal(x.shape)).astype(np.float32)
    if name.endswith("['kernel']"):
      bound = 1.0 / np.sqrt(x.shape[0])
      return rng.uniform(-bound, bound, x.shape).astype(np.float32)
    return (0.05 * rng.standard_normal(x.shape)).astype(np.float32)

  params = jax.tree_util.tree_map_with_path(fill, shapes.params)
  stats = jax.tree_util.tree_map_with_path(fill, shapes.batch_stats)
  return train.TrainState(step=np.zeros((), np.int32), params=params, batch_stats=stats,
                          opt_state=jax.tree.map(np.asarray, tx.init(params)))


def random_batch(rng: np.random.Generator) -> dict:
  """A global batch: random images, N=2 joint sets per image, ~20% joints unlabelled."""
  joints = rng.uniform(-4, IMAGE_HW[0] + 4, (BATCH, NUM_INSTANCES, 17, 2))
  visible = (rng.random((BATCH, NUM_INSTANCES, 17)) > 0.2).astype(np.float32)
  windows, weight = codec.heatmap_windows(joints, visible, IMAGE_HW, HEATMAP_HW, 2.0)
  return dict(image=rng.integers(0, 256, (BATCH, *IMAGE_HW, 3), dtype=np.uint8),
              target_windows=windows, target_weight=weight)


def flat(prefix: str, tree) -> dict:
  return {prefix + jax.tree_util.keystr(k): np.asarray(v)
          for k, v in jax.tree_util.tree_flatten_with_path(tree)[0]}


def recording_gradients() -> optax.GradientTransformation:
  """An identity transformation whose state is the last gradient it was given: chained
  before Adam, it lets ``train.train_step`` return its own gradients in the opt_state."""
  return optax.GradientTransformation(
      init=lambda params: jax.tree.map(jnp.zeros_like, params),
      update=lambda grads, state, params=None: (grads, grads))


def main(out_path: str, ckpt_dir: str) -> None:
  assert jax.device_count() == 8, jax.devices()
  c = config()
  model = build_model(c.model, NUM_INSTANCES)
  tx = optax.chain(recording_gradients(), optim.make_optimizer(
      "adam", optim.learning_rate(1e-3, 10, (1,), 0.1)))
  rng = np.random.default_rng(0)
  state = random_state(model, tx, rng)
  batch = random_batch(rng)

  out = {}
  meshes = {"one": Mesh(np.array(jax.devices()[:1]), ("data",)),
            "eight": sharding.make_mesh({"data": -1})}
  states = {}
  for name, mesh in meshes.items():
    repl, _ = sharding.shardings(mesh)
    on_mesh = jax.device_put(state, repl)
    global_batch = sharding.global_batch(batch, mesh)
    out[f"{name}/batch_devices"] = np.int32(len(global_batch["image"].addressable_shards))
    t = time.perf_counter()
    step = train.jit_train_step(model, tx, NUM_INSTANCES, c.data.sigma, mesh)
    new, metrics = step(on_mesh, global_batch)
    jax.block_until_ready(new)
    print(f"{name}: step {time.perf_counter() - t:.1f} s", file=sys.stderr, flush=True)
    states[name] = new
    out[f"{name}/loss"] = np.asarray(metrics["loss"])
    out[f"{name}/grad_norm"] = np.asarray(metrics["grad_norm"])
    out[f"{name}/finite"] = np.asarray(metrics["finite"])
    out[f"{name}/step"] = np.asarray(new.step)
    out.update(flat(f"{name}/grads", new.opt_state[0]))
    out.update(flat(f"{name}/batch_stats", new.batch_stats))
    out.update(flat(f"{name}/params", new.params))
  out.update(flat("before/batch_stats", state.batch_stats))
  out.update(flat("before/params", state.params))

  # The 8-device state through a checkpoint into one device (an iterator rides along).
  iterator = iter(grain.MapDataset.range(10).to_iter_dataset())
  next(iterator)
  mngr = checkpoints.train_state_manager(ckpt_dir, c.train.keep_checkpoints,
                                         c.train.async_checkpoints)
  checkpoints.save_train_state(mngr, 1, states["eight"], iterator, c, force=True)
  mngr.wait_until_finished()
  one = NamedSharding(meshes["one"], P())
  abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=one),
                          jax.eval_shape(lambda: states["eight"]))
  restored, step_restored = checkpoints.restore_newest_readable(mngr, abstract, iter(
      grain.MapDataset.range(10).to_iter_dataset()))
  mngr.close()
  out["restored/step"] = np.int32(step_restored)
  out["restored/devices"] = np.int32(len(jax.tree.leaves(restored)[0].sharding.device_set))
  out.update(flat("restored/state", restored))
  out.update(flat("saved/state", states["eight"]))
  np.savez(out_path, **out)


if __name__ == "__main__":
  main(*sys.argv[1:3])
