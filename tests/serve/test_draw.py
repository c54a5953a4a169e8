"""Pose drawing: joints and limbs land where the keypoints are, low scores are skipped, one
colour per instance, heatmap overlays."""

import numpy as np

from mipnet_jax.core import meta
from mipnet_jax.serve import draw


def test_draw_pose_marks_joints_and_limbs():
  canvas = np.zeros((100, 100, 3), np.uint8)
  kp = np.zeros((17, 3))
  kp[5] = [20, 30, 0.9]       # left shoulder
  kp[7] = [20, 70, 0.9]       # left elbow: limb (5, 7) is in the COCO skeleton
  kp[9] = [80, 80, 0.1]       # left wrist, below min_score: not drawn, nor limb (7, 9)
  draw.draw_pose(canvas, kp, meta.COCO, (255, 0, 0), min_score=0.2)
  assert tuple(canvas[30, 20]) == (255, 0, 0) and tuple(canvas[50, 20]) == (255, 0, 0)
  assert canvas[80, 80].sum() == 0 and canvas[75, 50].sum() == 0
  dashed = draw.draw_pose(np.zeros_like(canvas), kp, meta.COCO, (0, 0, 255), dashed=True,
                          min_score=0.2)
  column = dashed[34:66, 20, 2] > 0           # the limb between the joints has gaps
  assert column.any() and not column.all()


def test_heatmap_overlay_tints_the_peak():
  crop = np.full((8, 8, 3), 100, np.uint8)
  maps = np.zeros((2, 2, 3), np.float32)
  maps[0, 0, 1] = 1.0
  out = draw.heatmap_overlay(crop, maps, (255, 0, 0))
  assert out.shape == crop.shape and out.dtype == np.uint8
  # At the peak (joint 1's maximum, upsampled from 2x2): 0.4 x crop + 0.6 x tint, i.e.
  # 40 + 153 = 193 red and 40 green / blue, truncated from float32's 39.99998.
  assert tuple(out[0, 0]) == (193, 39, 39)
  # Bilinear upsampling: the tint fades over the first 6 columns / rows, the rest is the crop.
  np.testing.assert_array_equal(out[0, :, 0], [193, 193, 181, 158, 134, 111, 100, 100])
  assert (out[6:] == 100).all() and (out[:, 6:] == 100).all()


def test_instance_colours_repeat_after_four():
  assert [draw.instance_color(i) for i in range(5)] == [
      (255, 64, 64), (64, 160, 255), (64, 220, 64), (255, 200, 0), (255, 64, 64)]
