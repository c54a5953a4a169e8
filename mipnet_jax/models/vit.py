"""ViTPose (Xu et al. 2022): a plain ViT and the classic deconvolution head, with MIMB slots.

Matches the official ``ViT`` + ``TopdownHeatmapSimpleHead`` (ViTAE-Transformer/ViTPose):
  * patch embedding: Conv 16x16, stride 16, padding 2 (the last two input rows and columns
    are never read: 256 -> 16 patches);
  * ``pos_embed`` [1, 1 + Hp*Wp, C] added as ``pos_embed[:, 1:] + pos_embed[:, :1]`` (slot 0
    is MAE's cls position; there is no cls token, no interpolation at run time);
  * pre-norm blocks ``x + attn(norm1(x))``, ``x + mlp(norm2(x))``; LayerNorm eps 1e-6; exact
    (erf) GELU; qkv with bias, output features [q; k; v] x heads x head_dim;
    ``softmax((q k^T) * head_dim^-0.5) v``; stochastic depth in training;
  * ``last_norm``, then 2 x (ConvTranspose 4x4 s2 p1 no bias + BN + ReLU), 1x1 conv with bias.

MIPNet-ViT: the tokens, kept as a [B, Hp, Wp, C] grid between segments, are modulated by a
MIMB (squeeze = mean over tokens, gates on the channels). Segments (see topdown.py):
  k = 0..3: the blocks up to ``slot_blocks[k]`` (default the quarters of the depth; segment 0
            starts with the patch embedding, segment 3 ends with ``last_norm``) | slot{k+1}_mimb
  4:        the deconvolution head and the final 1x1 conv.
MIPNet-ViT's configs use slots (False, True, True, True): MIMBs after 1/2 and 3/4 of the blocks
and on the normalised output, so the lambda head is the second half of the blocks + the deconv
head (the authors' (False, False, True, True) leaves lambda too little to act on: README).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from mipnet_jax.models.layers import DeconvHead, conv_init
from mipnet_jax.models.topdown import NUM_SLOTS, TopDownNet

Dtype = Any
LN_EPS = 1e-6
# timm's trunc_normal_(std=0.02) of the official _init_weights (Linear weights, pos_embed).
vit_init = nn.initializers.truncated_normal(stddev=0.02)


def vit_linear_init(fan_in: int):
  """The official ViT's Linear init: trunc-normal(0.02) weights, zero biases (MIMBs too)."""
  del fan_in
  return vit_init, nn.initializers.zeros


# PyTorch's Conv2d default weight init (kaiming-uniform, a=sqrt(5)): U(+-1/sqrt(fan_in)).
torch_conv_init = nn.initializers.variance_scaling(1 / 3, "fan_in", "uniform")


class DropPath(nn.Module):
  """Stochastic depth (timm ``DropPath``): in training, zero a row's residual branch with
  probability ``rate`` and scale the kept ones by 1 / (1 - rate); needs the 'dropout' rng."""

  rate: float

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    if not train or self.rate == 0.0:
      return x
    keep = 1.0 - self.rate
    mask = jax.random.bernoulli(self.make_rng("dropout"), keep, (x.shape[0],) + (1,) * (x.ndim - 1))
    return x * (mask.astype(x.dtype) / jnp.asarray(keep, x.dtype))


class Attention(nn.Module):
  """Multi-head self-attention (children ``qkv``, ``proj``): [B, N, C] -> [B, N, C]."""

  num_heads: int
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    b, n, c = x.shape
    hd = c // self.num_heads
    dense = lambda f, name: nn.Dense(f, dtype=self.dtype, kernel_init=vit_init,  # noqa: E731
                                     name=name)
    qkv = dense(3 * c, "qkv")(x).reshape(b, n, 3, self.num_heads, hd)
    q, k, v = (qkv[:, :, i] for i in range(3))                        # [B, N, h, hd]
    logits = jnp.einsum("bqhd,bkhd->bhqk", q, k) * jnp.asarray(hd ** -0.5, q.dtype)
    attn = jax.nn.softmax(logits.astype(jnp.float32), axis=-1).astype(self.dtype)
    out = jnp.einsum("bhqk,bkhd->bqhd", attn, v).reshape(b, n, c)
    return dense(c, "proj")(out)


