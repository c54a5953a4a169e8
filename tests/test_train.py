"""The train step and the trainer's pieces, on one device in this process.

A three-layer ``TinyNet`` (conv -> BatchNorm -> lambda embedding -> conv) with the
``instances`` method of the real networks stands in for HRNet wherever the network itself is
not under test: it compiles in about a second. The sharded / multi-process / kill-and-resume
runs of the real model are in test_distributed.py.
"""

from __future__ import annotations

import json
import logging
import os
import pathlib

import grain
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import linen as nn

from mipnet_jax import checkpoints, experiments
from mipnet_jax.core import codec
from mipnet_jax.train import step as train, loop as trainer
from mipnet_jax.data import synthetic
from mipnet_jax.models import build_model

IMAGE_HW = (64, 64)
HEATMAP_HW = (16, 16)


class TinyNet(nn.Module):
  """A stand-in network: images [B, 64, 64, 3] -> heatmaps [B, 16, 16, K] with BatchNorm
  and a lambda input, plus the ``instances`` method ``train.loss_and_stats`` calls."""

  num_keypoints: int = 17
  lambda_dim: int = 2

  @nn.compact
  def __call__(self, images, lam, train: bool = False):
    x = nn.Conv(4, (4, 4), strides=(4, 4))(images)
    x = nn.relu(nn.BatchNorm(use_running_average=not train, momentum=0.9)(x))
    x = x + nn.Dense(4)(lam)[:, None, None, :]
    return nn.Conv(self.num_keypoints, (1, 1))(x)

  def instances(self, images, num_instances: int, *, train: bool):
    b = images.shape[0]
    lam = jax.nn.one_hot(jnp.repeat(jnp.arange(num_instances), b), self.lambda_dim)
    heat = self(jnp.tile(images, (num_instances, 1, 1, 1)), lam, train)
    return jnp.swapaxes(heat.reshape((num_instances, b) + heat.shape[1:]), 0, 1)


def quick_config(root: pathlib.Path, workdir_steps: int = 4):
  """The quick synthetic config shrunk to 64x64 inputs and 8 generated training images."""
  c = experiments.experiment("hrnet_w32", "synthetic", (256, 192), "quick")
  c.data.update(root=str(root), image_hw=IMAGE_HW, heatmap_hw=HEATMAP_HW, batch_size=8)
  c.data.synthetic.update(num_train=8, num_val=2, image_hw=(128, 128))
  c.train.update(total_steps=workdir_steps, checkpoint_every_steps=2, log_every_steps=1,
                 progress_every_s=1000.0)
  return c


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
  root = tmp_path_factory.mktemp("synthetic")
  synthetic.ensure(str(root), 0, 8, 2, (128, 128), workers=1)
  return root


def random_batch(rng: np.random.Generator, batch: int = 4, num_instances: int = 2) -> dict:
  joints = rng.uniform(0, IMAGE_HW[0], (batch, num_instances, 17, 2))
  visible = (rng.random((batch, num_instances, 17)) > 0.3).astype(np.float32)
  windows, weight = codec.heatmap_windows(joints, visible, IMAGE_HW, HEATMAP_HW, 2.0)
  return dict(image=rng.integers(0, 256, (batch, *IMAGE_HW, 3), dtype=np.uint8),
              target_windows=windows, target_weight=weight)


# --- learning rate -----------------------------------------------------------------------

def test_learning_rate_decays_at_the_epoch_boundaries():
  lr = train.learning_rate(1e-3, steps_per_epoch=10, decay_epochs=(2, 4), decay_factor=0.1)
  got = [float(lr(s)) for s in (0, 19, 20, 21, 39, 40, 1000)]
  np.testing.assert_allclose(got, [1e-3, 1e-3, 1e-4, 1e-4, 1e-4, 1e-5, 1e-5], rtol=1e-6)


def test_learning_rate_fractional_decay_epoch():
  lr = train.learning_rate(0.5, steps_per_epoch=10, decay_epochs=(1.5,), decay_factor=0.5)
  np.testing.assert_allclose([float(lr(s)) for s in (0, 14, 15, 16)], [0.5, 0.5, 0.25, 0.25])


def test_learning_rate_warmup_ramps_then_decays_at_the_same_epochs():
  lr = train.learning_rate(1e-3, steps_per_epoch=10, decay_epochs=(3,), decay_factor=0.1,
                           warmup_epochs=1)
  ramp = [float(lr(s)) for s in (0, 1, 5, 9)]
  np.testing.assert_allclose(ramp, [0.0, 1e-4, 5e-4, 9e-4], rtol=1e-6, atol=1e-12)
  # After the warm-up the base rate holds until epoch 3 (step 30), as MultiStepLR's
  # milestones count epochs from the start of training, not from the end of the warm-up.
  after = [float(lr(s)) for s in (10, 29, 30, 39, 40)]
  np.testing.assert_allclose(after, [1e-3, 1e-3, 1e-4, 1e-4, 1e-4], rtol=1e-6)


