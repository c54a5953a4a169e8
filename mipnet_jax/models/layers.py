"""Building blocks shared by HRNet and SimpleBaseline (NHWC, PyTorch-equivalent numerics).

Every convolution pads explicitly as PyTorch does (``kernel // 2`` on each side): XLA's
``SAME`` padding differs from PyTorch for stride-2 convolutions on even inputs.
Initialisation follows the reference code: conv weights N(0, 0.001), BN weight 1, bias 0.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

Dtype = Any

# Weight init of every conv / deconv in the HRNet and SimpleBaseline reference code.
conv_init = nn.initializers.normal(stddev=0.001)

# The name scope that marks the convolutions of a stride-2 transposed convolution, so the
# cost counter can charge them the way the HRNet repo counter does (see models/cost.py).
TRANSPOSED_CONV_SCOPE = "transposed_conv_stride2"


_NHWC = ("NHWC", "HWIO", "NHWC")


def _conv_nhwc(x, w, strides, padding):
  return jax.lax.conv_general_dilated(x, w, strides, padding, dimension_numbers=_NHWC)


def _phase_taps(k: int, pad: int, phase: int) -> tuple[list[int], tuple[int, int]]:
  """For output row 2m + phase of a stride-2 transposed conv (kernel k, padding pad): the
  kernel rows that reach it, ordered by the input row they read (m + d), and the
  (low, high) padding that aligns them as a stride-1 correlation over the input."""
  taps = sorted((kk for kk in range(k) if (phase + pad - kk) % 2 == 0),
                key=lambda kk: (phase + pad - kk) // 2)
  if not taps:
    return [], (0, 0)
  d = [(phase + pad - kk) // 2 for kk in taps]
  return taps, (-d[0], d[-1])


def conv_transpose_stride2(x: jax.Array, kernel: jax.Array, pad: int) -> jax.Array:
  """Stride-2 transposed convolution in sub-pixel form: y[2i - pad + k] += x[i] kernel[k].

  Each of the four output phases (row parity, column parity) is an ordinary stride-1
  convolution of x with the kernel taps that reach it; the phases are interleaved. This is
  the true multiply-add count and stays on XLA's fast convolution path.

  Args: x [B, H, W, Ci]; kernel [k, k, Ci, Co] (kernel[ky, kx, ci, co]); pad as PyTorch's.
  Returns: [B, 2H, 2W, Co] (callers crop to their output size).
  """
  b, m, n, _ = x.shape
  k, cout = kernel.shape[0], kernel.shape[3]
  rows = []
  for a in (0, 1):
    taps_a, pad_a = _phase_taps(k, pad, a)
    cols = []
    for c in (0, 1):
      taps_c, pad_c = _phase_taps(k, pad, c)
      if not taps_a or not taps_c:
        cols.append(jnp.zeros((b, m, n, cout), x.dtype))
        continue
      sub = kernel[np.array(taps_a)][:, np.array(taps_c)]
      cols.append(_conv_nhwc(x, sub, (1, 1), (pad_a, pad_c)))
    rows.append(jnp.stack(cols, axis=3))          # [B, H, W, 2(c), Co]
  y = jnp.stack(rows, axis=2)                     # [B, H, 2(a), W, 2(c), Co]
  return y.reshape(b, 2 * m, 2 * n, cout)


def _stride2_input_grad(g: jax.Array, w: jax.Array, x_shape: tuple[int, ...],
                        pad: int) -> jax.Array:
  """Input gradient of a stride-2 conv: the transposed conv of g, cropped to x's size
  (XLA's own form, an input-dilated convolution, is off the fast path on CPU)."""
  dx = conv_transpose_stride2(g, jnp.swapaxes(w, 2, 3), pad)
  return dx[:, :x_shape[1], :x_shape[2]]


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def conv_stride2(x: jax.Array, w: jax.Array, pad: int) -> jax.Array:
  """``Conv2d(k, stride=2, padding=pad)``: x [B,H,W,Ci], w [k,k,Ci,Co] -> [B,ceil(H/2),..,Co].

  The forward pass is XLA's strided convolution; the backward pass computes the input
  gradient in sub-pixel form (stride-1 convolutions only), numerically the same sums."""
  return _conv_nhwc(x, w, (2, 2), ((pad, pad), (pad, pad)))


def _conv_stride2_fwd(x, w, pad):
  return conv_stride2(x, w, pad), (x, w)


def _conv_stride2_bwd(pad, res, g):
  x, w = res
  if w.shape[:2] == (1, 1):   # a projection shortcut: the weight gradient is one GEMM
    dw = _pointwise_weight_grad(x[:, ::2, ::2], g)
  else:
    _, w_vjp = jax.vjp(lambda w_: _conv_nhwc(x, w_, (2, 2), ((pad, pad), (pad, pad))), w)
    dw = w_vjp(g)[0]
  return _stride2_input_grad(g, w, x.shape, pad), dw


conv_stride2.defvjp(_conv_stride2_fwd, _conv_stride2_bwd)


def _pointwise_weight_grad(x: jax.Array, g: jax.Array) -> jax.Array:
  """dW [1,1,Ci,Co] = sum over (b, h, w) of x^T g, as a GEMM on the natural NHWC layout
  (XLA would otherwise transpose both activations to [C, H, W, B] for a convolution)."""
  dims = (((0, 1, 2), (0, 1, 2)), ((), ()))
  # XLA lays the operand contracted on its major dims out anew: make it the narrower one.
  if x.shape[-1] <= g.shape[-1]:
    dw = jax.lax.dot_general(x, g, dims, preferred_element_type=jnp.float32)
  else:
    dw = jax.lax.dot_general(g, x, dims, preferred_element_type=jnp.float32).T
  return dw.astype(g.dtype)[None, None]


@jax.custom_vjp
def conv_pointwise(x: jax.Array, w: jax.Array) -> jax.Array:
  """1x1, stride-1 convolution: x [B,H,W,Ci], w [1,1,Ci,Co] -> [B,H,W,Co]; both gradients
  are GEMMs on the NHWC layout."""
  return _conv_nhwc(x, w, (1, 1), ((0, 0), (0, 0)))


def _conv_pointwise_fwd(x, w):
  return conv_pointwise(x, w), (x, w)


def _conv_pointwise_bwd(res, g):
  x, w = res
  dx = jax.lax.dot_general(g, w[0, 0], (((3,), (1,)), ((), ())))
  return dx.astype(x.dtype), _pointwise_weight_grad(x, g).astype(w.dtype)


conv_pointwise.defvjp(_conv_pointwise_fwd, _conv_pointwise_bwd)


def _conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None,
                          rhs_dilation=None, dimension_numbers=None, feature_group_count=1,
                          **kwargs):
  """nn.Conv's convolution: stride-2 and 1x1 convolutions get fast gradients."""
  simple = (feature_group_count == 1 and all(d == 1 for d in (lhs_dilation or ()))
            and all(d == 1 for d in (rhs_dilation or ())))
  if (simple and tuple(window_strides) == (1, 1) and rhs.shape[:2] == (1, 1)
      and all(tuple(p) == (0, 0) for p in padding)):
    return conv_pointwise(lhs, rhs)
  symmetric = len({tuple(p) for p in padding}) == 1 and padding[0][0] == padding[0][1]
  if not (simple and tuple(window_strides) == (2, 2) and symmetric):
    return jax.lax.conv_general_dilated(
        lhs, rhs, window_strides, padding, lhs_dilation=lhs_dilation,
        rhs_dilation=rhs_dilation, dimension_numbers=dimension_numbers,
        feature_group_count=feature_group_count, **kwargs)
  return conv_stride2(lhs, rhs, padding[0][0])


