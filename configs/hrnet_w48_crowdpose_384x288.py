"""HRNet / MIPNet H-48 384x288 on CrowdPose train (supplementary Table 5).

Baseline: `--config=configs/hrnet_w48_crowdpose_384x288.py:baseline` (N=1). MIPNet: default (N=2)."""

from mipnet_jax.experiments import experiment


def get_config(arg=None):
  return experiment("hrnet_w48", "crowdpose", (384, 288), arg)
