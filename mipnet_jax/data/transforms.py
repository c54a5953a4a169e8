"""Record -> sample transforms of the grain pipeline (training and evaluation crops).

A training sample is the primary's augmented crop plus the targets of all N instances, so a
batch carries every lambda of each image, as the authors' ``JointsLambdaDataset`` does.
Randomness comes only from the ``np.random.Generator`` grain derives from the pipeline seed and the record's position.

What ships to the device, per sample (the batch adds a leading B):
    image          [h, w, 3] uint8, RGB or BGR; normalised on the device (core/normalize.py)
    joints         [N, K, 3] float32 (x, y, vis) in input-crop pixels
    target_windows [N, K, 4] int32 Gaussian windows; codec.render_heatmaps draws the maps
                   (UDP: [N, K, 6] float32, the window and the sub-pixel Gaussian centre)
    target_weight  [N, K] float32
    center, scale  [2] float32; rotation float32; flipped bool; image_id, ann_id int64
Windows instead of maps cut the host work and the transfer (N*K*4 ints, not N*h*w*K floats);
the maps drawn from them equal the reference's ``generate_target`` bit for bit on the host.
``CropSpec.udp`` selects UDP's geometry (mmpose's ``TopDownAffine(use_udp=True)`` crop and
``_udp_generate_target`` windows) for training and evaluation crops alike.

Two speed-ups change how the crop is computed but not what it shows:
  * the horizontal flip is folded into the affine matrix instead of mirroring the image;
    bilinear weights mirror too, so crops differ from the reference's only by cv2's 1/32-pixel
    fixed-point rounding of the sample positions (tests bound it);
  * ``decode_reduce`` (off by default) decodes a JPEG at 1/2, 1/4 or 1/8 size when the crop
    samples the image that sparsely anyway. The result is an area-averaged image instead of
    the reference's aliased point samples: a deliberate deviation, measured in
    scripts/bench_pipeline.py.
"""

from __future__ import annotations

import dataclasses

import cv2
import grain
import numpy as np

from mipnet_jax.core.codec import heatmap_windows
from mipnet_jax.data import augment, image, instances
from mipnet_jax.data.image_source import FileImages, ImageSource
from mipnet_jax.data.boxes import BoxRecord
from mipnet_jax.data.coco_format import PersonRecord
from mipnet_jax.core.geometry import PIXEL_STD, crop_transform
from mipnet_jax.core.meta import DatasetMeta

REDUCTIONS = (8, 4, 2)


@dataclasses.dataclass(frozen=True)
class CropSpec:
  """How crops are cut: input (h, w), colour order, optional reduced JPEG decoding, and the
  geometry (HRNet's affine, or UDP's warp with ``udp``; core/geometry.crop_transform)."""

  input_hw: tuple[int, int]
  color: str = "rgb"
  decode_reduce: bool = False
  udp: bool = False


def _homogeneous(trans: np.ndarray) -> np.ndarray:
  return np.concatenate([trans, [[0.0, 0.0, 1.0]]], axis=0)


