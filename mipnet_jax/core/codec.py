"""Heatmap codec: Gaussian targets (encode) and argmax + quarter-offset decoding, exactly as
the HRNet reference (``generate_target``, ``get_max_preds``, ``get_final_preds``), and the UDP
codec ViTPose uses (mmpose 0.x ``_udp_generate_target``, ``post_dark_udp``, ``transform_preds``
with ``use_udp``).

Both directions use the same geometry: input pixels -> heatmap pixels by the stride
input/heatmap (UDP: (input - 1)/(heatmap - 1)), and heatmap pixels -> image pixels by the
inverse of the box's crop (``heatmap_to_image``, core/geometry.py). Numpy on the host; targets
and quarter-offset / UDP decoding also run on the device with ``xp=jax.numpy``.
"""

from __future__ import annotations

import cv2
import numpy as np

from mipnet_jax.core.geometry import PIXEL_STD


def feature_stride(input_hw: tuple[int, int], heatmap_hw: tuple[int, int],
                   udp: bool = False) -> np.ndarray:
  """Input pixels per heatmap pixel, [2] float64 (x, y): input / heatmap (HRNet) or
  (input - 1) / (heatmap - 1) (UDP: first and last pixels coincide)."""
  (ih, iw), (h, w) = input_hw, heatmap_hw
  if udp:
    return np.array([(iw - 1.0) / (w - 1.0), (ih - 1.0) / (h - 1.0)])
  return np.array([iw / w, ih / h])


