"""Track ids for the poses of a video: greedy matching by OKS with the previous poses.

Each frame's poses (every λ: a λ = 1 pose is a person like any other, so when two tracked
people fall into one box the λ = 1 pose keeps the occluded person's track alive) are matched
to the live tracks: all (pose, track) pairs with OKS >= ``min_oks`` are taken greedily, each
pose and track at most once, the poses scoring >= ``new_track_min_score`` first and, among
them, best OKS first (ByteTrack's two stages: a confident pose is not beaten to its track by a
weak duplicate). An unmatched pose starts a new track only if it scores >= ``new_track_min_score``
(weak unmatched poses stay untracked: id None), and is not an echo: OKS >= ``min_oks`` with a
pose of the same frame that has a track (another box's λ finding the same person); a track unmatched for more than ``max_missed`` frames ends. OKS is eval/oks_nms.py's
(the reference's ``oks_iou`` over every joint) with the area of the track's last box.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from mipnet_jax.eval.oks_nms import oks

FOLLOW_EXPANSION = 1.25     # rtmlib's pose_to_bbox: the joints' extent x 1.25 about its centre
MIN_SIDE = 8.0


@dataclasses.dataclass
class Track:
  """A tracked person: its id, last keypoints [K, 3], last box [4] (x, y, w, h), the frame
  it was last seen in."""

  id: int
  keypoints: np.ndarray
  box: np.ndarray
  last_frame: int


def pose_box(keypoints: np.ndarray, image_hw: tuple[int, int], min_score: float,
             expansion: float = FOLLOW_EXPANSION) -> np.ndarray | None:
  """The box [4] (x, y, w, h) that follows a person into the next frame: the extent of its
  joints scoring above ``min_score``, scaled by ``expansion`` about its centre (each side at
  least MIN_SIDE), clipped to the image [0, W-1] x [0, H-1]; None when no joint scores."""
  seen = keypoints[:, 2] > min_score
  if not seen.any():
    return None
  xy = keypoints[seen, :2].astype(np.float64)
  center = (xy.min(0) + xy.max(0)) / 2
  half = np.maximum((xy.max(0) - xy.min(0)) * expansion, MIN_SIDE) / 2
  lo = np.clip(center - half, 0, [image_hw[1] - 1, image_hw[0] - 1])
  hi = np.clip(center + half, 0, [image_hw[1] - 1, image_hw[0] - 1])
  return np.concatenate([lo, hi - lo]).astype(np.float32)


class PoseTracker:
  """``update(frame, keypoints, boxes) -> ids``: one track id per pose (module docstring)."""

  def __init__(self, sigmas: Sequence[float], min_oks: float = 0.3, max_missed: int = 10,
               new_track_min_score: float = 0.3):
    self.sigmas, self.min_oks, self.max_missed = tuple(sigmas), min_oks, max_missed
    self.new_track_min_score = new_track_min_score
    self.tracks: list[Track] = []
    self.next_id = 1

  def update(self, frame: int, keypoints: Sequence[np.ndarray], boxes: Sequence[np.ndarray],
             scores: Sequence[float] | None = None) -> list[int | None]:
    """Poses keypoints [K, 3] with their boxes [4] (x, y, w, h) and scores (None: all
    confident) seen at ``frame`` -> their track ids (None: untracked)."""
    self.tracks = [t for t in self.tracks if frame - t.last_frame <= self.max_missed]
    confident = (np.ones(len(keypoints), bool) if scores is None else
                 np.asarray(scores, np.float64) >= self.new_track_min_score)
    ids: list[int | None] = [None] * len(keypoints)
    if keypoints and self.tracks:
      kp = np.stack([np.asarray(k, np.float64) for k in keypoints])
      tk = np.stack([t.keypoints for t in self.tracks])
      area = np.array([max(t.box[2] * t.box[3], 1.0) for t in self.tracks])
      sim = oks(tk[None], kp[:, None], area[None], area[None], self.sigmas)   # [P, T]
      pairs = np.argwhere(sim >= self.min_oks)
      order = np.lexsort((-sim[pairs[:, 0], pairs[:, 1]], ~confident[pairs[:, 0]]))
      taken_tracks = set()
      for p, t in pairs[order]:
        if ids[p] is not None or t in taken_tracks:
          continue
        ids[p] = self.tracks[t].id
        taken_tracks.add(t)
        self.tracks[t].keypoints, self.tracks[t].box = kp[p], np.asarray(boxes[p])
        self.tracks[t].last_frame = frame
    self._start_tracks(frame, keypoints, boxes, confident, scores, ids)
    return ids

  def _start_tracks(self, frame, keypoints, boxes, confident, scores, ids) -> None:
    """New tracks for the confident unmatched poses, best score first, except echoes: a
    pose with OKS >= ``min_oks`` to a pose of this frame that has a track (another box's λ
    finding the same person) stays untracked."""
    order = np.argsort(-np.asarray(scores if scores is not None else np.ones(len(ids))),
                       kind="stable")
    for p in order:
      if ids[p] is not None or not confident[p]:
        continue
      kp = np.asarray(keypoints[p], np.float64)
      tracked = [q for q in range(len(ids)) if ids[q] is not None]
      if tracked:
        area = np.array([max(boxes[q][2] * boxes[q][3], 1.0) for q in tracked])
        others = np.stack([np.asarray(keypoints[q], np.float64) for q in tracked])
        if oks(others, kp[None], area, area, self.sigmas).max() >= self.min_oks:
          continue
      ids[p] = self.next_id
      self.tracks.append(Track(self.next_id, kp, np.asarray(boxes[p]), frame))
      self.next_id += 1
