"""Writes the worked example of a custom keypoint dataset (datasets/custom/README.md).

    python scripts/make_custom_example.py --root data/custom --num_train 300 --num_val 60

A COCO-format keypoint dataset with its own skeleton of 5 joints, as a user's own file would
be: head, neck, pelvis, left_hand, right_hand (one flip pair), drawn by the synthetic crowd
generator (data/synthetic.py, same seeds) and converted from its COCO joints: head = nose,
neck = the shoulders' midpoint, pelvis = the hips' midpoint (labelled when both are; v the
smaller), hands = wrists. Layout under ROOT: ``annotations/person_keypoints_{train,val}.json``
and ``images/{train,val}/000000000001.jpg``; configs/hrnet_w32_custom_256x192.py reads it.
"""

from __future__ import annotations

import argparse
import json
import os

import cv2
import numpy as np

from mipnet_jax.core.meta import COCO
from mipnet_jax.data import synthetic

JOINTS = ("head", "neck", "pelvis", "left_hand", "right_hand")
SKELETON = ((1, 2), (2, 3), (2, 4), (2, 5))     # 1-based, as COCO files write it
# Each joint: the COCO joints it is made of (one: copied; two: their midpoint).
SOURCES = (("nose",), ("left_shoulder", "right_shoulder"), ("left_hip", "right_hip"),
           ("left_wrist",), ("right_wrist",))


def convert_keypoints(coco_keypoints: list) -> list:
  """51 COCO keypoint values -> 15 values of JOINTS (x, y, v; 0, 0, 0 when unlabelled)."""
  kpts = np.asarray(coco_keypoints, np.float64).reshape(-1, 3)
  out = []
  for names in SOURCES:
    rows = kpts[[COCO.keypoint_names.index(n) for n in names]]
    v = int(rows[:, 2].min())
    x, y = rows[:, :2].mean(axis=0) if v > 0 else (0.0, 0.0)
    out += [float(x), float(y), v]
  return out


def write_split(root: str, split: str, num_images: int, seed: int = 0,
                image_hw: tuple[int, int] = (256, 256)) -> str:
  """Renders one split and writes its annotation file; returns the file's path."""
  image_dir = os.path.join(root, "images", split)
  os.makedirs(image_dir, exist_ok=True)
  images, annotations = [], []
  for i in range(num_images):
    img, _, anns = synthetic.render(seed, synthetic.SPLITS.index(split), i, image_hw)
    name = f"{i + 1:012d}.jpg"
    if not cv2.imwrite(os.path.join(image_dir, name), img, [cv2.IMWRITE_JPEG_QUALITY, 90]):
      raise OSError(f"{os.path.join(image_dir, name)}: cannot write the image")
    images.append(dict(id=i + 1, file_name=name, height=image_hw[0], width=image_hw[1]))
    for ann in anns:
      kpts = convert_keypoints(ann["keypoints"])
      annotations.append(dict(ann, id=len(annotations) + 1, image_id=i + 1, keypoints=kpts,
                              num_keypoints=sum(v > 0 for v in kpts[2::3])))
  categories = [dict(supercategory="person", id=1, name="person", keypoints=list(JOINTS),
                     skeleton=[list(e) for e in SKELETON])]
  path = os.path.join(root, "annotations", f"person_keypoints_{split}.json")
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w") as f:
    json.dump(dict(images=images, annotations=annotations, categories=categories), f)
  return path


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--root", default="data/custom", help="output folder")
  parser.add_argument("--num_train", type=int, default=300)
  parser.add_argument("--num_val", type=int, default=60)
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args(argv)
  for split, n in (("train", args.num_train), ("val", args.num_val)):
    print(write_split(args.root, split, n, args.seed))


if __name__ == "__main__":
  main()
