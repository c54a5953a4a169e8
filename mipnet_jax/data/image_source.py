"""Where the pipeline gets a person record's encoded image bytes: raw files or prepared shards.

The records come from ``coco_format.load_person_records`` on an annotation JSON in both cases;
only the bytes source differs:

* ``FileImages(image_dir)``: the raw layout, ``image_dir/<file_name>``.
* ``ArrayRecordImages(version_dir, split)``: a dataset prepared by ``mipnet_jax.data.tfds_pose``
  (one ArrayRecord example per image, the original file bytes, in ascending image id).

Layout of a prepared dataset (``tfds_pose`` writes it, ``open_prepared`` finds it)::

    <data_dir>/<name>/<version>/    dataset_info.json, features.json and the shards
      annotations/<split>.json            the split's raw annotation JSON, verbatim
      annotations/<split>.image_ids.json  the image id of record i (ascending)
      annotations/<split>.sha256          sha256sum lines of the raw files read

Both implement ``ImageSource`` and are picklable (grain workers are spawned processes):
``ArrayRecordImages`` keeps paths only and opens its reader lazily in each process.
"""

from __future__ import annotations

import json
import os
import typing

import numpy as np

from mipnet_jax.data.image import ImageError

ANNOTATIONS_DIR = "annotations"


def annotation_file(version_dir: str, split: str) -> str:
  """The copy of the split's raw annotation JSON inside a prepared dataset."""
  return os.path.join(version_dir, ANNOTATIONS_DIR, f"{split}.json")


def image_ids_file(version_dir: str, split: str) -> str:
  """JSON list: the image id of each record of the split, in record order (ascending)."""
  return os.path.join(version_dir, ANNOTATIONS_DIR, f"{split}.image_ids.json")


def checksums_file(version_dir: str, split: str) -> str:
  """sha256sum lines of the raw files the split was built from (paths relative to the raw
  folder, so ``cd RAW && sha256sum -c <this file>`` checks a raw copy)."""
  return os.path.join(version_dir, ANNOTATIONS_DIR, f"{split}.sha256")


@typing.runtime_checkable
class ImageSource(typing.Protocol):
  """What the pipeline reads images through: ``read(image_id, file_name)`` -> uint8 [n]
  encoded bytes, ImageError naming the file or record when it cannot."""

  def read(self, image_id: int, file_name: str) -> np.ndarray:
    ...


class FileImages:
  """Encoded bytes of the raw image files ``image_dir/<file_name>``."""

  def __init__(self, image_dir: str):
    self.image_dir = str(image_dir)

  def read(self, image_id: int, file_name: str) -> np.ndarray:
    """uint8 [n] file bytes; ImageError naming the path when the file is missing."""
    del image_id   # the file name alone locates a raw image
    path = os.path.join(self.image_dir, file_name)
    if not os.path.isfile(path):
      raise ImageError(f"{path}: image file not found")
    return np.fromfile(path, np.uint8)

  def __repr__(self) -> str:
    return f"FileImages({self.image_dir!r})"


