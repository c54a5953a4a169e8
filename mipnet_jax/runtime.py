"""Process-level XLA settings, applied before JAX initialises its backend."""

from __future__ import annotations

import os

# On this jaxlib, XLA:CPU hands most convolutions to YNNPACK fused with their neighbours;
# keeping each convolution in its own YNNPACK call is markedly faster for these networks
# (see scripts/bench_model.py and docs in README "Performance").
CPU_XLA_FLAGS = ("--xla_cpu_experimental_ynn_fusion_type=-individual_convolution",)


def configure_cpu_xla() -> None:
  """Adds CPU_XLA_FLAGS to XLA_FLAGS (unless set there already). Call before importing jax;
  the flags only affect the CPU backend, and MIPNET_NO_XLA_FLAGS=1 disables them."""
  if os.environ.get("MIPNET_NO_XLA_FLAGS") == "1":
    return
  flags = os.environ.get("XLA_FLAGS", "")
  for flag in CPU_XLA_FLAGS:
    if flag.split("=")[0] not in flags:
      flags = f"{flags} {flag}".strip()
  os.environ["XLA_FLAGS"] = flags
