"""The evaluation protocols: ground truth fed back, the peer prediction files against the
reference tools, hand-computed OKS cases, empty predictions and one-line input errors."""

import contextlib
import io
import json
import logging

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from mipnet_jax.core.meta import get_meta
from mipnet_jax.eval.metrics import (
    AnnotationError,
    CocoEvaluator,
    CrowdPoseEvaluator,
    ResultsError,
    evaluate_file,
    make_evaluator,
)

COCO_FILE = "coco/test_coco.json"
COCO_PREDS = "coco/xtcocoapi_examples/example_coco_preds.json"
CROWD_VAL = "crowdpose/xtcocoapi_examples/example_crowdpose_val.json"
CROWD_PREDS = "crowdpose/xtcocoapi_examples/example_crowdpose_preds.json"
OFFICIAL_VAL = "crowdpose/official_api/crowdpose_val.json"
ANNOTATION_FILES = [("coco", COCO_FILE), ("crowdpose", "crowdpose/test_crowdpose.json"),
                    ("crowdpose", CROWD_VAL), ("crowdpose", OFFICIAL_VAL),
                    ("ochuman", "ochuman/test_ochuman.json")]
CROWDPOSE_SIGMAS = np.array([.79, .79, .72, .72, .62, .62, 1.07, 1.07, .87, .87, .89, .89,
                             .79, .79]) / 10
THRESHOLDS = np.linspace(.5, .95, 10)

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
# pycocotools 2.0.11 (and xtcocotools 'keypoints', use_area=True: the same numbers) on the
# xtcocoapi COCO example predictions against test_coco.json (= xtcocoapi example_coco_val).
COCO_PEER_REFERENCE = {"AP": 0.8608896054440609, "AP50": 0.993145468392993,
                       "AP75": 0.9108910891089109, "APM": 0.7755775577557756,
                       "APL": 0.9372524752475248, "AR": 0.875, "AR50": 1.0,
                       "AR75": 0.9166666666666666, "ARM": 0.78, "ARL": 0.9428571428571428}


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
  evaluator = make_evaluator(dataset, str(shared_data / rel))
  evaluator.add(gt_as_results(data, lambda a: a["num_keypoints"] > 0))
  metrics = evaluator.compute()
  assert metrics["AP"] == metrics["AP50"] == metrics["AP75"] == metrics["AR"] == 1.0
  assert all(v in (1.0, -1.0) for v in metrics.values())
  # Every non-crowd GT with >= 1 labelled keypoint, ignored ones included.
  evaluator = make_evaluator(dataset, str(shared_data / rel))
  evaluator.add(gt_as_results(data, labelled))
  metrics = evaluator.compute()
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


def pycocotools_stats(gt_path: str, results_path: str) -> list[float]:
  """The COCO protocol run directly with pycocotools (the independent path)."""
  with contextlib.redirect_stdout(io.StringIO()):
    gt = COCO(gt_path)
    coco_eval = COCOeval(gt, gt.loadRes(results_path), "keypoints")
    coco_eval.params.useSegm = None
    coco_eval.evaluate()
    coco_eval.accumulate()
    coco_eval.summarize()
  return [float(s) for s in coco_eval.stats]


def test_coco_peer_predictions_match_pycocotools(shared_data):
  gt, preds = str(shared_data / COCO_FILE), str(shared_data / COCO_PREDS)
  metrics = evaluate_file("coco", gt, preds)
  assert list(metrics.values()) == pycocotools_stats(gt, preds)
  assert metrics == COCO_PEER_REFERENCE


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
  metrics = evaluate_file("crowdpose", str(shared_data / CROWD_VAL),
                          str(shared_data / CROWD_PREDS))
  assert metrics == CROWD_PEER_REFERENCE


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
  evaluator = CrowdPoseEvaluator(path)
  evaluator.add(preds)
  assert evaluator.compute() == CROWD_PERTURBED_REFERENCE


@pytest.mark.parametrize("case", ["peer", "perturbed"])
def test_crowdpose_live_against_xtcocotools(shared_data, case):
  if case == "peer":
    gt = str(shared_data / CROWD_VAL)
    preds = json.loads((shared_data / CROWD_PREDS).read_text())
  else:
    gt = str(shared_data / OFFICIAL_VAL)
    preds = perturbed_predictions(json.loads((shared_data / OFFICIAL_VAL).read_text()))
  reference = xtcocotools_crowd_stats(gt, [dict(p) for p in preds])
  evaluator = CrowdPoseEvaluator(gt)
  evaluator.add(preds)
  assert evaluator.compute() == reference


# ---- Hand-built cases ------------------------------------------------------------------

def person(ann_id: int, image_id: int, box: list[float], keypoints: np.ndarray, **extra) -> dict:
  return {"id": ann_id, "image_id": image_id, "category_id": 1, "iscrowd": 0, "bbox": box,
          "keypoints": keypoints.ravel().tolist(), "num_keypoints": len(keypoints),
          **extra}