class Mlp(nn.Module):
  """fc1 -> exact GELU -> fc2: [B, N, C] -> [B, N, C]."""

  hidden: int
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    c = x.shape[-1]
    x = nn.Dense(self.hidden, dtype=self.dtype, kernel_init=vit_init, name="fc1")(x)
    x = nn.gelu(x, approximate=False)
    return nn.Dense(c, dtype=self.dtype, kernel_init=vit_init, name="fc2")(x)


class Block(nn.Module):
  """Pre-norm transformer block (children norm1, attn, norm2, mlp): [B, N, C] -> [B, N, C]."""

  num_heads: int
  mlp_hidden: int
  drop_path: float = 0.0
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    norm = lambda name: nn.LayerNorm(LN_EPS, dtype=self.dtype, name=name)   # noqa: E731
    drop = DropPath(self.drop_path)
    x = x + drop(Attention(self.num_heads, self.dtype, name="attn")(norm("norm1")(x)),
                 train=train)
    return x + drop(Mlp(self.mlp_hidden, self.dtype, name="mlp")(norm("norm2")(x)),
                    train=train)


class PositionEmbedding(nn.Module):
  """The learned ``pos_embed`` (param ``embedding`` [1, 1 + Hp*Wp, C], sized at init from the
  first input) added as ``pos_embed[:, 1:] + pos_embed[:, :1]``: [B, Hp, Wp, C] -> same."""

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    _, hp, wp, c = x.shape
    shape = (1, 1 + hp * wp, c)
    held = (self.get_variable("params", "embedding").shape
            if self.has_variable("params", "embedding") else shape)
    if held != shape:
      raise ValueError(f"ViTPose: the position embedding holds {held[1] - 1} patches but "
                       f"this input gives {hp}x{wp}: a model trained at one input size runs "
                       f"at that size (config.data.image_hw)")
    table = self.param("embedding", vit_init, shape, jnp.float32)
    return x + (table[:, 1:] + table[:, :1]).reshape(1, hp, wp, c).astype(x.dtype)


class ViTBackbone(nn.Module):
  """The official ``ViT`` (children pos_embed, patch_embed, block{i}, last_norm), run in
  pieces: ``embed`` then ``blocks(start, stop)``, ``norm``. Token grids are [B, Hp, Wp, C];
  the position embedding is sized by the input at init (256x192: 16x12 patches).

  Attributes:
    embed_dim / depth / num_heads / mlp_ratio: C, blocks, heads, MLP hidden = mlp_ratio x C.
    drop_path_rate: stochastic depth of the last block (linear from 0 over the blocks).
    patch_size / patch_padding: 16 and 2 in every official config.
  """

  embed_dim: int = 768
  depth: int = 12
  num_heads: int = 12
  mlp_ratio: float = 4.0
  drop_path_rate: float = 0.0
  patch_size: int = 16
  patch_padding: int = 2
  dtype: Dtype = jnp.float32

  def setup(self):
    c, p, pad = self.embed_dim, self.patch_size, self.patch_padding
    self.pos_embed = PositionEmbedding()
    self.patch_embed = nn.Conv(c, (p, p), strides=(p, p), padding=((pad, pad), (pad, pad)),
                               dtype=self.dtype, kernel_init=torch_conv_init,
                               bias_init=_conv_bias_init(3 * p * p))
    # torch.linspace(0, rate, depth) in float32, as the official code.
    rates = np.linspace(0.0, self.drop_path_rate, self.depth, dtype=np.float32)
    for i in range(self.depth):
      setattr(self, f"block{i}", Block(self.num_heads, int(c * self.mlp_ratio), float(rates[i]),
                                       self.dtype))
    self.last_norm = nn.LayerNorm(LN_EPS, dtype=self.dtype)

  def embed(self, images: jax.Array) -> jax.Array:
    """images [B, H, W, 3] -> tokens [B, Hp, Wp, C] with the position embedding added."""
    return self.pos_embed(self.patch_embed(images.astype(self.dtype)))

  def blocks(self, x: jax.Array, start: int, stop: int, *, train: bool) -> jax.Array:
    """Blocks start..stop-1 on a token grid [B, Hp, Wp, C]."""
    b, hp, wp, c = x.shape
    x = x.reshape(b, hp * wp, c)
    for i in range(start, stop):
      x = getattr(self, f"block{i}")(x, train=train)
    return x.reshape(b, hp, wp, c)

  def norm(self, x: jax.Array) -> jax.Array:
    return self.last_norm(x)

  def __call__(self, images: jax.Array, *, train: bool) -> jax.Array:
    """images [B, H, W, 3] -> normalised tokens [B, Hp, Wp, C]."""
    return self.norm(self.blocks(self.embed(images), 0, self.depth, train=train))


