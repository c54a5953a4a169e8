"""The data report on every shared annotation file, cross-checked with pycocotools, and its
counted image problems."""

import json
import shutil

import numpy as np
import pytest
from pycocotools.coco import COCO

from mipnet_jax.core import geometry
from mipnet_jax.data import stats

FILES = [("coco", "coco/test_coco.json"), ("crowdpose", "crowdpose/test_crowdpose.json"),
         ("crowdpose", "crowdpose/official_api/crowdpose_val.json"),
         ("crowdpose", "crowdpose/xtcocoapi_examples/example_crowdpose_val.json"),
         ("ochuman", "ochuman/test_ochuman.json")]


@pytest.mark.parametrize("dataset,rel", FILES)
def test_boxes_match_pycocotools_counts(shared_data, dataset, rel):
  report = stats.split_report(str(shared_data / rel), dataset)
  gt = COCO(str(shared_data / rel))
  anns = gt.loadAnns(gt.getAnnIds())
  usable = [a for a in anns if not a.get("iscrowd", 0)
            and max(a["keypoints"][2::3]) > 0 and a["bbox"][2] > 0 and a["bbox"][3] > 0]
  assert report["boxes"] == len(usable)
  assert report["images"] == len({a["image_id"] for a in usable})
  assert report["skipped"].get("crowd", 0) == sum(1 for a in anns if a.get("iscrowd", 0))
  assert sum(report["skipped"].values()) == len(anns) + len(gt.getImgIds()) - len(
      usable) - report["images"]        # every annotation and image accounted for
  assert report["multi_instance_boxes"] == _multi_instance_by_hand(gt, usable)
  assert report["multi_instance_boxes"] <= report["boxes_in_images_with_2plus_people"]
  assert report["multi_instance_fraction"] == round(report["multi_instance_boxes"] /
                                                    report["boxes"], 4)


def _multi_instance_by_hand(gt, usable) -> int:
  """The paper's statistic from pycocotools' annotations: a box counts when the 1.25x padded,
  192:256-shaped crop of its cleaned box (x, y, w - 1, h - 1, clipped to the image) holds 4 or
  more labelled joints of another usable person of its image, bounds included."""
  count = 0
  for a in usable:
    img = gt.imgs[a["image_id"]]
    x, y, w, h = a["bbox"]
    x1, y1 = max(0.0, x), max(0.0, y)
    x2 = min(img["width"] - 1.0, x1 + max(0.0, w - 1))
    y2 = min(img["height"] - 1.0, y1 + max(0.0, h - 1))
    center, scale = geometry.box_to_center_scale([x1, y1, x2 - x1, y2 - y1], (256, 192))
    half = scale * 100.0
    for o in usable:
      if o is a or o["image_id"] != a["image_id"]:
        continue
      k = np.array(o["keypoints"], np.float64).reshape(-1, 3)
      inside = (k[:, 2] > 0) & np.all(np.abs(k[:, :2] - center) <= half, axis=1)
      if inside.sum() >= 4:
        count += 1
        break
  return count


def test_crowdpose_val_statistic(shared_data):
  report = stats.split_report(str(shared_data / "crowdpose/official_api/crowdpose_val.json"),
                              "crowdpose")
  assert report["images"] == 2000 and report["boxes"] == 7962
  # CrowdPose was built to be crowded: most boxes hold another person's joints.
  gt = COCO(str(shared_data / "crowdpose/official_api/crowdpose_val.json"))
  usable = [a for a in gt.loadAnns(gt.getAnnIds()) if not a.get("iscrowd", 0)
            and max(a["keypoints"][2::3]) > 0 and a["bbox"][2] > 0 and a["bbox"][3] > 0]
  assert report["multi_instance_boxes"] == _multi_instance_by_hand(gt, usable)
  assert report["multi_instance_fraction"] == round(report["multi_instance_boxes"] / 7962, 4)
  assert report["multi_instance_fraction"] > 0.5


def test_multi_instance_statistic_by_hand(tmp_path):
  def person(ann_id, x, n_kpts, image_id=1):
    kp = np.zeros((17, 3))
    kp[:n_kpts] = [x + 20, 60, 2]
    return {"id": ann_id, "image_id": image_id, "category_id": 1, "iscrowd": 0,
            "bbox": [x, 10, 40, 100], "keypoints": kp.ravel().tolist()}
  # A at x=0 and B at x=30 overlap; C at x=300 is far. B has 4 joints, C 9.
  anns = [person(1, 0, 5), person(2, 30, 4), person(3, 300, 9)]
  path = tmp_path / "a.json"
  path.write_text(json.dumps({"images": [{"id": 1, "file_name": "a.jpg", "height": 200,
                                          "width": 400}], "annotations": anns}))
  report = stats.split_report(str(path), "coco")
  # A's crop holds B's 4 joints, B's holds A's 5; C's crop holds nobody else's.
  assert report["multi_instance_boxes"] == 2 and report["boxes"] == 3


def test_image_check_counts_each_problem(shared_data, tmp_path):
  src = shared_data / "coco"
  data = json.loads((src / "test_coco.json").read_text())
  names = [img["file_name"] for img in data["images"]]
  shutil.copy(src / names[0], tmp_path / names[0])                       # fine
  (tmp_path / names[1]).write_bytes((src / names[1]).read_bytes()[:5000])  # truncated
  (tmp_path / names[2]).write_bytes(b"junk")                               # unreadable
  # names[3] missing. And one annotation whose image size is wrong:
  data["images"][0]["height"] += 1
  ann = tmp_path / "ann.json"
  ann.write_text(json.dumps(data))
  check = stats.split_report(str(ann), "coco", str(tmp_path),
                             decode_images=True)["image_check"]
  assert check["checked"] == 4 and check["bad"] == 4
  assert check["errors"] == {"image file not found": 1, "truncated JPEG": 1,
                             "not a readable image": 1, "size differs from the annotation": 1}
  assert any(names[3] in m for m in check["first_errors"])


def test_report_table_columns_line_up_with_long_split_names():
  row = dict(images=3, boxes=5, boxes_in_images_with_2plus_people=4, multi_instance_boxes=2,
             multi_instance_fraction=0.4, skipped={})
  text = stats.format_reports({"val": row, "synthetic_val_shared_tight": row})
  header, short, long = text.splitlines()[:3]
  assert header.index("images") + len("images") == short.index("3") + 1 == long.index("3") + 1
  assert long.startswith("synthetic_val_shared_tight       3       5")
