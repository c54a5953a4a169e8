"""Is a lowered function portable to accelerators? The custom calls of a StableHLO module.

A function lowered for GPU or TPU (``jax.export.export(..., platforms=("cuda", "tpu"))``, which
runs on a CPU-only machine) must not carry host callbacks (``jax.debug.callback``,
``pure_callback``: a round trip to Python per step) or a custom call that only one backend
implements (LAPACK, oneDNN, a CPU kernel). ``check_portable`` names the offending ops.
"""

from __future__ import annotations

import re

# Custom calls every backend implements: sharding annotations of jit / shard_map, and the
# shape checks jax.export adds to a function with symbolic dimensions.
PORTABLE_TARGETS = frozenset({"Sharding", "SPMDFullToShardShape", "SPMDShardToFullShape",
                              "shape_assertion"})
_TARGET = re.compile(r'stablehlo\.custom_call\s*@([\w.$-]+)|call_target_name\s*=\s*"([^"]+)"')
_HOST = ("callback", "host")


def custom_call_targets(mlir_text: str) -> list[str]:
  """The call targets of every ``stablehlo.custom_call`` in a module's text, in order."""
  return [a or b for a, b in _TARGET.findall(mlir_text)]


def check_portable(mlir_text: str, what: str) -> None:
  """A ValueError naming ``what`` and every custom call outside PORTABLE_TARGETS (host
  callbacks marked as such); nothing when the module is portable."""
  bad = sorted(set(custom_call_targets(mlir_text)) - PORTABLE_TARGETS)
  if bad:
    named = [f"{t} (host callback)" if any(h in t.lower() for h in _HOST) else t for t in bad]
    raise ValueError(f"{what}: not portable to accelerators: custom call "
                     f"{', '.join(named)}")
