"""Track ids for the poses of a video: greedy matching by OKS with the previous poses.

Each frame's poses (every λ: a λ = 1 pose is a person like any other, so when two tracked
people fall into one box the λ = 1 pose keeps the occluded person's track alive) are matched
to the live tracks: all (pose, track) pairs with OKS >= ``min_oks`` are taken greedily, best
OKS first, each pose and track at most once; an unmatched pose starts a new track; a track
unmatched for more than ``max_missed`` frames ends. OKS is eval/oks_nms.py's (the
reference's ``oks_iou`` over every joint) with the area of the track's last box.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from mipnet_jax.data.boxes import tight_box
from mipnet_jax.eval.oks_nms import oks


@dataclasses.dataclass
class Track:
  """A tracked person: its id, last keypoints [K, 3], last box [4] (x, y, w, h), the frame
  it was last seen in."""

  id: int
  keypoints: np.ndarray
  box: np.ndarray
  last_frame: int


def pose_box(keypoints: np.ndarray, image_hw: tuple[int, int], min_score: float
             ) -> np.ndarray | None:
  """The tight box (data/boxes.tight_box) of the joints scoring above ``min_score``, or None
  when there is none: the box that follows a person into the next frame."""
  seen = keypoints[:, 2] > min_score
  if not seen.any():
    return None
  return tight_box(np.concatenate([keypoints[:, :2], seen[:, None]], 1), image_hw)


class PoseTracker:
  """``update(frame, keypoints, boxes) -> ids``: one track id per pose (module docstring)."""

  def __init__(self, sigmas: Sequence[float], min_oks: float = 0.3, max_missed: int = 10):
    self.sigmas, self.min_oks, self.max_missed = tuple(sigmas), min_oks, max_missed
    self.tracks: list[Track] = []
    self.next_id = 1

  def update(self, frame: int, keypoints: Sequence[np.ndarray], boxes: Sequence[np.ndarray]
             ) -> list[int]:
    """Poses keypoints [K, 3] with their boxes [4] (x, y, w, h) seen at ``frame`` -> ids."""
    self.tracks = [t for t in self.tracks if frame - t.last_frame <= self.max_missed]
    ids = [0] * len(keypoints)
    if keypoints and self.tracks:
      kp = np.stack([np.asarray(k, np.float64) for k in keypoints])
      tk = np.stack([t.keypoints for t in self.tracks])
      area = np.array([max(t.box[2] * t.box[3], 1.0) for t in self.tracks])
      scores = oks(tk[None], kp[:, None], area[None], area[None], self.sigmas)   # [P, T]
      taken_tracks = set()
      for flat in np.argsort(-scores, axis=None, kind="stable"):
        p, t = np.unravel_index(flat, scores.shape)
        if scores[p, t] < self.min_oks:
          break
        if ids[p] or t in taken_tracks:
          continue
        ids[p] = self.tracks[t].id
        taken_tracks.add(t)
        self.tracks[t].keypoints, self.tracks[t].box = kp[p], np.asarray(boxes[p])
        self.tracks[t].last_frame = frame
    for p, found in enumerate(ids):
      if not found:
        ids[p] = self.next_id
        self.tracks.append(Track(self.next_id, np.asarray(keypoints[p], np.float64),
                                 np.asarray(boxes[p]), frame))
        self.next_id += 1
    return ids
