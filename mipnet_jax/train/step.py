"""Train state, loss and the sharded train step (the optimiser: train/optim.py).

One step takes a global batch of B images with the targets of all N instances of each
(``data/transforms.py``): the trunk runs once per image, the lambda head on the N x B
(image, lambda) pairs, and the loss is the reference's target-weighted heatmap MSE averaged
over joints and pairs. Under ``jit`` with the batch sharded over the mesh's data axis, XLA
computes BatchNorm statistics and gradients over the global batch (all-reduces it inserts).
A step whose loss is not finite leaves the state unchanged and reports it, so nothing corrupt
is ever saved. Stochastic depth (ViTPose's drop path) draws its masks from
``fold_in(dropout_key, state.step)``: a function of the seed and the step, so a resumed run
drops exactly the paths an uninterrupted one would.
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


def create_state(model, tx: optax.GradientTransformation, image_hw: tuple[int, int],
                 rng: jax.Array, variables: dict | None = None) -> TrainState:
  """A fresh train state (or one around given ``variables``) at step 0."""
  variables = variables or init_variables(model, image_hw, rng)
  return TrainState(step=jnp.zeros((), jnp.int32), params=variables["params"],
                    batch_stats=variables["batch_stats"],
                    opt_state=tx.init(variables["params"]))


def dropout_key(seed: int) -> jax.Array:
  """The key of a run's dropout stream (apart from ``key(seed)``, which initialises)."""
  return jax.random.fold_in(jax.random.key(seed), 1)


def loss_and_stats(model, params, batch_stats, batch: dict, num_instances: int,
                   sigma: float, rng: jax.Array | None = None) -> tuple[jax.Array, Any]:
  """(loss, new batch_stats) of a batch: image [B,h,w,3] uint8, target_windows [B,N,K,4],
  target_weight [B,N,K]; ``rng``: the 'dropout' key (models with stochastic depth)."""
  h, w = (s // 4 for s in batch["image"].shape[1:3])
  target = render_heatmaps(batch["target_windows"], batch["target_weight"], (h, w), sigma,
                           xp=jnp)
  return instance_loss(model, params, batch_stats, batch["image"], target,
                       batch["target_weight"], num_instances, rng=rng)


def train_step(state: TrainState, batch: dict, *, model, tx, num_instances: int,
               sigma: float, dropout: jax.Array | None = None) -> tuple[TrainState, dict]:
  """One optimisation step; returns the new state and {"loss", "grad_norm", "finite"}.
  ``dropout`` (``dropout_key``): the step's masks come from fold_in(dropout, state.step)."""
  rng = None if dropout is None else jax.random.fold_in(dropout, state.step)

  def loss_fn(params):
    return loss_and_stats(model, params, state.batch_stats, batch, num_instances, sigma, rng)

  (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  new = state.replace(step=state.step + 1, params=optax.apply_updates(state.params, updates),
                      batch_stats=batch_stats, opt_state=opt_state)
  finite = jnp.isfinite(loss)
  # A non-finite step keeps the old state (step included), so no NaN reaches a checkpoint.
  new = jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, state)
  return new, {"loss": loss, "grad_norm": optax.global_norm(grads), "finite": finite}


def jit_train_step(model, tx, num_instances: int, sigma: float, mesh: Mesh,
                   dropout: jax.Array | None = None):
  """``train_step`` jitted over ``mesh`` with the state donated (``dropout``: see
  ``train_step``)."""
  repl, data = shardings(mesh)

  def step(state, batch):
    return train_step(state, batch, model=model, tx=tx, num_instances=num_instances,
                      sigma=sigma, dropout=dropout)

  return jax.jit(step, in_shardings=(repl, data), out_shardings=(repl, repl),
                 donate_argnums=0)


TRAIN_KEYS = ("image", "target_windows", "target_weight")
