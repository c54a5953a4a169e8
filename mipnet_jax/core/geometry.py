"""Box and affine geometry of the top-down pipeline, as the HRNet reference defines it.

Points are (x, y) in pixels, sizes (h, w). A box's crop is described by its ``center``
(x, y) and ``scale`` (sx, sy) in units of ``PIXEL_STD`` = 200 pixels. The same
``affine_transform`` maps image -> input crop (augmentation, targets) and heatmap -> image
(decoding, with ``inverse=True``), so encoding and decoding share one geometry.
"""

from __future__ import annotations

import numpy as np

PIXEL_STD = 200.0
BOX_PADDING = 1.25


def box_to_center_scale(box_xywh, input_hw: tuple[int, int],
                        padding: float = BOX_PADDING) -> tuple[np.ndarray, np.ndarray]:
  """A box [x, y, w, h] -> (center [2], scale [2]) as HRNet's ``_xywh2cs``.

  The box is widened or heightened to the input aspect ratio w/h, then padded by
  ``padding`` (1.25 for GT and detection boxes alike).
  """
  x, y, w, h = (float(v) for v in box_xywh)
  center = np.array([x + w * 0.5, y + h * 0.5], np.float32)
  aspect = input_hw[1] / input_hw[0]
  if w > aspect * h:
    h = w / aspect
  elif w < aspect * h:
    w = h * aspect
  scale = np.array([w / PIXEL_STD, h / PIXEL_STD], np.float32) * padding
  return center, scale


def _rotate(point: np.ndarray, rot_rad: float) -> np.ndarray:
  sn, cs = np.sin(rot_rad), np.cos(rot_rad)
  return np.array([point[0] * cs - point[1] * sn, point[0] * sn + point[1] * cs], np.float32)


def _third_point(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  d = a - b
  return b + np.array([-d[1], d[0]], np.float32)


def _solve_affine(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
  """The 2x3 matrix mapping three src points onto three dst points (cv2.getAffineTransform,
  solved in float64 from float32 points as OpenCV does)."""
  a = np.concatenate([src.astype(np.float64), np.ones((3, 1))], axis=1)   # [3, 3]
  return np.linalg.solve(a, dst.astype(np.float64)).T                     # [2, 3]


def get_affine_transform(center, scale, rotation_deg: float, output_hw: tuple[int, int],
                         inverse: bool = False) -> np.ndarray:
  """The reference's ``get_affine_transform``: a [2, 3] float64 matrix taking the crop of
  (center, scale) rotated by ``rotation_deg`` onto an output of size ``output_hw`` (h, w);
  ``inverse=True`` gives the map from output pixels back to the image."""
  scale = np.asarray(scale, np.float32) * PIXEL_STD
  out_h, out_w = output_hw
  src_dir = _rotate(np.array([0.0, scale[0] * -0.5], np.float32), np.pi * rotation_deg / 180)
  dst_dir = np.array([0.0, out_w * -0.5], np.float32)
  src = np.zeros((3, 2), np.float32)
  dst = np.zeros((3, 2), np.float32)
  src[0] = np.asarray(center, np.float32)
  src[1] = src[0] + src_dir
  dst[0] = [out_w * 0.5, out_h * 0.5]
  dst[1] = dst[0] + dst_dir
  src[2] = _third_point(src[0], src[1])
  dst[2] = _third_point(dst[0], dst[1])
  return _solve_affine(dst, src) if inverse else _solve_affine(src, dst)


def affine_points(points: np.ndarray, trans: np.ndarray) -> np.ndarray:
  """Applies a [2, 3] affine to points [..., 2] (x, y); returns [..., 2] float64 (the
  reference's joint arrays are float64, which matters for target rounding)."""
  pts = np.asarray(points, np.float64)
  return pts @ trans[:, :2].T + trans[:, 2]
