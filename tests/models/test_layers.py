"""Layers against independent definitions: PyTorch's ConvTranspose2d, Conv2d padding and
BatchNorm semantics, nearest upsampling. (The custom-gradient kernels: test_conv_kernels.py.)"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mipnet_jax.models import layers


def _torch_conv_transpose(x, w, stride=2, padding=1):
  """Direct scatter definition of torch ConvTranspose2d: x [B,H,W,Ci], w [Ci,Co,k,k] (torch)."""
  b, h, wd, _ = x.shape
  _, co, k, _ = w.shape
  full = np.zeros((b, (h - 1) * stride + k, (wd - 1) * stride + k, co))
  for i in range(h):
    for j in range(wd):
      full[:, i * stride:i * stride + k, j * stride:j * stride + k, :] += np.einsum(
          "bc,cokl->bklo", x[:, i, j, :], w)
  return full[:, padding:padding + h * stride, padding:padding + wd * stride, :]


def test_conv_transpose_matches_torch_definition():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(2, 5, 3, 4)).astype(np.float32)
  w_torch = rng.normal(size=(4, 6, 4, 4)).astype(np.float32)
  mod = layers.ConvTranspose4x4(6)
  kernel = jnp.asarray(w_torch.transpose(2, 3, 0, 1))   # [ky, kx, Ci, Co]
  y = mod.apply({"params": {"kernel": kernel}}, jnp.asarray(x))
  assert y.shape == (2, 10, 6, 6)
  np.testing.assert_allclose(np.asarray(y), _torch_conv_transpose(x, w_torch), atol=1e-4)


def test_conv_pads_like_torch_for_stride_two():
  # A delta at (0, 0): PyTorch's padding=1 puts kernel tap (1, 1) on output (0, 0);
  # XLA's SAME padding on an even input would put tap (0, 0) there instead.
  x = np.zeros((1, 4, 4, 1), np.float32)
  x[0, 0, 0, 0] = 1.0
  kernel = np.arange(9, dtype=np.float32).reshape(3, 3, 1, 1)
  conv = layers.conv(1, 3, 2, dtype=jnp.float32, name=None)
  y = conv.apply({"params": {"kernel": jnp.asarray(kernel)}}, jnp.asarray(x))
  assert y.shape == (1, 2, 2, 1)
  assert float(y[0, 0, 0, 0]) == kernel[1, 1, 0, 0] == 4.0


def test_batchnorm_matches_torch_semantics():
  rng = np.random.default_rng(1)
  x = rng.normal(2.0, 3.0, size=(4, 3, 5, 2)).astype(np.float32)
  bn = layers.BatchNorm()
  variables = bn.init(jax.random.key(0), x, train=False)
  y, updates = bn.apply(variables, x, train=True, mutable=["batch_stats"])
  mean = x.mean(axis=(0, 1, 2))
  var_biased = x.var(axis=(0, 1, 2))
  np.testing.assert_allclose(np.asarray(y), (x - mean) / np.sqrt(var_biased + 1e-5), atol=1e-4)
  n = 4 * 3 * 5
  stats = updates["batch_stats"]
  np.testing.assert_allclose(stats["mean"], 0.1 * mean, rtol=1e-5)
  np.testing.assert_allclose(stats["var"], 0.9 + 0.1 * var_biased * n / (n - 1), rtol=1e-5)
  # Eval mode uses the running statistics.
  y_eval = bn.apply({"params": variables["params"], "batch_stats": stats}, x, train=False)
  expected = (x - np.asarray(stats["mean"])) / np.sqrt(np.asarray(stats["var"]) + 1e-5)
  np.testing.assert_allclose(np.asarray(y_eval), expected, atol=1e-4)


@pytest.mark.parametrize("factor", [2, 4])
def test_upsample_nearest(factor):
  x = jnp.arange(2 * 3 * 2 * 1, dtype=jnp.float32).reshape(2, 3, 2, 1)
  y = layers.upsample_nearest(x, factor)
  expected = np.repeat(np.repeat(np.asarray(x), factor, axis=1), factor, axis=2)
  np.testing.assert_array_equal(np.asarray(y), expected)
