"""SBL / MIPNet R-50 256x192 on COCO train2017 (supplementary Table 2; the OCHuman evals give Tables 7-8).

Baseline: `--config=configs/sbl_r50_coco_256x192.py:baseline` (N=1). MIPNet: default (N=2)."""

from mipnet_jax.experiments import experiment


def get_config(arg=None):
  return experiment("sbl_r50", "coco", (256, 192), arg)
