"""Evaluation boxes: ground truth and COCO-format detection files (counts, filters, errors)."""

import json

import numpy as np
import pytest

from mipnet_jax.data import boxes, coco_format
from mipnet_jax.core import geometry, meta

INPUT_HW = (256, 192)


def test_real_detection_files(shared_data):
  coco = shared_data / "coco"
  dets, report = boxes.load_detections(str(coco / "test_coco_det_AP_H_56.json"),
                                       str(coco / "test_coco.json"), str(coco), INPUT_HW)
  assert len(dets) == 118 and report.num_images == 4 and not report.skipped
  raw = json.loads((coco / "test_coco_det_AP_H_56.json").read_text())[0]
  c, s = geometry.box_to_center_scale(raw["bbox"], INPUT_HW)   # no clipping of det boxes
  np.testing.assert_allclose(dets[0].center, c)
  np.testing.assert_allclose(dets[0].scale, s)
  assert dets[0].score == pytest.approx(raw["score"]) and dets[0].image_path.endswith(".jpg")
  strong, report = boxes.load_detections(str(coco / "test_coco_det_AP_H_56.json"),
                                         str(coco / "test_coco.json"), str(coco), INPUT_HW,
                                         min_score=0.5)
  assert len(strong) == 18 and report.skipped["score below 0.5"] == 100
  crowd = shared_data / "crowdpose"
  dets, _ = boxes.load_detections(str(crowd / "test_crowdpose_det_AP_40.json"),
                                  str(crowd / "test_crowdpose.json"), str(crowd), INPUT_HW)
  assert len(dets) == 6


def test_gt_boxes_score_one(shared_data):
  folder = shared_data / "coco"
  records, _ = coco_format.load_person_records(str(folder / "test_coco.json"), meta.COCO,
                                               str(folder), INPUT_HW)
  gt = boxes.gt_boxes(records)
  assert len(gt) == len(records) and {b.score for b in gt} == {1.0}
  assert [b.source_id for b in gt] == [r.ann_id for r in records]


def _write(tmp_path, dets):
  ann = tmp_path / "ann.json"
  ann.write_text(json.dumps({"images": [{"id": 1, "file_name": "a.jpg", "height": 50,
                                         "width": 40}], "annotations": []}))
  det = tmp_path / "det.json"
  det.write_text(json.dumps(dets))
  return str(det), str(ann)


def _det(**kw):
  return {"image_id": 1, "category_id": 1, "bbox": [1, 2, 10, 20], "score": 0.9, **kw}


def test_counted_skips(tmp_path):
  dets = [_det(), _det(category_id=3), _det(score=0.01), _det(bbox=[1, 1, 0, 5])]
  out, report = boxes.load_detections(*_write(tmp_path, dets), "imgs", INPUT_HW, 0.05)
  assert len(out) == 1 and out[0].source_id == 0
  assert dict(report.skipped) == {"not a person": 1, "score below 0.05": 1,
                                  "box without area": 1}


@pytest.mark.parametrize("dets,match", [
    ({"not": "a list"}, r"det\.json: a detection file is a JSON list"),
    ([_det(image_id=99)], r"det\.json: detection 0: field 'image_id' 99 is not an image"),
    ([_det(), {"image_id": 1, "bbox": [0, 0, 1, 1], "score": 1}],
     r"detection 1: field 'category_id' missing"),
    ([_det(bbox=[1, 2, 3])], r"detection 0: field 'bbox' must hold 4 numbers"),
    ([_det(score="high")], r"detection 0: field 'score' must be a number"),
    ([_det(bbox=[1, 2, float("nan"), 4])], r"detection 0: field 'bbox' or 'score' holds NaN"),
])
def test_bad_detection_files_are_named(tmp_path, dets, match):
  with pytest.raises(coco_format.AnnotationError, match=match):
    boxes.load_detections(*_write(tmp_path, dets), "imgs", INPUT_HW)
