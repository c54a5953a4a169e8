"""serve/showcase.py: the shared-box example is picked by the rule it states (the judge's two
best poses nearest to two different people, else the first image) and drawn side by side."""

from __future__ import annotations

import json

import cv2
import numpy as np

from mipnet_jax.core.meta import COCO, JOINT_SETS, build_meta, joint_map
from mipnet_jax.serve import showcase
from mipnet_jax.serve.predictor import Pose

LIMBS = build_meta("shared", JOINT_SETS["limbs"])
JOINTS = joint_map(COCO, LIMBS)


def person(x0: float) -> np.ndarray:
  """[17, 3] COCO joints of a person standing at x0 (all labelled)."""
  k = np.zeros((17, 3))
  k[:, 0], k[:, 1], k[:, 2] = x0 + np.arange(17), 10 + 3 * np.arange(17), 1.0
  return k


class Stub:
  """A predictor returning fixed poses per image id (read from the image's pixel value)."""

  def __init__(self, poses_of):
    self.poses_of = poses_of

  def __call__(self, image, box):
    return [Pose(k, s, lam, box[0], 1.0) for k, s, lam in self.poses_of[int(image[0, 0, 0])]]

  def draw(self, image, poses, min_score=0.0):
    return image.copy()


def write_split(tmp_path):
  images, anns = [], []
  for i in (1, 2):
    cv2.imwrite(str(tmp_path / f"{i}.png"), np.full((40, 60, 3), i, np.uint8))
    images.append(dict(id=i, file_name=f"{i}.png", height=40, width=60))
    for x0 in (5, 30):
      anns.append(dict(id=len(anns) + 1, image_id=i, bbox=[2, 2, 50, 36],
                       keypoints=person(x0)[5:].ravel().tolist()))
  path = tmp_path / "shared.json"
  path.write_text(json.dumps(dict(images=images, annotations=anns)))
  return str(path)


def test_pick_takes_the_first_image_with_two_different_people(tmp_path):
  path = write_split(tmp_path)
  # Image 1: both MIPNet poses on the person at x0 = 5; image 2: one on each.
  mipnet = Stub({1: [(person(5), .9, 0), (person(6), .8, 1)],
                 2: [(person(5), .9, 0), (person(31), .8, 1)]})
  baseline = Stub({1: [(person(5), .9, 0)], 2: [(person(5), .9, 0)]})
  predictors = {"baseline": baseline, "mipnet": mipnet}
  example = showcase.pick_shared_box_example(path, str(tmp_path), predictors, JOINTS, "mipnet")
  assert (example.image_id, example.distinct) == (2, True)
  assert [len(example.poses[n]) for n in predictors] == [1, 2]
  np.testing.assert_array_equal(example.box, [[2, 2, 50, 36]])
  assert showcase.nearest_person(person(29), example.anns, JOINTS) == 1
  # No image qualifies: the first image.
  mipnet.poses_of[2] = mipnet.poses_of[1]
  example = showcase.pick_shared_box_example(path, str(tmp_path), predictors, JOINTS, "mipnet")
  assert (example.image_id, example.distinct) == (1, False)
  figure = showcase.side_by_side(example, predictors, {"baseline": "a", "mipnet": "b"}, zoom=2)
  assert figure.shape == (44 + 80, 2 * 120 + 8, 3) and figure.dtype == np.uint8
  assert tuple(figure[44 + 4, 4]) == (255, 220, 0)          # the dashed box starts at (4, 4)
