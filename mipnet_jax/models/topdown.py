"""The trunk / lambda-head split shared by every MIPNet backbone.

A backbone is a chain of ``NUM_SLOTS + 1`` segments with a MIMB slot after each of the first
``NUM_SLOTS`` (the authors' ``SE_MODULES``): segment k produces the features that slot k
modulates, and the last segment makes the heatmaps. Everything before the first enabled
slot does not depend on lambda: it is the *trunk*, run once per box. The rest is the
*head*, run once per (box, lambda). ``predict_instances`` runs the head for all N instances
in one batched call (the trunk features tiled N times along the batch), so the cost is
trunk + N x head, the accounting of the supplementary's Table 2.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from mipnet_jax.models.layers import conv
from mipnet_jax.models.mimb import MIMBGroup, encode_lambda, lambda_width

NUM_SLOTS = 4
Features = tuple[jax.Array, ...]


class TopDownNet(nn.Module):
  """Base of HRNet and SimpleBaseline: the fields they share, the trunk / head split.

  Subclasses add their architecture fields, the class constants ``MIMB_PREFIX`` /
  ``MIMB_LINEAR_INIT`` and the method ``_segment(k, feats, train)``; feature sets travel as
  tuples of [B, H, W, C] arrays.

  Attributes:
    num_keypoints: K, heatmap channels.
    mimb_slots: 4 flags, the authors' SE_MODULES; all False is the plain baseline network.
    lambda_dim / lambda_code: width and kind of the instance code (see mimb.py).
    mimb_reduce / mimb_only_embed: MIMB reduction r and the Table 11 ablation.
    dtype: compute dtype (params and BN statistics stay float32).
    conv_impl: convolution kernels, one of conv_kernels.CONV_IMPLS ("auto": XLA:CPU's speed
      forms on CPU, XLA's own convolutions on GPU / TPU; same parameters either way).
  """

  num_keypoints: int = 17
  mimb_slots: tuple[bool, ...] = (False, False, True, True)
  lambda_dim: int = 2
  lambda_code: str = "one_hot"
  mimb_reduce: int = 4
  mimb_only_embed: bool = False
  dtype: Any = jnp.float32
  conv_impl: str = "auto"

  def _setup_head_parts(self, final_layer: bool = True) -> None:
    """Creates ``final_layer`` (1x1 conv with bias, N(0, 0.001); unless the backbone's head
    holds its own) and the MIMB group of every enabled slot k, named
    ``{MIMB_PREFIX}{k+1}_mimb`` like the authors' ``*_se`` modules."""
    self._check_slots()
    if final_layer:
      self.final_layer = conv(self.num_keypoints, 1, dtype=self.dtype, name=None,
                              use_bias=True, impl=self.conv_impl)
    for k, on in enumerate(self.mimb_slots):
      if on:
        setattr(self, f"{self.MIMB_PREFIX}{k + 1}_mimb",
                MIMBGroup(self.mimb_reduce, self.mimb_only_embed, self.MIMB_LINEAR_INIT,
                          self.dtype))

  def _mimb(self, k: int) -> MIMBGroup:
    return getattr(self, f"{self.MIMB_PREFIX}{k + 1}_mimb")

  @property
  def has_mimb(self) -> bool:
    return any(self.mimb_slots)

  @property
  def split(self) -> int:
    """Index of the segment whose output is the trunk's output."""
    enabled = [k for k, on in enumerate(self.mimb_slots) if on]
    return enabled[0] if enabled else NUM_SLOTS - 1

  def _check_slots(self) -> None:
    if len(self.mimb_slots) != NUM_SLOTS:
      raise ValueError(f"mimb_slots needs {NUM_SLOTS} flags, got {self.mimb_slots!r}")

  def trunk(self, images: jax.Array, *, train: bool) -> Features:
    """images [B, H, W, 3] -> lambda-independent features (tuple of [B, h, w, c])."""
    feats: Any = images
    for k in range(self.split + 1):
      feats = self._segment(k, feats, train)
    return feats

  def head(self, feats: Features, lam: jax.Array, *, train: bool) -> jax.Array:
    """Trunk features [B', ...] and instance codes lam [B', L] -> heatmaps [B', h, w, K]."""
    for k in range(self.split, NUM_SLOTS):
      if k > self.split:
        feats = self._segment(k, feats, train)
      if self.mimb_slots[k]:
        feats = self._mimb(k)(feats, lam, train=train)
    return self._segment(NUM_SLOTS, feats, train).astype(jnp.float32)

  def __call__(self, images: jax.Array, lam: jax.Array, *, train: bool) -> jax.Array:
    """images [B, H, W, 3], lam [B, L] -> heatmaps [B, H/4, W/4, K] (float32).

    ``lam`` is ignored by a model without MIMB (the baseline), so the signature is uniform.
    """
    return self.head(self.trunk(images, train=train), lam, train=train)

  def predict_instances(self, images: jax.Array, num_instances: int) -> jax.Array:
    """Inference for all N instances of each box (``instances`` with train=False)."""
    return self.instances(images, num_instances, train=False)

  def instances(self, images: jax.Array, num_instances: int, *, train: bool) -> jax.Array:
    """All N instances of each box: trunk once on B rows, head once on N x B rows.

    In training, BatchNorm layers of the trunk see the B images and those of the head the
    N x B (image, lambda) pairs: the authors' duplicated batch, without computing the trunk
    N times (its statistics are the same; only the unbiased running variance uses B - 1
    instead of N x B - 1).

    Args:
      images: [B, H, W, 3] normalised crops.
      num_instances: N, the instances lambda = 0..N-1 predicted per box.
    Returns:
      heatmaps [B, N, H/4, W/4, K] float32; [:, 0] is the box's own person.
    """
    if not self.has_mimb and num_instances != 1:
      raise ValueError(f"a model without MIMB predicts one instance, asked for {num_instances}")
    if self.has_mimb and lambda_width(num_instances, self.lambda_code) > self.lambda_dim:
      raise ValueError(f"{num_instances} instances need a {self.lambda_code} code wider than "
                       f"this model's lambda_dim={self.lambda_dim}")
    b = images.shape[0]
    feats = self.trunk(images, train=train)
    # Image-major rows (row b * N + lambda): an image's N copies stay on the device that
    # holds the image when the batch is sharded, so the head needs no all-gather.
    feats = tuple(jnp.repeat(f, num_instances, axis=0) for f in feats)
    lam = encode_lambda(jnp.tile(jnp.arange(num_instances), b), self.lambda_dim,
                        self.lambda_code)
    heat = self.head(feats, lam, train=train)                      # [B*N, h, w, K]
    return heat.reshape((b, num_instances) + heat.shape[1:])
