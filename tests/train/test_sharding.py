"""The device mesh and the batch sharding: -1 axes, the one-line errors for shapes that do not
fit the devices, and global batches. On this process's one CPU device, and on 8 simulated
devices in a subprocess (XLA reads the device count when its backend starts)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from mipnet_jax.train import sharding


def test_mesh_over_the_one_device():
  assert jax.device_count() == 1
  mesh = sharding.make_mesh({"data": -1})
  assert mesh.axis_names == ("data",) and mesh.devices.shape == (1,)
  mesh = sharding.make_mesh({"model": 1, "data": -1})
  assert mesh.axis_names == ("model", "data") and mesh.devices.shape == (1, 1)
  repl, data = sharding.shardings(mesh)
  assert repl == NamedSharding(mesh, P()) and data == NamedSharding(mesh, P("data"))


@pytest.mark.parametrize("shape,message", [
    ({"data": -1, "model": -1}, r"config.mesh_shape \{'data': -1, 'model': -1\}: at most one "
                                r"axis may be -1"),
    ({"data": 2}, r"config.mesh_shape \{'data': 2\} does not cover the 1 devices with a 'data' "
                  r"axis"),
    ({"model": -1}, r"config.mesh_shape \{'model': -1\} does not cover the 1 devices with a "
                    r"'data' axis"),
])
def test_bad_mesh_shapes_are_named(shape, message):
  with pytest.raises(ValueError, match=f"^{message}$"):
    sharding.make_mesh(shape)


def test_global_batch_on_one_device():
  mesh = sharding.make_mesh({"data": -1})
  local = {"image": np.arange(4 * 2 * 3, dtype=np.uint8).reshape(4, 2, 3),
           "weight": np.ones((4, 17), np.float32)}
  batch = sharding.global_batch(local, mesh)
  assert batch.keys() == local.keys()
  for k, v in local.items():
    assert batch[k].shape == v.shape and batch[k].dtype == v.dtype
    assert batch[k].sharding == NamedSharding(mesh, P("data"))
    np.testing.assert_array_equal(np.asarray(batch[k]), v)


EIGHT_DEVICES = r"""
import json
import numpy as np
from mipnet_jax.train import sharding
out = {}
mesh = sharding.make_mesh({"data": -1, "model": 2})
out["names"], out["shape"] = list(mesh.axis_names), list(mesh.devices.shape)
out["data_only"] = list(sharding.make_mesh({"data": -1}).devices.shape)
try:
  sharding.make_mesh({"data": 3})
except ValueError as e:
  out["error"] = str(e)
flat = sharding.make_mesh({"data": -1})
batch = sharding.global_batch({"x": np.arange(16 * 3).reshape(16, 3)}, flat)["x"]
out["global"] = list(batch.shape)
out["rows"] = sorted([s.index[0].start, s.index[0].stop, len(s.data)]
                     for s in batch.addressable_shards)
out["values"] = bool((np.asarray(batch) == np.arange(16 * 3).reshape(16, 3)).all())
print(json.dumps(out))
"""


def test_eight_simulated_devices():
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8",
             JAX_PLATFORMS="cpu")
  proc = subprocess.run([sys.executable, "-c", EIGHT_DEVICES], env=env, capture_output=True,
                        text=True, timeout=120, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  out = json.loads(proc.stdout.strip().splitlines()[-1])
  assert out["names"] == ["data", "model"] and out["shape"] == [4, 2]
  assert out["data_only"] == [8]
  assert out["error"] == ("config.mesh_shape {'data': 3} does not cover the 8 devices with a "
                          "'data' axis")
  assert out["global"] == [16, 3] and out["values"]
  assert out["rows"] == [[i, i + 2, 2] for i in range(0, 16, 2)]   # 2 rows on each device
