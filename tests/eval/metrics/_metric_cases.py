"""Shared cases of the metric tests: the sample files, hand-built COCO-format people and
results, and the OKS / AP formulas that the hand-built cases are checked against."""

from __future__ import annotations

import numpy as np

COCO_FILE = "coco/test_coco.json"
COCO_PREDS = "coco/xtcocoapi_examples/example_coco_preds.json"
CROWD_VAL = "crowdpose/xtcocoapi_examples/example_crowdpose_val.json"
CROWD_PREDS = "crowdpose/xtcocoapi_examples/example_crowdpose_preds.json"
OFFICIAL_VAL = "crowdpose/official_api/crowdpose_val.json"
THRESHOLDS = np.linspace(.5, .95, 10)


def person(ann_id: int, image_id: int, box: list[float], keypoints: np.ndarray, **extra) -> dict:
  return {"id": ann_id, "image_id": image_id, "category_id": 1, "iscrowd": 0, "bbox": box,
          "keypoints": keypoints.ravel().tolist(), "num_keypoints": len(keypoints),
          **extra}


def pose(num_keypoints: int, x0: float, y0: float) -> np.ndarray:
  """[K, 3] keypoints spread over a 100 x 200 box at (x0, y0), all v = 2."""
  k = np.arange(num_keypoints)
  return np.stack([x0 + 10 + 5 * k, y0 + 10 + 11 * k, np.full(num_keypoints, 2.)], 1)


def result(image_id: int, keypoints: np.ndarray, score: float) -> dict:
  return {"image_id": image_id, "category_id": 1, "keypoints": keypoints.ravel().tolist(),
          "score": score}


def hand_oks(shift: float, sigmas, area: float) -> float:
  """OKS of a prediction with every keypoint moved by ``shift`` pixels (the OKS formula)."""
  sigmas = np.asarray(sigmas)
  return float(np.mean(np.exp(-shift ** 2 / (2 * sigmas) ** 2 / area / 2)))


def expected_ap(oks: float, recall_if_missed: float) -> float:
  """AP when every prediction is right except one, ranked last, of OKS ``oks``.

  At a threshold <= oks all are true positives (precision 1 at every recall threshold);
  above it, precision is 1 up to recall ``recall_if_missed`` and 0 beyond (101 points).
  """
  matched = int(np.sum(THRESHOLDS <= oks))
  points = np.sum(np.linspace(0, 1, 101) <= recall_if_missed + 1e-12)
  return (matched + (10 - matched) * points / 101) / 10


def coco_scene() -> dict:
  images = [{"id": 7, "file_name": "a.jpg", "height": 480, "width": 640}]
  anns = [person(1, 7, [0., 0., 100., 200.], pose(17, 0, 0), area=10000.),
          person(2, 7, [300., 0., 100., 200.], pose(17, 300, 0), area=10000.)]
  return {"images": images, "annotations": anns,
          "categories": [{"id": 1, "name": "person"}]}