def test_make_optimizer_rejects_other_names():
  with pytest.raises(ValueError, match="must be 'adam'"):
    train.make_optimizer("sgd", optax.constant_schedule(0.1))


# --- loss ---------------------------------------------------------------------------------

def reference_joints_mse(pred: np.ndarray, gt: np.ndarray, weight: np.ndarray) -> float:
  """HRNet's JointsMSELoss(use_target_weight=True), written as the PyTorch reference:
  pred / gt [rows, K, h, w], weight [rows, K]; per joint 0.5 * MSELoss(mean) of the
  weighted flattened maps, summed over joints, divided by K. float64."""
  rows, k = pred.shape[:2]
  pred = pred.reshape(rows, k, -1).astype(np.float64)
  gt = gt.reshape(rows, k, -1).astype(np.float64)
  loss = 0.0
  for j in range(k):
    w = weight[:, j:j + 1].astype(np.float64)
    loss += 0.5 * np.mean((pred[:, j] * w - gt[:, j] * w) ** 2)
  return loss / k


class FixedHeatmaps:
  """A 'model' whose ``instances`` output is its params["heat"]: loss_and_stats on known
  predictions."""

  instances = "instances"

  def apply(self, variables, images, num_instances, *, train, method, mutable):
    assert train and method == "instances" and mutable == ["batch_stats"]
    heat = variables["params"]["heat"]
    assert heat.shape[:2] == (images.shape[0], num_instances)
    return heat, {"batch_stats": {"seen": jnp.asarray(images.shape[0])}}


def test_loss_is_the_reference_joints_mse():
  rng = np.random.default_rng(1)
  b, n, k = 3, 2, 17
  batch = random_batch(rng, b, n)
  batch["target_weight"][0, 1, :5] = 0.0          # unlabelled joints count as zero error
  heat = rng.normal(0.0, 0.3, (b, n, *HEATMAP_HW, k)).astype(np.float32)
  loss, stats = train.loss_and_stats(FixedHeatmaps(), {"heat": jnp.asarray(heat)}, {},
                                     batch, n, 2.0)
  target = codec.render_heatmaps(batch["target_windows"], batch["target_weight"], HEATMAP_HW,
                                 2.0)                              # [b, n, h, w, k]
  rows = b * n
  want = reference_joints_mse(
      np.moveaxis(heat.reshape(rows, *HEATMAP_HW, k), -1, 1),
      np.moveaxis(target.reshape(rows, *HEATMAP_HW, k), -1, 1),
      batch["target_weight"].reshape(rows, k))
  assert float(loss) == pytest.approx(want, rel=1e-6)
  assert int(stats["seen"]) == b


def test_loss_by_hand_on_a_two_joint_map():
  # One row, two joints, 2x2 maps, targets off the map (all zero). Joint 0 predicts 1 at one
  # pixel: 0.5 * mean((1, 0, 0, 0)^2) = 0.125; joint 1 predicts 0 -> 0. Mean over joints:
  # 0.0625. With joint 0 unlabelled, both are masked: 0.
  heat = np.zeros((1, 1, 2, 2, 2), np.float32)
  heat[0, 0, 0, 0, 0] = 1.0
  far = np.full((1, 1, 2, 4), 100, np.int32)
  for weight, want in (([1.0, 1.0], 0.0625), ([0.0, 1.0], 0.0)):
    batch = dict(image=np.zeros((1, 8, 8, 3), np.uint8), target_windows=far,
                 target_weight=np.array([[weight]], np.float32))
    loss, _ = train.loss_and_stats(FixedHeatmaps(), {"heat": jnp.asarray(heat)}, {}, batch,
                                   1, 2.0)
    assert float(loss) == pytest.approx(want, abs=1e-9)


# --- train step ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny():
  """TinyNet, its Adam, a fresh state and a jitted train step (N=2, sigma 2)."""
  model = TinyNet()
  tx = train.make_optimizer("adam", optax.constant_schedule(1e-2))
  state = train.create_state(model, tx, IMAGE_HW, jax.random.key(0))
  step = jax.jit(lambda s, b: train.train_step(s, b, model=model, tx=tx, num_instances=2,
                                               sigma=2.0))
  return model, tx, state, step


def test_train_step_updates_everything_on_a_finite_loss(tiny):
  _, _, state, step = tiny
  new, metrics = step(state, random_batch(np.random.default_rng(2)))
  assert bool(metrics["finite"]) and np.isfinite(float(metrics["loss"]))
  assert float(metrics["grad_norm"]) > 0
  assert int(new.step) == 1
  for name in ("params", "batch_stats"):
    for a, b in zip(jax.tree.leaves(getattr(state, name)), jax.tree.leaves(getattr(new, name))):
      assert not np.array_equal(a, b), name


