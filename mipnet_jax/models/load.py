"""The one place a model and its weights come from: build, abstract / fresh / restored
variables, and which checkpoint a config means.

    loaded = load_model(config, num_instances, resolve_checkpoint(config, workdir))
    loaded.model, loaded.variables, loaded.weights     # module, {'params', 'batch_stats'}, source
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import jax
import jax.numpy as jnp

from mipnet_jax import checkpoints
from mipnet_jax.models.build import build_model
from mipnet_jax.models.topdown import TopDownNet

FRESH = "freshly initialised (no checkpoint)"


def init_variables(model: TopDownNet, image_hw: tuple[int, int], rng: jax.Array) -> dict:
  """Fresh variables {'params', 'batch_stats'} of ``model`` for inputs of size (h, w)
  (traceable: the train state is created with it inside ``jit``)."""
  images = jnp.zeros((1, *image_hw, 3), jnp.float32)
  lam = jnp.zeros((1, model.lambda_dim), jnp.float32)
  return model.init(rng, images, lam, train=False)


def abstract_variables(model: TopDownNet, image_hw: tuple[int, int]) -> Any:
  """Shapes of the model's variables (no compile, no memory): {'params', 'batch_stats'}."""
  return jax.eval_shape(lambda: init_variables(model, image_hw, jax.random.key(0)))


def fresh_variables(model: TopDownNet, image_hw: tuple[int, int], rng: jax.Array) -> dict:
  """The values of ``init_variables(model, image_hw, rng)`` on the host, computed without
  running the layers (flax ``lazy_init`` evaluates only the initialisers; no compile of the
  network, seconds instead of ~20 s for HRNet on 2 cores)."""
  images = jax.ShapeDtypeStruct((1, *image_hw, 3), jnp.float32)
  lam = jax.ShapeDtypeStruct((1, model.lambda_dim), jnp.float32)
  return jax.device_get(model.lazy_init(rng, images, lam, train=False))


@dataclasses.dataclass(frozen=True)
class LoadedModel:
  """A network with its variables: ``weights`` says where they came from (a checkpoint
  path, a run's step folder, or ``FRESH``)."""

  model: TopDownNet
  variables: dict
  weights: str


def resolve_checkpoint(config, workdir: str | None) -> str:
  """The weights eval, export and predict use: ``config.eval.checkpoint``, else the newest
  checkpoint of ``workdir`` (if any), else "" (freshly initialised weights)."""
  if config.eval.checkpoint:
    return config.eval.checkpoint
  if workdir and checkpoints.training_checkpoint(os.path.abspath(workdir)):
    return workdir                                # the run's own newest checkpoint
  return ""


def load_model(config, num_instances: int, checkpoint: str) -> LoadedModel:
  """The network of ``config.model`` for N = ``num_instances`` with the checkpoint's
  weights, or freshly initialised ones (seed ``config.seed``) when ``checkpoint`` is ""."""
  model = build_model(config.model, num_instances)
  hw = tuple(config.data.image_hw)
  if not checkpoint:
    return LoadedModel(model, init_variables(model, hw, jax.random.key(config.seed)), FRESH)
  variables = checkpoints.load_variables(checkpoint, abstract_variables(model, hw))
  state = checkpoints.training_checkpoint(os.path.abspath(checkpoint))
  return LoadedModel(model, variables, os.path.dirname(state) if state else checkpoint)
