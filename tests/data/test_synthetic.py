"""The synthetic crowd dataset: determinism, COCO format, labels, crowding and ``ensure``."""

import hashlib
import json
import pathlib

import cv2
import numpy as np
import pytest

from mipnet_jax.core import meta
from mipnet_jax.data import coco_format
from mipnet_jax.data import synthetic
from mipnet_jax.data import synthetic_scene as scene
from mipnet_jax.data.coco_format import count_multi_instance, load_person_records
from mipnet_jax.core.meta import COCO

SMALL = dict(num_train=20, num_val=5, image_hw=(256, 256))
HW = SMALL["image_hw"]


def _hashes(root: pathlib.Path) -> dict[str, str]:
  return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
          for p in sorted(root.rglob("*")) if p.is_file()}


def _annotations(root: pathlib.Path, split: str = "train") -> dict:
  return json.loads((root / "annotations" / f"person_keypoints_{split}.json").read_text())


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> pathlib.Path:
  root = tmp_path_factory.mktemp("syn") / "seed0"
  synthetic.generate(str(root), seed=0, workers=1, **SMALL)
  return root


def test_same_seed_same_bytes_other_seed_differs(small, tmp_path):
  synthetic.generate(str(tmp_path / "again"), seed=0, workers=1, **SMALL)
  synthetic.generate(str(tmp_path / "seed1"), seed=1, workers=1, **SMALL)
  base = _hashes(small)
  # JPEGs, 2 annotation + 2 pairs-subset + 2 shared-box files, 2 detection + 2 pairs-subset
  # files, manifest
  assert len(base) == 20 + 5 + 6 + 4 + 1
  assert _hashes(tmp_path / "again") == base
  other = _hashes(tmp_path / "seed1")
  assert other.keys() == base.keys()
  differing = [k for k in base if other[k] != base[k]]
  assert len(differing) == len(base)     # every image, every annotation file and the manifest


def test_worker_processes_do_not_change_the_output(tmp_path):
  synthetic.generate(str(tmp_path / "one"), seed=3, num_train=6, num_val=2, workers=1)
  synthetic.generate(str(tmp_path / "two"), seed=3, num_train=6, num_val=2, workers=2)
  assert _hashes(tmp_path / "one") == _hashes(tmp_path / "two")


@pytest.mark.parametrize("split,count", [("train", 20), ("val", 5)])
def test_repo_reader_loads_without_skips(small, split, count):
  ann = small / "annotations" / f"person_keypoints_{split}.json"
  records, report = load_person_records(str(ann), COCO, str(small / "images" / split),
                                        (256, 192))
  assert not report.skipped
  assert report.num_images == count
  assert len(records) == len(_annotations(small, split)["annotations"]) >= count
  for path in {r.image_path for r in records}:
    assert cv2.imread(path).shape == (*HW, 3)
  for r in records:
    assert r.image_hw == HW and r.keypoints.shape == (17, 3)


def test_pycocotools_loads(small):
  from pycocotools.coco import COCO as PyCOCO
  coco = PyCOCO(str(small / "annotations" / "person_keypoints_train.json"))
  assert len(coco.getImgIds()) == 20
  cat = coco.loadCats(coco.getCatIds(catNms=["person"]))[0]
  assert cat["id"] == 1 and cat["keypoints"] == list(COCO.keypoint_names)
  assert [1, 2] in cat["skeleton"] and [16, 14] in cat["skeleton"] and len(cat["skeleton"]) == 19
  for ann in coco.loadAnns(coco.getAnnIds(catIds=[1])):
    assert ann["iscrowd"] == 0 and ann["area"] == ann["bbox"][2] * ann["bbox"][3] > 0
    assert ann["num_keypoints"] == sum(v > 0 for v in ann["keypoints"][2::3])


def test_keypoints_in_their_tight_box_and_v0_exactly_outside(small):
  data = _annotations(small)
  by_image = {}
  for ann in data["annotations"]:
    by_image.setdefault(ann["image_id"], []).append(ann)
  outside_total = 0
  for index in range(20):
    # The generator's own scene for this image: same per-image rng, same draws as render().
    rng = np.random.default_rng([0, 0, index])
    scene.make_background(rng, HW)
    _, people = scene.make_scene(rng, HW)
    anns = by_image[index + 1]
    assert len(anns) == len(people)
    for fig, ann in zip(people, anns):
      kpts = np.array(ann["keypoints"], np.float64).reshape(17, 3)
      x, y, w, h = ann["bbox"]
      ys, xs = np.nonzero(fig.mask)
      assert (x, y, w, h) == (xs.min(), ys.min(), xs.max() - xs.min() + 1,
                              ys.max() - ys.min() + 1)
      jx, jy = fig.joints[:, 0], fig.joints[:, 1]
      outside = (jx < 0) | (jy < 0) | (jx >= HW[1]) | (jy >= HW[0])
      outside_total += outside.sum()
      np.testing.assert_array_equal(kpts[:, 2] == 0, outside)
      np.testing.assert_array_equal(kpts[outside], 0)
      lab = kpts[:, 2] > 0
      np.testing.assert_allclose(kpts[lab, :2], fig.joints[lab], atol=1e-6)
      assert np.all((kpts[lab, 0] >= x) & (kpts[lab, 0] <= x + w))
      assert np.all((kpts[lab, 1] >= y) & (kpts[lab, 1] <= y + h))
  assert outside_total > 0     # some people are cut by the image border


