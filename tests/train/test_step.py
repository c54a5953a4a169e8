"""The train step on one device in this process: the loss of a batch against the reference's
JointsMSELoss, a step that updates everything on a finite loss and nothing on a non-finite one
(TinyNet, tests/train/_train_helpers.py), and stochastic depth's dropout key (a tiny ViT)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _train_helpers import (HEATMAP_HW, IMAGE_HW, FixedHeatmaps, TinyNet, random_batch,
                            reference_joints_mse)
from conftest import assert_trees_equal

from mipnet_jax.core import codec
from mipnet_jax.models.build import build_model
from mipnet_jax.models.variables import random_variables
from mipnet_jax.train import optim
from mipnet_jax.train import step as train


# --- state ---------------------------------------------------------------------------------

def test_create_state_around_given_variables():
  tx = optim.make_optimizer("adam", optax.constant_schedule(1e-3))
  variables = {"params": {"w": jnp.ones((2, 3))}, "batch_stats": {"mean": jnp.zeros(3)}}
  state = train.create_state(TinyNet(), tx, IMAGE_HW, None, variables)
  assert int(state.step) == 0 and state.step.dtype == jnp.int32
  assert state.variables == variables
  np.testing.assert_array_equal(state.opt_state[0].mu["w"], np.zeros((2, 3)))
  np.testing.assert_array_equal(state.opt_state[0].nu["w"], np.zeros((2, 3)))


# --- loss ---------------------------------------------------------------------------------

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
  tx = optim.make_optimizer("adam", optax.constant_schedule(1e-2))
  state = train.create_state(model, tx, IMAGE_HW, jax.random.key(0))
  step = jax.jit(lambda s, b: train.train_step(s, b, model=model, tx=tx, num_instances=2,
                                               sigma=2.0))
  return model, tx, state, step


def test_train_step_updates_everything_on_a_finite_loss(tiny):
  model, tx, state, step = tiny
  batch = random_batch(np.random.default_rng(2))
  new, metrics = step(state, batch)
  assert bool(metrics["finite"])
  assert int(new.step) == 1
  # The loss, gradients and statistics of loss_and_stats, and one Adam update of them.
  (loss, stats), grads = jax.jit(jax.value_and_grad(
      lambda p: train.loss_and_stats(model, p, state.batch_stats, batch, 2, 2.0),
      has_aux=True))(state.params)
  assert float(metrics["loss"]) == pytest.approx(float(loss), rel=1e-6)
  assert float(metrics["grad_norm"]) == pytest.approx(float(optax.tree.norm(grads)), rel=1e-5)
  updates, _ = tx.update(grads, state.opt_state, state.params)
  want = optax.apply_updates(state.params, updates)
  for a, b, g in zip(jax.tree.leaves(new.params), jax.tree.leaves(want), jax.tree.leaves(grads)):
    # Where the gradient is rounding noise (Conv_0's bias, before BatchNorm: ~1e-9), Adam's
    # first step lr * g / |g| follows the noise; elsewhere the two updates agree.
    clear = np.abs(np.asarray(g)) >= 1e-6
    np.testing.assert_allclose(np.asarray(a)[clear], np.asarray(b)[clear], rtol=1e-5,
                               atol=1e-7)
  for a, b in zip(jax.tree.leaves(new.batch_stats), jax.tree.leaves(stats)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-7)
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


# --- stochastic depth ---------------------------------------------------------------------

VIT_HW = (64, 48)


def vit_setup(drop_path_rate: float):
  """A tiny ViTPose (N=1) with host-random variables, its Adam state, a batch at
  64x48 and the jitted train step with and without a dropout key."""
  model = build_model(dict(name="vitpose", embed_dim=32, depth=4, num_heads=2,
                           deconv_features=(16, 16), num_keypoints=17,
                           drop_path_rate=drop_path_rate), 1)
  tx = optim.make_optimizer("adam", optax.constant_schedule(1e-3))
  state = train.create_state(model, tx, VIT_HW, None, random_variables(model, VIT_HW))
  rng = np.random.default_rng(5)
  joints = rng.uniform(0, 48, (2, 1, 17, 2))
  windows, weight = codec.heatmap_windows(joints, np.ones((2, 1, 17), np.float32), VIT_HW,
                                          (16, 12), 2.0)
  batch = dict(image=rng.integers(0, 256, (2, *VIT_HW, 3), dtype=np.uint8),
               target_windows=windows, target_weight=weight)
  step = jax.jit(lambda s, b: train.train_step(s, b, model=model, tx=tx, num_instances=1,
                                               sigma=2.0, dropout=train.dropout_key(0)))
  return model, state, batch, step


def test_drop_path_masks_follow_the_step_and_repeat_on_resume():
  model, state, batch, step = vit_setup(0.5)
  at3, at4 = state.replace(step=jnp.int32(3)), state.replace(step=jnp.int32(4))
  new3, m3 = step(at3, batch)
  again3, again_m3 = step(at3, batch)            # a resumed run at step 3: the same masks
  _, m4 = step(at4, batch)
  assert float(m3["loss"]) == float(again_m3["loss"])
  assert_trees_equal(new3, again3)
  assert float(m3["loss"]) != float(m4["loss"])
  # Without a key a drop-path model cannot train; evaluation needs none and is deterministic.
  with pytest.raises(Exception, match="dropout"):
    jax.jit(lambda s, b: train.train_step(s, b, model=model, tx=optax.adam(1e-3),
                                          num_instances=1, sigma=2.0))(at3, batch)
  images = jnp.asarray(batch["image"], jnp.float32)
  predict = jax.jit(lambda v: model.apply(v, images, 1, method=model.predict_instances))
  np.testing.assert_array_equal(predict(state.variables), predict(state.variables))


class NoisyHeatmaps:
  """A 'model' whose training output is params["heat"] plus unit noise from its 'dropout'
  key: the loss tells which key a step used."""

  instances = "instances"

  def apply(self, variables, images, num_instances, *, train, method, mutable, rngs):
    heat = variables["params"]["heat"]
    return heat + jax.random.normal(rngs["dropout"], heat.shape), {"batch_stats": {}}


def test_the_step_key_is_the_seed_key_folded_with_the_step():
  batch = random_batch(np.random.default_rng(6), 2, 1)
  params = {"heat": jnp.zeros((2, 1, *HEATMAP_HW, 17))}
  tx = optim.make_optimizer("adam", optax.constant_schedule(1e-3))
  state = train.TrainState(step=jnp.int32(7), params=params, batch_stats={},
                           opt_state=tx.init(params))
  _, metrics = train.train_step(state, batch, model=NoisyHeatmaps(), tx=tx, num_instances=1,
                                sigma=2.0, dropout=train.dropout_key(3))
  losses = {(seed, step): float(train.loss_and_stats(
      NoisyHeatmaps(), params, {}, batch, 1, 2.0,
      jax.random.fold_in(train.dropout_key(seed), step))[0])
      for seed, step in ((3, 7), (3, 8), (4, 7))}
  assert float(metrics["loss"]) == losses[(3, 7)]
  assert losses[(3, 7)] != losses[(3, 8)] and losses[(3, 7)] != losses[(4, 7)]
  # The dropout stream is not the initialiser's key(seed).
  assert not np.array_equal(jax.random.key_data(train.dropout_key(3)),
                            jax.random.key_data(jax.random.key(3)))


def test_a_model_without_dropout_ignores_the_dropout_key(tiny):
  """TinyNet (no dropout, as HRNet / SimpleBaseline): the step with the loop's key is bit
  for bit the step without one."""
  model, tx, state, step = tiny
  batch = random_batch(np.random.default_rng(7))
  keyed = jax.jit(lambda s, b: train.train_step(s, b, model=model, tx=tx, num_instances=2,
                                                sigma=2.0, dropout=train.dropout_key(0)))
  with_key, m_key = keyed(state, batch)
  without, m_none = step(state, batch)
  assert float(m_key["loss"]) == float(m_none["loss"])
  assert_trees_equal(with_key, without)
