"""``config.data`` -> records and grain datasets: the one bridge between configs and the
data code (nothing below this module sees a ConfigDict).

A split is read from the raw layout (``data.root`` + the split's annotation file and image
folder) or, when ``data.prepared_dir`` is set, from the ArrayRecord shards that
``python -m mipnet_jax.data.tfds_pose`` wrote there; both give the same records. The
synthetic set is generated on first use.
"""

from __future__ import annotations

import os

from mipnet_jax.data import coco_format, image_source, stats, synthetic, transforms
from mipnet_jax.core.meta import DATASETS, DatasetMeta, build_meta, get_meta
from mipnet_jax.data.pipeline import Loading, train_dataset

TFDS_NAMES = {"coco": "coco_keypoints", "crowdpose": "crowdpose", "ochuman": "ochuman"}
READMES = {"coco": "datasets/coco_keypoints/README.md", "crowdpose": "datasets/crowdpose/README.md",
           "ochuman": "datasets/ochuman/README.md"}


def dataset_meta(name: str, keypoints=None, where: str = "") -> DatasetMeta:
  """A dataset's keypoint metadata: declared in a config's ``keypoints`` block (``names``,
  ``flip_pairs``, ``sigmas``, ``upper_body``, ``skeleton``; see core.meta.build_meta) when its
  ``names`` are given, else the built-in one of ``name``. ``where`` names the config block in
  one-line errors."""
  if _declares_joints(keypoints):
    return build_meta(name, keypoints["names"], keypoints.get("flip_pairs") or (),
                      keypoints.get("sigmas") or (), keypoints.get("upper_body") or (),
                      keypoints.get("skeleton") or (), where=f"{where}.keypoints")
  if name not in DATASETS:
    raise ValueError(f"{where}: dataset {name!r} is not built in ({', '.join(sorted(DATASETS))});"
                     f" declare its joints in {where}.keypoints.names")
  return get_meta(name)


def _declares_joints(keypoints) -> bool:
  """Whether a ``keypoints`` block (or None) names joints."""
  return bool(keypoints and keypoints.get("names"))


def data_meta(data) -> DatasetMeta:
  """The keypoints of ``config.data`` (a ConfigDict, or a bundle's config.json dict)."""
  return dataset_meta(data["name"], data.get("keypoints"), "config.data")


def model_meta(config) -> DatasetMeta:
  """The keypoints the model predicts: those of ``config.data`` (its dataset, or its
  ``keypoints`` block); one line if ``config.model.num_keypoints`` disagrees."""
  meta = data_meta(config["data"])
  k = config["model"]["num_keypoints"]
  if k != meta.num_keypoints:
    raise ValueError(f"config.model.num_keypoints={k} but config.data ({meta.name}) has "
                     f"{meta.num_keypoints} joints")
  return meta


def split_meta(config, name: str) -> DatasetMeta:
  """The keypoints annotated in evaluation split ``name``: its ``keypoints`` block, else the
  model's when it is the training dataset, else the built-in dataset's."""
  ev = config.eval_data[name]
  if not _declares_joints(ev.get("keypoints")) and ev.dataset == config.data.name:
    return model_meta(config)
  return dataset_meta(ev.dataset, ev.get("keypoints"), f"config.eval_data.{name}")


def split_files(data, split: str) -> tuple[str, str, object]:
  """(annotation JSON, image folder, image-bytes source) of ``split`` ('train' or 'val')."""
  if data.name == "synthetic":
    _ensure_synthetic(data, data.root)
  if data.get("prepared_dir"):
    if data.name not in TFDS_NAMES:
      raise ValueError(f"data.prepared_dir: dataset {data.name!r} has no prepared form "
                       f"(known: {', '.join(TFDS_NAMES)})")
    ann_path, images = image_source.open_prepared(data.prepared_dir, TFDS_NAMES[data.name],
                                                  split)
    return ann_path, "", images
  ann_path = os.path.join(data.root, data[f"{split}_ann"])
  image_dir = os.path.join(data.root, data[f"{split}_images"])
  if not os.path.isfile(ann_path):
    hint = f"; see {READMES[data.name]}" if data.name in READMES else ""
    raise FileNotFoundError(f"{ann_path}: {data.name} {split} annotations expected here "
                            f"(config data.root={data.root!r}, data.{split}_ann){hint}")
  return ann_path, image_dir, image_source.FileImages("")