def test_crowding(small):
  data = _annotations(small)
  scenes = {img["id"]: img["scene"] for img in data["images"]}
  pairs = [i for i, s in scenes.items() if s == "pair"]
  assert len(pairs) >= 10                      # >= 50% of the 20 images
  for image_id in pairs:
    anns = [a for a in data["annotations"] if a["image_id"] == image_id]
    boxes = [np.array(a["bbox"], np.float64) for a in anns]
    ious = [scene.box_iou(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1:]]
    assert any(scene.PAIR_IOU[0] <= iou <= scene.PAIR_IOU[1] for iou in ious)
    assert any(1 in a["keypoints"][2::3] for a in anns)   # the back person is occluded
  records, _ = load_person_records(
      str(small / "annotations" / "person_keypoints_train.json"), COCO,
      str(small / "images" / "train"), (256, 192))
  assert count_multi_instance(records) / len(records) >= 0.5
  manifest = json.loads((small / "MANIFEST.json").read_text())
  assert manifest["counts"]["train"]["multi_instance"] == count_multi_instance(records)


def test_ensure_regenerates_only_on_change(tmp_path):
  root = tmp_path / "data"
  params = dict(num_train=8, num_val=2, workers=1)
  first = synthetic.ensure(str(root), seed=0, **params)
  manifest = root / "MANIFEST.json"
  ann = root / "annotations" / "person_keypoints_train.json"
  stamps = (manifest.stat().st_mtime_ns, ann.stat().st_mtime_ns)
  assert synthetic.ensure(str(root), seed=0, **params) == first
  assert (manifest.stat().st_mtime_ns, ann.stat().st_mtime_ns) == stamps
  old = ann.read_bytes()
  second = synthetic.ensure(str(root), seed=1, **params)
  assert second["seed"] == 1 and ann.read_bytes() != old
  assert manifest.stat().st_mtime_ns != stamps[0]
  synthetic.ensure(str(root), seed=1, num_train=5, num_val=2, workers=1)
  assert sorted(p.name for p in (root / "images" / "train").iterdir()) == [
      f"{i:012d}.jpg" for i in range(1, 6)]        # stale images of the larger run removed


def test_cli(tmp_path, capsys):
  synthetic.main(["--root", str(tmp_path), "--seed", "2", "--num_train", "3", "--num_val",
                  "1", "--workers", "1"])
  out = json.loads(capsys.readouterr().out)
  assert out["seed"] == 2 and out["counts"]["val"]["images"] == 1
  assert out["counts"]["train"]["boxes"] == len(_annotations(tmp_path)["annotations"])


def test_pairs_subset_holds_exactly_the_pair_images(small):
  full = _annotations(small, "val")
  pairs = json.loads((small / "annotations" / "person_keypoints_val_pairs.json").read_text())
  want = {img["id"] for img in full["images"] if img["scene"] == "pair"}
  assert {img["id"] for img in pairs["images"]} == want
  assert pairs["annotations"] == [a for a in full["annotations"] if a["image_id"] in want]


@pytest.mark.parametrize("split", ["train", "val", "val_pairs"])
def test_detection_files_load_for_their_annotations(small, split):
  from mipnet_jax.data import boxes
  base, _, pairs = split.partition("_")
  ann = small / "annotations" / f"person_keypoints_{split}.json"
  det = small / "annotations" / f"person_detections_{split}.json"
  found, report = boxes.load_detections(str(det), str(ann), str(small / "images" / base),
                                        (256, 192))
  dets = json.loads(det.read_text())
  assert len(found) == len(dets) > 0 and not report.skipped
  if pairs:       # the subset file holds exactly the full file's boxes of the pair images
    full = json.loads((small / "annotations" / f"person_detections_{base}.json").read_text())
    ids = {img["id"] for img in json.loads(ann.read_text())["images"]}
    assert dets == [d for d in full if d["image_id"] in ids]


def test_shared_split_is_the_pairs_ocpose_style(small):
  """Per pair image, exactly its last two people (the pair), both with the union of their
  boxes, the 12 limb joints of their COCO keypoints and num_keypoints recounted."""
  full = _annotations(small, "val")
  shared = json.loads((small / "annotations" / "person_keypoints_val_shared.json").read_text())
  pair_images = [img for img in full["images"] if img["scene"] == "pair"]
  assert shared["images"] == pair_images and pair_images
  assert shared["categories"][0]["keypoints"] == list(meta.JOINT_SETS["limbs"])
  by_image = {}
  for a in shared["annotations"]:
    by_image.setdefault(a["image_id"], []).append(a)
  assert sorted(by_image) == [img["id"] for img in pair_images]
  for image_id, anns in by_image.items():
    originals = [a for a in full["annotations"] if a["image_id"] == image_id][-2:]
    assert [a["id"] for a in anns] == [a["id"] for a in originals]
    x1 = min(a["bbox"][0] for a in originals)
    y1 = min(a["bbox"][1] for a in originals)
    x2 = max(a["bbox"][0] + a["bbox"][2] for a in originals)
    y2 = max(a["bbox"][1] + a["bbox"][3] for a in originals)
    for a, o in zip(anns, originals):
      assert a["bbox"] == [x1, y1, x2 - x1, y2 - y1] and a["area"] == (x2 - x1) * (y2 - y1)
      assert a["keypoints"] == o["keypoints"][15:]              # COCO joints 5..16
      assert a["num_keypoints"] == sum(v > 0 for v in a["keypoints"][2::3])
  # The repo's reader takes it with the OCPose joints (12 per person), skipping nothing.
  ocpose = meta.build_meta("ocpose", meta.JOINT_SETS["limbs"])
  records, report = coco_format.load_person_records(
      str(small / "annotations" / "person_keypoints_val_shared.json"), ocpose, "", (256, 192))
  assert len(records) == len(shared["annotations"]) and not report.skipped
