"""TFDS builders: the real sample files, laid out as raw datasets (test_raw_layout.make_raw) ->
ArrayRecord shards that give the same records, bytes and decoded images as the raw files; a
raw-layout error stops the conversion before anything is written; the CLI's one-line errors."""

import hashlib
import json
import os
import pathlib
import pickle
import sys

import numpy as np
import pytest
import tensorflow_datasets as tfds
from conftest import REPO_ROOT
from test_raw_layout import SAMPLES, make_raw, sample_files
from tensorflow_datasets.core import shuffle as tfds_shuffle

from mipnet_jax.data import coco_format, image, image_source, tfds_pose
from mipnet_jax.core.meta import get_meta

@pytest.fixture(scope="module")
def prepared(tmp_path_factory, shared_data):
  """dataset -> (raw root, data dir), each dataset converted once."""
  out = {}
  for dataset in SAMPLES:
    base = tmp_path_factory.mktemp(dataset)
    raw = make_raw(base / "raw", shared_data, dataset)
    tfds_pose.prepare(dataset, str(raw), str(base / "out"))
    out[dataset] = (raw, base / "out")
  return out


def _split_files(dataset, raw, split):
  files = dict(tfds_pose.SPECS[dataset].splits)[split]
  return str(raw / files.annotations.path), str(raw / files.images.path)


@pytest.mark.parametrize("dataset", sorted(SAMPLES))
def test_shards_hold_every_image_in_ascending_id(prepared, shared_data, dataset):
  _, out = prepared[dataset]
  ann, image_dir = sample_files(shared_data, dataset)
  images = sorted(json.loads(ann.read_text())["images"], key=lambda img: img["id"])
  name = tfds_pose.SPECS[dataset].tfds_name
  for split, _ in tfds_pose.SPECS[dataset].splits:
    ann_copy, source = image_source.open_prepared(str(out), name, split)
    assert pathlib.Path(ann_copy).read_bytes() == ann.read_bytes()
    records = tfds.builder_from_directory(source.version_dir).as_data_source(split=split)
    assert len(records) == len(source) == len(images)
    for i, img in enumerate(images):
      record = records[i]
      assert int(record["image_id"]) == img["id"] and source.index_of(img["id"]) == i
      assert record["file_name"].decode() == img["file_name"]
      assert (int(record["height"]), int(record["width"])) == (img["height"], img["width"])
      assert record["jpeg"] == (image_dir / img["file_name"]).read_bytes()
    with pytest.raises(image.ImageError, match=rf"image id {images[-1]['id'] + 1} is not in "
                       rf"prepared split '{split}'$"):
      source.index_of(images[-1]["id"] + 1)


@pytest.mark.parametrize("dataset", sorted(SAMPLES))
def test_prepared_split_reads_like_the_raw_files(prepared, dataset):
  raw, out = prepared[dataset]
  meta = get_meta(tfds_pose.SPECS[dataset].meta)
  split = tfds_pose.SPECS[dataset].splits[-1][0]
  raw_ann, raw_images = _split_files(dataset, raw, split)
  ann_copy, shards = image_source.open_prepared(str(out), tfds_pose.SPECS[dataset].tfds_name,
                                                split)
  shards = pickle.loads(pickle.dumps(shards))          # as a grain worker receives it
  files = image_source.FileImages(raw_images)
  want, _ = coco_format.load_person_records(raw_ann, meta, raw_images, (256, 192))
  got, _ = coco_format.load_person_records(ann_copy, meta, raw_images, (256, 192))
  assert len(got) == len(want) > 0
  for a, b in zip(want, got):
    for field in ("image_id", "ann_id", "image_path", "image_hw", "box", "center", "scale",
                  "keypoints", "others"):
      np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    file_name = os.path.relpath(b.image_path, raw_images)
    data = shards.read(b.image_id, file_name)
    assert data.dtype == np.uint8
    np.testing.assert_array_equal(data, files.read(b.image_id, file_name))
    np.testing.assert_array_equal(image.decode_image(data), image.read_image(a.image_path))
  assert pickle.loads(pickle.dumps(shards)).__dict__["_reader"] is None   # no open handles


def test_checksum_manifest_matches_raw_files(prepared):
  raw, out = prepared["coco"]
  version_dir = image_source.find_version_dir(str(out), "coco_keypoints")
  lines = pathlib.Path(image_source.checksums_file(version_dir, "val")).read_text().splitlines()
  assert len(lines) == 1 + 4
  files = [line.split("  ")[1] for line in lines]
  assert files == ["annotations/person_keypoints_val2017.json"] + [
      f"val2017/{name}" for name in ("000000000785.jpg", "000000040083.jpg",
                                     "000000196141.jpg", "000000197388.jpg")]   # ascending id
  for line in lines:
    digest, rel = line.split("  ")
    assert digest == hashlib.sha256((raw / rel).read_bytes()).hexdigest()


