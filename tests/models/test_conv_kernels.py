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


@pytest.mark.parametrize("k,pad", [(4, 1), (3, 1), (7, 3)])
def test_xla_transposed_conv_equals_the_scatter_definition(k, pad):
  rng = np.random.default_rng(10 + k)
  x = rng.normal(size=(2, 5, 3, 4)).astype(np.float32)
  w = rng.normal(size=(k, k, 4, 6)).astype(np.float32)
  y = conv_kernels.conv_transpose_stride2_xla(jnp.asarray(x), jnp.asarray(w), pad)
  want = _torch_conv_transpose(x, w, 2, pad)
  size = (2 * 5 + k - 2 - 2 * pad, 2 * 3 + k - 2 - 2 * pad)
  assert y.shape == (2, *size, 6)
  np.testing.assert_allclose(np.asarray(y)[:, :10, :6], want[:, :size[0], :size[1]],
                             atol=1e-4)


def test_impl_choice_and_its_error():
  assert conv_kernels.conv_for("cpu") is conv_kernels.conv_general_dilated
  assert conv_kernels.conv_for("xla") is jax.lax.conv_general_dilated
  assert conv_kernels.conv_transpose_for("xla") is conv_kernels.conv_transpose_stride2_xla
  with pytest.raises(ValueError, match="config.model.conv_impl must be one of auto, xla, cpu, "
                                       "got 'gpu'"):
    conv_kernels.conv_for("gpu")


def _lowered_convs(impl: str, platform: str) -> str:
  """The StableHLO of one stride-2 conv's value and gradients under ``impl`` for ``platform``."""
  conv = conv_kernels.conv_for(impl)
  f = jax.jit(jax.grad(lambda x, w: jnp.sum(conv(x, w, (2, 2), ((1, 1), (1, 1)),
                                                 dimension_numbers=NHWC) ** 2), (0, 1)))
  args = (jax.ShapeDtypeStruct((2, 8, 6, 3), jnp.float32),
          jax.ShapeDtypeStruct((3, 3, 3, 4), jnp.float32))
  return jax.export.export(f, platforms=[platform])(*args).mlir_module()


def test_auto_picks_the_cpu_forms_on_cpu_and_xla_elsewhere():
  """A stride-2 conv's input gradient: the CPU form is four stride-1 convolutions (sub-pixel),
  XLA's is one input-dilated convolution; auto lowers to the one of each platform."""
  def dilated(text):
    return text.count("lhs_dilate = [2, 2]")
  counts = {(impl, p): _lowered_convs(impl, p).count("stablehlo.convolution")
            for impl in ("auto", "cpu", "xla") for p in ("cpu", "cuda")}
  assert counts[("auto", "cpu")] == counts[("cpu", "cpu")] == 6      # fwd + dw + 4 phases
  assert counts[("auto", "cuda")] == counts[("xla", "cuda")] == 3    # fwd + dw + dx
  assert dilated(_lowered_convs("auto", "cuda")) == 1
  assert dilated(_lowered_convs("auto", "cpu")) == 0


def test_auto_on_cpu_compiles_to_the_cpu_forms_bit_for_bit():
  """XLA folds the platform_dependent: "auto"'s compiled gradient on CPU has no conditional,
  the convolutions of "cpu" and its numbers bit for bit (CPU speed unchanged). A stride-2
  conv and a transposed conv, the two layers whose forms differ."""
  x = jax.random.normal(jax.random.key(0), (2, 8, 6, 3))
  w = jax.random.normal(jax.random.key(1), (3, 3, 3, 4))
  wt = jax.random.normal(jax.random.key(2), (4, 4, 4, 3))
  out, texts = {}, {}
  for impl in ("auto", "cpu"):
    conv, convt = conv_kernels.conv_for(impl), conv_kernels.conv_transpose_for(impl)

    def loss(x, w, wt, conv=conv, convt=convt):
      y = conv(x, w, (2, 2), ((1, 1), (1, 1)), dimension_numbers=NHWC)
      return jnp.sum(jnp.sin(convt(y, wt, 1)))
    compiled = jax.jit(jax.value_and_grad(loss, (0, 1, 2))).lower(x, w, wt).compile()
    texts[impl] = compiled.as_text()
    out[impl] = compiled(x, w, wt)
  assert texts["auto"].count("conditional") == 0
  assert texts["auto"].count("convolution(") == texts["cpu"].count("convolution(") > 3
  jax.tree.map(np.testing.assert_array_equal, out["auto"], out["cpu"])


@pytest.mark.parametrize("arch", ["hrnet", "simple_baseline"])
def test_models_give_the_same_values_and_gradients_with_either_kernels(tiny_model, arch):
  """A training step's heatmaps and parameter gradients (MIPNet N=2, BN in train mode) with
  the CPU forms and with XLA's own convolutions, same parameters: equal within float32
  rounding (``conditioned_variables``: conftest says why)."""
  from conftest import conditioned_variables
  images = jax.random.normal(jax.random.key(5), (2, 64, 64, 3))
  target = jax.random.uniform(jax.random.key(6), (2, 2, 16, 16, 17))
  model, variables = tiny_model(arch, n=2, conv_impl="cpu")
  variables = conditioned_variables(model, variables, images, 2)   # the same for all
  out, counts = {}, {}
  for impl in ("cpu", "xla"):
    model, _ = tiny_model(arch, n=2, conv_impl=impl)

    def loss(params, model=model):
      heat, _ = model.apply(dict(variables, params=params), images, 2, train=True,
                            method=model.instances, mutable=["batch_stats"])
      return jnp.mean((heat - target) ** 2), heat
    compiled = jax.jit(jax.value_and_grad(loss, has_aux=True)).lower(
        variables["params"]).compile()
    text = compiled.as_text()
    counts[impl] = (text.count("conditional"), text.count("convolution("))
    (_, heat), grads = compiled(variables["params"])
    out[impl] = heat, grads
  (h_cpu, g_cpu), (h_xla, g_xla) = out["cpu"], out["xla"]
  np.testing.assert_allclose(h_xla, h_cpu, rtol=0, atol=1e-4 * float(jnp.std(h_cpu)))
  leaves_cpu, leaves_xla = jax.tree.leaves(g_cpu), jax.tree.leaves(g_xla)
  assert len(leaves_cpu) == len(leaves_xla) > 100
  scale = max(float(jnp.abs(a).max()) for a in leaves_cpu)
  # Per leaf, within 1e-3 of its largest gradient; leaves whose true gradient is zero (a BN
  # shift followed by a BN in train mode) hold rounding noise only, below 1e-5 of the largest.
  for a, b in zip(leaves_cpu, leaves_xla):
    np.testing.assert_allclose(b, a, rtol=0, atol=max(1e-3 * float(jnp.abs(a).max()),
                                                     1e-5 * scale))
  assert counts["xla"] != counts["cpu"]
