"""The Multi-Instance Modulation Block (MIMB), Listing 1 of the MIPNet supplementary.

    y = sigmoid(W2 relu(W1 GAP(x)))                      F_sq + F_ex, no biases
    z = sigmoid(W4 relu(BN1d(W3 lam + b3)) + b4)          F_em
    out = x * y * z                                       broadcast over H, W; no residual

``lam`` is the instance code: one-hot of the instance index (lambda = 0 is the person the box
belongs to), or the authors' 2-bit code that their N > 2 experiments used.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn

from mipnet_jax.models.layers import BatchNorm

Dtype = Any
LAMBDA_CODES = ("one_hot", "binary")


def lambda_width(num_instances: int, code: str = "one_hot") -> int:
  """Width of the instance code for N instances (the input size of F_em's first Linear)."""
  if code == "one_hot":
    return num_instances
  if code == "binary":  # the authors always feed 2 values
    return max(2, math.ceil(math.log2(max(num_instances, 1))))
  raise ValueError(f"lambda code must be one of {LAMBDA_CODES}, got {code!r}")


def encode_lambda(index: jax.Array, width: int, code: str = "one_hot") -> jax.Array:
  """Instance indices [...] (int) -> codes [..., width] float32.

  ``one_hot``: lambda=k -> e_k (for N=2 this is the authors' [1,0] / [0,1]).
  ``binary``: the authors' N=3/4 code, lambda=k -> bits of k, least significant first
  (0 -> [0,0], 1 -> [1,0], 2 -> [0,1], 3 -> [1,1]).
  """
  index = jnp.asarray(index)
  if code == "one_hot":
    return jax.nn.one_hot(index, width, dtype=jnp.float32)
  if code == "binary":
    bits = (index[..., None] >> jnp.arange(width)) & 1
    return bits.astype(jnp.float32)
  raise ValueError(f"lambda code must be one of {LAMBDA_CODES}, got {code!r}")


# A Linear layer's initialisers for a given fan-in: (kernel_init, bias_init).
LinearInit = Callable[[int], tuple[Callable, Callable]]


def normal_linear_init(fan_in: int) -> tuple[Callable, Callable]:
  """N(0, 0.001) weights and zero biases (the authors' HRNet ``init_weights``)."""
  del fan_in
  return nn.initializers.normal(stddev=0.001), nn.initializers.zeros


def torch_linear_init(fan_in: int) -> tuple[Callable, Callable]:
  """PyTorch's ``nn.Linear`` default (the authors' ResNet leaves it): kaiming-uniform
  weights with a = sqrt(5), i.e. U(+-1/sqrt(fan_in)), and biases U(+-1/sqrt(fan_in))."""
  bound = 1.0 / math.sqrt(fan_in)
  bias = lambda key, shape, dtype=jnp.float32: jax.random.uniform(   # noqa: E731
      key, shape, dtype, -bound, bound)
  return nn.initializers.variance_scaling(1 / 3, "fan_in", "uniform"), bias


class MIMB(nn.Module):
  """One Multi-Instance Modulation Block.

  Attributes:
    reduce: channel reduction r of the two 2-layer MLPs (1, 2 or 4; the paper uses 4).
    only_embed: drop F_sq / F_ex (supplementary Table 11 ablation): out = x * z.
    linear_init: fan_in -> (kernel_init, bias_init) of the Linear layers, injected by the
      backbone: ``normal_linear_init`` (HRNet) or ``torch_linear_init`` (ResNet).
    dtype: dtype of the output (the gates are computed in float32).

  Args (call): x [B, H, W, C]; lam [B, L] instance codes; train: BN1d in train mode.
  Returns: [B, H, W, C].
  """

  reduce: int = 4
  only_embed: bool = False
  linear_init: LinearInit = normal_linear_init
  dtype: Dtype = jnp.float32

  def _dense(self, features: int, fan_in: int, use_bias: bool, name: str) -> nn.Dense:
    kinit, binit = self.linear_init(fan_in)
    return nn.Dense(features, use_bias=use_bias, kernel_init=kinit, bias_init=binit,
                    name=name)

  @nn.compact
  def __call__(self, x: jax.Array, lam: jax.Array, *, train: bool) -> jax.Array:
    c = x.shape[-1]
    hidden = c // self.reduce
    if x.shape[0] != lam.shape[0]:
      raise ValueError(f"MIMB: features have batch {x.shape[0]} but lam has {lam.shape[0]}")
    lam = lam.astype(jnp.float32)
    z = self._dense(hidden, lam.shape[-1], True, "embed_fc1")(lam)
    z = nn.relu(BatchNorm(name="embed_bn")(z, train=train))
    z = nn.sigmoid(self._dense(c, hidden, True, "embed_fc2")(z))
    gate = z
    if not self.only_embed:
      y = jnp.mean(x.astype(jnp.float32), axis=(1, 2))
      y = nn.relu(self._dense(hidden, c, False, "excite_fc1")(y))
      y = nn.sigmoid(self._dense(c, hidden, False, "excite_fc2")(y))
      gate = y * z
    return x.astype(self.dtype) * gate[:, None, None, :].astype(self.dtype)


class MIMBGroup(nn.Module):
  """One MIMB per feature branch (children ``branch{i}``), all fed the same ``lam``.

  Args (call): xs tuple of [B, H_i, W_i, C_i]; lam [B, L]. Returns: the modulated tuple.
  """

  reduce: int = 4
  only_embed: bool = False
  linear_init: LinearInit = normal_linear_init
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, xs: Sequence[jax.Array], lam: jax.Array, *,
               train: bool) -> tuple[jax.Array, ...]:
    return tuple(
        MIMB(self.reduce, self.only_embed, self.linear_init, self.dtype,
             name=f"branch{i}")(x, lam, train=train)
        for i, x in enumerate(xs))