class ArrayRecordImages:
  """Encoded bytes of one split of a prepared dataset, looked up by image id.

  Record i holds the i-th smallest image id of the split's annotation JSON, so the lookup is a
  binary search in ``<split>.image_ids.json``; each read also checks the record's own
  ``image_id`` and ``file_name``.
  """

  def __init__(self, version_dir: str, split: str):
    self.version_dir = str(version_dir)
    self.split = split
    self._reader = None          # (pid, tfds data source, image ids); per process, not pickled

  def __getstate__(self) -> dict:
    return {"version_dir": self.version_dir, "split": self.split}

  def __setstate__(self, state: dict) -> None:
    self.__init__(state["version_dir"], state["split"])

  def __len__(self) -> int:
    return len(self._open()[2])

  def __repr__(self) -> str:
    return f"ArrayRecordImages({self.version_dir!r}, {self.split!r})"

  def _open(self):
    """The reader of this process (opened on first use, again after a fork)."""
    if self._reader is None or self._reader[0] != os.getpid():
      import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

      ids_path = image_ids_file(self.version_dir, self.split)
      if not os.path.isfile(ids_path):
        raise ImageError(f"{ids_path}: image id index of prepared split '{self.split}' not "
                         "found (prepare the dataset with python -m mipnet_jax.data.tfds_pose)")
      with open(ids_path) as f:
        ids = np.asarray(json.load(f), np.int64)
      source = tfds.builder_from_directory(self.version_dir).as_data_source(split=self.split)
      if len(source) != len(ids):
        raise ImageError(f"{self.version_dir}: split '{self.split}' has {len(source)} records "
                         f"but {ids_path} lists {len(ids)} image ids")
      self._reader = (os.getpid(), source, ids)
    return self._reader

  def index_of(self, image_id: int) -> int:
    """Record index of ``image_id``; ImageError when the split has no such image."""
    ids = self._open()[2]
    i = int(np.searchsorted(ids, image_id))
    if i == len(ids) or ids[i] != image_id:
      raise ImageError(f"{self.version_dir}: image id {image_id} is not in prepared split "
                       f"'{self.split}'")
    return i

  def read(self, image_id: int, file_name: str) -> np.ndarray:
    """uint8 [n]: the original file bytes of ``image_id``."""
    i = self.index_of(image_id)
    example = self._open()[1][i]
    stored = _text(example["file_name"])
    if int(example["image_id"]) != image_id or stored != file_name:
      raise ImageError(f"{self.version_dir}: record {i} of split '{self.split}' holds image "
                       f"{int(example['image_id'])} ({stored}), expected {image_id} ({file_name})")
    return np.frombuffer(example["jpeg"], np.uint8)


def _text(value) -> str:
  return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def find_version_dir(data_dir: str, name: str, version: str | None = None) -> str:
  """``<data_dir>/<name>/<version>`` of a prepared dataset (the highest version when None)."""
  dataset_dir = os.path.join(str(data_dir), name)
  if version is None:
    versions = sorted((d for d in _listdir(dataset_dir)
                       if os.path.isfile(os.path.join(dataset_dir, d, "dataset_info.json"))),
                      key=lambda v: tuple(int(p) if p.isdigit() else -1 for p in v.split(".")))
    if not versions:
      raise FileNotFoundError(
          f"no prepared dataset '{name}' in {dataset_dir} (expected {dataset_dir}/<version>/"
          f"dataset_info.json; build it with python -m mipnet_jax.data.tfds_pose)")
    version = versions[-1]
  version_dir = os.path.join(dataset_dir, version)
  if not os.path.isfile(os.path.join(version_dir, "dataset_info.json")):
    raise FileNotFoundError(f"no prepared dataset at {version_dir} (dataset_info.json missing)")
  return version_dir


def _listdir(path: str) -> list[str]:
  return os.listdir(path) if os.path.isdir(path) else []


def open_prepared(data_dir: str, name: str, split: str,
                  version: str | None = None) -> tuple[str, ArrayRecordImages]:
  """(annotation JSON path, image source) of one split of a prepared dataset.

  ``name`` is the TFDS name (``coco_keypoints``, ``crowdpose``, ``ochuman``). Pass the JSON to
  ``load_person_records`` as for raw files and read a record's bytes with
  ``images.read(record.image_id, file_name)``, ``file_name`` being the annotation's (the
  record's ``image_path`` relative to the ``image_dir`` given to ``load_person_records``).
  """
  version_dir = find_version_dir(data_dir, name, version)
  ann_path = annotation_file(version_dir, split)
  if not os.path.isfile(ann_path):
    raise FileNotFoundError(f"{ann_path}: annotation copy of split '{split}' not found (splits "
                            f"prepared: {', '.join(_prepared_splits(version_dir)) or 'none'})")
  return ann_path, ArrayRecordImages(version_dir, split)


def _prepared_splits(version_dir: str) -> list[str]:
  names = _listdir(os.path.join(version_dir, ANNOTATIONS_DIR))
  return sorted(n[:-len(".image_ids.json")] for n in names if n.endswith(".image_ids.json"))
