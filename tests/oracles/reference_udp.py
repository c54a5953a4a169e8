"""mmpose 0.x's UDP path (as ViTPose's COCO configs run it), re-derived in loop form from
reading the reference, as a test oracle for core/geometry.py and core/codec.py.

    warp_matrix        get_warp_matrix(theta, size_input, size_dst, size_target), element by
                       element, float32 matrix
    udp_target         TopDownGenerateTarget(encoding='UDP', GaussianHeatmap): per joint, a
                       13 x 13 (6 sigma + 1) patch around mu = int(joint / stride + 0.5),
                       centred at the sub-pixel joint, pasted into the clipped window
    post_dark_udp      argmax (-1 where the maximum is <= 0), cv2 blur of every map, clip,
                       log, edge pad, neighbours read from the flattened stack, Newton step
    transform_preds    heatmap -> image with scale / (size - 1)

``legacy_float32`` in ``udp_target``: the patch's ``x - x0`` in float32 (NumPy 1's scalar
casting, which ViTPose ran) or in float64 (NumPy 2 promotes the float64 centre).
"""

from __future__ import annotations

import math

import cv2
import numpy as np


def warp_matrix(theta, size_input, size_dst, size_target) -> np.ndarray:
  """Row by row: rotation by +theta about size_input / 2, then each axis scaled by
  size_dst / size_target and moved so the target region's centre lands at its half size."""
  t = np.deg2rad(theta)
  kx = size_dst[0] / size_target[0]
  ky = size_dst[1] / size_target[1]
  out = np.zeros((2, 3), dtype=np.float32)
  out[0, 0] = math.cos(t) * kx
  out[0, 1] = -math.sin(t) * kx
  out[0, 2] = kx * (-0.5 * size_input[0] * math.cos(t) + 0.5 * size_input[1] * math.sin(t)
                    + 0.5 * size_target[0])
  out[1, 0] = math.sin(t) * ky
  out[1, 1] = math.cos(t) * ky
  out[1, 2] = ky * (-0.5 * size_input[0] * math.sin(t) - 0.5 * size_input[1] * math.cos(t)
                    + 0.5 * size_target[1])
  return out


def warp_joints(joints: np.ndarray, mat: np.ndarray) -> np.ndarray:
  """[K, 2] float32 joints -> [K, 2]: homogeneous rows times mat^T in one float32 product."""
  rows = np.concatenate([joints, joints[:, :1] * 0 + 1], axis=1)
  return np.dot(rows, mat.T)


def udp_target(joints, visible, image_wh, heatmap_wh, sigma, legacy_float32=True):
  """joints [K, 2] float32 input pixels, visible [K] -> (target [K, H, W], weight [K])."""
  image_wh = np.asarray(image_wh)
  heatmap_wh = np.asarray(heatmap_wh)
  num = len(joints)
  weight = np.asarray(visible, np.float32).copy()
  target = np.zeros((num, heatmap_wh[1], heatmap_wh[0]), np.float32)
  radius = sigma * 3
  size = 2 * radius + 1
  x = np.arange(0, size, 1, np.float32)
  y = x[:, None]
  stride = (image_wh - 1.0) / (heatmap_wh - 1.0)
  for k in range(num):
    mu_x = int(joints[k][0] / stride[0] + 0.5)
    mu_y = int(joints[k][1] / stride[1] + 0.5)
    ul = [int(mu_x - radius), int(mu_y - radius)]
    br = [int(mu_x + radius + 1), int(mu_y + radius + 1)]
    if ul[0] >= heatmap_wh[0] or ul[1] >= heatmap_wh[1] or br[0] < 0 or br[1] < 0:
      weight[k] = 0
      continue
    cx = size // 2 + (joints[k][0] / stride[0] - mu_x)
    cy = size // 2 + (joints[k][1] / stride[1] - mu_y)
    if legacy_float32:
      cx, cy = np.float32(cx), np.float32(cy)
    patch = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * sigma ** 2))
    gx = max(0, -ul[0]), min(br[0], heatmap_wh[0]) - ul[0]
    gy = max(0, -ul[1]), min(br[1], heatmap_wh[1]) - ul[1]
    ix = max(0, ul[0]), min(br[0], heatmap_wh[0])
    iy = max(0, ul[1]), min(br[1], heatmap_wh[1])
    if weight[k] > 0.5:
      target[k][iy[0]:iy[1], ix[0]:ix[1]] = patch[gy[0]:gy[1], gx[0]:gx[1]]
  return target, weight


