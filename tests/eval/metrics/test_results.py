"""Keypoint results (eval/metrics/results.py): every malformed entry or file is a one-line
``ResultsError`` naming the source, the entry, its image and the field; nothing of a bad
batch is kept; clean entries come back with exactly the four result fields."""

import json

import numpy as np
import pytest

from mipnet_jax.eval.metrics import CocoMetric, CrowdPoseMetric, ResultsError, evaluate_file
from mipnet_jax.eval.metrics.results import (
    load_results_file,
    results_from_arrays,
    validate_results,
)

from _metric_cases import (
    COCO_FILE, COCO_PREDS, CROWD_VAL, pose, result, coco_scene)


def one_line_error(error_type, call) -> str:
  with pytest.raises(error_type) as info:
    call()
  message = str(info.value)
  assert "\n" not in message
  return message


def test_unknown_image_id_in_memory_and_in_file(shared_data, tmp_path):
  metric = CocoMetric(coco_scene(), "coco")
  good = result(7, pose(17, 0, 0), 0.9)
  message = one_line_error(ResultsError, lambda: metric.add([good, {**good, "image_id": 9}]))
  assert message == ("results: entry 1: field 'image_id' 9 is not an image of annotations")
  assert len(metric) == 0                        # nothing of a bad batch is kept
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
  metric = CrowdPoseMetric(str(shared_data / CROWD_VAL))
  bad = [{**preds[0], "image_id": 114203}]
  message = one_line_error(ResultsError, lambda: metric.add(bad, source="preds.json"))
  assert message == ("preds.json: entry 0 (image_id 114203): field 'keypoints' has 51 values, "
                     "expected 42 (3 x 14 keypoints of the dataset)")


@pytest.mark.parametrize("field,value,expected", [
    ("score", float("nan"), "field 'score' must be a finite number, got nan"),
    ("score", "0.9", "field 'score' must be a finite number, got '0.9'"),
    ("score", True, "field 'score' must be a finite number, got True"),
    ("keypoints", [float("inf")] * 51, "field 'keypoints' must hold finite numbers only"),
    ("category_id", 2, "field 'category_id' 2 is not a category of annotations"),
])
def test_bad_fields(field, value, expected):
  metric = CocoMetric(coco_scene(), "coco")
  bad = {**result(7, pose(17, 0, 0), 0.9), field: value}
  message = one_line_error(ResultsError, lambda: metric.add([bad]))
  assert message == f"results: entry 0 (image_id 7): {expected}"
  missing = result(7, pose(17, 0, 0), 0.9)
  del missing["score"]
  assert one_line_error(ResultsError, lambda: metric.add([missing])) == (
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


def test_clean_entries_keep_the_four_fields_as_python_numbers():
  entry = {"image_id": np.int64(7), "category_id": 1, "score": np.float32(0.5),
           "keypoints": [1, 2.5, 1] * 17, "center": [3, 4], "scale": [1, 1]}
  [clean] = validate_results([entry], image_ids={7}, category_ids={1}, num_keypoints=17,
                             source="r.json", annotations_name="a.json")
  assert clean == {"image_id": 7, "category_id": 1, "keypoints": [1.0, 2.5, 1.0] * 17,
                   "score": 0.5}
  assert type(clean["image_id"]) is int and type(clean["score"]) is float
  assert all(type(v) is float for v in clean["keypoints"])
  assert entry["center"] == [3, 4]                          # the input is not modified


def test_non_objects_and_non_lists_are_named():
  common = dict(image_ids={7}, category_ids={1}, num_keypoints=17, source="r.json",
                annotations_name="a.json")
  message = one_line_error(ResultsError, lambda: validate_results([[7]], **common))
  assert message == "r.json: entry 0: expected a result object, got a list"
  bad = {"image_id": 7, "category_id": 1, "score": 1.0, "keypoints": "0 0 1"}
  message = one_line_error(ResultsError, lambda: validate_results([bad], **common))
  assert message == ("r.json: entry 0 (image_id 7): field 'keypoints' must be a list of 51 "
                     "numbers, got a str")
  bad = {"image_id": 7.0, "category_id": 1, "score": 1.0, "keypoints": [0] * 51}
  message = one_line_error(ResultsError, lambda: validate_results([bad], **common))
  assert message == "r.json: entry 0: field 'image_id' 7.0 is not an image of a.json"


def test_results_from_arrays():
  out = results_from_arrays(np.array([3, 4]), np.arange(12.0).reshape(2, 2, 3),
                            np.array([0.5, 0.25]))
  assert out == [{"image_id": 3, "category_id": 1, "keypoints": [0., 1., 2., 3., 4., 5.],
                  "score": 0.5},
                 {"image_id": 4, "category_id": 1, "keypoints": [6., 7., 8., 9., 10., 11.],
                  "score": 0.25}]
  message = one_line_error(ResultsError, lambda: results_from_arrays(
      np.array([3]), np.zeros((1, 2, 2)), np.array([1.0])))
  assert message == ("results: arrays must be image_ids [P], keypoints [P, K, 3], scores [P]; "
                     "got (1,), (1, 2, 2), (1,)")


def test_load_results_file(tmp_path):
  path = tmp_path / "r.json"
  path.write_text(json.dumps([{"image_id": 1}]))
  assert load_results_file(str(path)) == [{"image_id": 1}]      # parsed, not validated
