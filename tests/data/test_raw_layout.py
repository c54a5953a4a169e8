"""The raw layouts as data and the checks of a split before it is prepared: the sample files
laid out as each dataset's raw folder plan into their images in ascending id with checksums;
missing files and folders, missing images and bad annotations are one-line errors."""

import hashlib
import json

import pytest

from mipnet_jax.core.meta import get_meta
from mipnet_jax.data import coco_format, raw_layout

# dataset -> (sample annotation JSON, folder of its images), relative to shared/data.
SAMPLES = {
    "coco": ("coco/test_coco.json", "coco"),
    "crowdpose": ("crowdpose/test_crowdpose.json", "crowdpose"),
    "ochuman": ("ochuman/test_ochuman.json", "ochuman"),
}


def sample_files(shared_data, dataset):
  ann, images = SAMPLES[dataset]
  return shared_data / ann, shared_data / images


def make_raw(root, shared_data, dataset):
  """The sample as every split of ``dataset``, in its raw layout (symlinks to the samples)."""
  ann, image_dir = sample_files(shared_data, dataset)
  file_names = [img["file_name"] for img in json.loads(ann.read_text())["images"]]
  for _, files in raw_layout.SPECS[dataset].splits:
    target = root / files.annotations.path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.symlink_to(ann)
    for name in file_names:
      link = root / files.images.path / name
      link.parent.mkdir(parents=True, exist_ok=True)
      if not link.exists():
        link.symlink_to(image_dir / name)
  return root


@pytest.mark.parametrize("dataset", sorted(SAMPLES))
def test_every_split_plans_its_images_in_ascending_id(tmp_path, shared_data, dataset):
  raw = make_raw(tmp_path / "raw", shared_data, dataset)
  ann, _ = sample_files(shared_data, dataset)
  data = json.loads(ann.read_text())
  want = sorted((img["id"], img["file_name"], img["height"], img["width"])
                for img in data["images"])
  spec = raw_layout.SPECS[dataset]
  for split, files in spec.splits:
    plan = raw_layout.plan_split(spec, split, str(raw))
    assert plan.split == split and plan.root == str(raw)
    assert plan.annotations == str(raw / files.annotations.path)
    assert plan.image_dir == str(raw / files.images.path)
    assert [(e.image_id, e.file_name, e.height, e.width) for e in plan.images] == want
    assert plan.annotations_sha256 == hashlib.sha256(ann.read_bytes()).hexdigest()
    _, report = coco_format.load_person_records(plan.annotations, get_meta(spec.meta),
                                                plan.image_dir, (256, 192))
    assert plan.report == str(report)


def test_sha256_file_reads_in_blocks(tmp_path):
  data = bytes(range(256)) * (5 * 4096 + 3)            # 5 MiB + 768 bytes: several blocks
  path = tmp_path / "blob"
  path.write_bytes(data)
  assert raw_layout.sha256_file(str(path)) == hashlib.sha256(data).hexdigest()
  (tmp_path / "empty").write_bytes(b"")
  assert raw_layout.sha256_file(str(tmp_path / "empty")) == (
      "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")


def test_missing_annotation_file_names_path_and_origin(tmp_path, shared_data):
  raw = make_raw(tmp_path / "raw", shared_data, "coco")
  (raw / "annotations" / "person_keypoints_val2017.json").unlink()
  with pytest.raises(raw_layout.RawFilesError) as err:
    raw_layout.plan_split(raw_layout.SPECS["coco"], "val", str(raw))
  assert str(err.value) == (f"expected COCO keypoint annotations at {raw}/annotations/"
                            "person_keypoints_val2017.json (from annotations_trainval2017.zip)")
  assert isinstance(err.value, FileNotFoundError)
  raw_layout.plan_split(raw_layout.SPECS["coco"], "train", str(raw))    # the other split is fine


def test_missing_image_folder(tmp_path, shared_data):
  raw = make_raw(tmp_path / "raw", shared_data, "ochuman")
  for path in (raw / "images").iterdir():
    path.unlink()
  (raw / "images").rmdir()
  with pytest.raises(raw_layout.RawFilesError) as err:
    raw_layout.plan_split(raw_layout.SPECS["ochuman"], "test", str(raw))
  assert str(err.value) == (f"expected OCHuman images in {raw}/images/ (from the OCHuman "
                            "download, github.com/liruilong940607/OCHumanApi)")


def test_missing_images_are_counted_and_listed(tmp_path, shared_data):
  raw = make_raw(tmp_path / "raw", shared_data, "coco")
  for name in ("000000040083.jpg", "000000197388.jpg"):
    (raw / "val2017" / name).unlink()
  with pytest.raises(raw_layout.RawFilesError) as err:
    raw_layout.plan_split(raw_layout.SPECS["coco"], "val", str(raw))
  assert str(err.value) == (
      f"2 of 4 images listed in {raw}/annotations/person_keypoints_val2017.json are missing "
      f"from {raw}/val2017/ (from val2017.zip): {raw}/val2017/000000040083.jpg, "
      f"{raw}/val2017/000000197388.jpg")
  assert "\n" not in str(err.value)


def test_a_long_list_of_missing_images_is_cut_after_five(tmp_path):
  raw = tmp_path / "raw"
  (raw / "images").mkdir(parents=True)
  images = [{"id": i, "file_name": f"{i:03d}.jpg", "height": 100, "width": 80}
            for i in (7, 3, 5, 1, 6, 2, 4)]
  ann = {"images": images, "annotations": [
      {"id": 1, "image_id": 3, "category_id": 1, "iscrowd": 0, "bbox": [10, 10, 30, 50],
       "keypoints": [20, 20, 2] * 14}]}
  (raw / "json").mkdir()
  (raw / "json" / "crowdpose_val.json").write_text(json.dumps(ann))
  (raw / "images" / "004.jpg").write_bytes(b"present")
  with pytest.raises(raw_layout.RawFilesError) as err:
    raw_layout.plan_split(raw_layout.SPECS["crowdpose"], "val", str(raw))
  listed = ", ".join(f"{raw}/images/{i:03d}.jpg" for i in (1, 2, 3, 5, 6))   # ascending id
  assert str(err.value) == (
      f"6 of 7 images listed in {raw}/json/crowdpose_val.json are missing from {raw}/images/ "
      "(from the CrowdPose images download, github.com/Jeff-sjtu/CrowdPose): "
      f"{listed}, ...")


def test_wrong_schema_is_an_annotation_error(tmp_path, shared_data):
  raw = make_raw(tmp_path / "raw", shared_data, "crowdpose")
  ann = raw / "json" / "crowdpose_test.json"
  ann.unlink()
  ann.write_text(json.dumps({"images": []}))
  with pytest.raises(coco_format.AnnotationError,
                     match="crowdpose_test.json: top-level field 'annotations' missing"):
    raw_layout.plan_split(raw_layout.SPECS["crowdpose"], "test", str(raw))


def test_specs_name_every_split_of_each_dataset():
  assert {k: [s for s, _ in spec.splits] for k, spec in raw_layout.SPECS.items()} == {
      "coco": ["train", "val"], "crowdpose": ["train", "val", "test"],
      "ochuman": ["val", "test"]}
  assert {k: spec.readme for k, spec in raw_layout.SPECS.items()} == {
      "coco": "datasets/coco_keypoints/README.md", "crowdpose": "datasets/crowdpose/README.md",
      "ochuman": "datasets/ochuman/README.md"}
