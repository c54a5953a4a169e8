"""The CrowdPose protocol (eval/metrics/crowdpose.py): the peer predictions and a perturbed
run over the official val set against xtcocotools' numbers, a hand-computed case with the
0.53 area factor and the crowd-index classes, arrays in, and the crowdIndex check."""

import contextlib
import io
import json
import logging

import numpy as np
import pytest

from mipnet_jax.eval.metrics import AnnotationError, CrowdPoseMetric
from mipnet_jax.eval.metrics.crowdpose import CROWDPOSE_METRICS

from _metric_cases import (
    CROWD_VAL, CROWD_PREDS, OFFICIAL_VAL, THRESHOLDS, person, pose, result, hand_oks,
    expected_ap)

CROWDPOSE_SIGMAS = np.array([.79, .79, .72, .72, .62, .62, 1.07, 1.07, .87, .87, .89, .89,
                             .79, .79]) / 10

# The reference numbers below come from mmpose's xtcocotools 1.14.3 (PyPI sdist, built
# against this NumPy): COCOeval(gt, gt.loadRes(preds), 'keypoints_crowd', CROWDPOSE_SIGMAS,
# use_area=False), params.useSegm = None, evaluate / accumulate / summarize; its stats
# [AP, AP50, AP75, AR, AR50, AR75, AP easy, medium, hard]. Its keypoints_crowd path equals
# the official crowdposetools cocoeval.py (0.53 x box area, maxDets 20, crowdIndex split at
# 0.2 / 0.8, 4-decimal type APs) except that it drops predictions whose keypoint confidences
# are all 0 (none here) and numbers matches from -1 instead of 0 (no GT id is 0 here).
CROWD_PEER_REFERENCE = {"AP": 0.7877215935879303, "AP50": 0.9881188118811886,
                        "AP75": 0.7314356435643564, "AR": 0.8222222222222223, "AR50": 1.0,
                        "AR75": 0.7777777777777778, "AP_easy": 1.0, "AP_medium": 0.9802,
                        "AP_hard": 0.4116}
CROWD_PERTURBED_REFERENCE = {"AP": 0.40292618389999174, "AP50": 0.665999117667267,
                             "AP75": 0.3882416124731191, "AR": 0.7745688436528131,
                             "AR50": 0.9785128640090472, "AR75": 0.8153802657619451,
                             "AP_easy": 0.4018, "AP_medium": 0.4041, "AP_hard": 0.4159}
def xtcocotools_crowd_stats(gt_path: str, results) -> dict:
  """Live xtcocotools CrowdPose numbers; skips where it is not installed or not usable."""
  try:
    from xtcocotools.coco import COCO as XtCOCO
    from xtcocotools.cocoeval import COCOeval as XtCOCOeval
  except (ImportError, ValueError) as e:    # ValueError: a wheel built against NumPy 1.x
    pytest.skip(f"xtcocotools not usable here: {type(e).__name__}: {e}")
  with contextlib.redirect_stdout(io.StringIO()):
    gt = XtCOCO(gt_path)
    xt_eval = XtCOCOeval(gt, gt.loadRes(results), "keypoints_crowd", CROWDPOSE_SIGMAS,
                         use_area=False)
    xt_eval.params.useSegm = None
    xt_eval.evaluate()
    xt_eval.accumulate()
    xt_eval.summarize()
  return dict(zip(CROWD_PEER_REFERENCE, map(float, xt_eval.stats)))


def test_crowdpose_peer_predictions_match_reference(shared_data):
  """4 images: 1 easy (crowdIndex 0.0), 2 medium (0.76), 1 hard (0.82); 15 predictions."""
  metric = CrowdPoseMetric(str(shared_data / CROWD_VAL))
  metric.add(json.loads((shared_data / CROWD_PREDS).read_text()))
  assert metric.compute() == CROWD_PEER_REFERENCE
  assert list(CROWD_PEER_REFERENCE) == list(CROWDPOSE_METRICS)


