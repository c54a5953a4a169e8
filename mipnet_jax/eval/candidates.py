"""Candidates: every (box, λ) prediction of a split before post-processing, as flat arrays;
built from the predict step's per-box outputs, saved beside every evaluation (so protocols
and confidence sweeps re-run without the network) and loaded without pickles."""

from __future__ import annotations

import dataclasses

import numpy as np

from mipnet_jax.core.geometry import PIXEL_STD


@dataclasses.dataclass(frozen=True)
class Candidates:
  """All (box, λ) predictions of a split, as flat arrays.

  Attributes:
    keypoints: [M, K, 3] (x, y, maxval) in image pixels (float32 as the reference stores them).
    box_score: [M] float64 box (detector) score, before any discount.
    area: [M] float64 padded-box area (s_x*200)*(s_y*200), see ``padded_box_area``.
    image_id: [M] int image of each candidate.
    lam: [M] int instance index λ (0 = the box's own person).
  """

  keypoints: np.ndarray
  box_score: np.ndarray
  area: np.ndarray
  image_id: np.ndarray
  lam: np.ndarray

  def __post_init__(self):
    kp = np.asarray(self.keypoints)
    if kp.ndim != 3 or kp.shape[2] < 3:
      raise ValueError(f"keypoints must be [M, K, 3], got {kp.shape}")
    fields = {"box_score": np.asarray(self.box_score, np.float64),
              "area": np.asarray(self.area, np.float64),
              "image_id": np.asarray(self.image_id), "lam": np.asarray(self.lam, np.int64)}
    for name, value in fields.items():
      if value.shape != (len(kp),):
        raise ValueError(f"{name} must be [{len(kp)}], got {value.shape}")
      object.__setattr__(self, name, value)
    if (self.lam < 0).any():
      raise ValueError("lam must be >= 0")
    object.__setattr__(self, "keypoints", kp)

  def __len__(self) -> int:
    return len(self.keypoints)

  def take(self, index: np.ndarray) -> Candidates:
    """The candidates at rows ``index`` [R]."""
    return Candidates(self.keypoints[index], self.box_score[index], self.area[index],
                      self.image_id[index], self.lam[index])

  def select_joints(self, ids) -> Candidates:
    """The candidates with only joints ``ids`` (in that order); unchanged when ``ids`` is
    every joint in order."""
    if tuple(ids) == tuple(range(self.keypoints.shape[1])):
      return self
    return dataclasses.replace(self, keypoints=self.keypoints[:, list(ids)])


def padded_box_area(scale: np.ndarray) -> np.ndarray:
  """[M, 2] crop scales (s_x, s_y) -> [M] float64 areas, rounded as the reference's
  ``np.prod(s * 200, 1)`` on float32 scales."""
  s = np.asarray(scale, np.float32) * np.float32(PIXEL_STD)
  return (s[:, 0] * s[:, 1]).astype(np.float64)


def flat_candidates(keypoints: np.ndarray, box_score: np.ndarray, scale: np.ndarray,
                    image_id: np.ndarray) -> Candidates:
  """Per-box predictions keypoints [B, N, K, 3], box_score [B], scale [B, 2], image_id [B]
  -> B * N candidates, box-major (row b * N + lambda)."""
  b, n = keypoints.shape[:2]
  return Candidates(
      keypoints=keypoints.reshape((b * n,) + keypoints.shape[2:]).astype(np.float32),
      box_score=np.repeat(box_score, n), area=np.repeat(padded_box_area(scale), n),
      image_id=np.repeat(image_id, n), lam=np.tile(np.arange(n), b))


def save_candidates(path: str, c: Candidates) -> None:
  np.savez_compressed(path, **{f.name: getattr(c, f.name) for f in dataclasses.fields(Candidates)})


def load_candidates(path: str) -> Candidates:
  """Candidates written by ``save_candidates`` (plain arrays; no pickles are loaded)."""
  with np.load(path, allow_pickle=False) as z:
    return Candidates(**{f.name: z[f.name] for f in dataclasses.fields(Candidates)})
