"""The COCO-format reader on the shared real samples and on hand-made bad input."""

import json

import numpy as np
import pytest

from mipnet_jax.data import coco_format
from mipnet_jax.core import meta


def test_coco_sample(shared_data):
  recs, report = coco_format.load_person_records(
      str(shared_data / "coco" / "test_coco.json"), meta.COCO, "imgs", (256, 192))
  raw = json.loads((shared_data / "coco" / "test_coco.json").read_text())
  kept = [a for a in raw["annotations"]
          if not a["iscrowd"] and max(a["keypoints"][2::3]) > 0]
  assert report.num_records == len(recs) == len(kept) == 12
  assert report.skipped["no labelled keypoint"] == len(raw["annotations"]) - len(kept)
  # Box cleaning: [x, y, w - 1, h - 1] inside the image.
  rec = next(r for r in recs if r.ann_id == 442619)
  np.testing.assert_allclose(rec.box, [280.79, 44.73, 217.7, 345.68], atol=1e-3)
  # Others sorted by squared distance between cleaned box centres.
  for r in recs:
    same = [q for q in recs if q.image_id == r.image_id and q.ann_id != r.ann_id]
    c = r.box[:2] + r.box[2:] / 2
    d = sorted(same, key=lambda q: float(np.sum((q.box[:2] + q.box[2:] / 2 - c) ** 2)))
    assert len(r.others) == len(d)
    for o, q in zip(r.others, d):
      np.testing.assert_array_equal(o, q.keypoints)


def test_crowdpose_official_val_counts(shared_data):
  path = shared_data / "crowdpose" / "official_api" / "crowdpose_val.json"
  recs, report = coco_format.load_person_records(str(path), meta.CROWDPOSE, "imgs", (256, 192))
  raw = json.loads(path.read_text())
  crowd = sum(a["iscrowd"] for a in raw["annotations"])
  empty = sum(1 for a in raw["annotations"]
              if not a["iscrowd"] and max(a["keypoints"][2::3]) <= 0)
  assert report.skipped["crowd"] == crowd and report.skipped["no labelled keypoint"] == empty
  assert report.num_records == len(raw["annotations"]) - crowd - empty == len(recs)
  assert recs[0].keypoints.shape == (14, 3)


def _write(tmp_path, anns, images=None):
  images = images or [{"id": 1, "file_name": "a.jpg", "height": 100, "width": 80}]
  p = tmp_path / "ann.json"
  p.write_text(json.dumps({"images": images, "annotations": anns}))
  return str(p)


def _ann(**kw):
  a = {"id": 7, "image_id": 1, "category_id": 1, "iscrowd": 0, "bbox": [10, 10, 30, 50],
       "keypoints": [20, 20, 2] * 17}
  a.update(kw)
  return a


@pytest.mark.parametrize("ann,message", [
    (_ann(keypoints=[1, 2, 2] * 16), "annotation 7: field 'keypoints' holds 16 joints, but coco "
                                     "declares 17 (nose, left_eye, "),
    (_ann(keypoints=[1, 2, 2] * 16 + [1]), "annotation 7: field 'keypoints' holds 49 values, "
                                           "but coco declares 17"),
    (_ann(keypoints="x"), "annotation 7: field 'keypoints' must hold 51 numbers, got 'str'"),
    (_ann(bbox=[1, 2, float("nan"), 4]), "annotation 7: field 'bbox' holds NaN"),
    (_ann(image_id=99), "annotation 7: field 'image_id' 99 names no image"),
])
def test_bad_records_name_file_record_and_field(tmp_path, ann, message):
  path = _write(tmp_path, [ann])
  with pytest.raises(coco_format.AnnotationError) as err:
    coco_format.load_person_records(path, meta.COCO, "imgs", (256, 192))
  assert str(err.value).startswith(path) and message in str(err.value)


def test_counted_skips(tmp_path):
  anns = [_ann(id=1), _ann(id=2, iscrowd=1), _ann(id=3, bbox=[90, 10, 20, 20]),
          _ann(id=4, keypoints=[0, 0, 0] * 17), _ann(id=5, category_id=2)]
  images = [{"id": 1, "file_name": "a.jpg", "height": 100, "width": 80},
            {"id": 2, "file_name": "b.jpg", "height": 100, "width": 80}]
  recs, report = coco_format.load_person_records(_write(tmp_path, anns, images), meta.COCO,
                                                 "imgs", (256, 192))
  assert [r.ann_id for r in recs] == [1]
  assert dict(report.skipped) == {"crowd": 1, "empty box after clipping": 1,
                                  "no labelled keypoint": 1, "not a person": 1,
                                  "image without usable people": 1}
  with pytest.raises(coco_format.AnnotationError, match=r"none\.json: file not found"):
    coco_format.load_person_records(str(tmp_path / "none.json"), meta.COCO, "x", (256, 192))


@pytest.mark.parametrize("images,message", [
    ([{"id": 1, "file_name": "a.jpg", "height": 0, "width": 80}],
     "image 1: fields 'height'/'width' must be positive integers"),
    ([{"id": 1, "file_name": "a.jpg", "height": 10, "width": 8}] * 2,
     "image 1: field 'id' repeats an earlier image"),
    ([{"id": 1, "height": 10, "width": 8}], "image 1: field 'file_name' missing"),
])
def test_bad_image_entries_are_named(tmp_path, images, message):
  path = _write(tmp_path, [_ann()], images)
  with pytest.raises(coco_format.AnnotationError, match=message):
    coco_format.load_person_records(path, meta.COCO, "imgs", (256, 192))
