"""SBL / MIPNet R-152 384x288 on COCO train2017 (supplementary Table 2; the OCHuman evals give Tables 7-8).

Baseline: `--config=configs/sbl_r152_coco_384x288.py:baseline` (N=1). MIPNet: default (N=2)."""

from mipnet_jax.experiments import experiment


def get_config(arg=None):
  return experiment("sbl_r152", "coco", (384, 288), arg)
