"""A synthetic crowd-pose dataset in COCO keypoint format, generated from a seed.

The embedded default dataset: articulated stick-and-blob people with the 17 COCO joints on
cluttered backgrounds (the people and scenes: data/synthetic_scene.py). Most images hold a
"pair": a back person B partly covered by a front person A, with box IoU 0.4-0.85 (A shifted
by 15-50% of B's width), so that each box holds most of the other person, as in OCHuman, and
the union of the two boxes (OCPose's shared box) holds both. A single-output net must pick one
of the two people in such a crop; MIPNet's instance 1 predicts the other one. (Version 3 had
IoU 0.55-0.95 and shifts up to 35%: boxes so close that the person a box belongs to could not
be told from the crop, and instance 1 mostly repeated instance 0.)

Layout under ``root``: ``annotations/person_keypoints_{train,val}.json`` (and ``*_pairs.json``,
the pair images only; ``*_shared.json``, the same pairs annotated OCPose-style: the pair's two
people only, both with the SAME relaxed box, the union of their boxes, and the 12 limb joints),
``annotations/person_detections_{train,val}[_pairs].json`` (boxes of
a simulated detector, data/simulated_detector.py), ``images/{train,val}/000000000001.jpg`` and
``MANIFEST.json`` (the parameters and counts).
Points are (x, y), sizes (h, w). Left limbs (the person's left, the image's right: everyone
faces the camera) are a lighter shade of the person's colour, right limbs a darker one.
A joint outside the image has v=0 (stored as 0, 0, 0), one under a person drawn in front
v=1, otherwise v=2. Each image has its own generator ``default_rng([seed, split, index])``,
so the output is the same byte for byte whatever the number of worker processes.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import multiprocessing
import os
import re

import cv2
import numpy as np

from mipnet_jax.data import simulated_detector
from mipnet_jax.data.coco_format import count_multi_instance, load_person_records
from mipnet_jax.core.meta import COCO, JOINT_SETS
from mipnet_jax.data.synthetic_scene import annotate, draw_figure, make_background, make_scene

VERSION = 4
SPLITS = ("train", "val")
SKELETON = ((16, 14), (14, 12), (17, 15), (15, 13), (12, 13), (6, 12), (7, 13), (6, 7),
            (6, 8), (7, 9), (8, 10), (9, 11), (2, 3), (1, 2), (1, 3), (2, 4), (3, 5), (4, 6),
            (5, 7))   # COCO's, 1-based
_FILE_RE = re.compile(r"^\d{12}\.jpg$")


def render(seed: int, split_index: int, index: int, image_hw: tuple[int, int]
           ) -> tuple[np.ndarray, str, list[dict]]:
  """Image ``index`` of a split: (BGR uint8 [H, W, 3], scene kind, annotations)."""
  rng = np.random.default_rng([seed, split_index, index])
  img = make_background(rng, image_hw)
  kind, scene = make_scene(rng, image_hw)
  for fig in scene:
    draw_figure(img, fig)
  noise = rng.standard_normal(img.shape, np.float32) * rng.uniform(2., 8.)
  img = np.clip(img + noise, 0, 255).astype(np.uint8)
  return img, kind, annotate(scene)


def _build_image(job: tuple) -> tuple[str, list[dict]]:
  """Worker: renders one image and writes its JPEG; returns (scene kind, annotations)."""
  seed, split_index, index, image_hw, path = job
  cv2.setNumThreads(1)
  img, kind, anns = render(seed, split_index, index, image_hw)
  if not cv2.imwrite(path, img, [cv2.IMWRITE_JPEG_QUALITY, 90]):
    raise OSError(f"{path}: cannot write the image")
  return kind, anns


def categories() -> list[dict]:
  """The COCO person category with its 17 keypoints and skeleton."""
  return [dict(supercategory="person", id=1, name="person",
               keypoints=list(COCO.keypoint_names), skeleton=[list(s) for s in SKELETON])]


def shared_box_annotations(images: list[dict], annotations: list[dict]
                           ) -> tuple[list[dict], list[dict], list[dict]]:
  """OCPose-style annotations of the pair images: (images, annotations, categories).

  Per pair image, its last two people (the pair; an extra person drawn first is left out),
  both given the union of their two boxes as ``bbox`` (``area`` its w x h) and only the 12
  limb joints (``JOINT_SETS['limbs']``, COCO order) with ``num_keypoints`` recounted.
  """
  limbs = JOINT_SETS["limbs"]
  ids = [COCO.keypoint_names.index(n) for n in limbs]
  by_image: dict[int, list[dict]] = {}
  for ann in annotations:
    by_image.setdefault(ann["image_id"], []).append(ann)
  pair_images = [img for img in images if img["scene"] == "pair"]
  shared = []
  for img in pair_images:
    pair = by_image[img["id"]][-2:]
    boxes = np.array([a["bbox"] for a in pair], np.float64)
    lo, hi = boxes[:, :2].min(0), (boxes[:, :2] + boxes[:, 2:]).max(0)
    union = [int(lo[0]), int(lo[1]), int(hi[0] - lo[0]), int(hi[1] - lo[1])]
    for ann in pair:
      kpts = np.asarray(ann["keypoints"], np.float64).reshape(-1, 3)[ids]
      shared.append(dict(ann, bbox=union, area=union[2] * union[3],
                         keypoints=[float(k) if c < 2 else int(k) for row in kpts
                                    for c, k in enumerate(row)],
                         num_keypoints=int((kpts[:, 2] > 0).sum())))
  names = [(COCO.keypoint_names[a - 1], COCO.keypoint_names[b - 1]) for a, b in SKELETON]
  skeleton = [[limbs.index(a) + 1, limbs.index(b) + 1] for a, b in names
              if a in limbs and b in limbs]
  categories = [dict(supercategory="person", id=1, name="person", keypoints=list(limbs),
                     skeleton=skeleton)]
  return pair_images, shared, categories


def _write_json(path: str, data: dict) -> None:
  tmp = f"{path}.tmp{os.getpid()}"
  with open(tmp, "w") as f:
    json.dump(data, f, separators=(",", ":"))
  os.replace(tmp, path)


def write_split(root: str, split: str, seed: int, num_images: int,
                image_hw: tuple[int, int], pool=None) -> str:
  """Renders one split's JPEGs and writes its annotation file; returns the file's path."""
  split_index = SPLITS.index(split)
  image_dir = os.path.join(root, "images", split)
  os.makedirs(image_dir, exist_ok=True)
  names = [f"{i + 1:012d}.jpg" for i in range(num_images)]
  for stale in set(filter(_FILE_RE.match, os.listdir(image_dir))) - set(names):
    os.remove(os.path.join(image_dir, stale))
  jobs = [(seed, split_index, i, tuple(image_hw), os.path.join(image_dir, n))
          for i, n in enumerate(names)]
  results = pool.map(_build_image, jobs, chunksize=16) if pool else map(_build_image, jobs)
  images, annotations = [], []
  for i, (kind, anns) in enumerate(results):
    images.append(dict(id=i + 1, file_name=names[i], height=image_hw[0], width=image_hw[1],
                       scene=kind))
    for ann in anns:
      annotations.append(dict(id=len(annotations) + 1, image_id=i + 1, **ann))
  path = os.path.join(root, "annotations", f"person_keypoints_{split}.json")
  os.makedirs(os.path.dirname(path), exist_ok=True)
  info = dict(description=f"mipnet_jax synthetic crowd v{VERSION}, seed {seed}",
              version=str(VERSION))
  _write_json(path, dict(info=info, licenses=[], images=images, annotations=annotations,
                         categories=categories()))
  # The crowded subset: images whose scene is an occluding pair (the boxes holding two
  # people, where a single-instance network fails).
  pair_ids = {img["id"] for img in images if img["scene"] == "pair"}
  _write_json(path.replace(".json", "_pairs.json"), dict(
      info=info, licenses=[], images=[img for img in images if img["id"] in pair_ids],
      annotations=[a for a in annotations if a["image_id"] in pair_ids],
      categories=categories()))
  shared_images, shared, shared_categories = shared_box_annotations(images, annotations)
  _write_json(path.replace(".json", "_shared.json"), dict(
      info=info, licenses=[], images=shared_images, annotations=shared,
      categories=shared_categories))
  # Boxes of a simulated detector (confidence falls with occlusion), for the detection
  # protocol and the confidence sweep.
  det_path = os.path.join(root, "annotations", f"person_detections_{split}.json")
  simulated_detector.write_detections(
      dict(images=images, annotations=annotations), [seed, split_index, 0x5D], det_path,
      {det_path.replace(".json", "_pairs.json"): pair_ids})
  return path


def split_summary(root: str, split: str, input_hw: tuple[int, int] = (256, 192)) -> dict:
  """Counts of a written split, through the repo's reader: images, boxes, multi-instance
  boxes (the padded crop holds >= 4 labelled joints of another person), pair images, skips."""
  ann_path = os.path.join(root, "annotations", f"person_keypoints_{split}.json")
  records, report = load_person_records(ann_path, COCO, os.path.join(root, "images", split),
                                        input_hw)
  with open(ann_path) as f:
    pairs = sum(img["scene"] == "pair" for img in json.load(f)["images"])
  return dict(images=report.num_images, boxes=len(records),
              multi_instance=count_multi_instance(records), pair_images=pairs,
              skipped=dict(report.skipped))


def manifest_params(seed: int, num_train: int, num_val: int,
                    image_hw: tuple[int, int]) -> dict:
  """What a folder's MANIFEST.json must hold (besides counts) to match a request."""
  return dict(generator="mipnet_jax.data.synthetic", version=VERSION, seed=int(seed),
              num_train=int(num_train), num_val=int(num_val), image_hw=[int(v) for v in image_hw])


