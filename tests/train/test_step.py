"""The train step on one device in this process: the learning-rate schedule, the optimiser,
the loss of a batch against the reference's JointsMSELoss, and a step that updates everything
on a finite loss and nothing on a non-finite one (TinyNet, tests/train/_train_helpers.py)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _train_helpers import (HEATMAP_HW, IMAGE_HW, FixedHeatmaps, TinyNet, random_batch,
                            reference_joints_mse)

from mipnet_jax.core import codec
from mipnet_jax.train import step as train


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
  with pytest.raises(ValueError, match="config.optim.name must be 'adam', got 'sgd'"):
    train.make_optimizer("sgd", optax.constant_schedule(0.1))


def test_make_optimizer_is_adam_or_adamw_with_weight_decay():
  params = {"w": jnp.array([1.0, -2.0, 3.0])}
  grads = {"w": jnp.array([0.5, 0.5, -1.0])}
  schedule = optax.constant_schedule(0.1)
  for tx, want in ((train.make_optimizer("adam", schedule), optax.adam(0.1)),
                   (train.make_optimizer("adam", schedule, 0.01),
                    optax.adamw(0.1, weight_decay=0.01))):
    got, _ = tx.update(grads, tx.init(params), params)
    expected, _ = want.update(grads, want.init(params), params)
    np.testing.assert_allclose(got["w"], expected["w"], rtol=1e-6)
  # Adam's first step is -lr * sign(g); AdamW also decays: -lr * (sign(g) + 0.01 w).
  got, _ = train.make_optimizer("adam", schedule, 0.01).update(
      grads, train.make_optimizer("adam", schedule, 0.01).init(params), params)
  np.testing.assert_allclose(got["w"], -0.1 * (np.sign([0.5, 0.5, -1.0]) +
                                               0.01 * np.array([1.0, -2.0, 3.0])), rtol=1e-4)


def test_create_state_around_given_variables():
  tx = train.make_optimizer("adam", optax.constant_schedule(1e-3))
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
  tx = train.make_optimizer("adam", optax.constant_schedule(1e-2))
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
