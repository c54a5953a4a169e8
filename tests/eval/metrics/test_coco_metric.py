"""The COCO keypoint protocol (eval/metrics/coco.py): the peer predictions against
pycocotools run directly, a hand-computed shifted prediction, empty predictions, and the
ground-truth check's one-line errors."""

import json
import logging

import numpy as np
import pytest

from conftest import pycocotools_limb_sigmas, pycocotools_stats
from mipnet_jax.core.meta import COCO, get_meta, joint_map
from mipnet_jax.eval.metrics import AnnotationError, CocoMetric
from mipnet_jax.eval.metrics.coco import COCO_METRICS
from mipnet_jax.eval.metrics.results import load_results_file

from _metric_cases import (
    COCO_FILE, COCO_PREDS, CROWD_VAL, THRESHOLDS, pose, result, hand_oks, expected_ap,
    coco_scene)


# pycocotools 2.0.11 (and xtcocotools 'keypoints', use_area=True: the same numbers) on the
# xtcocoapi COCO example predictions against test_coco.json (= xtcocoapi example_coco_val).
COCO_PEER_REFERENCE = {"AP": 0.8608896054440609, "AP50": 0.993145468392993,
                       "AP75": 0.9108910891089109, "APM": 0.7755775577557756,
                       "APL": 0.9372524752475248, "AR": 0.875, "AR50": 1.0,
                       "AR75": 0.9166666666666666, "ARM": 0.78, "ARL": 0.9428571428571428}




def test_coco_peer_predictions_match_pycocotools(shared_data):
  gt, preds = str(shared_data / COCO_FILE), str(shared_data / COCO_PREDS)
  metric = CocoMetric(gt, "coco")
  metric.add(load_results_file(preds))
  metrics = metric.compute()
  assert list(metrics) == list(COCO_METRICS)
  assert list(metrics.values()) == pycocotools_stats(gt, preds)
  assert metrics == COCO_PEER_REFERENCE


# ---- Hand-built case ------------------------------------------------------------------


def test_coco_perfect_and_shifted_prediction():
  shift = 8.0
  oks = hand_oks(shift, get_meta("coco").sigmas, 10000.)
  assert np.sum(THRESHOLDS <= oks) == 5      # matched at .50 ... .70: 5 thresholds of 10
  metric = CocoMetric(coco_scene(), "coco")
  moved = pose(17, 300, 0)
  moved[:, 0] += shift
  metric.add([result(7, pose(17, 0, 0), 0.9), result(7, moved, 0.8)])
  metrics = metric.compute()
  assert metrics["AP"] == pytest.approx(expected_ap(oks, 0.5), abs=1e-12)
  assert metrics["AP"] == pytest.approx((5 + 5 * 51 / 101) / 10, abs=1e-12)
  assert metrics["AP50"] == 1.0 and metrics["AP75"] == pytest.approx(51 / 101)
  assert metrics["AR"] == pytest.approx((5 + 5 * 0.5) / 10)
  assert metrics["APL"] == metrics["AP"]
  assert metrics["APM"] == metrics["ARM"] == -1.0    # area 10000 > 96^2: no medium person


def test_no_predictions_score_zero_where_there_is_ground_truth(shared_data, caplog):
  with caplog.at_level(logging.WARNING):
    metrics = CocoMetric(str(shared_data / "ochuman/test_ochuman.json"), "ochuman").compute()
  # The OCHuman sample has large people only: no medium ground truth, -1 there.
  assert metrics == {"AP": 0.0, "AP50": 0.0, "AP75": 0.0, "APM": -1.0, "APL": 0.0, "AR": 0.0,
                     "AR50": 0.0, "AR75": 0.0, "ARM": -1.0, "ARL": 0.0}
  assert "ochuman/test_ochuman.json: no predictions to evaluate" in caplog.text


def test_ground_truth_of_another_dataset_is_a_one_line_error(shared_data):
  # CrowdPose annotations (14 keypoints) where COCO's 17 are expected.
  with pytest.raises(AnnotationError) as info:
    CocoMetric(str(shared_data / CROWD_VAL), "coco")
  message = str(info.value)
  assert "\n" not in message
  assert message == (f"{shared_data / CROWD_VAL}: annotation 165388: field 'keypoints' has "
                     "42 values, expected 51 (3 x 17 keypoints of coco)")


# ---- Joint subset and area rule (supplementary Table 12's protocol) ---------------------


def test_subset_and_box_area_by_hand_and_pycocotools(tmp_path):
  """17-joint ground truth scored on the 12 limbs with area 0.53 x box: OKS by hand over the
  limbs only (the face joints of the prediction are far off and must not count), and every
  metric equal to pycocotools run directly on the hand-reduced ground truth."""
  joints = joint_map(COCO, COCO, "limbs")
  shift, area = 8.0, 0.53 * 100 * 200
  oks = hand_oks(shift, pycocotools_limb_sigmas(), area)
  assert np.sum(THRESHOLDS <= oks) == 8      # matched at .50 ... .85
  metric = CocoMetric(coco_scene(), "coco", joints=joints, area_rule="box_0.53")
  moved = pose(17, 300, 0)
  moved[:, 0] += shift
  moved[:5, :2] += 100.0                    # nose, eyes, ears: not evaluated
  preds = [result(7, pose(17, 0, 0)[5:], 0.9), result(7, moved[5:], 0.8)]
  metric.add(preds)
  metrics = metric.compute()
  assert metrics["AP"] == pytest.approx(expected_ap(oks, 0.5), abs=1e-12)
  # The independent path: the 12 limb joints cut by hand, area set by hand, pycocotools.
  scene = coco_scene()
  for ann in scene["annotations"]:
    ann["keypoints"] = ann["keypoints"][15:]
    ann["num_keypoints"] = 12
    ann["area"] = ann["bbox"][2] * ann["bbox"][3] * 0.53
  gt = tmp_path / "gt12.json"
  gt.write_text(json.dumps(scene))
  assert list(metrics.values()) == pycocotools_stats(str(gt), preds, pycocotools_limb_sigmas())
  # Predictions must hold the 12 evaluated joints.
  with pytest.raises(ValueError, match=r"field 'keypoints' has 51 values, expected 36 "
                                       r"\(3 x 12 keypoints"):
    metric.add([result(7, pose(17, 0, 0), 0.9)])
