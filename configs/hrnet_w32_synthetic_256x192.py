"""HRNet / MIPNet H-32 256x192 on the synthetic crowd set (generated on first use, no download).

CPU demo: `--config=configs/hrnet_w32_synthetic_256x192.py:quick` (tiny widths, 128x96).
Baseline: append `baseline` (N=1)."""

from mipnet_jax.experiments import experiment


def get_config(arg=None):
  return experiment("hrnet_w32", "synthetic", (256, 192), arg)