def generate(root: str, seed: int = 0, num_train: int = 1500, num_val: int = 200,
             image_hw: tuple[int, int] = (256, 256), workers: int = 2) -> dict:
  """Writes the dataset under ``root`` (module docstring) and returns the manifest: the
  parameters and, per split, ``split_summary`` counts. ``workers`` > 1 renders in "spawn"
  processes (safe next to JAX's threads; the calling script needs a ``__main__`` guard)."""
  manifest_path = os.path.join(root, "MANIFEST.json")
  if os.path.exists(manifest_path):
    os.remove(manifest_path)           # a half-written folder never matches a request
  os.makedirs(root, exist_ok=True)
  counts = dict(train=num_train, val=num_val)
  pool = None
  if workers > 1:
    pool = concurrent.futures.ProcessPoolExecutor(
        workers, mp_context=multiprocessing.get_context("spawn"))
  try:
    for split in SPLITS:
      write_split(root, split, seed, counts[split], image_hw, pool)
  finally:
    if pool:
      pool.shutdown()
  manifest = manifest_params(seed, num_train, num_val, image_hw)
  manifest["counts"] = {split: split_summary(root, split) for split in SPLITS}
  _write_json(manifest_path, manifest)
  return manifest


def ensure(root: str, seed: int = 0, num_train: int = 1500, num_val: int = 200,
           image_hw: tuple[int, int] = (256, 256), workers: int = 2) -> dict:
  """``generate`` unless ``root/MANIFEST.json`` already records these parameters (only the
  manifest is checked, not the files); returns the manifest."""
  try:
    with open(os.path.join(root, "MANIFEST.json")) as f:
      manifest = json.load(f)
  except (FileNotFoundError, json.JSONDecodeError):
    manifest = {}
  wanted = manifest_params(seed, num_train, num_val, image_hw)
  if all(manifest.get(k) == v for k, v in wanted.items()):
    return manifest
  return generate(root, seed, num_train, num_val, image_hw, workers)


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--root", required=True, help="output folder")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--num_train", type=int, default=1500)
  parser.add_argument("--num_val", type=int, default=200)
  parser.add_argument("--image_hw", type=int, nargs=2, default=(256, 256), metavar=("H", "W"))
  parser.add_argument("--workers", type=int, default=2)
  args = parser.parse_args(argv)
  manifest = generate(args.root, args.seed, args.num_train, args.num_val,
                      tuple(args.image_hw), args.workers)
  print(json.dumps(manifest, indent=1))


if __name__ == "__main__":
  main()
