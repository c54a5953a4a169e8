"""Running an exported inference bundle without the model code: jax.export, numpy and cv2.

A bundle (written by ``mipnet_jax.serve.export.export_bundle``, ``--mode=export``) is a folder:

    bundle.json   the contract below: sizes, N, K, colour order, box padding, the variables'
                  tree (shape and dtype of every array), versions
    predict.jax   the predict function, ``jax.export`` serialized, batch size symbolic
    variables/    orbax checkpoint {'params', 'batch_stats'} (``checkpoints.save_variables``;
                  ``config.eval.checkpoint`` / ``init_from`` read it too)
    config.json   the experiment config (post-processing settings for the Predictor)
    model.onnx    with ``--export_onnx``: the same function with the weights inside, for
                  onnxruntime (serve/onnx_export.py); ``load_bundle(path, runtime="onnx")``

The exported function:

    f(variables, crops, centers, scales) -> (keypoints, maxvals)
      variables  {'params', 'batch_stats'} shaped as bundle.json's "variables" tree
      crops      uint8 [b, h, w, 3]: each box's crop, cut as ``boxes_to_crops`` cuts it, in
                 the model's colour order (bundle.json "color") and geometry (bundle.json
                 "udp": UDP's warp and decoding; absent in older bundles: HRNet's)
      centers    float32 [b, 2] (x, y) and scales float32 [b, 2] (sx, sy, in units of 200 px):
                 the crops' affine parameters (geometry.box_to_center_scale of each box)
      keypoints  float32 [b, N, K, 2] (x, y) image pixels of every instance lambda = 0..N-1
                 (lambda = 0: the box's own person)
      maxvals    float32 [b, N, K] the heatmap peaks (the joints' confidences)

    with normalisation, the flip test (bundle.json "flip"), the trunk once and the lambda head
    N times per box, argmax + quarter-offset decoding (UDP: UDP-DARK) and the inverse affine
    all inside; ``b`` is symbolic, so any batch size runs (each new one compiles once;
    ``BoxPredictor`` pads to powers of two to bound that).

Why the crop stays on the host: the reference, and our evaluation, cut crops with
``cv2.warpAffine`` (fixed-point bilinear weights in 1/32 steps, constant-0 border). A gather in
the exported function would only approximate it, and so would not reproduce the evaluated
numbers; the host warp keeps the exported model's crops identical to evaluation's. The one
difference from evaluation is the last step, heatmap -> image pixels, done in float32 on the
device instead of float64 on the host (below 1e-3 px).

    predict = load_bundle("runs/x/export")                 # or runtime="onnx": no JAX used
    keypoints, scores = predict(image_rgb, boxes_xywh)     # [M, N, K, 2], [M, N, K]
"""

from __future__ import annotations

import json
import os

import numpy as np

from mipnet_jax.core.geometry import box_to_center_scale, crop_transform
from mipnet_jax.data.image import warp_crop

BUNDLE_FORMAT = "mipnet_jax.bundle"
BUNDLE_VERSION = 1
MANIFEST = "bundle.json"
FUNCTION = "predict.jax"
VARIABLES = "variables"
CONFIG = "config.json"
ONNX = "model.onnx"
RUNTIMES = ("jax", "onnx")


class BundleError(ValueError):
  """A bundle folder that cannot be used; the message names the path."""


def uses_udp(config) -> bool:
  """Whether the model's geometry is UDP's (``config.data.udp``; absent in older configs)."""
  return bool(config.data.get("udp", False))


def require_onnx_geometry(config) -> None:
  """The ONNX graph decodes with HRNet's quarter offset only: a ValueError for UDP models."""
  if uses_udp(config):
    raise ValueError(f"{config.experiment}: --export_onnx supports HRNet's geometry only; "
                     f"this model uses UDP (config.data.udp=True), whose UDP-DARK decoding "
                     f"the ONNX graph does not implement (export without --export_onnx)")


def whole_image_box(image: np.ndarray) -> np.ndarray:
  """[1, 4] the box (x, y, w, h) covering the whole image [H, W, 3]."""
  return np.array([[0.0, 0.0, image.shape[1], image.shape[0]]], np.float32)