def get_max_preds(heatmaps: np.ndarray):
  """[N, K, H, W] -> (preds [N, K, 2] float32, maxvals [N, K, 1]); -1 where max <= 0."""
  n, k, _, w = heatmaps.shape
  flat = heatmaps.reshape(n, k, -1)
  idx = np.argmax(flat, 2).reshape(n, k, 1)
  maxvals = np.amax(flat, 2).reshape(n, k, 1)
  preds = np.tile(idx, (1, 1, 2)).astype(np.float32)
  preds[:, :, 0] = preds[:, :, 0] % w
  preds[:, :, 1] = preds[:, :, 1] // w
  return np.where(np.tile(maxvals, (1, 1, 2)) > 0.0, preds, -1), maxvals


def post_dark_udp(coords: np.ndarray, heatmaps: np.ndarray, kernel: int = 11) -> np.ndarray:
  """coords [N, K, 2] float32, heatmaps [N, K, H, W] float32 (modified) -> refined coords."""
  n, k, h, w = heatmaps.shape
  for person in heatmaps:
    for one in person:
      cv2.GaussianBlur(one, (kernel, kernel), 0, one)
  np.clip(heatmaps, 1e-10, 50, heatmaps)
  np.log(heatmaps, heatmaps)
  pad = np.pad(heatmaps, ((0, 0), (0, 0), (1, 1), (1, 1)), mode="edge").flatten()
  index = coords[..., 0] + 1 + (coords[..., 1] + 1) * (w + 2)
  index += (w + 2) * (h + 2) * np.arange(0, n * k).reshape(-1, k)
  index = index.astype(int).reshape(-1, 1)
  v = pad[index]
  vx1, vy1 = pad[index + 1], pad[index + w + 2]
  vx1y1, vx1_y1_ = pad[index + w + 3], pad[index - w - 3]
  vx1_, vy1_ = pad[index - 1], pad[index - 2 - w]
  dx = 0.5 * (vx1 - vx1_)
  dy = 0.5 * (vy1 - vy1_)
  grad = np.concatenate([dx, dy], axis=1).reshape(n, k, 2, 1)
  dxx = vx1 - 2 * v + vx1_
  dyy = vy1 - 2 * v + vy1_
  dxy = 0.5 * (vx1y1 - vx1 - vy1 + v + v - vx1_ - vy1_ + vx1_y1_)
  hess = np.concatenate([dxx, dxy, dxy, dyy], axis=1).reshape(n, k, 2, 2)
  hess = np.linalg.inv(hess + np.finfo(np.float32).eps * np.eye(2))
  coords -= np.einsum("ijmn,ijnk->ijmk", hess, grad).squeeze()
  return coords


def transform_preds(coords: np.ndarray, center, scale, heatmap_wh) -> np.ndarray:
  """[K, 2] heatmap pixels -> image pixels (UDP: scale / (size - 1))."""
  scale = scale * 200.0
  sx = scale[0] / (heatmap_wh[0] - 1.0)
  sy = scale[1] / (heatmap_wh[1] - 1.0)
  out = np.ones_like(coords)
  out[:, 0] = coords[:, 0] * sx + center[0] - scale[0] * 0.5
  out[:, 1] = coords[:, 1] * sy + center[1] - scale[1] * 0.5
  return out


def keypoints_from_heatmaps_udp(heatmaps, centers, scales, kernel: int = 11):
  """heatmaps [N, K, H, W] -> (preds [N, K, 2] image pixels, maxvals [N, K, 1])."""
  heatmaps = heatmaps.copy()
  _, _, h, w = heatmaps.shape
  preds, maxvals = get_max_preds(heatmaps)
  preds = post_dark_udp(preds, heatmaps, kernel)
  for i in range(len(preds)):
    preds[i] = transform_preds(preds[i], centers[i], scales[i], [w, h])
  return preds, maxvals
