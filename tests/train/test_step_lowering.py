"""The accelerator path, proven without the hardware: the train step (N = 1 and 2, fp32 and
bf16, batch 32) and the predict step of full-size HRNet-W32, SimpleBaseline R-50 and MIPNet-ViT-B
(its recipe: drop path, AdamW with layer decay, UDP targets and decoding) lower for
``cuda`` and ``tpu`` on this CPU machine (``jax.export``), with XLA's own convolutions
(``conv_impl="auto"`` picks them there) and no custom call but sharding annotations
(core/portable.py names any other). Each configuration is lowered once for both platforms."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from mipnet_jax import experiments
from mipnet_jax.core import portable
from mipnet_jax.core.meta import get_meta
from mipnet_jax.eval import predict_step
from mipnet_jax.models.build import build_model
from mipnet_jax.models.variables import abstract_variables
from mipnet_jax.train import optim, step

PLATFORMS = ("cuda", "tpu")
IMAGE_HW, HEATMAP_HW, BATCH = (256, 192), (64, 48), 32
ARCHS = {"hrnet_w32": dict(name="hrnet", width=32),
         "sbl_r50": dict(name="simple_baseline", depth=50)}


def model_of(arch: str, n: int, dtype: str):
  return build_model(dict(ARCHS[arch], num_keypoints=17, dtype=dtype), n)


def lower_train_step(arch: str, n: int, dtype: str) -> str:
  model, tx = model_of(arch, n, dtype), optax.adam(1e-3)
  state = jax.eval_shape(lambda: step.create_state(model, tx, IMAGE_HW, jax.random.key(0)))
  batch = dict(image=jax.ShapeDtypeStruct((BATCH, *IMAGE_HW, 3), jnp.uint8),
               target_windows=jax.ShapeDtypeStruct((BATCH, n, 17, 4), jnp.int32),
               target_weight=jax.ShapeDtypeStruct((BATCH, n, 17), jnp.float32))
  fn = functools.partial(step.train_step, model=model, tx=tx, num_instances=n, sigma=2.0)
  return jax.export.export(jax.jit(fn), platforms=PLATFORMS)(state, batch).mlir_module()


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("n", [1, 2])
@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_train_step_lowers_for_gpu_and_tpu(arch, n, dtype):
  text = lower_train_step(arch, n, dtype)
  portable.check_portable(text, f"{arch} train step N={n} {dtype}")
  assert text.count("stablehlo.convolution") > 100
  # XLA's transposed convolution (input-dilated) in the backward pass, not the sub-pixel form.
  assert "lhs_dilate = [2, 2]" in text


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_predict_step_lowers_for_gpu_and_tpu(arch):
  n = 2
  model = model_of(arch, n, "float32")
  fn = predict_step.image_joints_fn(model, n, get_meta("coco").flip_permutation, HEATMAP_HW)
  b, = jax.export.symbolic_shape("b")
  args = (abstract_variables(model, IMAGE_HW),
          jax.ShapeDtypeStruct((b, *IMAGE_HW, 3), jnp.uint8),
          jax.ShapeDtypeStruct((b, 2), jnp.float32), jax.ShapeDtypeStruct((b, 2), jnp.float32))
  exported = jax.export.export(jax.jit(fn), platforms=PLATFORMS)(*args)
  assert exported.platforms == PLATFORMS
  portable.check_portable(exported.mlir_module(), f"{arch} predict step")
  out = exported.out_avals
  assert [tuple(str(d) for d in a.shape) for a in out] == [("b", "2", "17", "2"),
                                                          ("b", "2", "17")]
  assert np.dtype(out[0].dtype) == np.float32


# ------------------------------------------------------------------------------ ViTPose

@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_vitpose_recipe_train_step_lowers_for_gpu_and_tpu(dtype):
  """MIPNet-ViT-B (N=2) with its whole recipe: stochastic depth (the dropout key), AdamW with
  layer-wise lr decay and clipping, UDP targets ([B, N, K, 6] float32 windows)."""
  c = experiments.experiment("vitpose_b", "coco", IMAGE_HW)
  c.model.dtype = dtype
  model, tx, n = build_model(c.model, c.num_instances), optim.from_config(c, 100), 2
  state = jax.eval_shape(lambda: step.create_state(model, tx, IMAGE_HW, jax.random.key(0)))
  batch = dict(image=jax.ShapeDtypeStruct((BATCH, *IMAGE_HW, 3), jnp.uint8),
               target_windows=jax.ShapeDtypeStruct((BATCH, n, 17, 6), jnp.float32),
               target_weight=jax.ShapeDtypeStruct((BATCH, n, 17), jnp.float32))
  fn = functools.partial(step.train_step, model=model, tx=tx, num_instances=n, sigma=2.0,
                         dropout=step.dropout_key(0))
  text = jax.export.export(jax.jit(fn), platforms=PLATFORMS)(state, batch).mlir_module()
  portable.check_portable(text, f"MIPNet-ViT-B train step {dtype}")
  assert text.count("stablehlo.dot_general") > 12 * 4          # qkv, proj, fc1, fc2 x blocks
  assert "stablehlo.rng_bit_generator" in text or "threefry" in text    # drop path masks


def test_vitpose_udp_predict_step_lowers_for_gpu_and_tpu():
  c = experiments.experiment("vitpose_b", "coco", IMAGE_HW)
  model, n = build_model(c.model, 2), 2
  fn = predict_step.image_joints_fn(model, n, get_meta("coco").flip_permutation, HEATMAP_HW,
                                    udp=True)
  b, = jax.export.symbolic_shape("b")
  args = (abstract_variables(model, IMAGE_HW),
          jax.ShapeDtypeStruct((b, *IMAGE_HW, 3), jnp.uint8),
          jax.ShapeDtypeStruct((b, 2), jnp.float32), jax.ShapeDtypeStruct((b, 2), jnp.float32))
  exported = jax.export.export(jax.jit(fn), platforms=PLATFORMS)(*args)
  portable.check_portable(exported.mlir_module(), "MIPNet-ViT-B UDP predict step")
  assert [tuple(str(d) for d in a.shape) for a in exported.out_avals] == [
      ("b", "2", "17", "2"), ("b", "2", "17")]
