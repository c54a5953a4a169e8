"""Convolution kernels with custom gradients, numerically the same sums as XLA's, kept on the
fast convolution path of XLA:CPU (measured in scripts/bench_model.py and bench_train.py):

* ``conv_transpose_stride2``: a stride-2 transposed convolution as four interleaved stride-1
  convolutions (sub-pixel form); XLA's lhs-dilated form runs off the fast path.
* ``conv_stride2``: a stride-2 convolution whose input gradient is that sub-pixel transposed
  convolution (HRNet has 41 of them).
* ``conv_pointwise``: a 1x1 convolution whose two gradients are GEMMs on the NHWC layout.
* ``conv_general_dilated``: the ``conv_general_dilated`` that ``nn.Conv`` is given, routing
  1x1 and stride-2 convolutions to the two above.

These are XLA:CPU speed devices. ``conv_for(impl)`` / ``conv_transpose_for(impl)`` choose per
model (``config.model.conv_impl``): ``cpu`` always uses them, ``xla`` never (XLA's own
convolutions and gradients; the transposed convolution as an input-dilated convolution), and
``auto`` (default) decides per backend when the function is lowered
(``jax.lax.platform_dependent``: the CPU forms on CPU, XLA's on GPU and TPU; a function
exported for several platforms carries both).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

_NHWC = ("NHWC", "HWIO", "NHWC")
CONV_IMPLS = ("auto", "xla", "cpu")


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


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None,
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


def conv_transpose_stride2_xla(x: jax.Array, kernel: jax.Array, pad: int) -> jax.Array:
  """``conv_transpose_stride2`` as XLA writes it: a stride-1 convolution of the input dilated
  by 2 with the spatially flipped kernel (padding k - 1 - pad). Same arguments; returns
  [B, 2H + k - 2 - 2 pad, 2W + k - 2 - 2 pad, Co] (2H x 2W for k = 4, pad = 1)."""
  k = kernel.shape[0]
  edge = (k - 1 - pad, k - 1 - pad)
  return jax.lax.conv_general_dilated(x, kernel[::-1, ::-1], (1, 1), (edge, edge),
                                      lhs_dilation=(2, 2), dimension_numbers=_NHWC)


def _check_impl(impl: str) -> None:
  if impl not in CONV_IMPLS:
    raise ValueError(f"config.model.conv_impl must be one of {', '.join(CONV_IMPLS)}, got "
                     f"{impl!r}")


def conv_for(impl: str):
  """The ``conv_general_dilated`` that ``nn.Conv`` gets for ``impl`` (module docstring)."""
  _check_impl(impl)
  if impl == "cpu":
    return conv_general_dilated
  if impl == "xla":
    return jax.lax.conv_general_dilated

  def auto(lhs, rhs, window_strides, padding, **kwargs):
    return jax.lax.platform_dependent(
        lhs, rhs,
        cpu=lambda a, b: conv_general_dilated(a, b, window_strides, padding, **kwargs),
        default=lambda a, b: jax.lax.conv_general_dilated(a, b, window_strides, padding,
                                                           **kwargs))
  return auto


def conv_transpose_for(impl: str):
  """``f(x, kernel, pad)``: the stride-2 transposed convolution for ``impl``."""
  _check_impl(impl)
  if impl == "cpu":
    return conv_transpose_stride2
  if impl == "xla":
    return conv_transpose_stride2_xla
  return lambda x, kernel, pad: jax.lax.platform_dependent(
      x, kernel, cpu=lambda a, b: conv_transpose_stride2(a, b, pad),
      default=lambda a, b: conv_transpose_stride2_xla(a, b, pad))
