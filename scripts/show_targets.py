"""Draws the multi-instance training targets of person boxes: the input crop with each
instance's joints (lambda = 0 red, 1 blue, ...) and, beside it, one heatmap overlay per
instance. No augmentation unless --augment.

  python scripts/show_targets.py --dataset ochuman \
      --annotations ../shared/data/ochuman/test_ochuman.json --images ../shared/data/ochuman \
      --ann_id 2 --out /tmp/targets.png

Prints, per instance, the crop-pixel joints and which annotation they came from.
"""

from __future__ import annotations

import argparse

import cv2
import numpy as np

from mipnet_jax.core import codec, meta as meta_lib
from mipnet_jax.data import coco_format, transforms
from mipnet_jax.serve import draw


def render_sample(sample: dict, meta: meta_lib.DatasetMeta, heatmap_hw: tuple[int, int],
                  sigma: float) -> np.ndarray:
  """One row: crop with all instances, then a heatmap overlay per instance; uint8 RGB."""
  crop = sample["image"]
  panels = [crop.copy()]
  maps = codec.render_heatmaps(sample["target_windows"], sample["target_weight"], heatmap_hw,
                               sigma)
  for lam in range(len(maps)):
    color = draw.instance_color(lam)
    draw.draw_pose(panels[0], sample["joints"][lam], meta, color, dashed=lam > 0)
    panels.append(draw.heatmap_overlay(crop, maps[lam], color))
  return np.concatenate(panels, axis=1)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--dataset", default="coco", choices=sorted(meta_lib.DATASETS))
  parser.add_argument("--annotations", required=True)
  parser.add_argument("--images", required=True, help="folder of the annotation's images")
  parser.add_argument("--ann_id", type=int, action="append",
                      help="annotation id(s) to draw (default: every box)")
  parser.add_argument("--num_instances", type=int, default=2)
  parser.add_argument("--input_hw", type=int, nargs=2, default=(256, 192))
  parser.add_argument("--sigma", type=float, default=2.0)
  parser.add_argument("--augment", action="store_true")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--out", default="targets.png")
  args = parser.parse_args()

  meta = meta_lib.get_meta(args.dataset)
  input_hw = tuple(args.input_hw)
  heatmap_hw = (input_hw[0] // 4, input_hw[1] // 4)
  records, report = coco_format.load_person_records(args.annotations, meta, args.images,
                                                    input_hw)
  print(report)
  chosen = [r for r in records if not args.ann_id or r.ann_id in args.ann_id]
  if not chosen:
    raise SystemExit(f"no person box with ann_id in {args.ann_id} in {args.annotations}")
  aug = (0.35, 45.0, 0.3, True) if args.augment else (0.0, 0.0, 0.0, False)
  make = transforms.TrainSample(meta, args.num_instances,
                                transforms.CropSpec(input_hw), heatmap_hw, args.sigma, *aug)
  rows = []
  for i, record in enumerate(chosen):
    sample = make.random_map(record, np.random.default_rng([args.seed, i]))
    for lam, joints in enumerate(sample["joints"]):
      shown = joints[joints[:, 2] > 0, :2].round(1)
      print(f"ann {record.ann_id} lambda={lam}: {len(shown)} visible joints, "
            f"first {shown[:3].tolist()}")
    rows.append(render_sample(sample, meta, heatmap_hw, args.sigma))
  cv2.imwrite(args.out, cv2.cvtColor(np.concatenate(rows, axis=0), cv2.COLOR_RGB2BGR))
  print(f"wrote {args.out} ({len(rows)} boxes)")


if __name__ == "__main__":
  main()
