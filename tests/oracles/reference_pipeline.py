"""The official HRNet training-sample path, re-implemented for side-by-side measurements and
as a test oracle (``JointsDataset.__getitem__`` with ``generate_target``; N = 1).

It decodes the full image with cv2, mirrors it by slicing (cv2 then copies the non-contiguous
view), warps, builds the targets with the per-joint loop and normalises on the host as
torchvision's ToTensor + Normalize do (CHW float32). Our pipeline (mipnet_jax.data.transforms)
must produce the same targets and, up to the folded flip's rounding, the same pixels.
"""

from __future__ import annotations

import cv2
import numpy as np

from mipnet_jax.data import augment
from mipnet_jax.core import geometry
from mipnet_jax.core.normalize import IMAGENET_MEAN, IMAGENET_STD


def generate_target(joints: np.ndarray, vis: np.ndarray, input_hw, heatmap_hw, sigma: float):
  """The reference's per-joint loop (gaussian branch): joints [K, 2] input pixels, vis [K]
  -> (target [h, w, K] float32, weight [K] float32)."""
  h, w = heatmap_hw
  stride = np.array([input_hw[1] / w, input_hw[0] / h])
  target = np.zeros((len(joints), h, w), np.float32)
  weight = (vis > 0).astype(np.float32)
  radius = sigma * 3
  for j in range(len(joints)):
    mu_x = int(joints[j][0] / stride[0] + 0.5)
    mu_y = int(joints[j][1] / stride[1] + 0.5)
    ul = [int(mu_x - radius), int(mu_y - radius)]
    br = [int(mu_x + radius + 1), int(mu_y + radius + 1)]
    if ul[0] >= w or ul[1] >= h or br[0] < 0 or br[1] < 0:
      weight[j] = 0
      continue
    size = 2 * radius + 1
    x = np.arange(0, size, 1, np.float32)
    y = x[:, np.newaxis]
    x0 = y0 = size // 2
    g = np.exp(-((x - x0) ** 2 + (y - y0) ** 2) / (2 * sigma ** 2))
    g_x = max(0, -ul[0]), min(br[0], w) - ul[0]
    g_y = max(0, -ul[1]), min(br[1], h) - ul[1]
    img_x = max(0, ul[0]), min(br[0], w)
    img_y = max(0, ul[1]), min(br[1], h)
    if weight[j] > 0.5:
      target[j][img_y[0]:img_y[1], img_x[0]:img_x[1]] = g[g_y[0]:g_y[1], g_x[0]:g_x[1]]
  return target.transpose(1, 2, 0), weight


def to_tensor_normalize(crop: np.ndarray) -> np.ndarray:
  """uint8 [h, w, 3] -> float32 [3, h, w], ToTensor then Normalize(ImageNet)."""
  chw = crop.transpose(2, 0, 1).astype(np.float32) / 255.0
  return (chw - IMAGENET_MEAN[:, None, None]) / IMAGENET_STD[:, None, None]


def reference_stages(path: str, keypoints: np.ndarray, aug: augment.Augmentation, meta,
                     input_hw, heatmap_hw, sigma: float, clock) -> dict:
  """One official sample, timing each stage with ``clock`` (e.g. time.perf_counter).
  Returns {stage: seconds} for decode, warp (incl. the flip copy), targets, normalize."""
  t0 = clock()
  img = cv2.imread(path, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
  img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
  t1 = clock()
  joints = keypoints
  if aug.flip:
    img = img[:, ::-1, :]
    joints = augment.flip_keypoints(keypoints, img.shape[1], meta)
  trans = geometry.get_affine_transform(aug.center, aug.scale, aug.rotation, input_hw)
  crop = cv2.warpAffine(img, trans, (int(input_hw[1]), int(input_hw[0])),
                        flags=cv2.INTER_LINEAR)
  t2 = clock()
  xy = geometry.affine_points(joints[:, :2], trans)
  generate_target(xy, joints[:, 2], input_hw, heatmap_hw, sigma)
  t3 = clock()
  to_tensor_normalize(crop)
  t4 = clock()
  return dict(decode=t1 - t0, warp=t2 - t1, targets=t3 - t2, normalize=t4 - t3)
