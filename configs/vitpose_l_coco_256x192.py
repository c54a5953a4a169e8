"""ViTPose / MIPNet-ViT-L 256x192 on COCO train2017
(the official ViTPose_large_coco_256x192 recipe).

Baseline: `--config=configs/vitpose_l_coco_256x192.py:baseline` (N=1, the official ViTPose-L).
MIPNet-ViT: default (N=2; MIMBs after 1/2 and 3/4 of the blocks and on
the backbone's output)."""

from mipnet_jax.experiments import experiment


def get_config(arg=None):
  return experiment("vitpose_l", "coco", (256, 192), arg)