def conv(features: int, kernel: int, strides: int = 1, *, dtype: Dtype, name: str | None,
         use_bias: bool = False) -> nn.Conv:
  """A PyTorch-style ``Conv2d(k, stride, padding=k // 2)`` in NHWC."""
  pad = kernel // 2
  return nn.Conv(features, (kernel, kernel), strides=(strides, strides),
                 padding=((pad, pad), (pad, pad)), use_bias=use_bias, dtype=dtype,
                 kernel_init=conv_init, conv_general_dilated=_conv_general_dilated, name=name)


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

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    for j, (features, strides, relu) in enumerate(self.steps):
      x = conv(features, 3, strides, dtype=self.dtype, name=f"conv{j}")(x)
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

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    d = self.dtype
    y = conv(self.features, 3, self.strides, dtype=d, name="conv1")(x)
    y = nn.relu(BatchNorm(dtype=d, name="bn1")(y, train=train))
    y = conv(self.features, 3, dtype=d, name="conv2")(y)
    y = BatchNorm(dtype=d, name="bn2")(y, train=train)
    if self.downsample:
      x = conv(self.features, 1, self.strides, dtype=d, name="downsample_conv")(x)
      x = BatchNorm(dtype=d, name="downsample_bn")(x, train=train)
    return nn.relu(y + x)


class Bottleneck(nn.Module):
  """1x1 -> 3x3 (stride here, as in the reference) -> 1x1 (x4 channels), residual."""

  planes: int
  strides: int = 1
  downsample: bool = False
  dtype: Dtype = jnp.float32
  expansion: int = 4

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    d = self.dtype
    y = conv(self.planes, 1, dtype=d, name="conv1")(x)
    y = nn.relu(BatchNorm(dtype=d, name="bn1")(y, train=train))
    y = conv(self.planes, 3, self.strides, dtype=d, name="conv2")(y)
    y = nn.relu(BatchNorm(dtype=d, name="bn2")(y, train=train))
    y = conv(self.planes * self.expansion, 1, dtype=d, name="conv3")(y)
    y = BatchNorm(dtype=d, name="bn3")(y, train=train)
    if self.downsample:
      x = conv(self.planes * self.expansion, 1, self.strides, dtype=d,
               name="downsample_conv")(x)
      x = BatchNorm(dtype=d, name="downsample_bn")(x, train=train)
    return nn.relu(y + x)


class ResLayer(nn.Module):
  """``num_blocks`` Bottlenecks named ``block{k}``; the first one projects and strides."""

  planes: int
  num_blocks: int
  strides: int = 1
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    for k in range(self.num_blocks):
      first = k == 0
      project = first and (self.strides != 1 or x.shape[-1] != self.planes * 4)
      x = Bottleneck(self.planes, self.strides if first else 1, project, dtype=self.dtype,
                     name=f"block{k}")(x, train=train)
    return x


class ConvTranspose4x4(nn.Module):
  """PyTorch ``ConvTranspose2d(k=4, stride=2, padding=1, bias=False)``, computed exactly.

  The transposed convolution is evaluated in its sub-pixel form: each of the four output
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

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kernel = self.param("kernel", conv_init, (4, 4, x.shape[-1], self.features), jnp.float32)
    with jax.named_scope(TRANSPOSED_CONV_SCOPE):
      return conv_transpose_stride2(x.astype(self.dtype), kernel.astype(self.dtype), 1)


def upsample_nearest(x: jax.Array, factor: int) -> jax.Array:
  """Nearest-neighbour upsampling by an integer factor: [B, H, W, C] -> [B, fH, fW, C]."""
  b, h, w, c = x.shape
  x = jnp.broadcast_to(x[:, :, None, :, None, :], (b, h, factor, w, factor, c))
  return x.reshape(b, h * factor, w * factor, c)
