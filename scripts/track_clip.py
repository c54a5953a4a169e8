"""The video mode on the synthetic walking clip, with its people's true boxes as the detector:
how well do track ids hold?

    python scripts/track_clip.py --config=configs/hrnet_w32_synthetic_256x192.py:quick \
        --workdir=runs/demo                      # the README's first command's model

Writes the clip (data/synthetic_clip.py: A and B walk towards each other and cross, C stands
apart) and runs ``serve/video.py`` on it with the config's checkpoint (as ``--mode=predict``
chooses it). The detector is an oracle: the true boxes of the people on the frames it is asked
about (every ``--det_every``-th frame; in between, boxes follow the poses). Each true person is
matched in every frame to the predicted pose of highest OKS (>= ``--min_oks``); the table gives,
per person, the frames where it was found and the share of them carrying its most frequent
track id: C over the whole clip, A and B over the frames where they are apart and where they
cross. Ends with one JSON line.
"""

from __future__ import annotations

import collections
import hashlib
import json
import os

import cv2
import numpy as np
from absl import app, flags
from ml_collections import config_flags

from mipnet_jax.core.meta import get_meta
from mipnet_jax.data import synthetic_clip
from mipnet_jax.eval.oks_nms import oks
from mipnet_jax.models.load import resolve_checkpoint
from mipnet_jax.serve.predictor import Predictor
from mipnet_jax.serve.video import run_video


_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config (configs/*.py[:ARG]).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Its training folder (newest checkpoint).")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", "runs/track_clip", "Clip and video outputs.")
_FRAMES = flags.DEFINE_integer("frames", 60, "Clip length.")
_DET_EVERY = flags.DEFINE_integer("det_every", 5, "Detector every K frames.")
_MIN_OKS = flags.DEFINE_float("min_oks", 0.5, "OKS a pose needs to count as a true person's.")


def oracle_detector(path: str, truth: synthetic_clip.ClipTruth):
  """image -> (true boxes, scores 1) of the frame it is, known by its decoded pixels."""
  by_hash, capture, index = {}, cv2.VideoCapture(path), 0
  while True:
    ok, frame = capture.read()
    if not ok:
      break
    by_hash[hashlib.sha1(np.ascontiguousarray(frame[..., ::-1]).tobytes()).hexdigest()] = index
    index += 1

  def detect(image):
    boxes = truth.boxes[by_hash[hashlib.sha1(np.ascontiguousarray(image).tobytes()).hexdigest()]]
    return boxes.astype(np.float32), np.ones(len(boxes))

  return detect


def person_ids(lines: list[dict], truth: synthetic_clip.ClipTruth, sigmas, min_oks: float):
  """[F, 3] track id of the tracked pose matched to each true person (0: none matched)."""
  ids = np.zeros(truth.joints.shape[:2], np.int64)
  for f, line in enumerate(lines):
    poses = [p for p in line["poses"] if p["track_id"] is not None]
    if not poses:
      continue
    kp = np.array([p["keypoints"] for p in poses]).reshape(len(poses), -1, 3)
    for person in range(truth.joints.shape[1]):
      area = truth.boxes[f, person, 2] * truth.boxes[f, person, 3]
      score = oks(truth.joints[f, person][None], kp, area, area, sigmas)
      best = int(np.argmax(score))
      if score[best] >= min_oks:
        ids[f, person] = poses[best]["track_id"]
  return ids


def stability(ids: np.ndarray) -> tuple[int, float]:
  """(frames found, share of them with the most frequent id)."""
  found = ids[ids > 0]
  if not len(found):
    return 0, 0.0
  return len(found), collections.Counter(found.tolist()).most_common(1)[0][1] / len(found)


def main(argv):
  del argv
  config = _CONFIG.value
  predictor = Predictor.from_config(config, resolve_checkpoint(config, _WORKDIR.value))
  os.makedirs(_OUTPUT_DIR.value, exist_ok=True)
  clip = os.path.join(_OUTPUT_DIR.value, "walk.mp4")
  truth = synthetic_clip.walking_clip(clip, _FRAMES.value)
  done = run_video(predictor, clip, os.path.join(_OUTPUT_DIR.value, "out"),
                   oracle_detector(clip, truth), _DET_EVERY.value)
  lines = [json.loads(x) for x in open(done.paths["jsonl"])]
  ids = person_ids(lines, truth, get_meta(config.data.name).sigmas, _MIN_OKS.value)
  apart = truth.apart()
  rows = {"C (apart, all frames)": stability(ids[:, 2]),
          "A (apart)": stability(ids[apart, 0]), "B (apart)": stability(ids[apart, 1]),
          "A (crossing)": stability(ids[~apart, 0]), "B (crossing)": stability(ids[~apart, 1])}
  print(f"{done.frames} frames ({int(apart.sum())} with A and B apart), {done.tracks} tracks, "
        f"weights {predictor.weights}")
  print(f"{'person':24s} {'found':>6s} {'same id':>8s}")
  for name, (found, share) in rows.items():
    print(f"{name:24s} {found:6d} {share:8.1%}")
  print(json.dumps(dict(bench="track_clip", frames=done.frames, tracks=done.tracks,
                        det_every=_DET_EVERY.value, weights=predictor.weights,
                        rows={k: dict(found=f, same_id=s) for k, (f, s) in rows.items()})))


if __name__ == "__main__":
  flags.mark_flag_as_required("config")
  app.run(main)
