"""HRNet for top-down pose (Sun et al. 2019), as the official pose_hrnet, with MIMB slots.

Segments (see topdown.py) and the authors' MIMB slots (``SE_MODULES``):
  0: stem (2 x conv3x3 s2) + layer1 (4 Bottlenecks) + transition1 -> 2 branches  | stage1_mimb
  1: stage2 (1 module)  + transition2 -> 3 branches                               | stage2_mimb
  2: stage3 (4 modules) + transition3 -> 4 branches                               | stage3_mimb
  3: stage4 (3 modules, the last single-scale) -> 1 branch                        | stage4_mimb
  4: final_layer (1x1 conv with bias) -> heatmaps
MIPNet uses slots (False, False, True, True): 4 MIMBs on the stage-4 inputs, 1 on its output.

An official ``pose_hrnet`` yaml (MODEL.EXTRA) maps to the fields of ``HRNet``:
  STAGE{2,3,4}.NUM_MODULES           -> stage_modules (m2, m3, m4)
  STAGE{2,3,4}.NUM_BLOCKS            -> num_blocks ((b, b), (b, b, b), (b, b, b, b)), or the
                                        int b when every branch of every stage has b
  STAGE4.NUM_CHANNELS                -> branch_channels (c0, c1, c2, c3), or width = c0 when
                                        they are c0 * 2^i; STAGE2 / STAGE3 must use its prefixes
  BLOCK BASIC, FUSE_METHOD SUM, FINAL_CONV_KERNEL 1, stem 64 (stem_width): the only values here.
The published yamls (leoxiaobin/deep-high-resolution-net.pytorch coco/mpii w32/w48,
rawalkhirodkar/MIPNet crowdpose/ocpose) all are modules (1, 4, 3), 4 blocks everywhere and
channels C * 2^i: ``HRNet(width=C)`` with C = 32 or 48.
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
# num_blocks: one count for every branch, or per stage (2, 3, 4) the counts of its branches.
BlockCounts = int | tuple[tuple[int, ...], ...]
STAGE_BRANCHES = (2, 3, 4)


def stage_blocks(num_blocks: BlockCounts) -> tuple[tuple[int, ...], ...]:
  """``num_blocks`` as per-stage, per-branch BasicBlock counts: 4 -> ((4, 4), (4, 4, 4),
  (4, 4, 4, 4)); nested sequences are checked (stages 2..4 with 2, 3, 4 counts, each >= 1)."""
  if isinstance(num_blocks, int) and not isinstance(num_blocks, bool):
    num_blocks = tuple((num_blocks,) * n for n in STAGE_BRANCHES)
  if not isinstance(num_blocks, (tuple, list)):
    raise ValueError(f"HRNet num_blocks needs an int or per-stage tuples, got {num_blocks!r}")
  stages = tuple(tuple(b) if isinstance(b, (tuple, list)) else b for b in num_blocks)
  if len(stages) != len(STAGE_BRANCHES):
    raise ValueError(f"HRNet num_blocks needs an int or {len(STAGE_BRANCHES)} per-stage "
                     f"tuples (stages 2, 3, 4), got {num_blocks!r}")
  for s, (counts, n) in enumerate(zip(stages, STAGE_BRANCHES), start=2):
    if not isinstance(counts, tuple) or len(counts) != n:
      raise ValueError(f"HRNet num_blocks: stage {s} has {n} branches, so it needs {n} "
                       f"block counts, got {counts!r} (in {num_blocks!r})")
    if not all(isinstance(b, int) and not isinstance(b, bool) and b >= 1 for b in counts):
      raise ValueError(f"HRNet num_blocks: stage {s} block counts must be ints >= 1, "
                       f"got {counts!r}")
  return stages


def branch_widths(width: int, branch_channels: Sequence[int] = ()) -> tuple[int, ...]:
  """The 4 branch widths: ``branch_channels`` (checked) or (C, 2C, 4C, 8C) for C = width."""
  if not branch_channels:
    return tuple(width * 2 ** i for i in range(4))
  c = tuple(branch_channels)
  if len(c) != 4 or not all(isinstance(w, int) and not isinstance(w, bool) and w >= 1 for w in c):
    raise ValueError(f"HRNet branch_channels needs 4 widths >= 1 (STAGE4.NUM_CHANNELS), "
                     f"got {branch_channels!r}")
  return c


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
  num_blocks: tuple[int, ...]              # BasicBlocks of each branch
  multi_scale_output: bool = True
  dtype: Dtype = jnp.float32
  conv_impl: str = "auto"

  @nn.compact
  def __call__(self, xs: Sequence[jax.Array], *, train: bool) -> tuple[jax.Array, ...]:
    d, ch, impl = self.dtype, self.channels, self.conv_impl
    ys = []
    for b, x in enumerate(xs):
      for k in range(self.num_blocks[b]):
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
  """``num_modules`` HRModules named ``module{m}``, each with ``num_blocks[b]`` BasicBlocks
  on branch b."""

  channels: tuple[int, ...]
  num_modules: int
  num_blocks: tuple[int, ...]
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
      C, 2C, 4C, 8C unless ``branch_channels`` is set.
    stage_modules: modules of stages 2, 3, 4 (official: 1, 4, 3).
    num_blocks: BasicBlocks per branch per module: an int for every branch of every stage
      (official: 4), or per stage 2, 3, 4 the counts of its 2, 3, 4 branches (the yamls'
      NUM_BLOCKS), e.g. ((4, 4), (4, 4, 4), (2, 1, 1, 1)).
    branch_channels: the 4 branch widths (STAGE4.NUM_CHANNELS; stages 2 and 3 use the first
      2 and 3); () is (C, 2C, 4C, 8C) and then ``width`` alone sets them.
    stem_width: S, the stem and layer1 planes (official: 64; layer1 outputs 4S).
    num_keypoints, mimb_slots, lambda_dim, lambda_code, mimb_reduce, mimb_only_embed,
    dtype: see TopDownNet.
  Call: images [B, H, W, 3], lam [B, lambda_dim] -> heatmaps [B, H/4, W/4, K] float32.
  """

  width: int = 32
  stage_modules: tuple[int, int, int] = (1, 4, 3)
  num_blocks: BlockCounts = 4
  branch_channels: tuple[int, ...] = ()
  stem_width: int = 64

  MIMB_PREFIX = "stage"          # stage{k+1}_mimb, the authors' stage{k+1}_se
  MIMB_LINEAR_INIT = staticmethod(normal_linear_init)   # the authors' HRNet init_weights

  def __post_init__(self):
    # Bad fields fail at construction (build_model), each error naming its field.
    stage_blocks(self.num_blocks)
    branch_widths(self.width, self.branch_channels)
    if len(self.stage_modules) != 3 or min(self.stage_modules) < 1:
      raise ValueError(f"HRNet stage_modules needs 3 counts >= 1 (stages 2, 3, 4), got "
                       f"{self.stage_modules!r}")
    super().__post_init__()

  @property
  def channels(self) -> tuple[int, ...]:
    """The 4 branch widths (``branch_widths(width, branch_channels)``)."""
    return branch_widths(self.width, self.branch_channels)

  @property
  def blocks(self) -> tuple[tuple[int, ...], ...]:
    """BasicBlocks per branch of stages 2, 3, 4 (``stage_blocks(num_blocks)``)."""
    return stage_blocks(self.num_blocks)

  def setup(self):
    c, blocks = self.channels, self.blocks
    d, (m2, m3, m4) = self.dtype, self.stage_modules
    stage = functools.partial(HRStage, dtype=d, conv_impl=self.conv_impl)
    transition = functools.partial(Transition, dtype=d, conv_impl=self.conv_impl)
    self.stem = HRStem(self.stem_width, dtype=d, conv_impl=self.conv_impl)
    self.transition1 = transition((4 * self.stem_width,), c[:2])
    self.stage2 = stage(c[:2], m2, blocks[0])
    self.transition2 = transition(c[:2], c[:3])
    self.stage3 = stage(c[:3], m3, blocks[1])
    self.transition3 = transition(c[:3], c[:4])
    self.stage4 = stage(c, m4, blocks[2], multi_scale_output=False)
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
