"""The raw layouts of COCO 2017 keypoints, CrowdPose and OCHuman, as data, and the checks a
split passes before it is prepared (data/tfds_pose.py): each expected file present (else a
one-line ``RawFilesError`` naming the path, what it is and where it comes from), each
annotation JSON readable by ``load_person_records`` (else its ``AnnotationError``), and every
image it lists present (else one error with the count and the first few missing paths).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os

from mipnet_jax.core.meta import get_meta
from mipnet_jax.data import coco_format

MAX_MISSING_LISTED = 5
# load_person_records needs an input size for the records' scale; only its checks matter here.
_CHECK_INPUT_HW = (256, 192)


class RawFilesError(FileNotFoundError):
  """An expected raw file or folder is missing; the message names it and its origin."""


@dataclasses.dataclass(frozen=True)
class RawFile:
  """One expected file or folder of the raw layout.

  Attributes:
    path: relative to the manual dir. what: what it is. source: the download it comes from.
  """

  path: str
  what: str
  source: str


@dataclasses.dataclass(frozen=True)
class SplitSpec:
  annotations: RawFile
  images: RawFile


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
  """A dataset as data: names, readme, keypoint meta and the raw files of each split."""

  key: str
  tfds_name: str
  class_name: str
  title: str
  meta: str
  homepage: str
  splits: tuple[tuple[str, SplitSpec], ...]

  @property
  def readme(self) -> str:
    return f"datasets/{self.tfds_name}/README.md"


def _coco_split(split: str) -> SplitSpec:
  return SplitSpec(
      RawFile(f"annotations/person_keypoints_{split}2017.json", "COCO keypoint annotations",
              "annotations_trainval2017.zip"),
      RawFile(f"{split}2017", f"COCO {split}2017 images", f"{split}2017.zip"))


def _crowdpose_split(split: str) -> SplitSpec:
  return SplitSpec(
      RawFile(f"json/crowdpose_{split}.json", f"CrowdPose {split} annotations",
              "the CrowdPose annotations download, github.com/Jeff-sjtu/CrowdPose"),
      RawFile("images", "CrowdPose images",
              "the CrowdPose images download, github.com/Jeff-sjtu/CrowdPose"))


def _ochuman_split(split: str) -> SplitSpec:
  return SplitSpec(
      RawFile(f"ochuman_coco_format_{split}_range_0.00_1.00.json",
              f"OCHuman COCO-format {split} annotations",
              "the OCHuman download, github.com/liruilong940607/OCHumanApi"),
      RawFile("images", "OCHuman images",
              "the OCHuman download, github.com/liruilong940607/OCHumanApi"))


SPECS = {
    "coco": DatasetSpec(
        "coco", "coco_keypoints", "CocoKeypoints", "COCO 2017 person keypoints", "coco",
        "https://cocodataset.org/#keypoints-2017",
        tuple((s, _coco_split(s)) for s in ("train", "val"))),
    "crowdpose": DatasetSpec(
        "crowdpose", "crowdpose", "Crowdpose", "CrowdPose", "crowdpose",
        "https://github.com/Jeff-sjtu/CrowdPose",
        tuple((s, _crowdpose_split(s)) for s in ("train", "val", "test"))),
    "ochuman": DatasetSpec(
        "ochuman", "ochuman", "Ochuman", "OCHuman (COCO-format val/test export)", "ochuman",
        "https://github.com/liruilong940607/OCHumanApi",
        tuple((s, _ochuman_split(s)) for s in ("val", "test"))),
}


@dataclasses.dataclass(frozen=True)
class ImageEntry:
  image_id: int
  file_name: str
  height: int
  width: int


@dataclasses.dataclass(frozen=True)
class SplitPlan:
  """A checked split: its raw annotation file and its images in ascending id."""

  split: str
  root: str
  annotations: str
  image_dir: str
  images: tuple[ImageEntry, ...]
  report: str
  annotations_sha256: str


def _expect_file(root: str, raw: RawFile) -> str:
  path = os.path.join(root, raw.path)
  if not os.path.isfile(path):
    raise RawFilesError(f"expected {raw.what} at {path} (from {raw.source})")
  return path


def _expect_dir(root: str, raw: RawFile) -> str:
  path = os.path.join(root, raw.path)
  if not os.path.isdir(path):
    raise RawFilesError(f"expected {raw.what} in {path}{os.sep} (from {raw.source})")
  return path


def _image_entries(ann_path: str) -> tuple[ImageEntry, ...]:
  """The annotation file's images in ascending id (the reader has checked the fields)."""
  with open(ann_path) as f:
    images = json.load(f)["images"]
  entries, seen = [], set()
  for img in images:
    if not isinstance(img["id"], int) or isinstance(img["id"], bool):
      raise coco_format.AnnotationError(
          f"{ann_path}: image {img['id']!r}: field 'id' must be an integer")
    if img["id"] in seen:
      raise coco_format.AnnotationError(f"{ann_path}: image id {img['id']} listed twice")
    seen.add(img["id"])
    entries.append(ImageEntry(img["id"], str(img["file_name"]), int(img["height"]),
                              int(img["width"])))
  return tuple(sorted(entries, key=lambda e: e.image_id))


def _check_images_present(images: tuple[ImageEntry, ...], image_dir: str, ann_path: str,
                          raw: RawFile) -> None:
  missing = [p for p in (os.path.join(image_dir, e.file_name) for e in images)
             if not os.path.isfile(p)]
  if missing:
    more = ", ..." if len(missing) > MAX_MISSING_LISTED else ""
    shown = ", ".join(missing[:MAX_MISSING_LISTED]) + more
    raise RawFilesError(f"{len(missing)} of {len(images)} images listed in {ann_path} are "
                        f"missing from {image_dir}{os.sep} (from {raw.source}): {shown}")


def plan_split(spec: DatasetSpec, split: str, root: str) -> SplitPlan:
  """Checks one split's raw files (see module docstring) and lists its images."""
  files = dict(spec.splits)[split]
  ann_path = _expect_file(root, files.annotations)
  image_dir = _expect_dir(root, files.images)
  _, report = coco_format.load_person_records(ann_path, get_meta(spec.meta), image_dir,
                                              _CHECK_INPUT_HW)
  images = _image_entries(ann_path)
  _check_images_present(images, image_dir, ann_path, files.images)
  return SplitPlan(split, root, ann_path, image_dir, images, str(report),
                   sha256_file(ann_path))


def sha256_file(path: str) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()
