"""The device mesh and where arrays live on it: the state replicated, the batch split over the
"data" axis (BatchNorm statistics and gradients are then global, via XLA's all-reduces).
Sharding rules for larger models (FSDP) would be added here without touching the loop."""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P


def make_mesh(mesh_shape: dict[str, int]) -> Mesh:
  """A device mesh over every (global) device; one axis may be -1 (the rest of the devices).
  The data axis is called "data"."""
  names = tuple(mesh_shape)
  sizes = list(mesh_shape.values())
  count = jax.device_count()
  if sizes.count(-1) > 1:
    raise ValueError(f"config.mesh_shape {mesh_shape}: at most one axis may be -1")
  known = int(np.prod([s for s in sizes if s != -1]))
  sizes = [count // known if s == -1 else s for s in sizes]
  if int(np.prod(sizes)) != count or "data" not in names:
    raise ValueError(f"config.mesh_shape {mesh_shape} does not cover the {count} devices with "
                     f"a 'data' axis")
  return Mesh(np.asarray(jax.devices()).reshape(sizes), names)


def shardings(mesh: Mesh) -> tuple[NamedSharding, NamedSharding]:
  """(state sharding: replicated, batch sharding: leading axis over "data")."""
  return NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))


def global_batch(local: dict, mesh: Mesh) -> dict:
  """This process's numpy batch -> global jax arrays sharded over "data" (every process
  passes its own rows; the global batch is their concatenation in process order)."""
  _, data = shardings(mesh)
  return {k: jax.make_array_from_process_local_data(data, np.asarray(v))
          for k, v in local.items()}