def pose(num_keypoints: int, x0: float, y0: float) -> np.ndarray:
  """[K, 3] keypoints spread over a 100 x 200 box at (x0, y0), all v = 2."""
  k = np.arange(num_keypoints)
  return np.stack([x0 + 10 + 5 * k, y0 + 10 + 11 * k, np.full(num_keypoints, 2.)], 1)


def result(image_id: int, keypoints: np.ndarray, score: float) -> dict:
  return {"image_id": image_id, "category_id": 1, "keypoints": keypoints.ravel().tolist(),
          "score": score}


def hand_oks(shift: float, sigmas, area: float) -> float:
  """OKS of a prediction with every keypoint moved by ``shift`` pixels (the OKS formula)."""
  sigmas = np.asarray(sigmas)
  return float(np.mean(np.exp(-shift ** 2 / (2 * sigmas) ** 2 / area / 2)))


def expected_ap(oks: float, recall_if_missed: float) -> float:
  """AP when every prediction is right except one, ranked last, of OKS ``oks``.

  At a threshold <= oks all are true positives (precision 1 at every recall threshold);
  above it, precision is 1 up to recall ``recall_if_missed`` and 0 beyond (101 points).
  """
  matched = int(np.sum(THRESHOLDS <= oks))
  points = np.sum(np.linspace(0, 1, 101) <= recall_if_missed + 1e-12)
  return (matched + (10 - matched) * points / 101) / 10


def coco_scene() -> dict:
  images = [{"id": 7, "file_name": "a.jpg", "height": 480, "width": 640}]
  anns = [person(1, 7, [0., 0., 100., 200.], pose(17, 0, 0), area=10000.),
          person(2, 7, [300., 0., 100., 200.], pose(17, 300, 0), area=10000.)]
  return {"images": images, "annotations": anns,
          "categories": [{"id": 1, "name": "person"}]}


def test_coco_perfect_and_shifted_prediction():
  shift = 8.0
  oks = hand_oks(shift, get_meta("coco").sigmas, 10000.)
  assert 0.70 < oks < 0.75                   # matched at .50 ... .70: 5 thresholds of 10
  evaluator = CocoEvaluator(coco_scene(), "coco")
  moved = pose(17, 300, 0)
  moved[:, 0] += shift
  evaluator.add([result(7, pose(17, 0, 0), 0.9), result(7, moved, 0.8)])
  metrics = evaluator.compute()
  assert metrics["AP"] == pytest.approx(expected_ap(oks, 0.5), abs=1e-12)
  assert metrics["AP"] == pytest.approx((5 + 5 * 51 / 101) / 10, abs=1e-12)
  assert metrics["AP50"] == 1.0 and metrics["AP75"] == pytest.approx(51 / 101)
  assert metrics["AR"] == pytest.approx((5 + 5 * 0.5) / 10)
  assert metrics["APL"] == metrics["AP"]
  assert metrics["APM"] == metrics["ARM"] == -1.0    # area 10000 > 96^2: no medium person


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
  assert 0.80 < oks < 0.85                       # 7 thresholds of 10
  assert hand_oks(shift, CROWDPOSE_SIGMAS, 100 * 200) > 0.9   # without 0.53: 9 of 10
  moved = pose(14, 300, 0)
  moved[:, 1] += shift
  evaluator = CrowdPoseEvaluator(crowdpose_scene())
  evaluator.add([result(1, pose(14, 0, 0), 0.95), result(2, pose(14, 0, 0), 0.9),
                 result(2, moved, 0.8)])
  metrics = evaluator.compute()
  assert metrics["AP"] == pytest.approx(expected_ap(oks, 2 / 3), abs=1e-12)
  assert metrics["AP"] == pytest.approx((7 + 3 * 67 / 101) / 10, abs=1e-12)
  assert metrics["AR"] == pytest.approx((7 + 3 * 2 / 3) / 10)
  assert metrics["AP_easy"] == 1.0
  assert metrics["AP_medium"] == round(expected_ap(oks, 0.5), 4) == 0.8515   # 4 decimals
  assert metrics["AP_hard"] == -1.0                                          # no hard image


def test_empty_predictions_warn_and_score_zero(shared_data, tmp_path, caplog):
  empty = tmp_path / "empty.json"
  empty.write_text("[]")
  with caplog.at_level(logging.WARNING):
    metrics = evaluate_file("crowdpose", str(shared_data / CROWD_VAL), str(empty))
  assert metrics == dict.fromkeys(CROWD_PEER_REFERENCE, 0.0)
  assert "no predictions" in caplog.text
  caplog.clear()
  with caplog.at_level(logging.WARNING):
    metrics = make_evaluator("ochuman", str(shared_data / "ochuman/test_ochuman.json")).compute()
  assert metrics["AP"] == metrics["AR"] == metrics["APL"] == 0.0
  assert metrics["APM"] == metrics["ARM"] == -1.0       # OCHuman sample: no medium person
  assert "no predictions" in caplog.text
  caplog.clear()
  with caplog.at_level(logging.WARNING):
    metrics = CrowdPoseEvaluator(crowdpose_scene()).compute()
  assert metrics["AP_easy"] == metrics["AP_medium"] == 0.0 and metrics["AP_hard"] == -1.0