def flip_matrix(image_width: int) -> np.ndarray:
  """[3, 3] the horizontal mirror x -> W - 1 - x of an image of width W."""
  return np.array([[-1.0, 0.0, image_width - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])


def choose_reduction(scale: np.ndarray, input_hw: tuple[int, int], is_jpeg: bool) -> int:
  """The largest JPEG reduction (8, 4, 2 or 1) not above the crop's sampling step, i.e. the
  number of image pixels per input pixel, 200 * scale_x / input_w."""
  if not is_jpeg:
    return 1
  step = PIXEL_STD * float(scale[0]) / input_hw[1]
  return next((f for f in REDUCTIONS if f <= step), 1)


def reduction_matrix(factor: int) -> np.ndarray:
  """[3, 3] pixel (x, y) of a 1/factor decode -> full-image pixel; libjpeg's reduced pixel i
  averages full pixels factor*i .. factor*i + factor - 1."""
  off = (factor - 1) / 2
  return np.array([[factor, 0.0, off], [0.0, factor, off], [0.0, 0.0, 1.0]])


def cut_crop(data: np.ndarray, trans: np.ndarray, scale: np.ndarray, flipped: bool,
             image_width: int, spec: CropSpec, where: str) -> np.ndarray:
  """Decodes ``data`` and warps it by ``trans`` [2, 3] (image, after the optional flip, ->
  input crop) to uint8 [h, w, 3]; the flip and any reduced decoding fold into the matrix."""
  full = _homogeneous(trans)
  if flipped:
    full = full @ flip_matrix(image_width)
  reduce = 1
  if spec.decode_reduce:
    reduce = choose_reduction(scale, spec.input_hw, bool(data[:2].tolist() == [0xFF, 0xD8]))
  if reduce > 1:
    full = full @ reduction_matrix(reduce)
  img = image.decode_image(data, spec.color, where, reduce)
  return image.warp_crop(img, full[:2], spec.input_hw)


@dataclasses.dataclass(frozen=True)
class TrainSample(grain.transforms.RandomMap):
  """PersonRecord -> augmented training sample with the targets of N instances."""

  meta: DatasetMeta
  num_instances: int
  crop: CropSpec
  heatmap_hw: tuple[int, int]
  sigma: float
  scale_factor: float
  rotation_factor: float
  half_body_prob: float
  flip: bool
  images: ImageSource = dataclasses.field(default_factory=lambda: FileImages(""))

  def random_map(self, record: PersonRecord, rng: np.random.Generator) -> dict:
    cv2.setNumThreads(1)     # one sample per core; grain parallelises across records
    meta = self.meta
    input_hw = self.crop.input_hw
    width = record.image_hw[1]
    aug = augment.sample_augmentation(
        record.keypoints, record.center, record.scale, width, meta, input_hw,
        scale_factor=self.scale_factor, rotation_factor=self.rotation_factor,
        half_body_prob=self.half_body_prob, flip=self.flip, rng=rng)
    keypoints, others = record.keypoints, record.others
    if aug.flip:
      keypoints = augment.flip_keypoints(keypoints, width, meta)
      others = augment.flip_keypoints(others, width, meta)
    trans = crop_transform(aug.center, aug.scale, aug.rotation, input_hw, self.crop.udp)
    xy, vis = instances.select_instances(keypoints, others, trans, self.num_instances,
                                         input_hw)
    windows, weight = heatmap_windows(xy, vis, input_hw, self.heatmap_hw, self.sigma,
                                      self.crop.udp)
    where = f"{record.image_path} (image {record.image_id}, ann {record.ann_id})"
    crop = cut_crop(self.images.read(record.image_id, record.image_path), trans, aug.scale,
                    aug.flip, width, self.crop, where)
    return dict(
        image=crop, joints=np.concatenate([xy, vis[..., None]], -1).astype(np.float32),
        target_windows=windows, target_weight=weight,
        center=aug.center, scale=aug.scale, rotation=np.float32(aug.rotation),
        flipped=np.bool_(aug.flip), image_id=np.int64(record.image_id),
        ann_id=np.int64(record.ann_id))


@dataclasses.dataclass(frozen=True)
class EvalSample(grain.transforms.Map):
  """BoxRecord -> the box's unaugmented crop (flip test happens on the device)."""

  crop: CropSpec
  images: ImageSource = dataclasses.field(default_factory=lambda: FileImages(""))

  def map(self, box: BoxRecord) -> dict:
    cv2.setNumThreads(1)
    trans = crop_transform(box.center, box.scale, 0.0, self.crop.input_hw, self.crop.udp)
    where = f"{box.image_path} (image {box.image_id}, box {box.source_id})"
    crop = cut_crop(self.images.read(box.image_id, box.image_path), trans, box.scale, False,
                    box.image_hw[1], self.crop, where)
    return dict(image=crop, center=box.center, scale=box.scale, score=np.float32(box.score),
                image_id=np.int64(box.image_id), source_id=np.int64(box.source_id))
