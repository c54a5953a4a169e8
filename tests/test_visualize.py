"""Pose drawing: joints and limbs land where the keypoints are, low scores are skipped."""

import numpy as np

from mipnet_jax.serve import draw as visualize
from mipnet_jax.core import meta


def test_draw_pose_marks_joints_and_limbs():
  canvas = np.zeros((100, 100, 3), np.uint8)
  kp = np.zeros((17, 3))
  kp[5] = [20, 30, 0.9]       # left shoulder
  kp[7] = [20, 70, 0.9]       # left elbow: limb (5, 7) is in the COCO skeleton
  kp[9] = [80, 80, 0.1]       # left wrist, below min_score: not drawn, nor limb (7, 9)
  visualize.draw_pose(canvas, kp, meta.COCO, (255, 0, 0), min_score=0.2)
  assert tuple(canvas[30, 20]) == (255, 0, 0) and tuple(canvas[50, 20]) == (255, 0, 0)
  assert canvas[80, 80].sum() == 0 and canvas[75, 50].sum() == 0
  dashed = visualize.draw_pose(np.zeros_like(canvas), kp, meta.COCO, (0, 0, 255), dashed=True,
                               min_score=0.2)
  column = dashed[34:66, 20, 2] > 0           # the limb between the joints has gaps
  assert column.any() and not column.all()


def test_heatmap_overlay_tints_the_peak():
  crop = np.full((8, 8, 3), 100, np.uint8)
  maps = np.zeros((2, 2, 3), np.float32)
  maps[0, 0, 1] = 1.0
  out = visualize.heatmap_overlay(crop, maps, (255, 0, 0))
  assert out.shape == crop.shape and out[0, 0, 0] > 150 and out[0, 0, 2] < 100
  assert tuple(out[7, 7]) == (100, 100, 100)
