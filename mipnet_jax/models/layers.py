"""Building blocks shared by HRNet and SimpleBaseline (NHWC, PyTorch-equivalent numerics);
the convolution kernels with custom gradients are in conv_kernels.py.

Every convolution pads explicitly as PyTorch does (``kernel // 2`` on each side): XLA's
``SAME`` padding differs from PyTorch for stride-2 convolutions on even inputs.
Initialisation follows the reference code: conv weights N(0, 0.001), BN weight 1, bias 0.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from mipnet_jax.models.conv_kernels import conv_for, conv_transpose_for

Dtype = Any

# Weight init of every conv / deconv in the HRNet and SimpleBaseline reference code.
conv_init = nn.initializers.normal(stddev=0.001)

# The name scope that marks the convolutions of a stride-2 transposed convolution, so the
# cost counter can charge them the way the HRNet repo counter does (see models/cost.py).
TRANSPOSED_CONV_SCOPE = "transposed_conv_stride2"


def conv(features: int, kernel: int, strides: int = 1, *, dtype: Dtype, name: str | None,
         use_bias: bool = False, impl: str = "auto") -> nn.Conv:
  """A PyTorch-style ``Conv2d(k, stride, padding=k // 2)`` in NHWC; ``impl`` one of
  conv_kernels.CONV_IMPLS."""
  pad = kernel // 2
  return nn.Conv(features, (kernel, kernel), strides=(strides, strides),
                 padding=((pad, pad), (pad, pad)), use_bias=use_bias, dtype=dtype,
                 kernel_init=conv_init, conv_general_dilated=conv_for(impl), name=name)


class BatchNorm(nn.Module):
  """BatchNorm over all axes but the last, equivalent to PyTorch's ``BatchNorm{1,2}d``.

  PyTorch momentum 0.1 is ``momentum=0.9`` here (running = m * running + (1 - m) * batch).
  As in PyTorch, the batch statistics used for normalisation are biased, while the running
  variance is updated with the unbiased estimate (n / (n - 1)). Statistics are always
  reduced in float32; under ``jit`` with a sharded batch they cover the global batch.

  Args (call): x [..., C]; train: use batch statistics and update the running ones.
  Returns: [..., C] in ``dtype``.
  """

  momentum: float = 0.9
  epsilon: float = 1e-5
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    c = x.shape[-1]
    scale = self.param("scale", nn.initializers.ones, (c,), jnp.float32)
    bias = self.param("bias", nn.initializers.zeros, (c,), jnp.float32)
    ra_mean = self.variable("batch_stats", "mean", lambda: jnp.zeros((c,), jnp.float32))
    ra_var = self.variable("batch_stats", "var", lambda: jnp.ones((c,), jnp.float32))
    if train:
      axes = tuple(range(x.ndim - 1))
      xf = x.astype(jnp.float32)
      mean = jnp.mean(xf, axes)
      var = jnp.maximum(jnp.mean(jnp.square(xf), axes) - jnp.square(mean), 0.0)
      if not self.is_initializing():
        n = int(np.prod([x.shape[a] for a in axes]))
        unbiased = var * (n / max(n - 1, 1))
        ra_mean.value = self.momentum * ra_mean.value + (1 - self.momentum) * mean
        ra_var.value = self.momentum * ra_var.value + (1 - self.momentum) * unbiased
    else:
      mean, var = ra_mean.value, ra_var.value
    mul = scale * jax.lax.rsqrt(var + self.epsilon)
    add = bias - mean * mul
    return x.astype(self.dtype) * mul.astype(self.dtype) + add.astype(self.dtype)


class ConvBNChain(nn.Module):
  """A chain of conv3x3 + BN (+ ReLU) steps, children ``conv{j}`` / ``bn{j}``.

  ``steps`` holds one ``(features, strides, relu)`` triple per step. It is the HRNet
  transition branch and the downward fuse path.
  """

  steps: tuple[tuple[int, int, bool], ...]
  dtype: Dtype = jnp.float32
  conv_impl: str = "auto"

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    for j, (features, strides, relu) in enumerate(self.steps):
      x = conv(features, 3, strides, dtype=self.dtype, name=f"conv{j}", impl=self.conv_impl)(x)
      x = BatchNorm(dtype=self.dtype, name=f"bn{j}")(x, train=train)
      if relu:
        x = nn.relu(x)
    return x


class BasicBlock(nn.Module):
  """Two 3x3 conv + BN with a residual (ResNet / HRNet branch block, expansion 1)."""

  features: int
  strides: int = 1
  downsample: bool = False
  dtype: Dtype = jnp.float32
  conv_impl: str = "auto"

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    d, i = self.dtype, self.conv_impl
    y = conv(self.features, 3, self.strides, dtype=d, name="conv1", impl=i)(x)
    y = nn.relu(BatchNorm(dtype=d, name="bn1")(y, train=train))
    y = conv(self.features, 3, dtype=d, name="conv2", impl=i)(y)
    y = BatchNorm(dtype=d, name="bn2")(y, train=train)
    if self.downsample:
      x = conv(self.features, 1, self.strides, dtype=d, name="downsample_conv", impl=i)(x)
      x = BatchNorm(dtype=d, name="downsample_bn")(x, train=train)
    return nn.relu(y + x)


class Bottleneck(nn.Module):
  """1x1 -> 3x3 (stride here, as in the reference) -> 1x1 (x4 channels), residual."""

  planes: int
  strides: int = 1
  downsample: bool = False
  dtype: Dtype = jnp.float32
  conv_impl: str = "auto"
  expansion: int = 4

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    d, i = self.dtype, self.conv_impl
    y = conv(self.planes, 1, dtype=d, name="conv1", impl=i)(x)
    y = nn.relu(BatchNorm(dtype=d, name="bn1")(y, train=train))
    y = conv(self.planes, 3, self.strides, dtype=d, name="conv2", impl=i)(y)
    y = nn.relu(BatchNorm(dtype=d, name="bn2")(y, train=train))
    y = conv(self.planes * self.expansion, 1, dtype=d, name="conv3", impl=i)(y)
    y = BatchNorm(dtype=d, name="bn3")(y, train=train)
    if self.downsample:
      x = conv(self.planes * self.expansion, 1, self.strides, dtype=d,
               name="downsample_conv", impl=i)(x)
      x = BatchNorm(dtype=d, name="downsample_bn")(x, train=train)
    return nn.relu(y + x)


class ResLayer(nn.Module):
  """``num_blocks`` Bottlenecks named ``block{k}``; the first one projects and strides."""

  planes: int
  num_blocks: int
  strides: int = 1
  dtype: Dtype = jnp.float32
  conv_impl: str = "auto"

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    for k in range(self.num_blocks):
      first = k == 0
      project = first and (self.strides != 1 or x.shape[-1] != self.planes * 4)
      x = Bottleneck(self.planes, self.strides if first else 1, project, dtype=self.dtype,
                     conv_impl=self.conv_impl, name=f"block{k}")(x, train=train)
    return x


class ConvTranspose4x4(nn.Module):
  """PyTorch ``ConvTranspose2d(k=4, stride=2, padding=1, bias=False)``, computed exactly.

  With ``conv_impl`` "cpu" (and "auto" on CPU) the transposed convolution is evaluated in its
  sub-pixel form: each of the four output
  phases (row parity a, column parity b) is an ordinary 2x2 convolution of the input with
  the matching taps of the same 4x4 kernel, and the phases are interleaved. This is the
  transposed convolution's true multiply-adds (no zeros of a dilated input) and stays on
  XLA's fast convolution path in both directions.

  The kernel is stored as ``[4, 4, Cin, Cout]`` with
  ``kernel[ky, kx, ci, co] == torch_weight[ci, co, ky, kx]``.

  Args (call): x [B, H, W, Cin]. Returns: [B, 2H, 2W, features].
  """

  features: int
  dtype: Dtype = jnp.float32
  conv_impl: str = "auto"

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kernel = self.param("kernel", conv_init, (4, 4, x.shape[-1], self.features), jnp.float32)
    with jax.named_scope(TRANSPOSED_CONV_SCOPE):
      return conv_transpose_for(self.conv_impl)(x.astype(self.dtype), kernel.astype(self.dtype),
                                                1)


class DeconvHead(nn.Module):
  """``len(features)`` x (ConvTranspose 4x4 s2 p1, no bias + BN + ReLU), children
  ``deconv{i}`` / ``bn{i}``: [B, h, w, C] -> [B, 2^n h, 2^n w, features[-1]]."""

  features: tuple[int, ...] = (256, 256, 256)
  dtype: Dtype = jnp.float32
  conv_impl: str = "auto"

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    for i, f in enumerate(self.features):
      x = ConvTranspose4x4(f, dtype=self.dtype, conv_impl=self.conv_impl, name=f"deconv{i}")(x)
      x = nn.relu(BatchNorm(dtype=self.dtype, name=f"bn{i}")(x, train=train))
    return x


def upsample_nearest(x: jax.Array, factor: int) -> jax.Array:
  """Nearest-neighbour upsampling by an integer factor: [B, H, W, C] -> [B, fH, fW, C]."""
  b, h, w, c = x.shape
  x = jnp.broadcast_to(x[:, :, None, :, None, :], (b, h, factor, w, factor, c))
  return x.reshape(b, h * factor, w * factor, c)