def _conv_bias_init(fan_in: int):
  bound = 1.0 / np.sqrt(fan_in)
  return lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -bound,
                                                                  bound)


class ViTPoseHead(nn.Module):
  """``TopdownHeatmapSimpleHead``: deconvolutions (child ``deconv``) and ``final_layer``:
  [B, Hp, Wp, C] -> [B, 4 Hp, 4 Wp, K]."""

  num_keypoints: int = 17
  deconv_features: tuple[int, ...] = (256, 256)
  dtype: Dtype = jnp.float32
  conv_impl: str = "auto"

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    x = DeconvHead(tuple(self.deconv_features), dtype=self.dtype, conv_impl=self.conv_impl,
                   name="deconv")(x, train=train)
    return nn.Conv(self.num_keypoints, (1, 1), dtype=self.dtype, kernel_init=conv_init,
                   name="final_layer")(x)


class ViTPose(TopDownNet):
  """ViTPose-{S,B,L,H} with optional MIMBs (MIPNet-ViT). Children ``backbone``
  (ViTBackbone), ``keypoint_head`` (ViTPoseHead) and ``slot{k}_mimb``.

  Attributes:
    embed_dim, depth, num_heads, mlp_ratio, drop_path_rate, patch_size,
    patch_padding: see ViTBackbone.
    deconv_features: channels of the two deconvolutions (256 official).
    slot_blocks: after how many blocks each of the 4 MIMB slots sits (increasing, the last
      = depth); empty: the quarters of the depth, e.g. (3, 6, 9, 12) for ViT-B.
    num_keypoints, mimb_slots, lambda_dim, lambda_code, mimb_reduce, mimb_only_embed,
    dtype, conv_impl: see TopDownNet.
  Call: images [B, H, W, 3], lam [B, lambda_dim] -> heatmaps [B, 4 Hp, 4 Wp, K] float32
  (Hp = H / 16 for H = 16 m: 64x48 at 256x192).
  """

  embed_dim: int = 768
  depth: int = 12
  num_heads: int = 12
  mlp_ratio: float = 4.0
  drop_path_rate: float = 0.0
  patch_size: int = 16
  patch_padding: int = 2
  deconv_features: tuple[int, ...] = (256, 256)
  slot_blocks: tuple[int, ...] = ()

  MIMB_PREFIX = "slot"                  # slot{k+1}_mimb
  MIMB_LINEAR_INIT = staticmethod(vit_linear_init)

  def setup(self):
    self.backbone = ViTBackbone(self.embed_dim, self.depth,
                                self.num_heads, self.mlp_ratio, self.drop_path_rate,
                                self.patch_size, self.patch_padding, self.dtype)
    self.keypoint_head = ViTPoseHead(self.num_keypoints, tuple(self.deconv_features),
                                     self.dtype, self.conv_impl)
    self._setup_head_parts(final_layer=False)

  @property
  def bounds(self) -> tuple[int, ...]:
    """(0, end of segment 0, ..., end of segment 3 = depth), in blocks."""
    ends = tuple(self.slot_blocks) or tuple((k + 1) * self.depth // NUM_SLOTS
                                            for k in range(NUM_SLOTS))
    if (len(ends) != NUM_SLOTS or ends[-1] != self.depth
        or any(b <= a for a, b in zip((0,) + ends, ends))):
      raise ValueError(f"config.model.slot_blocks needs {NUM_SLOTS} increasing block counts "
                       f"ending at depth={self.depth}, got {tuple(self.slot_blocks)}")
    return (0,) + ends

  def _segment(self, k: int, feats: Any, train: bool) -> Any:
    if k == NUM_SLOTS:
      return self.keypoint_head(feats[0], train=train)
    x = self.backbone.embed(feats) if k == 0 else feats[0]
    x = self.backbone.blocks(x, self.bounds[k], self.bounds[k + 1], train=train)
    return (self.backbone.norm(x) if k == NUM_SLOTS - 1 else x,)
