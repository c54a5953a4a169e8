"""The simulated detector of the synthetic set: hand-made cases and its statistics."""

from __future__ import annotations

import numpy as np
import pytest

from mipnet_jax.data import simulated_detector as sd


def test_visible_fraction_hand_computed():
  assert sd.visible_fraction([1, 1, 2, 2, 2, 1, 3, 3, 1, 0, 0, 0]) == pytest.approx(1 / 3)
  assert sd.visible_fraction([0, 0, 0] * 17) == 0.


def _dataset(num_images: int = 400):
  """Two people per 200x100 image: one fully visible, one with 4 of 8 joints hidden."""
  images = [dict(id=i + 1, width=200, height=100) for i in range(num_images)]
  anns = []
  for img in images:
    anns.append(dict(image_id=img["id"], bbox=[10, 10, 50, 80], keypoints=[20, 20, 2] * 8))
    anns.append(dict(image_id=img["id"], bbox=[30, 10, 50, 80],
                     keypoints=[20, 20, 2] * 4 + [20, 20, 1] * 4))
  return dict(images=images, annotations=anns)


def test_scores_fall_with_occlusion_and_boxes_stay_near():
  data = _dataset()
  dets = sd.detect(data, [0, 1])
  assert dets == sd.detect(data, [0, 1]) and dets != sd.detect(data, [1, 1])
  near = lambda d, x: abs(d["bbox"][0] - x) < 10 and abs(d["bbox"][2] - 50) < 15
  visible = [d["score"] for d in dets if near(d, 10) and d["score"] > .3]
  hidden = [d["score"] for d in dets if near(d, 30) and d["score"] > .3]
  # Expected 0.15 + 0.8 f: 0.95 (clipped to .99) and 0.55; noise sd 0.08.
  assert np.mean(visible) == pytest.approx(.93, abs=.03)
  assert np.mean(hidden) == pytest.approx(.55, abs=.03)
  people = len(data["annotations"])
  true_boxes = [d for d in dets if near(d, 10) or near(d, 30)]
  assert 1 - len(true_boxes) / people == pytest.approx(sd.MISS, abs=.03)
  for d in dets:
    x, y, w, h = d["bbox"]
    assert 0 <= x and 0 <= y and x + w <= 200 and y + h <= 100 and w >= 2 and h >= 2
    assert .01 <= d["score"] <= .99
