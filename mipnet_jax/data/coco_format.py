"""COCO-format keypoint annotations (COCO, CrowdPose, OCHuman) -> one record per person box.

Kept, as in the reference readers: category ``person``, ``iscrowd`` 0, at least one labelled
keypoint, and a non-empty box after clipping to the image (x1 = max(0, x),
x2 = min(W - 1, x1 + max(0, w - 1)), likewise y). Each record lists the image's other kept
people ordered by squared distance between box centres (the cleaned boxes' centres), which
MIPNet uses as instances 1..N-1. Everything else is either a counted skip (``LoadReport``)
or a one-line ``AnnotationError`` naming the file, the record and the field.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os

import numpy as np

from mipnet_jax.core.geometry import box_to_center_scale
from mipnet_jax.data.instances import MIN_VISIBLE_IN_CROP
from mipnet_jax.core.meta import DatasetMeta

PERSON_CATEGORY = 1


class AnnotationError(ValueError):
  """A malformed annotation file; the message names the file, record and field."""


@dataclasses.dataclass(frozen=True)
class PersonRecord:
  """One person box of one image.

  Attributes:
    image_id / ann_id: COCO ids. image_path: path of the image file.
    image_hw: (h, w) of the image.
    box: [4] cleaned (x, y, w, h). center [2] / scale [2]: its crop (box_to_center_scale).
    keypoints: [K, 3] (x, y, v), v in {0, 1, 2}.
    others: [M, K, 3] keypoints of the image's other people, nearest box centre first.
  """

  image_id: int
  ann_id: int
  image_path: str
  image_hw: tuple[int, int]
  box: np.ndarray
  center: np.ndarray
  scale: np.ndarray
  keypoints: np.ndarray
  others: np.ndarray


@dataclasses.dataclass
class LoadReport:
  """What a load kept and skipped, by reason."""

  path: str
  num_images: int = 0
  num_records: int = 0
  skipped: collections.Counter = dataclasses.field(default_factory=collections.Counter)

  def __str__(self) -> str:
    skips = ", ".join(f"{k}: {v}" for k, v in sorted(self.skipped.items())) or "none"
    return (f"{self.path}: {self.num_records} person boxes from {self.num_images} images; "
            f"skipped {skips}")


def _number_list(ann: dict, field: str, length: int, where: str) -> np.ndarray:
  value = ann.get(field)
  if not isinstance(value, list) or len(value) != length:
    got = f"{len(value)} values" if isinstance(value, list) else repr(type(value).__name__)
    raise AnnotationError(f"{where}: field '{field}' must hold {length} numbers, got {got}")
  arr = np.asarray(value, np.float64)
  if not np.all(np.isfinite(arr)):
    raise AnnotationError(f"{where}: field '{field}' holds NaN or infinite values")
  return arr


def _check_joint_count(ann: dict, meta: DatasetMeta, where: str) -> None:
  """A keypoint list of another length than the declared joints: one line with both counts."""
  value = ann.get("keypoints")
  if isinstance(value, list) and len(value) != 3 * meta.num_keypoints:
    got = f"{len(value) // 3} joints" if len(value) % 3 == 0 else f"{len(value)} values"
    raise AnnotationError(f"{where}: field 'keypoints' holds {got}, but {meta.name} declares "
                          f"{meta.num_keypoints} ({', '.join(meta.keypoint_names)})")


def clean_box(box: np.ndarray, image_hw: tuple[int, int]) -> np.ndarray | None:
  """The reference's box cleaning; None when nothing of the box is left."""
  x, y, w, h = box
  x1, y1 = max(0.0, x), max(0.0, y)
  x2 = min(image_hw[1] - 1.0, x1 + max(0.0, w - 1))
  y2 = min(image_hw[0] - 1.0, y1 + max(0.0, h - 1))
  if w * h <= 0 or x2 < x1 or y2 < y1:
    return None
  return np.array([x1, y1, x2 - x1, y2 - y1], np.float32)


def read_json(path: str):
  """Parses a JSON file; a missing or malformed file raises AnnotationError naming it."""
  try:
    with open(path) as f:
      return json.load(f)
  except FileNotFoundError:
    raise AnnotationError(f"{path}: file not found") from None
  except json.JSONDecodeError as e:
    raise AnnotationError(f"{path}: not valid JSON ({e})") from None


