"""Heatmap codec: Gaussian targets (encode) and argmax + quarter-offset decoding, exactly as
the HRNet reference (``generate_target``, ``get_max_preds``, ``get_final_preds``).

Both directions use the same geometry: input pixels -> heatmap pixels by the stride
input/heatmap, and heatmap pixels -> image pixels by the inverse affine of the box's
(center, scale) (data/geometry.py). Numpy on the host.
"""

from __future__ import annotations

import numpy as np

from mipnet_jax.data.geometry import affine_points, get_affine_transform


def heatmap_windows(joints_xy: np.ndarray, visible: np.ndarray, input_hw: tuple[int, int],
                    heatmap_hw: tuple[int, int], sigma: float) -> tuple[np.ndarray, np.ndarray]:
  """Where each joint's Gaussian goes, as the reference's ``generate_target`` rounds it.

  Args:
    joints_xy: [..., K, 2] joint positions in input-crop pixels (x, y).
    visible: [..., K] visibility (> 0 means labelled).
    input_hw / heatmap_hw: (h, w) of the network input and of its heatmaps.
    sigma: Gaussian sigma in heatmap pixels (2 at 256x192, 3 at 384x288).
  Returns:
    windows [..., K, 4] int32 (x0, y0, x1, y1): the Gaussian window's pixels x0 <= x < x1,
    y0 <= y < y1 before clipping to the map, with x0 = int(mu - 3 sigma), x1 = int(mu +
    3 sigma + 1), mu = int(joint / stride + 0.5) and int() truncating toward zero as Python's
    (so x1 - x0 is one short of the window size near the border when 3 sigma is fractional);
    target_weight [..., K] float32: the 0/1 visibility, 0 when the window of size
    int(6 sigma + 1) lies entirely off the map.
  """
  h, w = heatmap_hw
  stride = np.array([input_hw[1] / w, input_hw[0] / h])                # (x, y), float64
  mu = np.trunc(np.asarray(joints_xy, np.float64) / stride + 0.5)
  radius = sigma * 3
  ul = np.trunc(mu - radius)
  br = np.trunc(mu + radius + 1)
  off = (ul[..., 0] >= w) | (ul[..., 1] >= h) | (br[..., 0] < 0) | (br[..., 1] < 0)
  weight = ((np.asarray(visible) > 0) & ~off).astype(np.float32)
  return np.concatenate([ul, br], axis=-1).astype(np.int32), weight


def render_heatmaps(windows, weight, heatmap_hw: tuple[int, int], sigma: float, xp=np):
  """Gaussian targets: windows [..., K, 4], weight [..., K] -> [..., h, w, K] float32.

  Pixel (x, y) of a window holds g[y - y0, x - x0] of the reference's Gaussian patch
  g[i, j] = exp(-((j - c)^2 + (i - c)^2) / (2 sigma^2)), c = int(6 sigma + 1) // 2, clipped to
  the map, for joints of weight > 0.5; everything else is 0. ``xp`` is numpy (host) or jax.numpy
  (device: the pipeline ships windows, not maps); numpy reproduces the reference's float32
  values bit for bit.
  """
  h, w = heatmap_hw
  size = int(2 * sigma * 3 + 1)
  x = xp.arange(w, dtype=xp.int32)
  y = xp.arange(h, dtype=xp.int32)
  in_x = (x >= windows[..., 0:1]) & (x < windows[..., 2:3])            # [..., K, w]
  in_y = (y >= windows[..., 1:2]) & (y < windows[..., 3:4])            # [..., K, h]
  ox = xp.where(in_x, x - windows[..., 0:1] - size // 2, 10 ** 4).astype(xp.float32)
  oy = xp.where(in_y, y - windows[..., 1:2] - size // 2, 10 ** 4).astype(xp.float32)
  d2 = oy[..., :, None] ** 2 + ox[..., None, :] ** 2                    # [..., K, h, w]
  inside = (d2 < 10 ** 8) & (weight[..., None, None] > 0.5)
  g = xp.where(inside, xp.exp(-d2 / xp.float32(2 * sigma ** 2)), 0.0).astype(xp.float32)
  return xp.moveaxis(g, -3, -1)


def encode_heatmaps(joints_xy: np.ndarray, visible: np.ndarray, input_hw: tuple[int, int],
                    heatmap_hw: tuple[int, int], sigma: float) -> tuple[np.ndarray, np.ndarray]:
  """Gaussian heatmap targets: joints [..., K, 2], visible [..., K] -> (heatmaps
  [..., h, w, K], target_weight [..., K]); ``heatmap_windows`` then ``render_heatmaps``."""
  windows, weight = heatmap_windows(joints_xy, visible, input_hw, heatmap_hw, sigma)
  return render_heatmaps(windows, weight, heatmap_hw, sigma), weight


def decode_heatmaps(heatmaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Argmax with the reference's quarter-pixel offset.

  Args:
    heatmaps: [..., h, w, K].
  Returns:
    coords [..., K, 2] (x, y) in heatmap pixels and maxvals [..., K]. A joint whose maximum
    is <= 0 gets coordinates (0, 0); a peak at least 2 pixels inside the map moves 0.25
    towards its larger neighbour along each axis.
  """
  hm = np.moveaxis(np.asarray(heatmaps, np.float32), -1, -3)          # [..., K, h, w]
  h, w = hm.shape[-2:]
  flat = hm.reshape(hm.shape[:-2] + (h * w,))
  idx = np.argmax(flat, axis=-1)
  maxvals = np.take_along_axis(flat, idx[..., None], axis=-1)[..., 0]
  coords = np.stack([idx % w, idx // w], axis=-1).astype(np.float32)
  coords *= (maxvals > 0)[..., None]
  px = np.floor(coords[..., 0] + 0.5).astype(np.int64)
  py = np.floor(coords[..., 1] + 0.5).astype(np.int64)
  inside = (px > 1) & (px < w - 1) & (py > 1) & (py < h - 1)
  cx, cy = np.clip(px, 1, w - 2), np.clip(py, 1, h - 2)

  def at(y, x):
    return np.take_along_axis(flat, (y * w + x)[..., None], axis=-1)[..., 0]

  dx = np.sign(at(cy, cx + 1) - at(cy, cx - 1))
  dy = np.sign(at(cy + 1, cx) - at(cy - 1, cx))
  coords += 0.25 * np.stack([dx, dy], axis=-1) * inside[..., None]
  return coords, maxvals


def heatmap_to_image(coords: np.ndarray, center, scale, heatmap_hw: tuple[int, int]) -> np.ndarray:
  """Heatmap-pixel coords [K, 2] of one box -> image pixels [K, 2] (``transform_preds``)."""
  trans = get_affine_transform(center, scale, 0.0, heatmap_hw, inverse=True)
  return affine_points(coords, trans)
