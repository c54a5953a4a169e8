"""HRNet for top-down pose (Sun et al. 2019), as the official pose_hrnet, with MIMB slots.

Segments (see topdown.py) and the authors' MIMB slots (``SE_MODULES``):
  0: stem (2 x conv3x3 s2) + layer1 (4 Bottlenecks) + transition1 -> 2 branches  | stage1_mimb
  1: stage2 (1 module)  + transition2 -> 3 branches                               | stage2_mimb
  2: stage3 (4 modules) + transition3 -> 4 branches                               | stage3_mimb
  3: stage4 (3 modules, the last single-scale) -> 1 branch                        | stage4_mimb
  4: final_layer (1x1 conv with bias) -> heatmaps
MIPNet uses slots (False, False, True, True): 4 MIMBs on the stage-4 inputs, 1 on its output.
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn

from mipnet_jax.models.layers import (BasicBlock, BatchNorm, ConvBNChain, ResLayer, conv,
                                      upsample_nearest)
from mipnet_jax.models.mimb import normal_linear_init
from mipnet_jax.models.topdown import NUM_SLOTS, TopDownNet

Dtype = Any


class HRStem(nn.Module):
  """conv3x3 s2 + BN + ReLU, twice (3 -> S -> S), then layer1 (4 Bottlenecks of S planes):
  [B,H,W,3] -> [B,H/4,W/4,4S]; S = 64 in the official HRNet."""

  width: int = 64
  dtype: Dtype = jnp.float32
  conv_impl: str = "auto"

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    d, s, i = self.dtype, self.width, self.conv_impl
    x = nn.relu(BatchNorm(dtype=d, name="bn1")(conv(s, 3, 2, dtype=d, name="conv1", impl=i)(x),
                                                train=train))
    x = nn.relu(BatchNorm(dtype=d, name="bn2")(conv(s, 3, 2, dtype=d, name="conv2", impl=i)(x),
                                                train=train))
    return ResLayer(s, 4, dtype=d, conv_impl=i, name="layer1")(x, train=train)


class Transition(nn.Module):
  """Adapts the previous stage's branches to the next stage's (children ``branch{i}``).

  Existing branches pass through, or get a conv3x3 + BN + ReLU if their width changes;
  each new branch comes from the last old one through stride-2 conv3x3 + BN + ReLU steps.
  """

  in_channels: tuple[int, ...]
  out_channels: tuple[int, ...]
  dtype: Dtype = jnp.float32
  conv_impl: str = "auto"

  @nn.compact
  def __call__(self, xs: Sequence[jax.Array], *, train: bool) -> tuple[jax.Array, ...]:
    n_in, outs = len(self.in_channels), []
    for i, c_out in enumerate(self.out_channels):
      if i < n_in:
        if c_out == self.in_channels[i]:
          outs.append(xs[i])
          continue
        steps, src = ((c_out, 1, True),), xs[i]
      else:
        c_last = self.in_channels[-1]
        n = i + 1 - n_in
        steps = tuple((c_out if j == n - 1 else c_last, 2, True) for j in range(n))
        src = xs[-1]
      outs.append(ConvBNChain(steps, dtype=self.dtype, conv_impl=self.conv_impl,
                              name=f"branch{i}")(src, train=train))
    return tuple(outs)


class FuseUp(nn.Module):
  """Fuse path from a lower-resolution branch: conv1x1 + BN, nearest upsampling."""

  features: int
  factor: int
  dtype: Dtype = jnp.float32
  conv_impl: str = "auto"

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    x = conv(self.features, 1, dtype=self.dtype, name="conv", impl=self.conv_impl)(x)
    x = BatchNorm(dtype=self.dtype, name="bn")(x, train=train)
    return upsample_nearest(x, self.factor)


class HRModule(nn.Module):
  """Parallel branches of BasicBlocks (``branch{b}_block{k}``) and the multi-resolution
  fusion (``fuse{i}_{j}``): out_i = relu(sum_j f_ij(x_j)). With ``multi_scale_output``
  False only the highest-resolution output is fused and returned."""

  channels: tuple[int, ...]
  num_blocks: int = 4
  multi_scale_output: bool = True
  dtype: Dtype = jnp.float32
  conv_impl: str = "auto"

  @nn.compact
  def __call__(self, xs: Sequence[jax.Array], *, train: bool) -> tuple[jax.Array, ...]:
    d, ch, impl = self.dtype, self.channels, self.conv_impl
    ys = []
    for b, x in enumerate(xs):
      for k in range(self.num_blocks):
        x = BasicBlock(ch[b], dtype=d, conv_impl=impl, name=f"branch{b}_block{k}")(
            x, train=train)
      ys.append(x)
    if len(ys) == 1:
      return tuple(ys)
    outs = []
    for i in range(len(ys) if self.multi_scale_output else 1):
      total = None
      for j, y in enumerate(ys):
        if j > i:
          y = FuseUp(ch[i], 2 ** (j - i), dtype=d, conv_impl=impl, name=f"fuse{i}_{j}")(
              y, train=train)
        elif j < i:
          steps = tuple((ch[i] if s == i - j - 1 else ch[j], 2, s != i - j - 1)
                        for s in range(i - j))
          y = ConvBNChain(steps, dtype=d, conv_impl=impl, name=f"fuse{i}_{j}")(y, train=train)
        total = y if total is None else total + y
      outs.append(nn.relu(total))
    return tuple(outs)


class HRStage(nn.Module):
  """``num_modules`` HRModules named ``module{m}``."""

  channels: tuple[int, ...]
  num_modules: int
  num_blocks: int = 4
  multi_scale_output: bool = True
  dtype: Dtype = jnp.float32
  conv_impl: str = "auto"

  @nn.compact
  def __call__(self, xs: Sequence[jax.Array], *, train: bool) -> tuple[jax.Array, ...]:
    for m in range(self.num_modules):
      multi = self.multi_scale_output or m < self.num_modules - 1
      xs = HRModule(self.channels, self.num_blocks, multi, dtype=self.dtype,
                    conv_impl=self.conv_impl, name=f"module{m}")(xs, train=train)
    return xs


class HRNet(TopDownNet):
  """HRNet-W{width} pose network with optional MIMBs (MIPNet).

  Attributes:
    width: C, the high-resolution branch width (32 for W32, 48 for W48); branches are
      C, 2C, 4C, 8C.
    stage_modules: modules of stages 2, 3, 4 (official: 1, 4, 3).
    num_blocks: BasicBlocks per branch per module (official: 4).
    stem_width: S, the stem and layer1 planes (official: 64; layer1 outputs 4S).
    num_keypoints, mimb_slots, lambda_dim, lambda_code, mimb_reduce, mimb_only_embed,
    dtype: see TopDownNet.
  Call: images [B, H, W, 3], lam [B, lambda_dim] -> heatmaps [B, H/4, W/4, K] float32.
  """

  width: int = 32
  stage_modules: tuple[int, int, int] = (1, 4, 3)
  num_blocks: int = 4
  stem_width: int = 64

  MIMB_PREFIX = "stage"          # stage{k+1}_mimb, the authors' stage{k+1}_se
  MIMB_LINEAR_INIT = staticmethod(normal_linear_init)   # the authors' HRNet init_weights

  def setup(self):
    c = tuple(self.width * 2 ** i for i in range(4))
    d, m2, m3, m4 = self.dtype, *self.stage_modules
    stage = functools.partial(HRStage, num_blocks=self.num_blocks, dtype=d,
                              conv_impl=self.conv_impl)
    transition = functools.partial(Transition, dtype=d, conv_impl=self.conv_impl)
    self.stem = HRStem(self.stem_width, dtype=d, conv_impl=self.conv_impl)
    self.transition1 = transition((4 * self.stem_width,), c[:2])
    self.stage2 = stage(c[:2], m2)
    self.transition2 = transition(c[:2], c[:3])
    self.stage3 = stage(c[:3], m3)
    self.transition3 = transition(c[:3], c[:4])
    self.stage4 = stage(c, m4, multi_scale_output=False)
    self._setup_head_parts()

  def _segment(self, k: int, feats: Any, train: bool) -> Any:
    if k == 0:
      if feats.shape[1] % 32 or feats.shape[2] % 32:
        raise ValueError(f"HRNet needs an input (h, w) divisible by 32 (its four branches run "
                         f"at 1/4..1/32), got {feats.shape[1:3]}")
      return self.transition1((self.stem(feats, train=train),), train=train)
    if k == 1:
      return self.transition2(self.stage2(feats, train=train), train=train)
    if k == 2:
      return self.transition3(self.stage3(feats, train=train), train=train)
    if k == 3:
      return self.stage4(feats, train=train)
    assert k == NUM_SLOTS
    return self.final_layer(feats[0])
