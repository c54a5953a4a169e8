"""Tiny `:quick` models with random variables, fast: shapes from jax.eval_shape, values from
numpy (compiling the real initialiser of even the tiny HRNet takes ~20 s on 2 cores)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from mipnet_jax import checkpoints
from mipnet_jax.models import build_model, init_variables


def random_variables(model, image_hw: tuple[int, int], seed: int = 0) -> dict:
  """Variables shaped as ``model``'s init: He-scaled kernels, BN statistics near (0, 1)."""
  abstract = jax.eval_shape(lambda: init_variables(model, image_hw, jax.random.key(0)))
  rng = np.random.default_rng(seed)

  def leaf(path, x):
    name = path[-1].key
    if name == "kernel":
      value = rng.normal(size=x.shape) * np.sqrt(2.0 / np.prod(x.shape[:-1]))
    elif name in ("scale", "var"):
      value = 1.0 + rng.uniform(0.0, 0.3, x.shape)
    else:                                                  # bias, mean
      value = rng.normal(scale=0.1, size=x.shape)
    return jnp.asarray(value, x.dtype)

  return jax.tree_util.tree_map_with_path(leaf, abstract)


def tiny(config, path) -> tuple:
  """(model, variables, checkpoint folder) of ``config``'s N, random variables saved at
  ``path`` (so ``model_and_variables`` loads them without compiling the initialiser)."""
  n = config.eval.num_instances or config.num_instances
  model = build_model(config.model, n)
  variables = random_variables(model, tuple(config.data.image_hw))
  return model, variables, checkpoints.save_variables(str(path), variables)
