"""The portability check of lowered modules (core/portable.py): CPU-only custom calls and host
callbacks are named; plain computations and sharding annotations pass."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mipnet_jax.core import portable

X = jax.ShapeDtypeStruct((3, 3), jnp.float32)


def lowered(f, platform: str = "cpu") -> str:
  return jax.export.export(jax.jit(f), platforms=[platform])(X).mlir_module()


def test_cpu_only_custom_calls_and_host_callbacks_are_named():
  eigh = lowered(lambda x: jnp.linalg.eigh(x)[0])
  assert portable.custom_call_targets(eigh) == ["lapack_ssyevd_ffi"]
  with pytest.raises(ValueError, match=r"^train step: not portable to accelerators: custom call "
                                       r"lapack_ssyevd_ffi$"):
    portable.check_portable(eigh, "train step")
  callback = jax.jit(lambda x: jax.pure_callback(np.sin, X, x)).lower(X).as_text()
  with pytest.raises(ValueError, match=r"custom call xla_ffi_python_cpu_callback \(host "
                                       r"callback\)$"):
    portable.check_portable(callback, "f")


def test_portable_modules_pass():
  text = lowered(lambda x: jnp.tanh(x @ x.T).sum(), "cuda")
  assert portable.custom_call_targets(text) == []
  portable.check_portable(text, "f")
  sharded = ('%1 = stablehlo.custom_call @Sharding(%0) {mhlo.sharding = "{replicated}"} : '
             '(tensor<4x3xf32>) -> tensor<4x3xf32>')            # what jit writes for a mesh
  assert portable.custom_call_targets(sharded) == ["Sharding"]
  portable.check_portable(sharded, "f")
