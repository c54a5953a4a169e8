"""HRNet / MIPNet H-48 256x192 on COCO train2017 (supplementary Table 2; the OCHuman evals give Tables 7-8).

Baseline: `--config=configs/hrnet_w48_coco_256x192.py:baseline` (N=1). MIPNet: default (N=2)."""

from mipnet_jax.experiments import experiment


def get_config(arg=None):
  return experiment("hrnet_w48", "coco", (256, 192), arg)
