"""Heatmap codec: Gaussian targets (encode) and argmax + quarter-offset decoding, exactly as
the HRNet reference (``generate_target``, ``get_max_preds``, ``get_final_preds``).

Both directions use the same geometry: input pixels -> heatmap pixels by the stride
input/heatmap, and heatmap pixels -> image pixels by the inverse affine of the box's
(center, scale) (data/geometry.py). Numpy on the host.
"""

from __future__ import annotations

import numpy as np

from mipnet_jax.data.geometry import affine_points, get_affine_transform


def encode_heatmaps(joints_xy: np.ndarray, visible: np.ndarray, input_hw: tuple[int, int],
                    heatmap_hw: tuple[int, int], sigma: float) -> tuple[np.ndarray, np.ndarray]:
  """Gaussian heatmap targets of one instance.

  Args:
    joints_xy: [K, 2] joint positions in input-crop pixels (x, y).
    visible: [K] visibility (> 0 means labelled).
    input_hw / heatmap_hw: (h, w) of the network input and of its heatmaps.
    sigma: Gaussian sigma in heatmap pixels (2 at 256x192, 3 at 384x288).
  Returns:
    heatmaps [h, w, K] float32 and target_weight [K] float32 (0/1). As in the reference,
    the peak sits at int(joint / stride + 0.5) with value 1 and a window of radius 3 sigma;
    a joint whose window lies entirely off the map gets weight 0 and an empty heatmap.
  """
  h, w = heatmap_hw
  k = joints_xy.shape[0]
  stride = np.array([input_hw[1] / w, input_hw[0] / h], np.float32)   # (x, y)
  heatmaps = np.zeros((k, h, w), np.float32)
  weight = (np.asarray(visible) > 0).astype(np.float32)
  radius = sigma * 3
  size = int(2 * radius + 1)
  grid = np.arange(0, size, 1, np.float32)
  g = np.exp(-((grid[None, :] - size // 2) ** 2 + (grid[:, None] - size // 2) ** 2)
             / (2 * sigma ** 2))
  for j in range(k):
    mu_x = int(joints_xy[j, 0] / stride[0] + 0.5)
    mu_y = int(joints_xy[j, 1] / stride[1] + 0.5)
    ul = (int(mu_x - radius), int(mu_y - radius))
    br = (int(mu_x + radius + 1), int(mu_y + radius + 1))
    if ul[0] >= w or ul[1] >= h or br[0] < 0 or br[1] < 0:
      weight[j] = 0.0
      continue
    if weight[j] > 0.5:
      gx = max(0, -ul[0]), min(br[0], w) - ul[0]
      gy = max(0, -ul[1]), min(br[1], h) - ul[1]
      ix = max(0, ul[0]), min(br[0], w)
      iy = max(0, ul[1]), min(br[1], h)
      heatmaps[j, iy[0]:iy[1], ix[0]:ix[1]] = g[gy[0]:gy[1], gx[0]:gx[1]]
  return heatmaps.transpose(1, 2, 0), weight


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
