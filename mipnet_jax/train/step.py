"""Train state, optimiser, loss and the sharded train step.

One step takes a global batch of B images with the targets of all N instances of each
(``data/transforms.py``): the trunk runs once per image, the lambda head on the N x B
(image, lambda) pairs, and the loss is the reference's target-weighted heatmap MSE averaged
over joints and pairs. Under ``jit`` with the batch sharded over the mesh's data axis, XLA
computes BatchNorm statistics and gradients over the global batch (all-reduces it inserts).
A step whose loss is not finite leaves the state unchanged and reports it, so nothing corrupt
is ever saved.
"""

from __future__ import annotations

from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

from mipnet_jax.core.codec import render_heatmaps
from mipnet_jax.models.variables import init_variables
from mipnet_jax.train.losses import instance_loss
from mipnet_jax.train.sharding import shardings


class TrainState(flax.struct.PyTreeNode):
  """step (int32 scalar), params and batch_stats (float32), opt_state (optax)."""

  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any

  @property
  def variables(self) -> dict:
    return {"params": self.params, "batch_stats": self.batch_stats}


def learning_rate(base: float, steps_per_epoch: int, decay_epochs, decay_factor: float,
                  warmup_epochs: float = 0.0) -> optax.Schedule:
  """The reference's MultiStepLR (x decay_factor at each epoch of ``decay_epochs``), by step,
  optionally after a linear warm-up from 0 over ``warmup_epochs``."""
  boundaries = {int(round(e * steps_per_epoch)): decay_factor for e in decay_epochs}
  steps = optax.piecewise_constant_schedule(base, boundaries)
  warmup = int(round(warmup_epochs * steps_per_epoch))
  if warmup <= 0:
    return steps
  # join_schedules hands the second schedule the steps since the warm-up ended; the decay
  # epochs count from the start of training (MultiStepLR's milestones), so shift back.
  return optax.join_schedules([optax.linear_schedule(0.0, base, warmup),
                               lambda step: steps(step + warmup)], [warmup])


def make_optimizer(name: str, schedule: optax.Schedule,
                   weight_decay: float = 0.0) -> optax.GradientTransformation:
  """Adam as the reference (torch.optim.Adam, no weight decay), or AdamW when decay > 0."""
  if name != "adam":
    raise ValueError(f"config.optim.name must be 'adam', got {name!r}")
  if weight_decay:
    return optax.adamw(schedule, weight_decay=weight_decay)
  return optax.adam(schedule)


def create_state(model, tx: optax.GradientTransformation, image_hw: tuple[int, int],
                 rng: jax.Array, variables: dict | None = None) -> TrainState:
  """A fresh train state (or one around given ``variables``) at step 0."""
  variables = variables or init_variables(model, image_hw, rng)
  return TrainState(step=jnp.zeros((), jnp.int32), params=variables["params"],
                    batch_stats=variables["batch_stats"],
                    opt_state=tx.init(variables["params"]))


def loss_and_stats(model, params, batch_stats, batch: dict, num_instances: int,
                   sigma: float) -> tuple[jax.Array, Any]:
  """(loss, new batch_stats) of a batch: image [B,h,w,3] uint8, target_windows [B,N,K,4],
  target_weight [B,N,K]."""
  h, w = (s // 4 for s in batch["image"].shape[1:3])
  target = render_heatmaps(batch["target_windows"], batch["target_weight"], (h, w), sigma,
                           xp=jnp)
  return instance_loss(model, params, batch_stats, batch["image"], target,
                       batch["target_weight"], num_instances)


def train_step(state: TrainState, batch: dict, *, model, tx, num_instances: int,
               sigma: float) -> tuple[TrainState, dict]:
  """One optimisation step; returns the new state and {"loss", "grad_norm", "finite"}."""
  def loss_fn(params):
    return loss_and_stats(model, params, state.batch_stats, batch, num_instances, sigma)

  (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  new = state.replace(step=state.step + 1, params=optax.apply_updates(state.params, updates),
                      batch_stats=batch_stats, opt_state=opt_state)
  finite = jnp.isfinite(loss)
  # A non-finite step keeps the old state (step included), so no NaN reaches a checkpoint.
  new = jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, state)
  return new, {"loss": loss, "grad_norm": optax.global_norm(grads), "finite": finite}


def jit_train_step(model, tx, num_instances: int, sigma: float, mesh: Mesh):
  """``train_step`` jitted over ``mesh`` with the state donated."""
  repl, data = shardings(mesh)

  def step(state, batch):
    return train_step(state, batch, model=model, tx=tx, num_instances=num_instances,
                      sigma=sigma)

  return jax.jit(step, in_shardings=(repl, data), out_shardings=(repl, repl),
                 donate_argnums=0)


TRAIN_KEYS = ("image", "target_windows", "target_weight")
