"""A model's variables without a checkpoint: the initialiser, its shapes, and its values
computed on the host. Imports only JAX and the model (no orbax), so the accelerator scripts
can use it on a machine with a bare JAX stack."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mipnet_jax.models.topdown import TopDownNet


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
  running the layers (flax ``lazy_init`` evaluates only the initialisers, op by op; no
  compile of the network)."""
  images = jax.ShapeDtypeStruct((1, *image_hw, 3), jnp.float32)
  lam = jax.ShapeDtypeStruct((1, model.lambda_dim), jnp.float32)
  return jax.device_get(model.lazy_init(rng, images, lam, train=False))


def random_variables(model: TopDownNet, image_hw: tuple[int, int], seed: int = 0) -> dict:
  """Variables shaped as ``model``'s init (``jax.eval_shape``, no compile): He-scaled
  kernels, BatchNorm statistics near (0, 1), small biases, from numpy's generator ``seed``.
  For benchmarks and tests: compiling the real initialiser, or evaluating it eagerly
  (``fresh_variables``), takes ~20 s for even the tiny HRNet on 2 cores; this, milliseconds."""
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

  return jax.tree_util.tree_map_with_path(leaf, abstract_variables(model, tuple(image_hw)))
