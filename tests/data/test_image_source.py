"""Image sources: raw files and prepared shards both satisfy the ImageSource protocol; raw
bytes, the layout of a prepared dataset and the one-line errors when it is incomplete. (Reads
from real shards are checked in test_tfds_pose.py, which prepares them.)"""

import json
import pickle

import numpy as np
import pytest

from mipnet_jax.data import image, image_source


class Loader:
  """Has the right idea but not the protocol's method name."""

  def load(self, image_id, file_name):
    return np.zeros(1, np.uint8)


class Reader:
  def read(self, image_id, file_name):
    return np.zeros(1, np.uint8)


def test_both_sources_satisfy_the_protocol_and_others_do_not(tmp_path):
  assert isinstance(image_source.FileImages(str(tmp_path)), image_source.ImageSource)
  assert isinstance(image_source.ArrayRecordImages(str(tmp_path), "val"),
                    image_source.ImageSource)
  assert isinstance(Reader(), image_source.ImageSource)       # structural: any read() will do
  assert not isinstance(Loader(), image_source.ImageSource)
  assert not isinstance(object(), image_source.ImageSource)
  assert not isinstance(str(tmp_path), image_source.ImageSource)


def test_file_images_read_the_file_bytes(tmp_path, shared_data):
  source = image_source.FileImages(shared_data / "coco")
  data = source.read(785, "000000000785.jpg")
  assert data.dtype == np.uint8 and data.ndim == 1
  assert data.tobytes() == (shared_data / "coco" / "000000000785.jpg").read_bytes()
  assert repr(source) == f"FileImages('{shared_data / 'coco'}')"
  with pytest.raises(image.ImageError, match=r"^.*/none\.jpg: image file not found$"):
    image_source.FileImages(str(tmp_path)).read(1, "none.jpg")


def _version_dir(root, version="1.0.0", splits=("val",)):
  path = root / "crowdpose" / version
  (path / "annotations").mkdir(parents=True)
  (path / "dataset_info.json").write_text("{}")
  for split in splits:
    (path / "annotations" / f"{split}.image_ids.json").write_text("[1, 2]")
    (path / "annotations" / f"{split}.json").write_text("{}")
  return path


def test_prepared_layout_and_the_highest_version(tmp_path):
  for version in ("1.2.0", "1.10.0", "1.9.1"):
    _version_dir(tmp_path, version)
  (tmp_path / "crowdpose" / "2.0.0").mkdir()                  # no dataset_info.json: ignored
  version_dir = image_source.find_version_dir(str(tmp_path), "crowdpose")
  assert version_dir == str(tmp_path / "crowdpose" / "1.10.0")   # numeric, not text order
  assert image_source.find_version_dir(str(tmp_path), "crowdpose", "1.2.0") == str(
      tmp_path / "crowdpose" / "1.2.0")
  assert image_source.annotation_file(version_dir, "val") == f"{version_dir}/annotations/val.json"
  assert image_source.image_ids_file(version_dir, "val") == (
      f"{version_dir}/annotations/val.image_ids.json")
  assert image_source.checksums_file(version_dir, "val") == f"{version_dir}/annotations/val.sha256"
  ann, source = image_source.open_prepared(str(tmp_path), "crowdpose", "val")
  assert ann == f"{version_dir}/annotations/val.json"
  assert (source.version_dir, source.split) == (version_dir, "val")
  assert repr(source) == f"ArrayRecordImages('{version_dir}', 'val')"


def test_incomplete_prepared_datasets_are_named(tmp_path):
  with pytest.raises(FileNotFoundError, match=r"^no prepared dataset 'ochuman' in .*/ochuman "
                     r"\(expected .*/ochuman/<version>/dataset_info.json; build it with "
                     r"python -m mipnet_jax.data.tfds_pose\)$"):
    image_source.find_version_dir(str(tmp_path), "ochuman")
  with pytest.raises(FileNotFoundError, match=r"/crowdpose/3\.0\.0 \(dataset_info.json missing\)"):
    image_source.find_version_dir(str(tmp_path), "crowdpose", "3.0.0")
  version_dir = _version_dir(tmp_path, splits=("val", "train"))
  with pytest.raises(FileNotFoundError) as err:
    image_source.open_prepared(str(tmp_path), "crowdpose", "test")
  assert str(err.value) == (f"{version_dir}/annotations/test.json: annotation copy of split "
                            "'test' not found (splits prepared: train, val)")
  missing = image_source.ArrayRecordImages(str(version_dir), "test")
  with pytest.raises(image.ImageError, match=r"annotations/test\.image_ids\.json: image id index "
                     r"of prepared split 'test' not found"):
    missing.read(1, "a.jpg")


def test_array_record_images_pickle_as_paths_only(tmp_path):
  source = image_source.ArrayRecordImages(str(tmp_path), "val")
  source._reader = (0, "an open reader", np.array([1]))      # as after a read in this process
  back = pickle.loads(pickle.dumps(source))
  assert back.__dict__ == {"version_dir": str(tmp_path), "split": "val", "_reader": None}
  assert json.loads(json.dumps(source.__getstate__())) == {"version_dir": str(tmp_path),
                                                           "split": "val"}