def perturbed_predictions(dataset: dict) -> list[dict]:
  """Deterministic imperfect predictions: 1-3 jittered copies of each usable person, some
  moved a box width away, scores unrelated to quality; > 20 per image in crowded images."""
  preds = []
  for ann in dataset["annotations"]:
    kp = np.array(ann["keypoints"], np.float64).reshape(-1, 3)
    if ann["iscrowd"] or kp[:, 2].max() <= 0:
      continue
    x0, y0, w, h = ann["bbox"]
    a, k = ann["id"], np.arange(len(kp))
    kp[kp[:, 2] == 0, :2] = (x0 + w / 2, y0 + h / 2)
    for c in range(1 + a % 3):
      jitter = ((a * 7 + k * 13 + c * 29) % 21 - 10) / 10.0
      spread = 0.01 + 0.05 * c + 0.03 * ((a // 3) % 4)
      x = kp[:, 0] + jitter * spread * w + (w if c == 2 and a % 5 == 0 else 0)
      y = kp[:, 1] - jitter[::-1] * spread * h
      conf = 0.3 + 0.07 * ((a + k) % 10)
      score = ((a * 37 + c * 11) % 97) / 97 + 0.01
      preds.append({"image_id": ann["image_id"], "category_id": 1, "score": score,
                    "keypoints": np.stack([x, y, conf], 1).ravel().round(2).tolist()})
  return preds


def test_crowdpose_official_val_perturbed_matches_reference(shared_data):
  """All 2000 official val images: crowd and num_keypoints == 0 GT, > 20 predictions per
  image, every difficulty class populated (411 easy, 1240 medium, 349 hard)."""
  path = str(shared_data / OFFICIAL_VAL)
  preds = perturbed_predictions(json.loads((shared_data / OFFICIAL_VAL).read_text()))
  assert len(preds) == 15974
  metric = CrowdPoseMetric(path)
  metric.add(preds)
  assert metric.compute() == CROWD_PERTURBED_REFERENCE


@pytest.mark.parametrize("case", ["peer", "perturbed"])
def test_crowdpose_live_against_xtcocotools(shared_data, case):
  if case == "peer":
    gt = str(shared_data / CROWD_VAL)
    preds = json.loads((shared_data / CROWD_PREDS).read_text())
  else:
    gt = str(shared_data / OFFICIAL_VAL)
    preds = perturbed_predictions(json.loads((shared_data / OFFICIAL_VAL).read_text()))
  reference = xtcocotools_crowd_stats(gt, [dict(p) for p in preds])
  metric = CrowdPoseMetric(gt)
  metric.add(preds)
  assert metric.compute() == reference


# ---- Hand-built case ------------------------------------------------------------------


def crowdpose_scene() -> dict:
  images = [{"id": 1, "file_name": "e.jpg", "height": 480, "width": 640, "crowdIndex": 0.1},
            {"id": 2, "file_name": "m.jpg", "height": 480, "width": 640, "crowdIndex": 0.5}]
  anns = [person(1, 1, [0., 0., 100., 200.], pose(14, 0, 0)),
          person(2, 2, [0., 0., 100., 200.], pose(14, 0, 0)),
          person(3, 2, [300., 0., 100., 200.], pose(14, 300, 0))]
  return {"images": images, "annotations": anns,
          "categories": [{"id": 1, "name": "person"}]}


def test_crowdpose_perfect_and_shifted_prediction():
  shift = 10.0
  oks = hand_oks(shift, CROWDPOSE_SIGMAS, 0.53 * 100 * 200)
  # The shifted person matches at 7 OKS thresholds of 10 (.50 ... .80); without the 0.53
  # area factor it would match at 9.
  assert np.sum(THRESHOLDS <= oks) == 7
  assert np.sum(THRESHOLDS <= hand_oks(shift, CROWDPOSE_SIGMAS, 100 * 200)) == 9
  moved = pose(14, 300, 0)
  moved[:, 1] += shift
  metric = CrowdPoseMetric(crowdpose_scene())
  metric.add([result(1, pose(14, 0, 0), 0.95), result(2, pose(14, 0, 0), 0.9),
              result(2, moved, 0.8)])
  metrics = metric.compute()
  assert metrics["AP"] == pytest.approx(expected_ap(oks, 2 / 3), abs=1e-12)
  assert metrics["AP"] == pytest.approx((7 + 3 * 67 / 101) / 10, abs=1e-12)
  assert metrics["AR"] == pytest.approx((7 + 3 * 2 / 3) / 10)
  assert metrics["AP_easy"] == 1.0
  assert metrics["AP_medium"] == round(expected_ap(oks, 0.5), 4) == 0.8515   # 4 decimals
  assert metrics["AP_hard"] == -1.0                                          # no hard image


def test_no_predictions_score_zero_where_there_is_ground_truth(caplog):
  with caplog.at_level(logging.WARNING):
    metrics = CrowdPoseMetric(crowdpose_scene()).compute()
  assert metrics == {"AP": 0.0, "AP50": 0.0, "AP75": 0.0, "AR": 0.0, "AR50": 0.0, "AR75": 0.0,
                     "AP_easy": 0.0, "AP_medium": 0.0, "AP_hard": -1.0}   # no hard image
  assert "no predictions" in caplog.text


def test_images_need_a_crowd_index(shared_data):
  data = json.loads((shared_data / CROWD_VAL).read_text())
  del data["images"][2]["crowdIndex"]
  with pytest.raises(AnnotationError) as info:
    CrowdPoseMetric(data)
  assert str(info.value) == ("annotations: image 107292: field 'crowdIndex' missing or not a "
                             "number")


def test_add_arrays_equals_add(shared_data):
  data = json.loads((shared_data / CROWD_VAL).read_text())
  preds = json.loads((shared_data / CROWD_PREDS).read_text())
  metric = CrowdPoseMetric(data)
  metric.add_arrays(np.array([p["image_id"] for p in preds]),
                    np.array([p["keypoints"] for p in preds]).reshape(len(preds), 14, 3),
                    np.array([p["score"] for p in preds]))
  assert metric.compute() == CROWD_PEER_REFERENCE
  assert CROWD_PEER_REFERENCE == metric.compute()      # compute() can be repeated
