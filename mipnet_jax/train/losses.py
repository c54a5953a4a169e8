"""Heatmap losses (the reference code's ``JointsMSELoss`` with target weights)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from mipnet_jax.core.normalize import normalize


def keypoint_mse(pred: jax.Array, target: jax.Array, weight: jax.Array) -> jax.Array:
  """HRNet's ``JointsMSELoss(use_target_weight=True)``, averaged over every row.

  Per joint j: 0.5 * mean over (rows, pixels) of (w_j * pred_j - w_j * target_j)^2, then the
  mean over joints. Every joint has the same number of pixels, so this is 0.5 x the global
  mean. A MIPNet batch holds one row per (image, lambda) pair, so the loss is the mean over
  pairs, as in the authors' ``train_lambda``.

  Args:
    pred: [B, h, w, K] predicted heatmaps.
    target: [B, h, w, K] target heatmaps.
    weight: [B, K] per-joint target weights (0/1 visibility).
  Returns:
    scalar float32 loss.
  """
  w = weight.astype(jnp.float32)[:, None, None, :]
  diff = (pred.astype(jnp.float32) - target.astype(jnp.float32)) * w
  return 0.5 * jnp.mean(jnp.square(diff))


def instance_loss(model, params, batch_stats, images: jax.Array, target: jax.Array,
                  weight: jax.Array, num_instances: int, *,
                  rng: jax.Array | None = None) -> tuple[jax.Array, Any]:
  """(loss, new batch_stats) of the training forward pass: the trunk once per image, the
  lambda head on the N x B (image, lambda) pairs, ``keypoint_mse`` over the pairs.

  Args:
    images: [B, h, w, 3] uint8 crops (normalised here, ``core.normalize``).
    target: [B, N, h/4, w/4, K] heatmaps of the N instances.
    weight: [B, N, K] target weights.
    rng: the 'dropout' key of stochastic depth (ViTPose's drop path); None for models
      without it.
  """
  rngs = {} if rng is None else {"rngs": {"dropout": rng}}
  heat, updates = model.apply({"params": params, "batch_stats": batch_stats},
                              normalize(images), num_instances, train=True,
                              method=model.instances, mutable=["batch_stats"], **rngs)
  b, n, h, w, k = heat.shape
  loss = keypoint_mse(heat.reshape(b * n, h, w, k), target.reshape(b * n, h, w, k),
                      weight.reshape(b * n, k))
  return loss, updates["batch_stats"]
