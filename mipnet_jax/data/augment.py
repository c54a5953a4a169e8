"""Training augmentation of the HRNet reference (``JointsDataset.__getitem__``), driven by the
primary person's box and joints and by an explicit ``np.random.Generator`` (never global
state; the draws follow the reference's order but not its random stream).

    half body   if > 8 labelled joints and U < half_body_prob: crop to the upper or the lower
                body (upper if N(0,1) < 0.5 and it has > 2 joints), padded 1.5x
    scale       s *= clip(1 + sf * N(0,1), 1 - sf, 1 + sf)
    rotation    r = clip(rf * N(0,1), -2 rf, 2 rf) with probability 0.6, else 0
    flip        with probability 0.5: x -> W - 1 - x, left/right joints swapped
"""

from __future__ import annotations

import dataclasses

import numpy as np

from mipnet_jax.core.geometry import PIXEL_STD
from mipnet_jax.core.meta import DatasetMeta

HALF_BODY_MIN_JOINTS = 8
HALF_BODY_PADDING = 1.5
ROTATION_PROB = 0.6
FLIP_PROB = 0.5


@dataclasses.dataclass(frozen=True, eq=False)
class Augmentation:
  """Sampled parameters of one training sample (center and scale after half-body/scale)."""

  center: np.ndarray
  scale: np.ndarray
  rotation: float
  flip: bool


def flip_keypoints(keypoints: np.ndarray, image_width: int, meta: DatasetMeta) -> np.ndarray:
  """Mirror keypoints [..., K, 3]: x -> W - 1 - x, left/right swapped, and (as the reference's
  ``fliplr_joints``) the coordinates of unlabelled joints set to 0."""
  out = np.array(keypoints, np.float32)
  out[..., 0] = image_width - out[..., 0] - 1
  out = out[..., meta.flip_permutation, :]
  out[..., :2] *= (out[..., 2:3] > 0)
  return out


def half_body_center_scale(keypoints: np.ndarray, meta: DatasetMeta, input_hw: tuple[int, int],
                           rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray] | None:
  """The crop of the upper or the lower body (one N(0,1) draw), or None when fewer than 2
  joints are selected or the dataset declares no upper body. keypoints [K, 3] in image
  pixels."""
  if not meta.upper_body_ids:
    return None
  visible = keypoints[:, 2] > 0
  upper_ids = set(meta.upper_body_ids)
  upper = [keypoints[i, :2] for i in range(len(keypoints)) if visible[i] and i in upper_ids]
  lower = [keypoints[i, :2] for i in range(len(keypoints)) if visible[i] and i not in upper_ids]
  if rng.standard_normal() < 0.5 and len(upper) > 2:
    selected = upper
  else:
    selected = lower if len(lower) > 2 else upper
  if len(selected) < 2:
    return None
  pts = np.asarray(selected, np.float32)
  center = pts.mean(axis=0)
  w, h = pts.max(axis=0) - pts.min(axis=0)
  aspect = input_hw[1] / input_hw[0]
  if w > aspect * h:
    h = w / aspect
  elif w < aspect * h:
    w = h * aspect
  return center, np.array([w / PIXEL_STD, h / PIXEL_STD], np.float32) * HALF_BODY_PADDING


def sample_augmentation(keypoints: np.ndarray, center: np.ndarray, scale: np.ndarray,
                        image_width: int, meta: DatasetMeta, input_hw: tuple[int, int], *,
                        scale_factor: float, rotation_factor: float, half_body_prob: float,
                        flip: bool, rng: np.random.Generator) -> Augmentation:
  """Draws the augmentation of one sample from the primary's keypoints [K, 3] and crop.

  The returned center is already mirrored when ``flip`` is drawn (c_x -> W - 1 - c_x)."""
  center = np.array(center, np.float32)
  scale = np.array(scale, np.float32)
  if (np.sum(keypoints[:, 2] > 0) > HALF_BODY_MIN_JOINTS and rng.random() < half_body_prob):
    half = half_body_center_scale(keypoints, meta, input_hw, rng)
    if half is not None:
      center, scale = half
  sf, rf = scale_factor, rotation_factor
  scale = scale * np.clip(rng.standard_normal() * sf + 1, 1 - sf, 1 + sf)
  rotation = float(np.clip(rng.standard_normal() * rf, -2 * rf, 2 * rf)
                   if rng.random() <= ROTATION_PROB else 0.0)
  flipped = bool(flip and rng.random() <= FLIP_PROB)
  if flipped:
    center[0] = image_width - center[0] - 1
  return Augmentation(center.astype(np.float32), scale.astype(np.float32), rotation, flipped)