def boxes_to_crops(image: np.ndarray, boxes, input_hw: tuple[int, int], color: str = "rgb",
                   padding: float = 1.25, udp: bool = False
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """An RGB image uint8 [H, W, 3] and boxes [M, 4] (x, y, w, h) -> the boxes' crops uint8
  [M, h, w, 3] in ``color`` order, centers [M, 2] and scales [M, 2] float32: the crop of
  evaluation (``transforms.EvalSample``), box padded by ``padding`` to the input aspect, cut
  with HRNet's affine or (``udp``) UDP's warp."""
  boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
  source = np.ascontiguousarray(image[..., ::-1]) if color == "bgr" else image
  crops = np.zeros((len(boxes), *input_hw, 3), np.uint8)
  centers = np.zeros((len(boxes), 2), np.float32)
  scales = np.zeros((len(boxes), 2), np.float32)
  for i, box in enumerate(boxes):
    centers[i], scales[i] = box_to_center_scale(box, input_hw, padding)
    trans = crop_transform(centers[i], scales[i], 0.0, input_hw, udp)
    crops[i] = warp_crop(source, trans, input_hw)
  return crops, centers, scales


def batch_bucket(count: int, batch_size: int) -> int:
  """The padded size of a chunk of ``count`` <= ``batch_size`` boxes: the next power of two,
  at most ``batch_size`` (so a symbolic-batch function compiles for few sizes)."""
  return min(batch_size, 1 << max(count - 1, 0).bit_length())


class BoxPredictor:
  """image + boxes -> keypoints and joint scores of every instance, around a function
  ``crops_fn(crops, centers, scales) -> (keypoints [b, N, K, 2], maxvals [b, N, K])``."""

  def __init__(self, crops_fn, manifest: dict):
    self.crops_fn = crops_fn
    self.manifest = manifest
    self.input_hw = tuple(manifest["input_hw"])
    self.num_instances = int(manifest["num_instances"])
    self.num_keypoints = int(manifest["num_keypoints"])

  def crops(self, image: np.ndarray, boxes=None):
    """(crops, centers, scales) of ``boxes_to_crops``; boxes None: the whole image."""
    boxes = whole_image_box(image) if boxes is None else boxes
    return boxes_to_crops(image, boxes, self.input_hw, self.manifest["color"],
                          self.manifest["box_padding"], bool(self.manifest.get("udp", False)))

  def run(self, crops: np.ndarray, centers: np.ndarray, scales: np.ndarray):
    """Crops [M, h, w, 3] -> (keypoints [M, N, K, 2], maxvals [M, N, K]) numpy float32, in
    chunks of the bundle's batch size, each padded to ``batch_bucket``."""
    m, size = len(crops), int(self.manifest["batch_size"])
    keypoints = np.zeros((m, self.num_instances, self.num_keypoints, 2), np.float32)
    maxvals = np.zeros((m, self.num_instances, self.num_keypoints), np.float32)
    for start in range(0, m, size):
      n = min(size, m - start)
      pad = batch_bucket(n, size) - n
      part = [np.concatenate([a[start:start + n], np.repeat(a[start:start + 1], pad, 0)])
              for a in (crops, centers, scales)]
      kp, mv = self.crops_fn(*part)
      keypoints[start:start + n], maxvals[start:start + n] = np.asarray(kp)[:n], np.asarray(mv)[:n]
    return keypoints, maxvals

  def __call__(self, image: np.ndarray, boxes=None):
    """RGB image uint8 [H, W, 3], boxes [M, 4] (x, y, w, h) image pixels (None: the whole
    image) -> (keypoints [M, N, K, 2] image pixels, scores [M, N, K]) of every lambda."""
    crops, centers, scales = self.crops(image, boxes)
    return self.run(crops, centers, scales)


def read_manifest(path: str) -> dict:
  """bundle.json of the bundle folder ``path``; BundleError when missing or of another
  format."""
  file = os.path.join(path, MANIFEST)
  try:
    with open(file) as f:
      manifest = json.load(f)
  except FileNotFoundError:
    raise BundleError(f"{path}: not an inference bundle ({MANIFEST} not found)") from None
  except json.JSONDecodeError as e:
    raise BundleError(f"{file}: not valid JSON ({e})") from None
  if manifest.get("format") != BUNDLE_FORMAT or manifest.get("version") != BUNDLE_VERSION:
    raise BundleError(f"{file}: expected format {BUNDLE_FORMAT!r} version {BUNDLE_VERSION}, "
                      f"got {manifest.get('format')!r} version {manifest.get('version')!r}")
  return manifest


def _abstract(tree: dict):
  """bundle.json's variables tree ({name: subtree | {"shape", "dtype"}}) -> ShapeDtypeStructs."""
  import jax
  if set(tree) == {"shape", "dtype"} and isinstance(tree["shape"], list):
    return jax.ShapeDtypeStruct(tuple(tree["shape"]), np.dtype(tree["dtype"]))
  return {k: _abstract(v) for k, v in tree.items()}


def load_variables(path: str, manifest: dict) -> dict:
  """The bundle's {'params', 'batch_stats'} (orbax, restored into the manifest's tree)."""
  import orbax.checkpoint as ocp      # the checkpoint reader only; no model code
  with ocp.StandardCheckpointer() as ckptr:
    try:
      return ckptr.restore(os.path.join(os.path.abspath(path), VARIABLES),
                           _abstract(manifest["variables"]))
    except (FileNotFoundError, ValueError) as e:
      raise BundleError(f"{path}/{VARIABLES}: unreadable variables ({e})") from None


def load_function(path: str):
  """The deserialized ``jax.export.Exported`` of the bundle."""
  import jax
  file = os.path.join(path, FUNCTION)
  if not os.path.isfile(file):
    raise BundleError(f"{file}: exported function not found")
  with open(file, "rb") as f:
    return jax.export.deserialize(bytearray(f.read()))


def load_bundle(path: str, runtime: str = "jax") -> BoxPredictor:
  """The bundle at ``path`` as a ``BoxPredictor``: ``predict(image_rgb, boxes)`` ->
  (keypoints [M, N, K, 2], scores [M, N, K]). Needs neither flax nor the model code;
  ``runtime="onnx"`` runs its model.onnx with onnxruntime and imports no JAX."""
  if runtime not in RUNTIMES:
    raise BundleError(f"{path}: runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
  manifest = read_manifest(path)
  if runtime == "onnx":
    from mipnet_jax.serve.onnx_runtime import onnx_crops_fn
    if not manifest.get("onnx"):
      raise BundleError(f"{path}: the bundle has no {ONNX} (export it with --export_onnx)")
    try:
      return BoxPredictor(onnx_crops_fn(os.path.join(path, manifest["onnx"])), manifest)
    except ValueError as e:
      raise BundleError(str(e)) from None
  import jax
  exported = load_function(path)
  variables = load_variables(path, manifest)
  call = jax.jit(exported.call)
  return BoxPredictor(lambda crops, centers, scales: call(variables, crops, centers, scales),
                      manifest)