def check_coco_object(data, name: str, fields: tuple[str, ...]) -> dict:
  """``data`` if it is a COCO annotation object whose ``fields`` are lists; else
  AnnotationError naming ``name`` (the file) and the field."""
  if not isinstance(data, dict):
    raise AnnotationError(f"{name}: expected a COCO annotation object, got a "
                          f"{type(data).__name__}")
  for field in fields:
    if not isinstance(data.get(field), list):
      raise AnnotationError(f"{name}: top-level field '{field}' missing or not a list")
  return data


def image_table(images: list, ann_path: str) -> dict[int, dict]:
  """COCO ``images`` -> {image id: image dict}; each needs id, file_name, height, width."""
  table = {}
  for img in images:
    where = f"{ann_path}: image {img.get('id')!r}"
    for field in ("id", "file_name", "height", "width"):
      if field not in img:
        raise AnnotationError(f"{where}: field '{field}' missing")
    if not (isinstance(img["height"], int) and isinstance(img["width"], int)
            and img["height"] > 0 and img["width"] > 0):
      raise AnnotationError(f"{where}: fields 'height'/'width' must be positive integers")
    if img["id"] in table:
      raise AnnotationError(f"{where}: field 'id' repeats an earlier image")
    table[img["id"]] = img
  return table


def load_person_records(ann_path: str, meta: DatasetMeta, image_dir: str,
                        input_hw: tuple[int, int]) -> tuple[list[PersonRecord], LoadReport]:
  """Reads a COCO-format keypoint file into person records (see module docstring)."""
  data = check_coco_object(read_json(ann_path), ann_path, ("images", "annotations"))
  report = LoadReport(ann_path)
  images = image_table(data["images"], ann_path)
  people = collections.defaultdict(list)   # image_id -> [(ann_id, box, keypoints)]
  for ann in data["annotations"]:
    where = f"{ann_path}: annotation {ann.get('id')!r}"
    if ann.get("image_id") not in images:
      raise AnnotationError(f"{where}: field 'image_id' {ann.get('image_id')!r} names no image")
    if ann.get("category_id", PERSON_CATEGORY) != PERSON_CATEGORY:
      report.skipped["not a person"] += 1
      continue
    if ann.get("iscrowd", 0):
      report.skipped["crowd"] += 1
      continue
    _check_joint_count(ann, meta, where)
    kpts = _number_list(ann, "keypoints", 3 * meta.num_keypoints, where).reshape(-1, 3)
    box = _number_list(ann, "bbox", 4, where)
    img = images[ann["image_id"]]
    if kpts[:, 2].max() <= 0:
      report.skipped["no labelled keypoint"] += 1
      continue
    cleaned = clean_box(box, (img["height"], img["width"]))
    if cleaned is None:
      report.skipped["empty box after clipping"] += 1
      continue
    people[ann["image_id"]].append((ann["id"], cleaned, kpts.astype(np.float32)))

  records = []
  for image_id, img in images.items():
    persons = people.get(image_id, [])
    if not persons:
      report.skipped["image without usable people"] += 1
      continue
    report.num_images += 1
    centers = np.array([b[:2] + b[2:] / 2 for _, b, _ in persons])
    for i, (ann_id, box, kpts) in enumerate(persons):
      d2 = np.sum((centers - centers[i]) ** 2, axis=1)
      order = [j for j in np.argsort(d2, kind="stable") if j != i]
      others = np.stack([persons[j][2] for j in order]) if order else np.zeros(
          (0, meta.num_keypoints, 3), np.float32)
      center, scale = box_to_center_scale(box, input_hw)
      records.append(PersonRecord(
          image_id=image_id, ann_id=ann_id,
          image_path=os.path.join(image_dir, img["file_name"]),
          image_hw=(int(img["height"]), int(img["width"])), box=box, center=center,
          scale=scale, keypoints=kpts, others=others))
  report.num_records = len(records)
  return records, report


def count_multi_instance(records: list[PersonRecord],
                         min_joints: int = MIN_VISIBLE_IN_CROP) -> int:
  """Boxes whose padded crop holds ``min_joints`` or more labelled joints of another person
  (the paper's multi-instance statistic, the code's "> 3")."""
  count = 0
  for r in records:
    half = r.scale * 100.0          # half size of the padded crop, in pixels
    lo, hi = r.center - half, r.center + half
    for o in r.others:
      inside = (o[:, 2] > 0) & np.all((o[:, :2] >= lo) & (o[:, :2] <= hi), axis=1)
      if inside.sum() >= min_joints:
        count += 1
        break
  return count


