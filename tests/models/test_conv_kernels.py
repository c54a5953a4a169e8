"""Custom-gradient convolution kernels against XLA's own convolutions and autodiff, and the
sub-pixel transposed convolution against the scatter definition of PyTorch's ConvTranspose2d."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mipnet_jax.models import conv_kernels

NHWC = ("NHWC", "HWIO", "NHWC")


def _native(strides, pad):
  return lambda x, w: jax.lax.conv_general_dilated(x, w, strides, ((pad, pad), (pad, pad)),
                                                   dimension_numbers=NHWC)


def _loss(f):
  return lambda x, w: jnp.sum(jnp.sin(f(x, w)))


def _assert_same_values_and_gradients(ours, native, x, w):
  np.testing.assert_allclose(ours(x, w), native(x, w), atol=1e-5)
  g_ours = jax.grad(_loss(ours), (0, 1))(x, w)
  g_native = jax.grad(_loss(native), (0, 1))(x, w)
  for a, b in zip(g_ours, g_native):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-4)


@pytest.mark.parametrize("hw,k,pad", [((8, 6), 3, 1), ((7, 5), 3, 1), ((8, 6), 1, 0),
                                      ((7, 6), 1, 0), ((9, 8), 7, 3)])
def test_stride2_conv_gradients_equal_xla_autodiff(hw, k, pad):
  x = jax.random.normal(jax.random.key(0), (2, *hw, 3))
  w = jax.random.normal(jax.random.key(1), (k, k, 3, 5))
  _assert_same_values_and_gradients(lambda x, w: conv_kernels.conv_stride2(x, w, pad),
                                    _native((2, 2), pad), x, w)


@pytest.mark.parametrize("cin,cout", [(3, 5), (6, 2)])
def test_pointwise_conv_gradients_equal_xla_autodiff(cin, cout):
  x = jax.random.normal(jax.random.key(0), (2, 6, 4, cin))
  w = jax.random.normal(jax.random.key(1), (1, 1, cin, cout))
  _assert_same_values_and_gradients(conv_kernels.conv_pointwise, _native((1, 1), 0), x, w)


def _torch_conv_transpose(x, w, stride, padding):
  """Scatter definition of torch ConvTranspose2d: x [B,H,W,Ci], w [k,k,Ci,Co]; the full
  (2H, 2W) window starting at ``padding``."""
  b, h, wd, _ = x.shape
  k, co = w.shape[0], w.shape[3]
  full = np.zeros((b, (h - 1) * stride + k + 2 * k, (wd - 1) * stride + k + 2 * k, co))
  for i in range(h):
    for j in range(wd):
      full[:, i * stride:i * stride + k, j * stride:j * stride + k, :] += np.einsum(
          "bc,klco->bklo", x[:, i, j, :], w)
  return full[:, padding:padding + h * stride, padding:padding + wd * stride, :]


@pytest.mark.parametrize("k,pad", [(4, 1), (3, 1), (1, 0), (7, 3)])
def test_transposed_conv_equals_the_scatter_definition(k, pad):
  rng = np.random.default_rng(k)
  x = rng.normal(size=(2, 5, 3, 4)).astype(np.float32)
  w = rng.normal(size=(k, k, 4, 6)).astype(np.float32)
  y = conv_kernels.conv_transpose_stride2(jnp.asarray(x), jnp.asarray(w), pad)
  assert y.shape == (2, 10, 6, 6)
  np.testing.assert_allclose(np.asarray(y), _torch_conv_transpose(x, w, 2, pad), atol=1e-4)


def test_phase_taps_hand_computed():
  # k=4, pad=1 (the deconv head): output row 2m reads x[m-1] through tap 3 and x[m] through
  # tap 1; row 2m+1 reads x[m] through tap 2 and x[m+1] through tap 0.
  assert conv_kernels._phase_taps(4, 1, 0) == ([3, 1], (1, 0))
  assert conv_kernels._phase_taps(4, 1, 1) == ([2, 0], (0, 1))
  # k=1, pad=0: only even rows are reached.
  assert conv_kernels._phase_taps(1, 0, 0) == ([0], (0, 0))
  assert conv_kernels._phase_taps(1, 0, 1) == ([], (0, 0))


@pytest.mark.parametrize("k,strides,pad", [(1, (1, 1), 0), (3, (2, 2), 1), (1, (2, 2), 0),
                                           (3, (1, 1), 1)])
def test_nn_conv_routing_equals_xla(k, strides, pad):
  """What nn.Conv is given: 1x1 and stride-2 convolutions take the custom kernels, others
  XLA's; values and gradients are XLA's either way."""
  x = jax.random.normal(jax.random.key(2), (2, 8, 6, 3))
  w = jax.random.normal(jax.random.key(3), (k, k, 3, 4))
  padding = ((pad, pad), (pad, pad))
  ours = lambda x, w: conv_kernels.conv_general_dilated(   # noqa: E731
      x, w, strides, padding, dimension_numbers=NHWC)
  _assert_same_values_and_gradients(ours, _native(strides, pad), x, w)
