"""Drawing poses and heatmaps on images (uint8 numpy, cv2), for scripts, logs and notebooks."""

from __future__ import annotations

import cv2
import numpy as np

from mipnet_jax.core.meta import DatasetMeta

# One colour per instance (RGB): lambda = 0, 1, 2, 3, then repeating.
INSTANCE_COLORS = ((255, 64, 64), (64, 160, 255), (64, 220, 64), (255, 200, 0))


def instance_color(index: int) -> tuple[int, int, int]:
  return INSTANCE_COLORS[index % len(INSTANCE_COLORS)]


def draw_pose(canvas: np.ndarray, keypoints: np.ndarray, meta: DatasetMeta,
              color: tuple[int, int, int], radius: int = 3, min_score: float = 0.0,
              dashed: bool = False) -> np.ndarray:
  """Draws one pose in place and returns the canvas.

  Args:
    canvas: uint8 [H, W, 3] (RGB), modified in place.
    keypoints: [K, 3] (x, y, score or visibility); joints with score <= min_score are skipped.
    meta: supplies the skeleton.
    color: RGB. dashed: draw limbs as dotted lines (e.g. to mark secondary instances).
  """
  pts = np.asarray(keypoints, np.float64)
  ok = pts[:, 2] > min_score
  for a, b in meta.skeleton:
    if ok[a] and ok[b]:
      p, q = pts[a, :2], pts[b, :2]
      if dashed:
        for t in np.linspace(0.0, 1.0, 9)[::2]:
          s, e = p + (q - p) * t, p + (q - p) * min(1.0, t + 0.125)
          cv2.line(canvas, _pt(s), _pt(e), color, 2, cv2.LINE_AA)
      else:
        cv2.line(canvas, _pt(p), _pt(q), color, 2, cv2.LINE_AA)
  for k in np.flatnonzero(ok):
    cv2.circle(canvas, _pt(pts[k, :2]), radius, color, -1, cv2.LINE_AA)
  return canvas


def _pt(xy) -> tuple[int, int]:
  return int(round(float(xy[0]))), int(round(float(xy[1])))


def heatmap_overlay(crop: np.ndarray, heatmaps: np.ndarray,
                    color: tuple[int, int, int]) -> np.ndarray:
  """crop uint8 [h, w, 3] blended with max-over-joints of heatmaps [hh, hw, K] upsampled to
  the crop size, tinted ``color``; returns a new uint8 [h, w, 3]."""
  peak = np.clip(np.asarray(heatmaps, np.float32).max(axis=-1), 0.0, 1.0)
  peak = cv2.resize(peak, (crop.shape[1], crop.shape[0]), interpolation=cv2.INTER_LINEAR)
  tint = np.asarray(color, np.float32)[None, None, :]
  out = crop.astype(np.float32) * (1 - 0.6 * peak[..., None]) + tint * 0.6 * peak[..., None]
  return np.clip(out, 0, 255).astype(np.uint8)
