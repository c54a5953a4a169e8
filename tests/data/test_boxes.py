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


def test_tight_boxes_by_hand(tmp_path):
  """gt_tight: the labelled joints' extent + 10% of it per side, sides >= 8 px, clipped; a
  person without labelled joints is skipped and counted."""
  k = np.zeros((17, 3))
  k[0] = [20, 30, 2]
  k[5] = [60, 130, 1]
  k[9] = [0, 0, 0]                              # unlabelled: ignored even at (0, 0)
  one = np.zeros((17, 3))
  one[3] = [50, 52, 2]
  edge = np.zeros((17, 3))
  edge[1], edge[2] = [2, 50, 2], [78, 51, 2]    # extent 76 x 1: pads to x -5.6..85.6, clipped
  anns = [dict(id=i + 1, image_id=1, category_id=1, iscrowd=0, bbox=[0, 0, 80, 150],
               keypoints=kp.ravel().tolist())
          for i, kp in enumerate((k, one, edge, np.zeros((17, 3))))]
  path = tmp_path / "a.json"
  path.write_text(json.dumps(dict(images=[dict(id=1, file_name="a.jpg", height=150, width=80)],
                                  annotations=anns, categories=[])))
  records, report = coco_format.load_person_records(str(path), meta.COCO, "", INPUT_HW)
  assert dict(report.skipped) == {"no labelled keypoint": 1}
  tight = boxes.tight_boxes(records, INPUT_HW)
  assert [b.source_id for b in tight] == [1, 2, 3] and {b.score for b in tight} == {1.0}
  # 1: x 20..60 (w 40) -> 16..64; y 30..130 (h 100) -> 20..140.
  # 2: one joint at (50, 52): 8 x 8 around it.
  # 3: x 2..78 -> 0..79 (clipped at W - 1); y 50..51 (h 1) -> 49.9..51.1, widened to 8.
  want = [[16, 20, 48, 120], [46, 48, 8, 8], [0, 46.5, 79, 8]]
  np.testing.assert_allclose([b.box for b in tight], want, rtol=0, atol=1e-4)
  for b in tight:
    c, s = geometry.box_to_center_scale(b.box, INPUT_HW)
    np.testing.assert_array_equal(b.center, c)
    np.testing.assert_array_equal(b.scale, s)
