"""The one place a model and its weights come from: build, fresh or restored variables
(``models/variables.py`` holds the initialiser), and which checkpoint a config means.

    loaded = load_model(config, num_instances, resolve_checkpoint(config, workdir))
    loaded.model, loaded.variables, loaded.weights     # module, {'params', 'batch_stats'}, source
"""

from __future__ import annotations

import dataclasses
import os

import jax

from mipnet_jax import checkpoints
from mipnet_jax.models.build import build_model
from mipnet_jax.models.variables import abstract_variables, init_variables
from mipnet_jax.models.topdown import TopDownNet

FRESH = "freshly initialised (no checkpoint)"


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
