"""A simulated person detector for the synthetic crowd set.

Writes COCO-format detection boxes with confidences, so the detection protocol and the
confidence sweep (``--mode=sweep``, supplementary Figures 5-6) run on the synthetic set without
a real detector. For each ground-truth person:

  * the person is missed with probability ``MISS``; otherwise
  * its box sides move by N(0, ``JITTER`` x box size);
  * its confidence is ``0.15 + 0.8 * f + N(0, 0.08)``, clipped to [0.01, 0.99], where f is the
    fraction of the person's labelled joints that are visible (v=2). Occluded people get low
    scores, as they do from a real detector. This is why a single-instance network loses them
    when low-confidence boxes are dropped, while MIPNet finds them again as λ=1 of the
    occluder's box.

Each image also gets Poisson(``FALSE_POSITIVES``) background boxes with confidence below 0.3.
The output depends only on the annotations and the seed.
"""

from __future__ import annotations

import json

import numpy as np

MISS = 0.05
JITTER = 0.05
FALSE_POSITIVES = 0.3


def visible_fraction(keypoints: list) -> float:
  """COCO keypoints [3K] -> the fraction of labelled joints (v > 0) with v = 2."""
  v = np.asarray(keypoints, dtype=np.float64).reshape(-1, 3)[:, 2]
  labelled = int((v > 0).sum())
  return float((v == 2).sum() / labelled) if labelled else 0.


def _jitter(rng: np.random.Generator, bbox: list, image_wh: np.ndarray) -> list[float]:
  """[x, y, w, h] -> the box with its sides moved, clipped to the image, at least 2 px."""
  x, y, w, h = (float(v) for v in bbox)
  x1, y1, x2, y2 = np.array([x, y, x + w, y + h]) + rng.normal(0., JITTER, 4) * [w, h, w, h]
  x1, x2 = np.clip(sorted((x1, x2)), 0., image_wh[0] - 1.)
  y1, y2 = np.clip(sorted((y1, y2)), 0., image_wh[1] - 1.)
  return [round(float(v), 2) for v in (x1, y1, max(x2 - x1, 2.), max(y2 - y1, 2.))]


def _false_positive(rng: np.random.Generator, image_wh: np.ndarray) -> list[float]:
  w, h = rng.uniform(.1, .4) * image_wh[0], rng.uniform(.2, .6) * image_wh[1]
  x, y = rng.uniform(0, image_wh[0] - w), rng.uniform(0, image_wh[1] - h)
  return [round(float(v), 2) for v in (x, y, w, h)]


def detect(dataset: dict, seed: int | list[int]) -> list[dict]:
  """COCO keypoint ``dataset`` (images, annotations) -> detections, in image id order:
  [{image_id, category_id: 1, bbox: [x, y, w, h], score}]."""
  rng = np.random.default_rng(seed)
  by_image: dict[int, list] = {}
  for ann in dataset["annotations"]:
    by_image.setdefault(ann["image_id"], []).append(ann)
  out = []
  for image in sorted(dataset["images"], key=lambda im: im["id"]):
    wh = np.array([image["width"], image["height"]], dtype=np.float64)
    for ann in by_image.get(image["id"], []):
      if rng.random() < MISS:
        continue
      score = .15 + .8 * visible_fraction(ann["keypoints"]) + rng.normal(0., .08)
      out.append(dict(image_id=image["id"], category_id=1, bbox=_jitter(rng, ann["bbox"], wh),
                      score=round(float(np.clip(score, .01, .99)), 4)))
    for _ in range(rng.poisson(FALSE_POSITIVES)):
      out.append(dict(image_id=image["id"], category_id=1, bbox=_false_positive(rng, wh),
                      score=round(float(rng.uniform(.01, .3)), 4)))
  return out


def write_detections(dataset: dict, seed: int | list[int], out_path: str,
                     subsets: dict[str, set[int]] | None = None) -> int:
  """Detects the people of ``dataset`` and writes them to ``out_path``, and the boxes of each
  image-id subset to ``subsets``' paths; returns the number of boxes."""
  boxes = detect(dataset, seed)
  for path, ids in [(out_path, None)] + list((subsets or {}).items()):
    with open(path, "w") as f:
      json.dump([b for b in boxes if ids is None or b["image_id"] in ids], f,
                separators=(",", ":"))
  return len(boxes)
