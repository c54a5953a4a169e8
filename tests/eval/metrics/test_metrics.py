"""The metrics package: the protocol of each dataset, ground truth fed back scoring one under
every protocol, and ``evaluate_file`` end to end (results file in, metrics out)."""

import json
import logging

import numpy as np
import pytest

from mipnet_jax.core.meta import COCO, JOINT_SETS, get_meta, joint_map
from mipnet_jax.eval import metrics as metrics_lib
from mipnet_jax.eval.metrics import (
    COCO_METRICS,
    CROWDPOSE_METRICS,
    CocoMetric,
    CrowdPoseMetric,
    evaluate_file,
    make_metric,
)

from _metric_cases import (
    COCO_FILE, COCO_PREDS, CROWD_VAL, CROWD_PREDS, OFFICIAL_VAL)

ANNOTATION_FILES = [("coco", COCO_FILE), ("crowdpose", "crowdpose/test_crowdpose.json"),
                    ("crowdpose", CROWD_VAL), ("crowdpose", OFFICIAL_VAL),
                    ("ochuman", "ochuman/test_ochuman.json")]


def test_each_dataset_has_its_protocol(shared_data):
  assert metrics_lib.METRICS == {"coco": CocoMetric, "crowdpose": CrowdPoseMetric}
  assert [metrics_lib.default_metric(d) for d in ("coco", "ochuman", "synthetic", "crowdpose",
                                                  "ocpose")] == ["coco"] * 3 + ["crowdpose",
                                                                                "coco"]
  metric = make_metric("ochuman", str(shared_data / "ochuman/test_ochuman.json"))
  assert type(metric) is CocoMetric and metric.meta.name == "ochuman"
  assert type(make_metric("crowdpose", str(shared_data / CROWD_VAL))) is CrowdPoseMetric
  with pytest.raises(ValueError) as info:
    make_metric("mpii", str(shared_data / COCO_FILE))
  assert str(info.value) == "unknown dataset 'mpii'; known: coco, crowdpose, ochuman, synthetic"


def gt_as_results(data: dict, keep) -> list[dict]:
  return [{"image_id": a["image_id"], "category_id": a["category_id"],
           "keypoints": a["keypoints"], "score": 1.0}
          for a in data["annotations"] if not a["iscrowd"] and keep(a)]


def labelled(ann: dict) -> bool:
  return max(ann["keypoints"][2::3]) > 0


@pytest.mark.parametrize("dataset,rel", ANNOTATION_FILES)
def test_ground_truth_fed_back_scores_one(shared_data, dataset, rel):
  data = json.loads((shared_data / rel).read_text())
  # The protocol's own positives: non-crowd and num_keypoints > 0 (CrowdPose counts v=2 only).
  metric = make_metric(dataset, str(shared_data / rel))
  metric.add(gt_as_results(data, lambda a: a["num_keypoints"] > 0))
  metrics = metric.compute()
  assert metrics["AP"] == metrics["AP50"] == metrics["AP75"] == metrics["AR"] == 1.0
  assert all(v in (1.0, -1.0) for v in metrics.values())
  # Every non-crowd GT with >= 1 labelled keypoint, ignored ones included.
  metric = make_metric(dataset, str(shared_data / rel))
  metric.add(gt_as_results(data, labelled))
  metrics = metric.compute()
  if rel != OFFICIAL_VAL:
    assert metrics["AP"] == 1.0 and metrics["AR"] == 1.0
  else:
    # Not 1 under the official protocol (xtcocotools gives the same numbers): image 104045
    # has two ignored GT (num_keypoints 0) whose only labelled (v=1) head points coincide;
    # greedy matching gives the head+neck copy to the head-only GT (last of equal OKS wins),
    # and the head-only copy then matches nothing above OKS .55: a false positive.
    assert metrics == {"AP": 0.9999067977469125, "AP50": 1.0, "AP75": 0.9998964419410142,
                       "AR": 1.0, "AR50": 1.0, "AR75": 1.0, "AP_easy": 0.9993,
                       "AP_medium": 1.0, "AP_hard": 1.0}


def test_evaluate_file_scores_a_results_file(shared_data):
  # The numbers of the protocols' own tests (test_coco_metric.py, test_crowdpose_metric.py).
  coco = evaluate_file("coco", str(shared_data / COCO_FILE), str(shared_data / COCO_PREDS))
  assert list(coco) == list(COCO_METRICS) and coco["AP"] == 0.8608896054440609
  crowd = evaluate_file("crowdpose", str(shared_data / CROWD_VAL),
                        str(shared_data / CROWD_PREDS))
  assert list(crowd) == list(CROWDPOSE_METRICS) and crowd["AP"] == 0.7877215935879303
  metric = make_metric("coco", str(shared_data / COCO_FILE))
  metric.add(json.loads((shared_data / COCO_PREDS).read_text()))
  assert metric.compute() == coco


def test_empty_results_file_warns_and_scores_zero(shared_data, tmp_path, caplog):
  empty = tmp_path / "empty.json"
  empty.write_text("[]")
  with caplog.at_level(logging.WARNING):
    metrics = evaluate_file("crowdpose", str(shared_data / CROWD_VAL), str(empty))
  assert metrics == dict.fromkeys(CROWDPOSE_METRICS, 0.0)
  assert "no predictions" in caplog.text


@pytest.mark.parametrize("dataset,rel,metric_name", [
    ("coco", COCO_FILE, "coco"), ("ochuman", "ochuman/test_ochuman.json", "coco"),
    ("crowdpose", "crowdpose/test_crowdpose.json", "crowdpose"),
    ("crowdpose", "crowdpose/test_crowdpose.json", "coco")])
def test_ground_truth_on_the_common_joints_scores_one(shared_data, dataset, rel, metric_name):
  """A COCO model's 17 joints scored on a dataset's 12 limb joints (COCO -> the limbs, COCO
  -> CrowdPose's shared joints): the ground truth's own limb joints, fed back, score 1 with
  either area rule."""
  data_meta = get_meta(dataset)
  joints = joint_map(COCO, data_meta, "limbs")
  assert joints.names == JOINT_SETS["limbs"]
  assert joints.model_ids == tuple(range(5, 17))
  assert joints.data_ids == (tuple(range(5, 17)) if dataset != "crowdpose" else tuple(range(12)))
  data = json.loads((shared_data / rel).read_text())
  for area_rule in ("annotation", "box_0.53") if metric_name == "coco" else ("box_0.53",):
    if area_rule == "annotation" and dataset == "crowdpose":
      continue                                   # CrowdPose files have no area field
    metric = make_metric(data_meta, str(shared_data / rel), metric=metric_name, joints=joints,
                         area_rule=area_rule)
    ids = np.array(joints.data_ids)
    results = [dict(r, keypoints=np.reshape(r["keypoints"], (-1, 3))[ids].ravel().tolist())
               for r in gt_as_results(data, lambda a: max(
                   np.reshape(a["keypoints"], (-1, 3))[ids, 2]) > 0)]
    metric.add(results)
    metrics = metric.compute()
    assert metrics["AP"] == metrics["AR"] == 1.0, (area_rule, metrics)
