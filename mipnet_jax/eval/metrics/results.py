"""Keypoint results (predictions) in the COCO results format: loading and validation.

One result is ``{"image_id": int, "category_id": int, "keypoints": [3K numbers], "score":
number}``; ``keypoints`` holds (x, y, confidence) per keypoint in image pixels. Extra fields
(``center``, ``scale``, ...) are allowed and dropped. Every problem is a one-line
``ResultsError`` naming the source (the results file, or "results" when given in memory), the
entry index, its image id and the field.
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Collection, Iterable

import numpy as np


class ResultsError(ValueError):
  """Malformed predictions; the message names the source, the entry and the field."""


def load_results_file(path: str) -> list:
  """Parses a COCO results JSON file (a list of result objects); not validated yet."""
  try:
    with open(path) as f:
      data = json.load(f)
  except OSError as e:
    raise ResultsError(f"{path}: cannot read the results file ({e.strerror})") from None
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise ResultsError(f"{path}: not valid JSON ({e})") from None
  if not isinstance(data, list):
    raise ResultsError(f"{path}: expected a JSON list of result objects, got a "
                       f"{type(data).__name__}")
  return data


def _is_number(value) -> bool:
  return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _is_int(value) -> bool:
  return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _field(entry, index: int, field: str, source: str):
  if not isinstance(entry, dict):
    raise ResultsError(f"{source}: entry {index}: expected a result object, got a "
                       f"{type(entry).__name__}")
  if field not in entry:
    raise ResultsError(f"{source}: entry {index}: field '{field}' is missing")
  return entry[field]


def _checked_keypoints(value, num_keypoints: int, where: str) -> list[float]:
  """The ``keypoints`` field as 3K Python floats."""
  expected = 3 * num_keypoints
  if not isinstance(value, (list, tuple)):
    raise ResultsError(f"{where}: field 'keypoints' must be a list of {expected} numbers, got "
                       f"a {type(value).__name__}")
  if len(value) != expected:
    raise ResultsError(f"{where}: field 'keypoints' has {len(value)} values, expected "
                       f"{expected} (3 x {num_keypoints} keypoints of the dataset)")
  if not all(_is_number(v) and math.isfinite(v) for v in value):
    raise ResultsError(f"{where}: field 'keypoints' must hold finite numbers only")
  return [float(v) for v in value]


def validate_results(results: Iterable, *, image_ids: Collection[int],
                     category_ids: Collection[int], num_keypoints: int, source: str,
                     annotations_name: str) -> list[dict]:
  """Checks every entry and returns clean copies with the four result fields.

  Args:
    results: result objects (dicts) as loaded from a COCO results file.
    image_ids / category_ids: the ids of the ground-truth annotation file.
    num_keypoints: K of the dataset; ``keypoints`` must hold 3K numbers.
    source: what to call the results in messages (the file path, or "results").
    annotations_name: what to call the annotations in messages.
  Returns:
    one ``{"image_id", "category_id", "keypoints" (3K floats), "score" (float)}`` per entry.
  """
  clean = []
  for i, entry in enumerate(results):
    image_id = _field(entry, i, "image_id", source)
    if not _is_int(image_id) or image_id not in image_ids:
      raise ResultsError(f"{source}: entry {i}: field 'image_id' {image_id!r} is not an image "
                         f"of {annotations_name}")
    where = f"{source}: entry {i} (image_id {image_id})"
    category_id = _field(entry, i, "category_id", source)
    if not _is_int(category_id) or category_id not in category_ids:
      raise ResultsError(f"{where}: field 'category_id' {category_id!r} is not a category of "
                         f"{annotations_name}")
    keypoints = _checked_keypoints(_field(entry, i, "keypoints", source), num_keypoints, where)
    score = _field(entry, i, "score", source)
    if not (_is_number(score) and math.isfinite(score)):
      raise ResultsError(f"{where}: field 'score' must be a finite number, got {score!r}")
    clean.append({"image_id": int(image_id), "category_id": int(category_id),
                  "keypoints": keypoints, "score": float(score)})
  return clean


def results_from_arrays(image_ids: np.ndarray, keypoints: np.ndarray, scores: np.ndarray,
                        category_id: int = 1) -> list[dict]:
  """Arrays of P predictions -> P COCO result objects (not validated yet).

  Args:
    image_ids: [P] int image ids.
    keypoints: [P, K, 3] float (x, y, confidence) in image pixels.
    scores: [P] float instance scores.
    category_id: the category of every prediction (1, person).
  """
  image_ids = np.asarray(image_ids)
  keypoints = np.asarray(keypoints, np.float64)
  scores = np.asarray(scores, np.float64)
  p = len(image_ids)
  if image_ids.ndim != 1 or keypoints.ndim != 3 or keypoints.shape[0] != p \
      or keypoints.shape[2] != 3 or scores.shape != (p,):
    raise ResultsError(f"results: arrays must be image_ids [P], keypoints [P, K, 3], scores [P]; "
                       f"got {image_ids.shape}, {keypoints.shape}, {scores.shape}")
  return [{"image_id": int(i), "category_id": int(category_id),
           "keypoints": k.reshape(-1).tolist(), "score": float(s)}
          for i, k, s in zip(image_ids.tolist(), keypoints, scores)]
