"""Box and affine geometry of the top-down pipeline, as the HRNet reference defines it, and
the UDP alternative (unbiased data processing, Huang et al. CVPR 2020) that ViTPose uses.

Points are (x, y) in pixels, sizes (h, w). A box's crop is described by its ``center``
(x, y) and ``scale`` (sx, sy) in units of ``PIXEL_STD`` = 200 pixels. HRNet maps the box's
width of 200 * sx pixels onto the input's w pixels (``get_affine_transform``); UDP maps the
box's corners onto the first and last input pixels, 200 * sx onto w - 1 and 200 * sy onto
h - 1 (``get_warp_matrix``). ``crop_transform`` picks one; the same choice decides targets
and decoding (core/codec.py), so encoding and decoding share one geometry.
"""

from __future__ import annotations

import math

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


def get_warp_matrix(theta_deg: float, size_input, size_dst, size_target) -> np.ndarray:
  """UDP's warp (mmpose's ``get_warp_matrix``): a [2, 3] float32 matrix rotating by
  ``theta_deg`` about the centre ``size_input / 2`` (x, y) and scaling the region
  ``size_target`` (w, h) onto ``size_dst`` (w, h), each axis by its own factor.

  x' = s_x (cos t x - sin t y - cos t c_x + sin t c_y + T_w / 2) and
  y' = s_y (sin t x + cos t y - sin t c_x - cos t c_y + T_h / 2), s = size_dst / size_target,
  c = size_input / 2: the rotation turns image points by +t (HRNet's turns them by -t).
  Evaluated with the reference's numpy scalar types, then stored in float32.
  """
  t = np.deg2rad(theta_deg)
  cos, sin = math.cos(t), math.sin(t)
  sx = size_dst[0] / size_target[0]
  sy = size_dst[1] / size_target[1]
  m = np.zeros((2, 3), np.float32)
  m[0] = [cos * sx, -sin * sx,
          sx * (-0.5 * size_input[0] * cos + 0.5 * size_input[1] * sin + 0.5 * size_target[0])]
  m[1] = [sin * sy, cos * sy,
          sy * (-0.5 * size_input[0] * sin - 0.5 * size_input[1] * cos + 0.5 * size_target[1])]
  return m


def udp_crop_transform(center, scale, rotation_deg: float,
                       input_hw: tuple[int, int]) -> np.ndarray:
  """UDP's image -> input crop matrix [2, 3] float32, as mmpose's ``TopDownAffine(use_udp=
  True)`` builds it: ``get_warp_matrix(r, 2 c, (w - 1, h - 1), 200 s)``. At rotation 0 the
  box's corners c -+ 100 s land on input pixels (0, 0) and (w - 1, h - 1)."""
  center = np.asarray(center, np.float32)
  scale = np.asarray(scale, np.float32)
  size_dst = np.array([input_hw[1], input_hw[0]], np.float64) - 1.0
  return get_warp_matrix(rotation_deg, center * 2.0, size_dst, scale * PIXEL_STD)


def crop_transform(center, scale, rotation_deg: float, input_hw: tuple[int, int],
                   udp: bool = False) -> np.ndarray:
  """The image -> input crop matrix [2, 3] of a box: HRNet's ``get_affine_transform``
  (float64) or, with ``udp``, ``udp_crop_transform`` (float32)."""
  if udp:
    return udp_crop_transform(center, scale, rotation_deg, input_hw)
  return get_affine_transform(center, scale, rotation_deg, input_hw)


def affine_points(points: np.ndarray, trans: np.ndarray) -> np.ndarray:
  """Applies a [2, 3] affine to points [..., 2] (x, y) in the matrix's precision.

  A float64 matrix (HRNet's) gives float64 points, as the reference's float64 joint arrays
  (which matters for target rounding). A float32 matrix (UDP's) gives float32 points computed
  as mmpose's ``warp_affine_joints``: [x, y, 1] . [a, b, c] in one float32 product.
  """
  if trans.dtype == np.float32:
    pts = np.asarray(points, np.float32)
    flat = pts.reshape(-1, 2)
    homogeneous = np.concatenate([flat, np.ones_like(flat[:, :1])], axis=1)
    return np.dot(homogeneous, trans.T).reshape(pts.shape)
  pts = np.asarray(points, np.float64)
  return pts @ trans[:, :2].T + trans[:, 2]
