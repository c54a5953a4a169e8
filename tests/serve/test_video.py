"""Video (serve/video.py) and tracking (serve/tracking.py) on a clip the test draws with the
synthetic scene code: two people walking towards each other and crossing, a third standing
apart. The tracker is checked on the true poses (ids of the people who do not cross stay
the same), the video mode end to end with the tiny served model (frames, JSONL, MP4)."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from mipnet_jax.core.meta import COCO
from mipnet_jax.data import synthetic_clip
from mipnet_jax.serve import tracking, video

HW = synthetic_clip.CLIP_HW
FRAMES = 60


def walking_clip(path, frames: int = FRAMES, seed: int = 0, fourcc: str = "mp4v"):
  """The clip (data/synthetic_clip.py) written to ``path``; its true joints [frames, 3, 17,
  2] of A, B (they cross mid-clip) and C (standing apart)."""
  return synthetic_clip.walking_clip(str(path), frames, seed, fourcc).joints


def test_tracker_keeps_the_ids_of_people_who_do_not_cross(tmp_path):
  truth = walking_clip(tmp_path / "clip.mp4")
  tracker = tracking.PoseTracker(COCO.sigmas)
  rng = np.random.default_rng(1)
  ids = []
  for frame, people in enumerate(truth):
    keypoints = [np.concatenate([j + rng.normal(0, 1.0, j.shape), np.ones((17, 1))], 1)
                 for j in people]
    boxes = [tracking.pose_box(k, HW, 0.2) for k in keypoints]
    ids.append(tracker.update(frame, keypoints, boxes))
  ids = np.array(ids)                                      # [frames, 3]: A, B, C
  assert ids[0].tolist() == [1, 2, 3]
  assert np.mean(ids[:, 2] == 3) >= 0.95                   # C never crosses anyone
  crossing = np.abs(truth[:, 0, :, 0].mean(1) - truth[:, 1, :, 0].mean(1)) < 40
  apart = ~crossing
  assert apart.sum() >= 40
  for person in (0, 1):
    before = apart & (np.arange(FRAMES) < FRAMES // 2)
    assert np.all(ids[before, person] == person + 1)       # same id until they meet


def test_tracker_matching_by_hand():
  """Greedy by OKS: the closer pose takes the track; a far pose starts a new one; a track
  unseen for more than max_missed frames ends."""
  base = np.zeros((17, 3))
  base[:, 0], base[:, 1], base[:, 2] = np.arange(17) * 3.0, 50.0, 1.0
  box = np.array([0, 0, 60, 100], np.float32)
  tracker = tracking.PoseTracker(COCO.sigmas, min_oks=0.3, max_missed=2)
  assert tracker.update(0, [base], [box]) == [1]
  near, far = base.copy(), base.copy()
  near[:, 0] += 1.0
  far[:, 0] += 200.0
  assert tracker.update(1, [far, near], [box, box]) == [2, 1]
  assert tracker.update(5, [base], [box]) == [3]           # tracks 1, 2 unseen for 4 frames


def test_tracker_scores_echoes_and_priority():
  """Weak unmatched poses start no track; a confident pose close to a tracked one of the same
  frame (another box's lambda finding that person) is an echo and starts none either; a
  confident pose wins its track over a weak pose with a higher OKS."""
  base = np.zeros((17, 3))
  base[:, 0], base[:, 1], base[:, 2] = np.arange(17) * 3.0, 50.0, 1.0
  box = np.array([0, 0, 60, 100], np.float32)
  tracker = tracking.PoseTracker(COCO.sigmas, min_oks=0.3, new_track_min_score=0.3)
  far = base.copy()
  far[:, 0] += 200.0
  assert tracker.update(0, [base, far], [box, box], [0.9, 0.2]) == [1, None]
  echo = base.copy()
  echo[:, 1] += 2.0                                         # OKS with base ~0.97
  other = base.copy()
  other[:, 0] += 100.0
  assert tracker.update(1, [base, echo, other], [box] * 3, [0.9, 0.8, 0.8]) == [1, None, 2]
  near, nearer = base.copy(), base.copy()
  near[:, 0] += 3.0
  nearer[:, 0] += 0.5
  assert tracker.update(2, [nearer, near], [box, box], [0.1, 0.9]) == [None, 1]


def test_pose_box_follows_the_joints_expanded_as_rtmlib():
  kp = np.array([[100, 40, 0.9], [140, 120, 0.8], [500, 500, 0.1]], np.float64)
  np.testing.assert_allclose(tracking.pose_box(kp, HW, 0.2), [95, 30, 50, 100])  # x 1.25
  np.testing.assert_allclose(tracking.pose_box(kp[:1], HW, 0.2), [96, 36, 8, 8])  # min side
  edge = np.array([[2, 150, 1.0], [30, 158, 1.0]])
  np.testing.assert_allclose(tracking.pose_box(edge, HW, 0.2), [0, 149, 33.5, 10])  # clipped
  assert tracking.pose_box(np.zeros((17, 3)), HW, 0.2) is None


def test_video_mode_writes_every_frame(predictor, tmp_path):
  walking_clip(tmp_path / "walk.mp4")
  done = video.run_video(predictor, str(tmp_path / "walk.mp4"), str(tmp_path / "out"),
                         show_progress=False)
  lines = [json.loads(x) for x in open(done.paths["jsonl"]).read().splitlines()]
  assert [x["frame"] for x in lines] == list(range(FRAMES)) and done.frames == FRAMES
  assert done.poses == sum(len(x["poses"]) for x in lines) > 0
  assert all((p["track_id"] is None or isinstance(p["track_id"], int)) and
             p["lambda"] in (0, 1) and len(p["keypoints"]) == 51
             for x in lines for p in x["poses"])
  assert done.tracks == max(p["track_id"] or 0 for x in lines for p in x["poses"])
  capture = cv2.VideoCapture(done.paths["video"])
  assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == FRAMES
  ok, frame = capture.read()
  assert ok and frame.shape == HW + (3,)
  summary = json.loads(open(done.paths["summary"]).read())
  assert summary == json.loads(done.summary()) and summary["skipped"] == {}
  # The first frame's poses are the Predictor's on the whole frame.
  first = cv2.VideoCapture(str(tmp_path / "walk.mp4")).read()[1][..., ::-1]
  want = predictor(np.ascontiguousarray(first))
  assert [p["score"] for p in lines[0]["poses"]] == [p.score for p in want]


def test_video_errors_are_one_line(predictor, tmp_path):
  with pytest.raises(ValueError, match=r"^.*nothing\.mp4: not a readable video file$"):
    video.run_video(predictor, str(tmp_path / "nothing.mp4"), str(tmp_path / "o"))
  (tmp_path / "text.mp4").write_text("not a video")
  with pytest.raises(ValueError, match=r"text\.mp4: not a readable video file$"):
    video.run_video(predictor, str(tmp_path / "text.mp4"), str(tmp_path / "o"))
  with pytest.raises(ValueError, match="--det_every must be >= 1, got 0"):
    video.run_video(predictor, str(tmp_path / "text.mp4"), str(tmp_path / "o"), det_every=0)


def test_undecodable_frames_are_skipped_counted_and_kept_in_order(predictor, tmp_path):
  """A motion-JPEG clip whose frames 7 and 12 lost their JPEG data: the run goes on, their
  JSONL lines say ``skipped``, the summary counts them, the other 18 frames have poses."""
  walking_clip(tmp_path / "walk.avi", frames=20, fourcc="MJPG")
  data = bytearray((tmp_path / "walk.avi").read_bytes())
  starts = [i for i in range(len(data) - 2) if data[i:i + 3] == b"\xff\xd8\xff"]
  assert len(starts) == 20                                  # one JPEG per frame
  for k in (7, 12):
    data[starts[k]:starts[k] + 400] = bytes(400)
  (tmp_path / "walk.avi").write_bytes(bytes(data))
  done = video.run_video(predictor, str(tmp_path / "walk.avi"), str(tmp_path / "out"),
                         show_progress=False)
  lines = [json.loads(x) for x in open(done.paths["jsonl"]).read().splitlines()]
  assert [x["frame"] for x in lines] == list(range(20))
  assert [x["frame"] for x in lines if x.get("skipped")] == [7, 12]
  assert all(x["poses"] for x in lines if not x.get("skipped"))
  assert done.frames == 18 and done.skipped == {"undecodable frame": 2}
  assert json.loads(open(done.paths["summary"]).read())["skipped"] == {"undecodable frame": 2}
  assert int(cv2.VideoCapture(done.paths["video"]).get(cv2.CAP_PROP_FRAME_COUNT)) == 18


def test_video_with_a_detector_detects_every_k_frames(predictor, tmp_path):
  """The detector runs on frames 0, 5, 10, ... and whenever the previous frame left no pose
  to follow; in between, the boxes follow the previous poses."""
  walking_clip(tmp_path / "walk.mp4", frames=20)
  calls = []

  def detector(image):
    calls.append(len(calls))
    return np.array([[10, 20, 100, 130], [150, 25, 90, 120]], np.float32), np.array([.9, .8])

  done = video.run_video(predictor, str(tmp_path / "walk.mp4"), str(tmp_path / "out"),
                         detector=detector, det_every=5, show_progress=False)
  lines = [json.loads(x) for x in open(done.paths["jsonl"]).read().splitlines()]
  thre = predictor.spec.in_vis_thre

  def follows(line):
    return any(p["score"] >= 0.3 and max(p["keypoints"][2::3]) > thre for p in line["poses"])

  want = [i for i in range(20) if i % 5 == 0 or not follows(lines[i - 1])]
  assert len(calls) == len(want) and {0, 5, 10, 15} <= set(want)
  for i in want:                                   # detected frames: poses on the two boxes
    assert {tuple(p["box"]) for p in lines[i]["poses"]} <= {(10., 20., 100., 130.),
                                                            (150., 25., 90., 120.)}