def heatmap_windows(joints_xy: np.ndarray, visible: np.ndarray, input_hw: tuple[int, int],
                    heatmap_hw: tuple[int, int], sigma: float,
                    udp: bool = False) -> tuple[np.ndarray, np.ndarray]:
  """Where each joint's Gaussian goes, as the reference's ``generate_target`` rounds it
  (``udp``: ``udp_heatmap_windows``).

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
  if udp:
    return udp_heatmap_windows(joints_xy, visible, input_hw, heatmap_hw, sigma)
  ul, br, _, weight = _windows(joints_xy, visible, feature_stride(input_hw, heatmap_hw),
                               heatmap_hw, sigma)
  return np.concatenate([ul, br], axis=-1).astype(np.int32), weight


def _windows(joints_xy, visible, stride: np.ndarray, heatmap_hw: tuple[int, int], sigma: float):
  """(ul, br, mu_exact, weight): the window corners [..., K, 2] float64 (integral values),
  the joints in heatmap pixels [..., K, 2] float64 and the weight [..., K] float32."""
  h, w = heatmap_hw
  exact = np.asarray(joints_xy) / stride          # float32 or float64 joints / float64 stride
  mu = np.trunc(exact + 0.5)
  radius = sigma * 3
  ul = np.trunc(mu - radius)
  br = np.trunc(mu + radius + 1)
  off = (ul[..., 0] >= w) | (ul[..., 1] >= h) | (br[..., 0] < 0) | (br[..., 1] < 0)
  weight = ((np.asarray(visible) > 0) & ~off).astype(np.float32)
  return ul, br, exact - mu, weight


def udp_heatmap_windows(joints_xy: np.ndarray, visible: np.ndarray, input_hw: tuple[int, int],
                        heatmap_hw: tuple[int, int],
                        sigma: float) -> tuple[np.ndarray, np.ndarray]:
  """UDP Gaussian windows, as mmpose's ``_udp_generate_target`` (GaussianHeatmap) places them.

  The window is ``heatmap_windows``' rule at the stride (input - 1) / (heatmap - 1)
  (mu = int(joint / stride + 0.5), the same truncations and off-map test); the Gaussian's
  centre inside it is the sub-pixel joint: in window pixels, c = 3 sigma + (joint / stride -
  mu), rounded to float32 as the reference's ``x - x0`` on its float32 patch rounds it (NumPy
  1, which ViTPose ran; NumPy 2 would subtract in float64, within 2e-7 of these values).

  Returns:
    windows [..., K, 6] float32 (x0, y0, x1, y1, cx, cy): the integer window (as
    ``heatmap_windows``) and the centre in window pixels; target_weight [..., K] float32.
  """
  ul, br, frac, weight = _windows(joints_xy, visible, feature_stride(input_hw, heatmap_hw, True),
                                  heatmap_hw, sigma)
  centre = (2 * sigma * 3 + 1) // 2 + frac
  return np.concatenate([ul, br, centre], axis=-1).astype(np.float32), weight


def render_heatmaps(windows, weight, heatmap_hw: tuple[int, int], sigma: float, xp=np):
  """Gaussian targets: windows [..., K, 4] (or UDP's [..., K, 6]: ``render_udp_heatmaps``),
  weight [..., K] -> [..., h, w, K] float32.

  Pixel (x, y) of a window holds g[y - y0, x - x0] of the reference's Gaussian patch
  g[i, j] = exp(-((j - c)^2 + (i - c)^2) / (2 sigma^2)), c = int(6 sigma + 1) // 2, clipped to
  the map, for joints of weight > 0.5; everything else is 0. ``xp`` is numpy (host) or jax.numpy
  (device: the pipeline ships windows, not maps); numpy reproduces the reference's float32
  values bit for bit.
  """
  if windows.shape[-1] == 6:
    return render_udp_heatmaps(windows, weight, heatmap_hw, sigma, xp)
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


def render_udp_heatmaps(windows, weight, heatmap_hw: tuple[int, int], sigma: float, xp=np):
  """UDP targets: windows [..., K, 6] (``udp_heatmap_windows``), weight [..., K] ->
  [..., h, w, K] float32.

  Pixel (x, y) of a window holds exp(-((j - cx)^2 + (i - cy)^2) / (2 sigma^2)) with
  j = x - x0, i = y - y0, all in float32 as the reference's patch; 0 elsewhere and for
  joints of weight <= 0.5. Numpy equals the reference's values bit for bit; XLA's float32
  exp differs from numpy's by up to 2 ulps (the HRNet path's bound too).
  """
  h, w = heatmap_hw
  x = xp.arange(w, dtype=xp.float32)
  y = xp.arange(h, dtype=xp.float32)
  in_x = (x >= windows[..., 0:1]) & (x < windows[..., 2:3])            # [..., K, w]
  in_y = (y >= windows[..., 1:2]) & (y < windows[..., 3:4])            # [..., K, h]
  dx = ((x - windows[..., 0:1]) - windows[..., 4:5]) ** 2
  dy = ((y - windows[..., 1:2]) - windows[..., 5:6]) ** 2
  d2 = dx[..., None, :] + dy[..., :, None]                              # [..., K, h, w]
  inside = in_y[..., :, None] & in_x[..., None, :] & (weight[..., None, None] > 0.5)
  g = xp.where(inside, xp.exp(-d2 / xp.float32(2 * sigma ** 2)), 0.0).astype(xp.float32)
  return xp.moveaxis(g, -3, -1)


def encode_heatmaps(joints_xy: np.ndarray, visible: np.ndarray, input_hw: tuple[int, int],
                    heatmap_hw: tuple[int, int], sigma: float,
                    udp: bool = False) -> tuple[np.ndarray, np.ndarray]:
  """Gaussian heatmap targets: joints [..., K, 2], visible [..., K] -> (heatmaps
  [..., h, w, K], target_weight [..., K]); ``heatmap_windows`` then ``render_heatmaps``."""
  windows, weight = heatmap_windows(joints_xy, visible, input_hw, heatmap_hw, sigma, udp)
  return render_heatmaps(windows, weight, heatmap_hw, sigma), weight


def decode_heatmaps(heatmaps, xp=np):
  """Argmax with the reference's quarter-pixel offset (``get_max_preds`` + POST_PROCESS).

  Args:
    heatmaps: [..., h, w, K]; numpy on the host or, with ``xp=jax.numpy``, on the device
      (the same float32 operations, so the same results).
  Returns:
    coords [..., K, 2] (x, y) in heatmap pixels and maxvals [..., K]. Ties go to the first
    pixel in row-major order; a joint whose maximum is <= 0 gets coordinates (0, 0); a peak
    with 1 < x < w - 1 and 1 < y < h - 1 moves 0.25 towards its larger neighbour along each
    axis (not at all on equal neighbours).
  """
  hm = xp.moveaxis(xp.asarray(heatmaps, xp.float32), -1, -3)          # [..., K, h, w]
  h, w = hm.shape[-2:]
  flat = hm.reshape(hm.shape[:-2] + (h * w,))
  idx = xp.argmax(flat, axis=-1)
  maxvals = xp.take_along_axis(flat, idx[..., None], axis=-1)[..., 0]
  coords = xp.stack([idx % w, idx // w], axis=-1).astype(xp.float32)
  coords = coords * (maxvals > 0)[..., None]
  px = xp.floor(coords[..., 0] + 0.5).astype(xp.int32)
  py = xp.floor(coords[..., 1] + 0.5).astype(xp.int32)
  inside = (px > 1) & (px < w - 1) & (py > 1) & (py < h - 1)
  cx, cy = xp.clip(px, 1, w - 2), xp.clip(py, 1, h - 2)

  def at(y, x):
    return xp.take_along_axis(flat, (y * w + x)[..., None], axis=-1)[..., 0]

  dx = xp.sign(at(cy, cx + 1) - at(cy, cx - 1))
  dy = xp.sign(at(cy + 1, cx) - at(cy - 1, cx))
  return coords + 0.25 * xp.stack([dx, dy], axis=-1) * inside[..., None], maxvals


DARK_KERNEL = 11


def decode_dark(heatmaps: np.ndarray, kernel: int = DARK_KERNEL) -> tuple[np.ndarray, np.ndarray]:
  """DARK decoding (Zhang et al., CVPR 2020; its ``get_final_preds``), host numpy.

  The argmax of ``decode_heatmaps`` without the quarter offset, refined by one Newton step
  on the log of the heatmap blurred with a ``kernel`` x ``kernel`` Gaussian (cv2, sigma from
  the kernel size, zero padding of (kernel - 1) / 2, rescaled to the original maximum) where
  1 < int(x) < w - 2 and 1 < int(y) < h - 2 and the Hessian is invertible.
  heatmaps [..., h, w, K] -> coords [..., K, 2], maxvals [..., K] (the unblurred maxima).
  """
  hm = np.moveaxis(np.asarray(heatmaps, np.float32), -1, -3)          # [..., K, h, w]
  h, w = hm.shape[-2:]
  flat = hm.reshape(-1, h, w)
  idx = np.argmax(flat.reshape(len(flat), -1), axis=-1)
  maxvals = flat.reshape(len(flat), -1).max(axis=-1)
  coords = np.stack([idx % w, idx // w], axis=-1).astype(np.float32) * (maxvals > 0)[:, None]
  border = (kernel - 1) // 2
  logs = np.empty_like(flat)
  for i, m in enumerate(flat):
    padded = np.zeros((h + 2 * border, w + 2 * border))
    padded[border:-border, border:-border] = m
    blurred = cv2.GaussianBlur(padded, (kernel, kernel), 0)[border:-border, border:-border]
    logs[i] = blurred * (m.max() / blurred.max())
  logs = np.log(np.maximum(logs, 1e-10))
  px, py = coords[:, 0].astype(np.int64), coords[:, 1].astype(np.int64)
  ok = (px > 1) & (px < w - 2) & (py > 1) & (py < h - 2)
  n = np.arange(len(flat))
  x, y = np.clip(px, 2, w - 3), np.clip(py, 2, h - 3)
  g = lambda dy, dx: logs[n, y + dy, x + dx].astype(np.float64)   # noqa: E731
  dx = 0.5 * (g(0, 1) - g(0, -1))
  dy = 0.5 * (g(1, 0) - g(-1, 0))
  dxx = 0.25 * (g(0, 2) - 2 * g(0, 0) + g(0, -2))
  dxy = 0.25 * (g(1, 1) - g(-1, 1) - g(1, -1) + g(-1, -1))
  dyy = 0.25 * (g(2, 0) - 2 * g(0, 0) + g(-2, 0))
  det = dxx * dyy - dxy ** 2
  ok &= det != 0
  safe = np.where(ok, det, 1.0)
  offset = -np.stack([dyy * dx - dxy * dy, dxx * dy - dxy * dx], axis=-1) / safe[:, None]
  coords = coords + np.where(ok[:, None], offset, 0.0).astype(np.float32)
  lead = hm.shape[:-2]
  return coords.reshape(lead + (2,)), maxvals.reshape(lead)


def gaussian_blur(maps, kernel: int = DARK_KERNEL, xp=np):
  """maps [M, h, w] float32 blurred as ``cv2.GaussianBlur(map, (kernel, kernel), 0)``: sigma
  0.3 ((kernel - 1) / 2 - 1) + 0.8, reflect-101 border. Host: cv2 itself; device: the same
  float32 taps, rows then columns (within float32 rounding of cv2)."""
  if xp is np:
    return np.stack([cv2.GaussianBlur(m, (kernel, kernel), 0) for m in
                     np.asarray(maps, np.float32)]).reshape(np.shape(maps))
  taps = cv2.getGaussianKernel(kernel, 0, ktype=cv2.CV_32F)[:, 0].tolist()
  r = kernel // 2
  h, w = maps.shape[-2:]
  padded = xp.pad(maps, ((0, 0), (0, 0), (r, r)), mode="reflect")
  rows = sum(t * padded[..., i:i + w] for i, t in enumerate(taps))
  padded = xp.pad(rows, ((0, 0), (r, r), (0, 0)), mode="reflect")
  return sum(t * padded[..., i:i + h, :] for i, t in enumerate(taps))


def decode_udp_dark(heatmaps, kernel: int = DARK_KERNEL, xp=np):
  """UDP decoding (mmpose 0.x ``keypoints_from_heatmaps`` with ``use_udp``: ``_get_max_preds``
  then ``post_dark_udp``), on the host (``xp=numpy``, as the reference) or the device.

  Argmax (first maximum in row-major order; a map whose maximum is <= 0 gets (-1, -1)), then
  one Newton step on log(clip(blur(map), 1e-10, 50)) of the ``kernel`` x ``kernel`` Gaussian
  blur (``gaussian_blur``, no rescaling), every map, border pixels included: the log maps
  are edge-padded by one pixel and the reference reads the eight neighbours from the
  flattened [M, h + 2, w + 2] stack of all maps, so a (-1, -1) joint reads its corner and the
  previous map's last row (the first map wraps to the last one), as here. Gradient
  (d_x, d_y) by central differences, Hessian [[d_xx, d_xy], [d_xy, d_yy]] from the seven
  neighbours as the reference, plus float32 eps on the diagonal; the step is -H^-1 g (in
  float64 on the host, float32 on the device; a singular H leaves the argmax).

  Args:
    heatmaps: [..., h, w, K].
  Returns:
    coords [..., K, 2] float32 (x, y) heatmap pixels; maxvals [..., K] (unblurred).
  """
  hm = xp.moveaxis(xp.asarray(heatmaps, xp.float32), -1, -3)          # [..., K, h, w]
  lead, (h, w) = hm.shape[:-2], hm.shape[-2:]
  maps = hm.reshape((-1, h, w))
  m = maps.shape[0]
  flat = maps.reshape((m, h * w))
  idx = xp.argmax(flat, axis=-1)
  maxvals = xp.max(flat, axis=-1)
  coords = xp.stack([idx % w, idx // w], axis=-1).astype(xp.float32)
  coords = xp.where((maxvals > 0)[:, None], coords, xp.float32(-1))
  logs = xp.log(xp.clip(gaussian_blur(maps, kernel, xp), xp.float32(1e-10), xp.float32(50)))
  padded = xp.pad(logs, ((0, 0), (1, 1), (1, 1)), mode="edge").reshape(-1)
  pos = coords.astype(xp.int32)
  index = (pos[:, 0] + 1) + (pos[:, 1] + 1) * (w + 2) + (w + 2) * (h + 2) * xp.arange(m)

  def at(offset):
    return padded[(index + offset) % (m * (h + 2) * (w + 2))]

  c, x1, y1, x1y1 = at(0), at(1), at(w + 2), at(w + 3)
  x1_y1_, x1_, y1_ = at(-w - 3), at(-1), at(-2 - w)
  grad = xp.stack([0.5 * (x1 - x1_), 0.5 * (y1 - y1_)], axis=-1)       # [M, 2]
  dxx = x1 - 2 * c + x1_
  dyy = y1 - 2 * c + y1_
  dxy = 0.5 * (x1y1 - x1 - y1 + c + c - x1_ - y1_ + x1_y1_)
  step = _newton_step(dxx, dxy, dyy, grad, xp)
  coords = (coords - step).astype(xp.float32)
  return coords.reshape(lead + (2,)), maxvals.reshape(lead)


def _newton_step(dxx, dxy, dyy, grad, xp):
  """H^-1 g [M, 2] for H = [[dxx, dxy], [dxy, dyy]] + eps I (float32 eps); 0 where singular.
  Host: float64 ``np.linalg.inv`` as the reference; device: float32 in closed form."""
  eps = np.finfo(np.float32).eps
  if xp is np:
    hessian = np.stack([np.stack([dxx, dxy], -1), np.stack([dxy, dyy], -1)], -2) + eps * np.eye(2)
    det = hessian[:, 0, 0] * hessian[:, 1, 1] - hessian[:, 0, 1] * hessian[:, 1, 0]
    ok = det != 0
    hessian[~ok] = np.eye(2)
    step = np.einsum("mij,mjk->mik", np.linalg.inv(hessian), grad[..., None])[..., 0]
    return np.where(ok[:, None], step, 0.0)
  a, d = dxx + xp.float32(eps), dyy + xp.float32(eps)
  det = a * d - dxy * dxy
  ok = det != 0
  safe = xp.where(ok, det, xp.float32(1))
  step = xp.stack([d * grad[:, 0] - dxy * grad[:, 1], a * grad[:, 1] - dxy * grad[:, 0]], -1)
  return xp.where(ok[:, None], step / safe[:, None], xp.float32(0))


def heatmap_to_image(coords, centers, scales, heatmap_hw: tuple[int, int], xp=np,
                     udp: bool = False):
  """Heatmap pixels -> image pixels for boxes without rotation: the one mapping of
  evaluation, export and serving (the reference's ``transform_preds``; ``udp``:
  ``udp_heatmap_to_image``).

  The reference inverts the crop's affine at heatmap size (``get_affine_transform(center,
  scale, 0, heatmap_hw, inverse=True)``); at rotation 0 that is one step of 200 * s_x / w
  image pixels per heatmap pixel on both axes about the crop's centre (the reference sizes
  both axes by s_x), computed here in closed form. The reference solves its affine from
  float32 points (the centre, the crop's top centre c_y - 100 s_x and the point beside it),
  so each axis's step is the float32-rounded distance between them, as here; the rest runs
  in float64 with numpy (host: equal to the affine inverse within 1e-9 px) or float32 with
  ``xp=jax.numpy`` (device: within 1e-3 px).

  Args:
    coords: [M, ..., K, 2] (x, y) heatmap pixels of M boxes.
    centers, scales: [M, 2] the boxes' crops (geometry.box_to_center_scale).
    heatmap_hw: (h, w) of the heatmaps.
  Returns:
    [M, ..., K, 2] image pixels, float64 (numpy) or float32 (jax).
  """
  if udp:
    return udp_heatmap_to_image(coords, centers, scales, heatmap_hw, xp)
  h, w = heatmap_hw
  dtype = np.float64 if xp is np else xp.float32
  f32 = xp.float32
  center = xp.asarray(centers, f32)                                       # [M, 2]
  size = xp.asarray(scales, f32) * f32(PIXEL_STD)
  top = center[:, 1] - size[:, 0] * f32(0.5)            # the reference's float32 points
  left = center[:, 0] - (center[:, 1] - top)
  center = center.astype(dtype)
  step = xp.stack([center[:, 0] - left.astype(dtype), center[:, 1] - top.astype(dtype)],
                  axis=-1) / (w * 0.5)                                    # [M, 2] (x, y)
  origin = center - step * xp.asarray([w * 0.5, h * 0.5], dtype)
  lead = (slice(None),) + (None,) * (coords.ndim - 2)
  return xp.asarray(coords).astype(dtype) * step[lead] + origin[lead]


def udp_heatmap_to_image(coords, centers, scales, heatmap_hw: tuple[int, int], xp=np):
  """UDP's heatmap -> image mapping (mmpose's ``transform_preds(..., use_udp=True)``): with
  size = 200 s, x_img = x * size_x / (w - 1) + c_x - size_x / 2 (y alike with h), in float32
  and that order, as the reference computes it, on the host or the device. Heatmap pixel 0
  lands on the box's left edge c_x - size_x / 2 and pixel w - 1 on its right edge.

  Args:
    coords: [M, ..., K, 2] (x, y) heatmap pixels; centers, scales: [M, 2].
  Returns:
    [M, ..., K, 2] image pixels, float32.
  """
  h, w = heatmap_hw
  f32 = xp.float32
  size = xp.asarray(scales, f32) * f32(PIXEL_STD)                          # [M, 2]
  step = size / xp.asarray([w - 1.0, h - 1.0], f32)
  lead = (slice(None),) + (None,) * (coords.ndim - 2)
  center = xp.asarray(centers, f32)
  return ((xp.asarray(coords, f32) * step[lead] + center[lead]) - (size * f32(0.5))[lead])