def test_train_step_with_a_nan_loss_keeps_the_state(tiny):
  _, _, state, step = tiny
  state, _ = step(state, random_batch(np.random.default_rng(3)))   # non-trivial Adam moments
  batch = random_batch(np.random.default_rng(4))
  batch["target_weight"][1, 0, 3] = np.nan
  new, metrics = step(state, batch)
  assert not bool(metrics["finite"])
  assert np.isnan(float(metrics["loss"]))
  assert int(new.step) == int(state.step) == 1
  leaves_old = jax.tree_util.tree_flatten_with_path(state)[0]
  leaves_new = jax.tree.leaves(new)
  assert len(leaves_old) == len(leaves_new)
  for (path, a), b in zip(leaves_old, leaves_new):
    np.testing.assert_array_equal(np.asarray(b), np.asarray(a),
                                  err_msg=jax.tree_util.keystr(path))


def test_trainer_raises_naming_the_non_finite_step(tmp_path, data_root, monkeypatch):
  """The real loop on TinyNet: a NaN at step 3 stops training with NonFiniteLossError naming
  step 3, after the checkpoint of step 2 and before any later one."""
  monkeypatch.setattr(trainer, "build_model", lambda cfg, n: TinyNet(lambda_dim=n))
  calls = []
  real_global_batch = train.global_batch

  def poisoned(local, mesh):
    calls.append(1)
    if len(calls) == 3:
      local = dict(local, target_weight=np.full_like(local["target_weight"], np.nan))
    return real_global_batch(local, mesh)

  monkeypatch.setattr(train, "global_batch", poisoned)
  config = quick_config(data_root, workdir_steps=6)
  with pytest.raises(trainer.NonFiniteLossError, match=r"not finite at step 3\b"):
    trainer.train_and_evaluate(config, str(tmp_path))
  assert len(calls) == 3
  steps = sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit())
  assert steps == [2]
  lines = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert [l["step"] for l in lines] == [1, 2]          # step 3 was never logged as a loss


# --- init_from ----------------------------------------------------------------------------

def _random_variables(model, rng: np.random.Generator) -> dict:
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0),
                                             jnp.zeros((1, *IMAGE_HW, 3)),
                                             jnp.zeros((1, model.lambda_dim)), train=False))
  return jax.tree.map(lambda s: rng.standard_normal(s.shape).astype(s.dtype), shapes)


def test_load_into_starts_the_mimbs_fresh_from_a_baseline(tmp_path):
  """A baseline (N=1) checkpoint initialises MIPNet (N=2): every shared array comes from
  the checkpoint, exactly the MIMB arrays stay fresh."""
  cfg = experiments.experiment("hrnet_w32", "synthetic", (256, 192), "quick").model
  rng = np.random.default_rng(5)
  base = _random_variables(build_model(cfg, 1), rng)
  fresh = _random_variables(build_model(cfg, 2), rng)
  path = checkpoints.save_variables(str(tmp_path / "baseline"), base)
  merged, fresh_names = checkpoints.load_into(path, fresh)
  flat = lambda t: {jax.tree_util.keystr(k): np.asarray(v)
                    for k, v in jax.tree_util.tree_flatten_with_path(t)[0]}
  base_f, fresh_f, merged_f = flat(base), flat(fresh), flat(merged)
  assert set(merged_f) == set(fresh_f)
  mimb = sorted(k for k in fresh_f if "_mimb'" in k)
  assert mimb and fresh_names == mimb
  assert set(fresh_f) - set(base_f) == set(mimb)
  for name, value in merged_f.items():
    np.testing.assert_array_equal(value, fresh_f[name] if name in mimb else base_f[name],
                                  err_msg=name)


def test_load_into_rejects_mismatched_shapes_and_unknown_names(tmp_path):
  cfg = experiments.experiment("hrnet_w32", "synthetic", (256, 192), "quick").model
  rng = np.random.default_rng(6)
  fresh = _random_variables(build_model(cfg, 1), rng)
  other = dict(cfg, num_keypoints=14)                    # CrowdPose's 14 joints
  path = checkpoints.save_variables(str(tmp_path / "k14"),
                                    _random_variables(build_model(other, 1), rng))
  with pytest.raises(checkpoints.CheckpointError, match=r"shape mismatch.*final_layer"):
    checkpoints.load_into(path, fresh)
  mip = checkpoints.save_variables(str(tmp_path / "mip"),
                                   _random_variables(build_model(cfg, 2), rng))
  with pytest.raises(checkpoints.CheckpointError, match=r"unexpected.*_mimb"):
    checkpoints.load_into(mip, fresh)


