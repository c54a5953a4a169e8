"""``--mode=predict --video=PATH``: every frame's poses with track ids, an annotated MP4 and a
JSONL file.

Boxes per frame: the person detector's (``--detector``) on every ``det_every``-th frame and
whenever no person is being followed; in between, the tight boxes (serve/tracking.py
``pose_box``) of the previous frame's poses scoring at least ``follow_min_score``, each with
the score of the box its pose came from (a followed box's pose scores as on the detected
frame instead of compounding its score frame after frame). Without a
detector every frame is one box. Poses get track ids (serve/tracking.py). Written under the
output folder: ``<stem>.mp4`` (the frames with the poses, each labelled with its track id),
``<stem>.jsonl`` (one line per frame: ``{"frame", "poses": [{"track_id", "lambda",
"score", "box", "keypoints"}]}``; ``track_id`` null for a weak pose no track took) and ``<stem>_summary.json``. A frame that cannot be
decoded is skipped and counted (its JSONL line has ``"skipped": true``); a progress line
shows frames/s and the ETA.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os

import cv2
import numpy as np

from mipnet_jax.core.progress import Progress
from mipnet_jax.serve import draw
from mipnet_jax.serve.predictor import Predictor, detect
from mipnet_jax.serve.tracking import PoseTracker, pose_box


@dataclasses.dataclass(frozen=True)
class VideoResult:
  """What ``run_video`` wrote: its files, frame / pose / track counts and skipped frames."""

  paths: dict
  frames: int
  poses: int
  tracks: int
  skipped: dict
  weights: str

  def summary(self) -> str:
    return json.dumps(dict(video=self.paths["video"], jsonl=self.paths["jsonl"],
                           frames=self.frames, poses=self.poses, tracks=self.tracks,
                           skipped=self.skipped, weights=self.weights))


def _frame_boxes(predictor: Predictor, detector, image: np.ndarray, index: int,
                 det_every: int, followed: list) -> tuple:
  """(boxes [M, 4] or None for the whole frame, scores [M] or None)."""
  if detector is not None and (index % det_every == 0 or not followed):
    return detect(detector, image, predictor.spec.min_box_score)
  if followed:
    return (np.array([b for b, _ in followed], np.float32),
            np.array([s for _, s in followed], np.float64))
  return None, None


def _annotate(predictor: Predictor, image: np.ndarray, poses: list, ids: list,
              min_score: float) -> np.ndarray:
  """The RGB frame with its poses and their track ids drawn."""
  canvas = predictor.draw(image, poses, min_score)
  for k, (pose, track) in enumerate(zip(poses, ids)):
    seen = pose.keypoints[pose.keypoints[:, 2] > predictor.spec.in_vis_thre]
    if track is None or pose.score < min_score or not len(seen):
      continue
    at = (int(seen[:, 0].mean()), int(max(seen[:, 1].min() - 18, 12)))
    cv2.putText(canvas, f"#{track}", at, cv2.FONT_HERSHEY_SIMPLEX, 0.6,
                draw.instance_color(k), 2, cv2.LINE_AA)
  return canvas


def run_video(predictor: Predictor, video: str, out_dir: str, detector=None,
              det_every: int = 5, draw_min_score: float = 0.3,
              follow_min_score: float = 0.3, show_progress: bool = True) -> VideoResult:
  """Poses and track ids of every frame of ``video`` (module docstring)."""
  if det_every < 1:
    raise ValueError(f"--det_every must be >= 1, got {det_every}")
  capture = cv2.VideoCapture(video)
  if not os.path.isfile(video) or not capture.isOpened():
    raise ValueError(f"{video}: not a readable video file")
  total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None
  fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
  stem = os.path.splitext(os.path.basename(video))[0]
  os.makedirs(out_dir, exist_ok=True)
  paths = {k: os.path.join(out_dir, f"{stem}{ext}") for k, ext in (
      ("video", ".mp4"), ("jsonl", ".jsonl"), ("summary", "_summary.json"))}
  tracker = PoseTracker(predictor.meta.sigmas)
  progress = Progress(total, f"video {stem}", unit="frames", enabled=show_progress)
  writer, followed, counts, skipped = None, [], collections.Counter(), collections.Counter()
  with open(paths["jsonl"], "w") as lines:
    index = 0
    while total is None or index < total:
      ok, frame = capture.read()
      if not ok or frame is None:
        if total is None or index >= total:
          break
        skipped["undecodable frame"] += 1
        lines.write(json.dumps(dict(frame=index, skipped=True, poses=[])) + "\n")
        index += 1
        continue
      image = np.ascontiguousarray(frame[..., ::-1])
      boxes, scores = _frame_boxes(predictor, detector, image, index, det_every, followed)
      poses = predictor(image, boxes, scores) if boxes is None or len(boxes) else []
      ids = tracker.update(index, [p.keypoints for p in poses], [p.box for p in poses],
                           [p.score for p in poses])
      followed = [(box, p.box_score) for p in poses if p.score >= follow_min_score
                  and (box := pose_box(p.keypoints, image.shape[:2],
                                       predictor.spec.in_vis_thre)) is not None]
      if writer is None:
        writer = cv2.VideoWriter(paths["video"], cv2.VideoWriter_fourcc(*"mp4v"), fps,
                                 (image.shape[1], image.shape[0]))
      writer.write(_annotate(predictor, image, poses, ids, draw_min_score)[..., ::-1])
      lines.write(json.dumps(dict(frame=index, poses=[dict(
          track_id=t, score=p.score, box=[float(v) for v in p.box],
          keypoints=p.keypoints[:, :3].astype(np.float64).reshape(-1).tolist(),
          **{"lambda": p.lam}) for p, t in zip(poses, ids)])) + "\n")
      counts.update(frames=1, poses=len(poses))
      index += 1
      progress.update()
  progress.close()
  capture.release()
  if writer is not None:
    writer.release()
  result = VideoResult(paths, counts["frames"], counts["poses"], tracker.next_id - 1,
                       dict(skipped), predictor.weights)
  with open(paths["summary"], "w") as f:
    json.dump(json.loads(result.summary()), f, indent=1)
  return result
