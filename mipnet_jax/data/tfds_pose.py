"""TFDS builders (manual download) for COCO 2017 keypoints, CrowdPose and OCHuman.

    python -m mipnet_jax.data.tfds_pose --dataset coco --manual_dir data/coco --data_dir OUT

converts the raw files (layout of ``datasets/README.md``, in ``manual_dir``) into ArrayRecord
shards, one example per image of each split's annotation JSON: ``image_id``, ``file_name``,
``height``, ``width`` and ``jpeg``, the original file bytes (not re-encoded), written in
ascending image id. The annotation JSON is copied verbatim next to the shards, so the pipeline
runs ``load_person_records`` on it exactly as on the raw file and only swaps the bytes source
(``image_source.open_prepared``; the layout is described there).

The three builders are one class parameterised by a ``DatasetSpec`` row of ``SPECS``
(data/raw_layout.py). Before anything is written, every split is checked there
(``plan_split``).

The builders are not added to the TFDS registry (``tfds.builder(name)``): use the classes, this
CLI, or ``tfds build datasets/<name>`` with the thin builder folders in ``datasets/``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib.util
import json
import os
import shutil
import sys
import types
from typing import ClassVar

import numpy as np
import tensorflow_datasets as tfds
from tensorflow_datasets.core import shuffle as tfds_shuffle

from mipnet_jax.data import coco_format, image_source
from mipnet_jax.data.raw_layout import SPECS, DatasetSpec, RawFilesError, SplitPlan, plan_split

DATASET_VERSION = "1.0.0"


def _sha256_line(digest: str, path: str, root: str) -> str:
  return f"{digest}  {os.path.relpath(path, root)}\n"


class _NeverRaised(Exception):
  pass


def _ensure_open_files_headroom() -> None:
  """Raises the soft limit of open files (within the hard one) to 4x tfds' bucket count: a
  spilled split keeps up to 1000 bucket files open while the images are read (tfds raises it
  on a failed write, but TensorFlow's GFile opens lazily and the local files do not)."""
  try:
    import resource  # pylint: disable=g-import-not-at-top  (Unix only)
  except ImportError:
    return
  soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
  want = 4 * tfds_shuffle.BUCKETS_NUMBER
  if hard != resource.RLIM_INFINITY:
    want = min(want, hard)
  if soft != resource.RLIM_INFINITY and soft < want:
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def _local_tf_stub() -> types.SimpleNamespace:
  """The names tfds' shuffle buckets take from TensorFlow, on local files."""
  gfile = types.SimpleNamespace(GFile=open, exists=os.path.exists, remove=os.remove)
  return types.SimpleNamespace(io=types.SimpleNamespace(gfile=gfile),
                               errors=types.SimpleNamespace(ResourceExhaustedError=_NeverRaised))


@contextlib.contextmanager
def tf_free_shuffle_buckets():
  """Lets tfds spill a split larger than its 1 GB in-memory buffer without TensorFlow.

  tfds 4.9's writer keeps a split's serialized examples in memory up to 1 GB and then moves
  them to on-disk buckets through ``tf.io.gfile``, which fails when TensorFlow is absent (COCO
  train2017 is ~18 GB). Without TensorFlow, the buckets use local files for the duration."""
  if importlib.util.find_spec("tensorflow") is not None:
    yield
    return
  _ensure_open_files_headroom()
  saved = tfds_shuffle.tf
  tfds_shuffle.tf = _local_tf_stub()
  try:
    yield
  finally:
    tfds_shuffle.tf = saved


def _manual_instructions(spec: DatasetSpec) -> str:
  lines = [f"Put the raw {spec.title} files in the manual dir in this layout (see {spec.readme}):"]
  for _, files in spec.splits:
    for raw in (files.annotations, files.images):
      slash = "/" if raw is files.images else ""
      lines.append(f"  {raw.path}{slash}  ({raw.what}, from {raw.source})")
  return "\n".join(dict.fromkeys(lines))   # splits may share the image folder


def _features() -> tfds.features.FeaturesDict:
  return tfds.features.FeaturesDict({
      "image_id": tfds.features.Scalar(np.int64),
      "file_name": tfds.features.Text(),
      "height": tfds.features.Scalar(np.int32),
      "width": tfds.features.Scalar(np.int32),
      # The original encoded file bytes, unchanged (a variable-length bytes scalar).
      "jpeg": tfds.features.Tensor(shape=(), dtype=np.object_),
  })


class PoseImagesBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Raw COCO-format keypoint dataset -> one ArrayRecord example per image (see module)."""

  name = "pose_images"
  SPEC: DatasetSpec | None = None
  VERSION = tfds.core.Version(DATASET_VERSION)
  RELEASE_NOTES: ClassVar[dict[str, str]] = {
      DATASET_VERSION: "One example per image: the original file bytes, in ascending image id."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = "See the dataset's README in datasets/."

  def __init__(self, *, file_format=None, **kwargs):
    super().__init__(file_format=file_format or "array_record", **kwargs)

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls):
    # tfds' default resolves the builder's package through `importlib_resources`, which is not
    # installed here; no checksums or docs are read from next to this module anyway.
    return None

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self, description=f"{self.SPEC.title}: one example per image, the original "
        "image file bytes, in ascending image id; the annotation JSON of each split is in "
        "annotations/<split>.json.", features=_features(), homepage=self.SPEC.homepage,
        disable_shuffling=True)

  def _download_and_prepare(self, dl_manager, download_config):
    with tf_free_shuffle_buckets():
      super()._download_and_prepare(dl_manager, download_config)

  def _split_generators(self, dl_manager):
    root = os.fspath(dl_manager.manual_dir)
    plans = [plan_split(self.SPEC, split, root) for split, _ in self.SPEC.splits]
    out_dir = os.path.join(os.fspath(self.data_path), image_source.ANNOTATIONS_DIR)
    os.makedirs(out_dir, exist_ok=True)
    for plan in plans:
      self._write_split_annotations(plan)
    return {plan.split: self._generate_examples(plan) for plan in plans}

  def _write_split_annotations(self, plan: SplitPlan) -> None:
    """annotations/<split>.json (verbatim copy) and <split>.image_ids.json (record order)."""
    version_dir = os.fspath(self.data_path)
    shutil.copyfile(plan.annotations, image_source.annotation_file(version_dir, plan.split))
    with open(image_source.image_ids_file(version_dir, plan.split), "w") as f:
      json.dump([e.image_id for e in plan.images], f)
    print(f"{self.name} {plan.split}: {plan.report}")
    print(f"sha256 {plan.annotations_sha256}  {plan.annotations}")
    print(f"{self.name} {plan.split}: converting {len(plan.images)} images from "
          f"{plan.image_dir}; their sha256 go to annotations/{plan.split}.sha256 next to the "
          f"shards", flush=True)

  def _generate_examples(self, plan: SplitPlan):
    """(key, example) in ascending image id; keys spread over tfds' 128-bit key range so
    that order-preserving buckets stay small when a split is spilled to disk."""
    stride = 2 ** tfds_shuffle.HKEY_SIZE // max(len(plan.images), 1)
    lines = [_sha256_line(plan.annotations_sha256, plan.annotations, plan.root)]
    for rank, entry in enumerate(plan.images):
      path = os.path.join(plan.image_dir, entry.file_name)
      with open(path, "rb") as f:
        data = f.read()
      lines.append(_sha256_line(hashlib.sha256(data).hexdigest(), path, plan.root))
      yield rank * stride, {"image_id": entry.image_id, "file_name": entry.file_name,
                            "height": entry.height, "width": entry.width, "jpeg": data}
    with open(image_source.checksums_file(os.fspath(self.data_path), plan.split), "w") as f:
      f.writelines(lines)


def _builder_class(spec: DatasetSpec) -> type[PoseImagesBuilder]:
  namespace = {"SPEC": spec, "name": spec.tfds_name, "__module__": __name__,
               "MANUAL_DOWNLOAD_INSTRUCTIONS": _manual_instructions(spec),
               "__doc__": f"{spec.title}: raw files -> ArrayRecord shards ({spec.readme})."}
  return types.new_class(spec.class_name, (PoseImagesBuilder,), {"skip_registration": True},
                         lambda ns: ns.update(namespace))


BUILDERS = {key: _builder_class(spec) for key, spec in SPECS.items()}
CocoKeypoints = BUILDERS["coco"]
Crowdpose = BUILDERS["crowdpose"]
Ochuman = BUILDERS["ochuman"]


def prepare(dataset: str, manual_dir: str, data_dir: str,
            overwrite: bool = False) -> PoseImagesBuilder:
  """Checks and converts the raw files of ``dataset`` (a ``SPECS`` key); returns the builder."""
  spec = SPECS[dataset]
  if not os.path.isdir(manual_dir) or not os.listdir(manual_dir):
    raise RawFilesError(f"expected the raw {spec.title} files in {manual_dir}{os.sep} "
                        f"(layout: {spec.readme})")
  builder = BUILDERS[dataset](data_dir=data_dir)
  mode = (tfds.download.GenerateMode.REUSE_CACHE_IF_EXISTS if overwrite
          else tfds.download.GenerateMode.REUSE_DATASET_IF_EXISTS)
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
      manual_dir=manual_dir, download_mode=mode))
  return builder


def split_summary(builder: PoseImagesBuilder) -> list[str]:
  """One line per prepared split: image count, shards, size, annotation copy."""
  lines = []
  for split, info in builder.info.splits.items():
    ann = image_source.annotation_file(os.fspath(builder.data_path), split)
    lines.append(f"{builder.name} {split}: {info.num_examples} images in {info.num_shards} "
                 f"shard(s), {info.num_bytes / 2**20:.1f} MiB; annotations: {ann}")
  return lines


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(
      prog="python -m mipnet_jax.data.tfds_pose",
      description="Convert raw COCO / CrowdPose / OCHuman files to ArrayRecord shards.")
  parser.add_argument("--dataset", required=True, choices=sorted(SPECS))
  parser.add_argument("--manual_dir", required=True, help="folder of the raw files "
                      "(layout: datasets/README.md)")
  parser.add_argument("--data_dir", required=True, help="output TFDS data dir")
  parser.add_argument("--overwrite", action="store_true", help="rebuild an existing dataset")
  args = parser.parse_args(argv)
  try:
    builder = prepare(args.dataset, args.manual_dir, args.data_dir, args.overwrite)
  except (RawFilesError, coco_format.AnnotationError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  print("\n".join(split_summary(builder)))
  return 0


if __name__ == "__main__":
  # Run the package module's main, so the builders live in mipnet_jax.data.tfds_pose.
  from mipnet_jax.data.tfds_pose import main as _main  # pylint: disable=g-import-not-at-top
  sys.exit(_main())