def test_initial_state_from_init_from_keeps_fresh_names(tmp_path):
  """trainer.initial_state with config.init_from: stored arrays replace the fresh ones, a
  name the checkpoint lacks (here the lambda embedding) keeps its fresh init, and the
  optimiser state is that of the merged params."""
  model = TinyNet()
  tx = train.make_optimizer("adam", optax.constant_schedule(1e-3))
  config = quick_config(tmp_path)
  mesh = train.make_mesh({"data": -1})
  fresh = jax.device_get(trainer.initial_state(config, model, tx, mesh))
  stored = jax.tree.map(lambda x: np.asarray(x) + 1.0, fresh.variables)
  del stored["params"]["Dense_0"]
  config.init_from = checkpoints.save_variables(str(tmp_path / "init"), stored)
  state = jax.device_get(trainer.initial_state(config, model, tx, mesh))
  np.testing.assert_array_equal(state.params["Dense_0"]["kernel"],
                                fresh.params["Dense_0"]["kernel"])
  for name in ("Conv_0", "Conv_1"):
    np.testing.assert_array_equal(state.params[name]["kernel"],
                                  fresh.params[name]["kernel"] + 1.0)
  np.testing.assert_array_equal(state.batch_stats["BatchNorm_0"]["var"],
                                fresh.batch_stats["BatchNorm_0"]["var"] + 1.0)
  assert int(state.step) == 0
  assert all(not np.any(x) for x in jax.tree.leaves(state.opt_state[0].mu))


# --- checkpoints of the trainer -----------------------------------------------------------

def _tiny_state(value: float) -> dict:
  return {"w": np.full((3, 4), value, np.float32), "step": np.int32(value)}


def _iterator():
  it = iter(grain.MapDataset.range(100).to_iter_dataset())
  next(it)
  return it


def _abstract():
  return jax.eval_shape(lambda: _tiny_state(0.0))


def _truncate_data(state_dir: pathlib.Path) -> None:
  files = [p for p in state_dir.rglob("*") if p.is_file() and "/d/" in str(p)]
  assert files, f"no data files under {state_dir}"
  for p in files:
    with open(p, "r+b") as f:
      f.truncate(os.path.getsize(p) // 2)


def _drop_manifest(state_dir: pathlib.Path) -> None:
  os.remove(state_dir / "manifest.ocdbt")


@pytest.mark.parametrize("damage", [_truncate_data, _drop_manifest],
                         ids=["truncated", "half_written"])
def test_restore_latest_skips_an_unreadable_newest_checkpoint(tmp_path, caplog, damage):
  config = quick_config(tmp_path)
  config.train.async_checkpoints = False
  mngr = trainer.checkpoint_manager(str(tmp_path / "run"), config.train)
  for step in (2, 4):
    trainer.save(mngr, step, _tiny_state(step), _iterator(), config)
  mngr.wait_until_finished()
  assert mngr.all_steps() == [2, 4]
  damage(tmp_path / "run" / "checkpoints" / "4" / "state")

  caplog.set_level(logging.WARNING)
  state, step = trainer.restore_latest(mngr, _abstract(), _iterator())
  assert step == 2
  np.testing.assert_array_equal(state["w"], np.full((3, 4), 2.0, np.float32))
  warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
  assert any("checkpoint 4" in m and "unreadable" in m for m in warnings), warnings

  # The resumed run reaches step 4 again and must be able to checkpoint it (orbax refuses a
  # step that exists and skips periodic saves at or below its newest step).
  trainer.save(mngr, 4, _tiny_state(40), _iterator(), config)
  mngr.wait_until_finished()
  assert 4 in mngr.all_steps()
  state, step = trainer.restore_latest(mngr, _abstract(), _iterator())
  assert step == 4 and float(state["w"][0, 0]) == 40.0
  mngr.close()


def test_restore_latest_without_checkpoints_starts_fresh(tmp_path):
  config = quick_config(tmp_path)
  mngr = trainer.checkpoint_manager(str(tmp_path / "run"), config.train)
  assert trainer.restore_latest(mngr, _abstract(), _iterator()) == (None, 0)
  mngr.close()


def test_restore_latest_brings_back_the_data_iterator(tmp_path):
  config = quick_config(tmp_path)
  mngr = trainer.checkpoint_manager(str(tmp_path / "run"), config.train)
  it = _iterator()
  for _ in range(5):
    next(it)                                   # 6 elements consumed in all
  trainer.save(mngr, 6, _tiny_state(6), it, config, force=True)
  mngr.wait_until_finished()
  expected = [next(it) for _ in range(3)]
  fresh = _iterator()
  _, step = trainer.restore_latest(mngr, _abstract(), fresh)
  assert step == 6
  assert [next(fresh) for _ in range(3)] == expected == [6, 7, 8]
  mngr.close()