def load_split(data, split: str) -> tuple[list, coco_format.LoadReport, object]:
  """(person records, load report, image-bytes source) of ``split``."""
  ann_path, image_dir, images = split_files(data, split)
  records, report = coco_format.load_person_records(ann_path, data_meta(data), image_dir,
                                                    tuple(data.image_hw))
  return records, report, images


def train_sample(data, num_instances: int, images) -> transforms.TrainSample:
  """The training transform ``data`` describes."""
  return transforms.TrainSample(
      meta=data_meta(data),
      num_instances=num_instances,
      crop=transforms.CropSpec(tuple(data.image_hw), data.color, data.decode_reduce,
                               bool(data.get("udp", False))),
      heatmap_hw=tuple(data.heatmap_hw), sigma=data.sigma, scale_factor=data.scale_factor,
      rotation_factor=data.rotation_factor, half_body_prob=data.half_body_prob,
      flip=data.flip, images=images)


def train_input(config, process_index: int = 0, process_count: int = 1):
  """(dataset of this process's batches, its Loading, the load report) for training."""
  data = config.data
  if data.batch_size % process_count:
    raise ValueError(f"data.batch_size {data.batch_size} is not divisible by the "
                     f"{process_count} processes")
  records, report, images = load_split(data, "train")
  loading = Loading(batch_size=data.batch_size // process_count, process_index=process_index,
                    process_count=process_count, num_workers=data.num_workers)
  ds = train_dataset(records, train_sample(data, config.num_instances, images), config.seed,
                     loading)
  return ds, loading, report


def eval_files(config, name: str) -> tuple[str, str, str]:
  """(dataset, annotation JSON, image folder) of ``config.eval_data[name]``; an empty eval root
  means the training data's root. The synthetic set is generated if needed."""
  ev = config.eval_data[name]
  root = eval_root(config, name)
  if ev.dataset == "synthetic":
    _ensure_synthetic(config.data, root)
  return ev.dataset, os.path.join(root, ev.ann), os.path.join(root, ev.images)


def eval_root(config, name: str) -> str:
  """The folder ``config.eval_data[name]``'s paths are relative to (empty root: the data's)."""
  return config.eval_data[name].root or config.data.root


def _ensure_synthetic(data, root: str) -> None:
  g = data.synthetic
  synthetic.ensure(root, g.seed, g.num_train, g.num_val, tuple(g.image_hw))


def data_report(config, decode_images: bool = False) -> tuple[dict, dict]:
  """The data report of a config: its train and val splits and every eval split.

  Returns ({split: stats.split_report}, {split: error message}) where a split whose files
  are missing or malformed lands in the second dict instead of stopping the report."""
  data = config.data
  splits = {"train": (data, "train"), "val": (data, "val")}
  for name, ev in config.eval_data.items():
    splits[name] = (ev, None)
  reports, errors = {}, {}
  for name, (cfg, split) in splits.items():
    try:
      det = ""
      if split is None:
        _, ann_path, image_dir = eval_files(config, name)
        dataset = split_meta(config, name)
        if cfg.det_file:
          det = os.path.join(eval_root(config, name), cfg.det_file)
      else:
        ann_path, image_dir, _ = split_files(cfg, split)
        dataset = model_meta(config)
      reports[name] = stats.split_report(ann_path, dataset, image_dir, tuple(data.image_hw),
                                         det, 0.0, decode_images and not data.prepared_dir)
    except (OSError, ValueError) as e:     # AnnotationError and MetaError are ValueErrors
      errors[name] = str(e)
  return reports, errors
