"""MIPNet's multi-instance targets, as the authors' ``JointsLambda*Dataset`` builds them.

For a box, instance 0 is the person the box belongs to; instances 1..N-1 are the other people
of the image, nearest box centre first (coco_format.py sorts them). One affine (the primary's
crop, after augmentation) maps every instance. Joints that land outside the input crop lose
their visibility, and a slot whose person has 3 or fewer visible joints in the crop (or that
has no person) gets a copy of the primary's joints, so it learns to repeat the primary.
"""

from __future__ import annotations

import numpy as np

from mipnet_jax.core.geometry import affine_points

MIN_VISIBLE_IN_CROP = 4   # a slot needs more than 3 visible joints in the crop


def transform_joints(keypoints: np.ndarray, trans: np.ndarray,
                     input_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
  """Keypoints [..., K, 3] (x, y, v) in the image -> (xy [..., K, 2], vis [..., K]) in the
  input crop. vis = min(1, v); a joint outside [0, w] x [0, h] gets xy = 0 and vis = 0."""
  xy = affine_points(keypoints[..., :2], trans)
  vis = np.minimum(1.0, keypoints[..., 2]).astype(np.float32)
  h, w = input_hw
  outside = (xy[..., 0] > w) | (xy[..., 1] > h) | (xy[..., 0] < 0) | (xy[..., 1] < 0)
  xy[outside] = 0.0
  vis[outside] = 0.0
  return xy, vis


def select_instances(keypoints: np.ndarray, others: np.ndarray, trans: np.ndarray,
                     num_instances: int, input_hw: tuple[int, int]
                     ) -> tuple[np.ndarray, np.ndarray]:
  """The joints of the N instances of one box, in input-crop pixels.

  Args:
    keypoints: [K, 3] the primary person's keypoints in the image.
    others: [M, K, 3] the image's other people, nearest box centre first (M may be 0).
    trans: [2, 3] the image -> input-crop affine of this sample.
    num_instances: N.
    input_hw: (h, w) of the input crop.
  Returns:
    xy [N, K, 2] and vis [N, K]; slot 0 is the primary.
  """
  p_xy, p_vis = transform_joints(keypoints, trans, input_hw)
  xy, vis = [p_xy], [p_vis]
  for slot in range(1, num_instances):
    if slot - 1 < len(others):
      o_xy, o_vis = transform_joints(others[slot - 1], trans, input_hw)
      if o_vis.sum() >= MIN_VISIBLE_IN_CROP:
        xy.append(o_xy)
        vis.append(o_vis)
        continue
    xy.append(p_xy.copy())
    vis.append(p_vis.copy())
  return np.stack(xy), np.stack(vis)
