"""One box, two people: the example that shows what MIPNet buys (the README's figure,
scripts/make_readme_figure.py, and the tour notebook's shared-box section).

``pick_shared_box_example`` runs each predictor on the shared box of every image of an
OCPose-style split (both people of an image annotated with the same box; the synthetic set's
``synthetic_val_shared``) in image-id order and returns the first image where the ``judge``
predictor's two best poses lie nearest to two different annotated people (else the first
image). ``side_by_side`` draws the predictors' poses on that image, one panel each.
"""

from __future__ import annotations

import dataclasses
import json
import os

import cv2
import numpy as np

from mipnet_jax.core.meta import JointMap
from mipnet_jax.data.image import read_image


@dataclasses.dataclass
class SharedBoxExample:
  """An image, its shared box [1, 4] (x, y, w, h), its annotations, each predictor's poses
  on the box, and whether the judge's two best poses are two different people."""

  image_id: int
  image: np.ndarray
  box: np.ndarray
  anns: list
  poses: dict
  distinct: bool


def nearest_person(keypoints: np.ndarray, anns: list[dict], joints: JointMap) -> int:
  """Index of the annotated person nearest to a pose [K, 3] of the model's joints: the mean
  distance over that person's labelled joints of the map."""
  xy = keypoints[list(joints.model_ids), :2]
  far = []
  for a in anns:
    gt = np.asarray(a["keypoints"], np.float32).reshape(-1, 3)[list(joints.data_ids)]
    seen = gt[:, 2] > 0
    far.append(np.linalg.norm(xy[seen] - gt[seen, :2], axis=1).mean() if seen.any() else np.inf)
  return int(np.argmin(far))


def pick_shared_box_example(ann_path: str, image_dir: str, predictors: dict, joints: JointMap,
                            judge: str) -> SharedBoxExample:
  """The module docstring's choice; ``predictors``: {name: Predictor}."""
  with open(ann_path) as f:
    data = json.load(f)
  people: dict[int, list] = {}
  for ann in data["annotations"]:
    people.setdefault(ann["image_id"], []).append(ann)
  first = None
  for im in sorted(data["images"], key=lambda im: im["id"]):
    anns = people.get(im["id"], [])
    if not anns:
      continue
    image = read_image(os.path.join(image_dir, im["file_name"]))
    box = np.array([anns[0]["bbox"]], np.float32)
    poses = {name: p(image, box) for name, p in predictors.items()}
    top = poses[judge][:2]
    distinct = len(top) == 2 and len({nearest_person(p.keypoints, anns, joints)
                                      for p in top}) == 2
    example = SharedBoxExample(im["id"], image, box, anns, poses, distinct)
    if distinct:
      return example
    first = first or example
  if first is None:
    raise ValueError(f"{ann_path}: no image with annotated people")
  return first


def side_by_side(example: SharedBoxExample, predictors: dict, titles: dict,
                 zoom: int = 2) -> np.ndarray:
  """RGB uint8: one panel per predictor (its poses, the shared box dashed yellow, a title
  line and the pose count), ``zoom`` times the image size, panels left to right."""
  panels = []
  x, y, w, h = (example.box[0] * zoom).astype(int)
  for name, predictor in predictors.items():
    poses = example.poses[name]
    canvas = predictor.draw(example.image, poses)
    canvas = cv2.resize(canvas, None, fx=zoom, fy=zoom, interpolation=cv2.INTER_NEAREST)
    for k in range(0, 2 * (w + h), 12):           # dashed rectangle, 6 px on, 6 px off
      cv2.line(canvas, *_dash(k, x, y, w, h), (255, 220, 0), 2)
    header = np.full((44, canvas.shape[1], 3), 255, np.uint8)
    cv2.putText(header, titles[name], (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1,
                cv2.LINE_AA)
    lam1 = sum(p.lam > 0 for p in poses)
    cv2.putText(header, f"{len(poses)} pose(s) from the one box ({lam1} with lambda >= 1)",
                (6, 36), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (60, 60, 60), 1, cv2.LINE_AA)
    panels.append(np.concatenate([header, canvas], 0))
    panels.append(np.full((panels[-1].shape[0], 8, 3), 255, np.uint8))
  return np.concatenate(panels[:-1], 1)


def _dash(k: int, x: int, y: int, w: int, h: int) -> tuple[tuple, tuple]:
  """The segment [k, k + 6] of the rectangle's perimeter: (start, end) points."""
  def at(s):
    s %= 2 * (w + h)
    if s < w:
      return (x + s, y)
    if s < w + h:
      return (x + w, y + s - w)
    if s < 2 * w + h:
      return (x + w - (s - w - h), y + h)
    return (x, y + h - (s - 2 * w - h))
  return at(k), at(k + 6)
