"""HRNet / MIPNet H-48 256x192 on CrowdPose train (supplementary Table 5).

Baseline: `--config=configs/hrnet_w48_crowdpose_256x192.py:baseline` (N=1). MIPNet: default (N=2)."""

from mipnet_jax.experiments import experiment


def get_config(arg=None):
  return experiment("hrnet_w48", "crowdpose", (256, 192), arg)
