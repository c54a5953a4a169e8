"""SimpleBaseline (Xiao et al. 2018): ResNet + 3 deconvolutions, with MIMB slots.

Segments (see topdown.py) and the authors' MIMB slots (``SE_MODULES``, slot k sits on the
input of ResNet layer k+1):
  0: conv7x7 s2 + BN + ReLU + maxpool3x3 s2  (64 ch)   | layer1_mimb
  1: layer1  (256 ch, 1/4)                             | layer2_mimb
  2: layer2  (512 ch, 1/8)                             | layer3_mimb
  3: layer3  (1024 ch, 1/16)                           | layer4_mimb
  4: layer4 (2048 ch, 1/32) + 3 x (ConvTranspose 4x4 s2 + BN + ReLU) + final 1x1 conv
MIPNet uses slots (False, False, True, True): MIMB(512) before layer3, MIMB(1024) before
layer4 (the paper's "after Block 3 and Block 4").
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from mipnet_jax.models.layers import BatchNorm, DeconvHead, ResLayer, conv
from mipnet_jax.models.mimb import torch_linear_init
from mipnet_jax.models.topdown import NUM_SLOTS, TopDownNet

Dtype = Any
RESNET_BLOCKS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}


class ResNetStem(nn.Module):
  """conv7x7 s2 (3 -> base) + BN + ReLU + maxpool 3x3 s2 pad 1: [B,H,W,3] -> [B,H/4,W/4,base]."""

  features: int = 64
  dtype: Dtype = jnp.float32
  conv_impl: str = "auto"

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    x = conv(self.features, 7, 2, dtype=self.dtype, name="conv1", impl=self.conv_impl)(x)
    x = nn.relu(BatchNorm(dtype=self.dtype, name="bn1")(x, train=train))
    return nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))


class SimpleBaseline(TopDownNet):
  """SimpleBaseline ResNet-{depth} with optional MIMBs (MIPNet).

  Attributes:
    depth: 50, 101 or 152.
    base_width: ResNet stem width (64 official; tests shrink it). Layer widths are
      4 x (1, 2, 4, 8) x base_width.
    deconv_features: channels of the three deconvolutions (256 official).
    num_keypoints, mimb_slots, lambda_dim, lambda_code, mimb_reduce, mimb_only_embed,
    dtype: see TopDownNet.
  Call: images [B, H, W, 3], lam [B, lambda_dim] -> heatmaps [B, H/4, W/4, K] float32.
  """

  depth: int = 50
  base_width: int = 64
  deconv_features: tuple[int, ...] = (256, 256, 256)

  MIMB_PREFIX = "layer"               # layer{k+1}_mimb, the authors' layer{k+1}_se
  MIMB_LINEAR_INIT = staticmethod(torch_linear_init)  # the authors' ResNet: nn.Linear default

  def setup(self):
    if self.depth not in RESNET_BLOCKS:
      raise ValueError(f"SimpleBaseline depth must be one of {sorted(RESNET_BLOCKS)}, "
                       f"got {self.depth}")
    d, w, blocks, i = self.dtype, self.base_width, RESNET_BLOCKS[self.depth], self.conv_impl
    self.stem = ResNetStem(w, dtype=d, conv_impl=i)
    self.layer1 = ResLayer(w, blocks[0], 1, dtype=d, conv_impl=i)
    self.layer2 = ResLayer(2 * w, blocks[1], 2, dtype=d, conv_impl=i)
    self.layer3 = ResLayer(4 * w, blocks[2], 2, dtype=d, conv_impl=i)
    self.layer4 = ResLayer(8 * w, blocks[3], 2, dtype=d, conv_impl=i)
    self.deconv = DeconvHead(tuple(self.deconv_features), dtype=d, conv_impl=i)
    self._setup_head_parts()

  def _segment(self, k: int, feats: Any, train: bool) -> Any:
    if k == 0:
      return (self.stem(feats, train=train),)
    layer = (self.layer1, self.layer2, self.layer3, self.layer4)[k - 1]
    x = layer(feats[0], train=train)
    if k < NUM_SLOTS:
      return (x,)
    return self.final_layer(self.deconv(x, train=train))
