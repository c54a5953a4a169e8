"""``config.model`` -> a flax module: the one place where a config section becomes a network
(the modules themselves take explicit keyword arguments only)."""

from __future__ import annotations

from typing import Any, Mapping

import jax.numpy as jnp

from mipnet_jax.models.hrnet import HRNet
from mipnet_jax.models.mimb import lambda_width
from mipnet_jax.models.simple_baseline import SimpleBaseline
from mipnet_jax.models.topdown import NUM_SLOTS, TopDownNet
from mipnet_jax.models.vit import ViTPose

ARCHITECTURES = {"hrnet": HRNet, "simple_baseline": SimpleBaseline, "vitpose": ViTPose}
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def _tuples(value: Any) -> Any:
  """Lists (what ml_collections / the command line give) as tuples, nested ones too: module
  fields must be hashable, e.g. HRNet's per-stage num_blocks ((4, 4), (4, 4, 4), ...)."""
  return tuple(_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


def build_model(model_cfg: Mapping[str, Any], num_instances: int) -> TopDownNet:
  """Builds the network of ``model_cfg`` for N = ``num_instances``.

  N = 1 is the plain baseline (no MIMB, same parameter names as the shared parts of the
  MIPNet variant); N >= 2 enables the MIMBs at ``mimb_slots`` with a lambda code of width
  ``lambda_width(N, lambda_code)``.
  """
  kwargs = {k: _tuples(v) for k, v in dict(model_cfg).items()}
  name = kwargs.pop("name")
  if name not in ARCHITECTURES:
    raise ValueError(f"config.model.name must be one of {sorted(ARCHITECTURES)}, got {name!r}")
  if not 1 <= num_instances <= 4:
    raise ValueError(f"num_instances (N) must be 1..4, got {num_instances}")
  dtype = kwargs.get("dtype", "float32")
  if dtype not in DTYPES:
    raise ValueError(f"config.model.dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
  kwargs["dtype"] = DTYPES[dtype]
  arch = ARCHITECTURES[name]
  slots = tuple(bool(s) for s in kwargs.get("mimb_slots", arch.mimb_slots))
  kwargs["mimb_slots"] = slots if num_instances > 1 else (False,) * NUM_SLOTS
  kwargs["lambda_dim"] = lambda_width(num_instances, kwargs.get("lambda_code", "one_hot"))
  return arch(**kwargs)