def test_large_split_spills_to_disk_in_order_without_tensorflow(tmp_path, shared_data,
                                                                monkeypatch):
  monkeypatch.setattr(tfds_shuffle, "MAX_MEM_BUFFER_SIZE", 1000)   # spill after ~0 images
  raw = make_raw(tmp_path / "raw", shared_data, "ochuman")
  tfds_pose.prepare("ochuman", str(raw), str(tmp_path / "out"))
  _, source = image_source.open_prepared(str(tmp_path / "out"), "ochuman", "test")
  records = tfds.builder_from_directory(source.version_dir).as_data_source(split="test")
  assert [int(records[i]["image_id"]) for i in range(len(records))] == [1, 2, 3]
  assert records[0]["jpeg"] == (shared_data / "ochuman" / "003799.jpg").read_bytes()
  assert "tensorflow" not in sys.modules
  assert type(tfds_shuffle.tf).__name__ == "LazyModule"   # tfds' own lazy import, restored


def test_raw_layout_errors_stop_the_conversion_before_anything_is_written(tmp_path,
                                                                          shared_data):
  raw = make_raw(tmp_path / "raw", shared_data, "coco")
  (raw / "annotations" / "person_keypoints_val2017.json").unlink()
  with pytest.raises(tfds_pose.RawFilesError) as err:
    tfds_pose.prepare("coco", str(raw), str(tmp_path / "out"))
  assert str(err.value) == (f"expected COCO keypoint annotations at {raw}/annotations/"
                            "person_keypoints_val2017.json (from annotations_trainval2017.zip)")
  assert not (tmp_path / "out" / "coco_keypoints" / "1.0.0").exists()
  raw = make_raw(tmp_path / "raw2", shared_data, "crowdpose")
  ann = raw / "json" / "crowdpose_test.json"
  ann.unlink()
  ann.write_text(json.dumps({"images": []}))
  with pytest.raises(coco_format.AnnotationError,
                     match="crowdpose_test.json: top-level field 'annotations' missing"):
    tfds_pose.prepare("crowdpose", str(raw), str(tmp_path / "out2"))
  assert not (tmp_path / "out2" / "crowdpose" / "1.0.0").exists()


def test_an_empty_or_missing_manual_dir_names_the_layout(tmp_path):
  with pytest.raises(tfds_pose.RawFilesError) as err:
    tfds_pose.prepare("crowdpose", str(tmp_path / "nowhere"), str(tmp_path / "out"))
  assert str(err.value) == (f"expected the raw CrowdPose files in {tmp_path}/nowhere/ "
                            "(layout: datasets/crowdpose/README.md)")
  (tmp_path / "empty").mkdir()
  with pytest.raises(tfds_pose.RawFilesError, match=r"raw OCHuman \(COCO-format val/test "
                     r"export\) files in .*/empty/"):
    tfds_pose.prepare("ochuman", str(tmp_path / "empty"), str(tmp_path / "out"))


def test_cli_prints_counts_and_one_line_errors(tmp_path, shared_data, capsys):
  raw = make_raw(tmp_path / "raw", shared_data, "crowdpose")
  args = ["--dataset", "crowdpose", "--manual_dir", str(raw), "--data_dir", str(tmp_path / "o")]
  assert tfds_pose.main(args) == 0
  out = capsys.readouterr().out
  for split in ("train", "val", "test"):
    assert f"crowdpose {split}: 2 images in 1 shard(s)" in out
  assert out.count("sha256 6b898e0795494cf1") == 3
  (raw / "images" / "103319.jpg").unlink()
  assert tfds_pose.main(args[:-1] + [str(tmp_path / "o2")]) == 1
  err = capsys.readouterr().err
  assert err.startswith("error: 1 of 2 images listed in ") and err.count("\n") == 1


@pytest.mark.parametrize("dataset", sorted(SAMPLES))
def test_tfds_build_folders_load_the_shared_builders(dataset):
  """What `tfds build datasets/<name>` imports (the CLI itself needs TensorFlow)."""
  spec = tfds_pose.SPECS[dataset]
  with tfds.core.utils.add_sys_path(REPO_ROOT / "datasets"):
    cls = tfds.core.community.builder_cls_from_module(
        f"{spec.tfds_name}.{spec.tfds_name}_dataset_builder")
  assert cls.__name__ == "Builder" and cls.name == spec.tfds_name
  assert issubclass(cls, tfds_pose.BUILDERS[dataset]) and cls.SPEC is spec


def test_config_pipeline_gives_the_same_batches_from_raw_files_and_shards(prepared,
                                                                          load_config):
  raw, out = prepared["coco"]
  c = load_config("hrnet_w32_coco_256x192", "quick")
  c.data.root = str(raw)
  from mipnet_jax.data import inputs
  from_files, _, _ = inputs.train_input(c)
  c.data.prepared_dir = str(out)
  from_shards, _, _ = inputs.train_input(c)
  for t in (0, 2):
    a, b = from_files[t], from_shards[t]
    for key in a:
      np.testing.assert_array_equal(a[key], b[key], err_msg=key)