# ---- One-line input errors -------------------------------------------------------------

def one_line_error(error_type, call) -> str:
  with pytest.raises(error_type) as info:
    call()
  message = str(info.value)
  assert "\n" not in message
  return message


def test_unknown_image_id_in_memory_and_in_file(shared_data, tmp_path):
  evaluator = CocoEvaluator(coco_scene(), "coco")
  good = result(7, pose(17, 0, 0), 0.9)
  message = one_line_error(ResultsError, lambda: evaluator.add([good, {**good, "image_id": 9}]))
  assert message == ("results: entry 1: field 'image_id' 9 is not an image of annotations")
  assert len(evaluator) == 0                        # nothing of a bad batch is kept
  preds = json.loads((shared_data / COCO_PREDS).read_text())
  preds[5]["image_id"] = 123456
  path = tmp_path / "preds.json"
  path.write_text(json.dumps(preds))
  message = one_line_error(ResultsError, lambda: evaluate_file(
      "coco", str(shared_data / COCO_FILE), str(path)))
  assert message.startswith(f"{path}: entry 5: field 'image_id' 123456 is not an image of ")
  assert message.endswith("coco/test_coco.json")


def test_wrong_keypoint_count(shared_data):
  # The COCO example predictions (17 keypoints) against CrowdPose annotations (14).
  preds = json.loads((shared_data / COCO_PREDS).read_text())
  evaluator = CrowdPoseEvaluator(str(shared_data / CROWD_VAL))
  bad = [{**preds[0], "image_id": 114203}]
  message = one_line_error(ResultsError, lambda: evaluator.add(bad, source="preds.json"))
  assert message == ("preds.json: entry 0 (image_id 114203): field 'keypoints' has 51 values, "
                     "expected 42 (3 x 14 keypoints of the dataset)")
  # Annotations of the wrong dataset: the ground-truth check names the annotation.
  message = one_line_error(AnnotationError, lambda: evaluate_file(
      "coco", str(shared_data / CROWD_VAL), str(shared_data / CROWD_PREDS)))
  assert message.endswith("annotation 165388: field 'keypoints' has 42 values, expected 51 "
                          "(3 x 17 keypoints of coco)")


@pytest.mark.parametrize("field,value,expected", [
    ("score", float("nan"), "field 'score' must be a finite number, got nan"),
    ("score", "0.9", "field 'score' must be a finite number, got '0.9'"),
    ("score", True, "field 'score' must be a finite number, got True"),
    ("keypoints", [float("inf")] * 51, "field 'keypoints' must hold finite numbers only"),
    ("category_id", 2, "field 'category_id' 2 is not a category of annotations"),
])
def test_bad_fields(field, value, expected):
  evaluator = CocoEvaluator(coco_scene(), "coco")
  bad = {**result(7, pose(17, 0, 0), 0.9), field: value}
  message = one_line_error(ResultsError, lambda: evaluator.add([bad]))
  assert message == f"results: entry 0 (image_id 7): {expected}"
  missing = result(7, pose(17, 0, 0), 0.9)
  del missing["score"]
  assert one_line_error(ResultsError, lambda: evaluator.add([missing])) == (
      "results: entry 0: field 'score' is missing")


def test_bad_files(shared_data, tmp_path):
  annotations = str(shared_data / CROWD_VAL)
  not_json, not_list = tmp_path / "a.json", tmp_path / "b.json"
  not_json.write_text("[{")
  not_list.write_text("{}")
  for path, text in [(not_json, "not valid JSON"), (not_list, "expected a JSON list"),
                     (tmp_path / "none.json", "cannot read the results file")]:
    message = one_line_error(ResultsError, lambda p=path: evaluate_file(
        "crowdpose", annotations, str(p)))
    assert message.startswith(f"{path}: {text}")
  data = json.loads((shared_data / CROWD_VAL).read_text())
  del data["images"][2]["crowdIndex"]
  assert one_line_error(AnnotationError, lambda: CrowdPoseEvaluator(data)) == (
      "annotations: image 107292: field 'crowdIndex' missing or not a number")


def test_add_arrays_equals_add(shared_data):
  data = json.loads((shared_data / CROWD_VAL).read_text())
  preds = json.loads((shared_data / CROWD_PREDS).read_text())
  evaluator = CrowdPoseEvaluator(data)
  evaluator.add_arrays(np.array([p["image_id"] for p in preds]),
                       np.array([p["keypoints"] for p in preds]).reshape(len(preds), 14, 3),
                       np.array([p["score"] for p in preds]))
  assert evaluator.compute() == CROWD_PEER_REFERENCE
  assert CROWD_PEER_REFERENCE == evaluator.compute()      # compute() can be repeated
