"""Evaluation boxes: ground-truth person boxes (as annotated, or tight around the labelled
joints) or a COCO-format detection file.

A detection file is a JSON list of ``{"image_id", "category_id", "bbox": [x, y, w, h],
"score"}`` (HRNet's ``COCO_val2017_detections_AP_H_56_person.json`` and the like). As in the
reference reader (``_load_coco_person_detection_results``), non-person entries and boxes
scoring below ``min_score`` are skipped (counted), detection boxes are not clipped, and every
box becomes a crop with the same ``box_to_center_scale`` as training. Ground-truth boxes
score 1.

Tight boxes (``eval.boxes=gt_tight``, supplementary Table 12's "tight fitting" boxes made
from the keypoint annotations): the extent of a person's labelled (v > 0) joints, grown by
``TIGHT_PAD`` (10%) of its width and of its height on each side, each side then at least
``TIGHT_MIN_SIDE`` (8) pixels around its centre (one labelled joint gives an 8 x 8 box), then
clipped to the image ([0, W - 1] x [0, H - 1]). A person without labelled joints has no
record (the reader skips and counts it). The crop then adds the usual 1.25 padding and
aspect-ratio fix, as for any box.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from mipnet_jax.data.coco_format import (PERSON_CATEGORY, AnnotationError, LoadReport,
                                         PersonRecord, image_table, read_json)
from mipnet_jax.core.geometry import box_to_center_scale

DETECTION_FIELDS = ("image_id", "category_id", "bbox", "score")
TIGHT_PAD = 0.1          # of the joints' extent, on each side
TIGHT_MIN_SIDE = 8.0     # pixels


@dataclasses.dataclass(frozen=True)
class BoxRecord:
  """One box to run the network on.

  Attributes:
    image_id: COCO image id. image_path: its file. image_hw: (h, w) of the image.
    box: [4] (x, y, w, h). center [2] / scale [2]: its crop. score: box confidence.
    source_id: the annotation id (ground truth) or the index in the detection file.
  """

  image_id: int
  image_path: str
  image_hw: tuple[int, int]
  box: np.ndarray
  center: np.ndarray
  scale: np.ndarray
  score: float
  source_id: int


def gt_boxes(records: list[PersonRecord]) -> list[BoxRecord]:
  """The ground-truth boxes of person records (score 1), in record order."""
  return [BoxRecord(r.image_id, r.image_path, r.image_hw, r.box, r.center, r.scale, 1.0,
                    r.ann_id) for r in records]


def tight_box(keypoints: np.ndarray, image_hw: tuple[int, int]) -> np.ndarray:
  """[K, 3] (x, y, v) with at least one v > 0 -> [4] float32 (x, y, w, h): the labelled
  joints' box, padded and clipped as the module docstring says."""
  xy = keypoints[keypoints[:, 2] > 0, :2].astype(np.float64)
  lo, hi = xy.min(axis=0), xy.max(axis=0)
  size = hi - lo
  lo, hi = lo - TIGHT_PAD * size, hi + TIGHT_PAD * size
  grow = np.maximum(TIGHT_MIN_SIDE - (hi - lo), 0.0) / 2
  lo, hi = lo - grow, hi + grow
  lo = np.maximum(lo, 0.0)
  hi = np.minimum(hi, [image_hw[1] - 1.0, image_hw[0] - 1.0])
  return np.array([lo[0], lo[1], hi[0] - lo[0], hi[1] - lo[1]], np.float32)


def tight_boxes(records: list[PersonRecord], input_hw: tuple[int, int]) -> list[BoxRecord]:
  """Ground-truth boxes made tight around each record's labelled joints (score 1)."""
  out = []
  for r in records:
    box = tight_box(r.keypoints, r.image_hw)
    center, scale = box_to_center_scale(box, input_hw)
    out.append(BoxRecord(r.image_id, r.image_path, r.image_hw, box, center, scale, 1.0,
                         r.ann_id))
  return out


UNKNOWN_IMAGE = "is not an image of the annotation file (a detection file of another split?)"


def _check_detection(det, index: int, path: str, images, unknown: str = UNKNOWN_IMAGE) -> None:
  where = f"{path}: detection {index}"
  if not isinstance(det, dict):
    raise AnnotationError(f"{where}: expected an object with fields {DETECTION_FIELDS}")
  for field in DETECTION_FIELDS:
    if field not in det:
      raise AnnotationError(f"{where}: field '{field}' missing")
  if det["image_id"] not in images:
    raise AnnotationError(f"{where}: field 'image_id' {det['image_id']!r} {unknown}")
  box = det["bbox"]
  if not (isinstance(box, list) and len(box) == 4
          and all(isinstance(v, (int, float)) for v in box)):
    raise AnnotationError(f"{where}: field 'bbox' must hold 4 numbers, got {box!r}")
  if not isinstance(det["score"], (int, float)):
    raise AnnotationError(f"{where}: field 'score' must be a number, got {det['score']!r}")
  if not np.all(np.isfinite(box + [det["score"]])):
    raise AnnotationError(f"{where}: field 'bbox' or 'score' holds NaN or infinite values")


def read_detections(det_path: str, image_ids, min_score: float = 0.0,
                    unknown: str = UNKNOWN_IMAGE) -> tuple[list[tuple[int, dict]], LoadReport]:
  """The usable person detections of a detection file whose entries all name an image of
  ``image_ids`` (any container of ids; else AnnotationError ending in ``unknown``).

  Returns (index in the file, detection) pairs in file order and a report whose skips count
  non-person entries, boxes below ``min_score`` and boxes with non-positive width or height.
  """
  dets = read_json(det_path)
  if not isinstance(dets, list):
    raise AnnotationError(f"{det_path}: a detection file is a JSON list of "
                          f"{{{', '.join(DETECTION_FIELDS)}}} objects, got a "
                          f"{type(dets).__name__}")
  report = LoadReport(det_path)
  kept = []
  for index, det in enumerate(dets):
    _check_detection(det, index, det_path, image_ids, unknown)
    if det["category_id"] != PERSON_CATEGORY:
      report.skipped["not a person"] += 1
    elif det["score"] < min_score:
      report.skipped[f"score below {min_score:g}"] += 1
    elif det["bbox"][2] <= 0 or det["bbox"][3] <= 0:
      report.skipped["box without area"] += 1
    else:
      kept.append((index, det))
  report.num_records = len(kept)
  report.num_images = len({det["image_id"] for _, det in kept})
  return kept, report


def load_detections(det_path: str, ann_path: str, image_dir: str, input_hw: tuple[int, int],
                    min_score: float = 0.0) -> tuple[list[BoxRecord], LoadReport]:
  """Reads a detection file for the images of the annotation file ``ann_path``.

  Returns the boxes (file order) and the report of ``read_detections``.
  """
  data = read_json(ann_path)
  images = image_table(data.get("images", []) if isinstance(data, dict) else [], ann_path)
  kept, report = read_detections(det_path, images, min_score)
  boxes = []
  for index, det in kept:
    img = images[det["image_id"]]
    box = np.asarray(det["bbox"], np.float32)
    center, scale = box_to_center_scale(box, input_hw)
    boxes.append(BoxRecord(det["image_id"], os.path.join(image_dir, img["file_name"]),
                           (img["height"], img["width"]), box, center, scale,
                           float(det["score"]), index))
  return boxes, report
