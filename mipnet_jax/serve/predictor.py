"""The Python API: RGB image + boxes -> merged poses of every person.

    predictor = Predictor.from_config(config, checkpoint)     # or .from_bundle(dir[, "onnx"])
    poses = predictor(image_rgb, boxes_xywh)                  # boxes None: the whole image
    canvas = predictor.draw(image_rgb, poses)
    predictor.detector = OnnxDetector("person.onnx")          # boxes None: its boxes instead

A ``Predictor`` runs the network on every box (all N instances, bundle.BoxPredictor) and
merges the candidates of the image as evaluation does (the ``PostprocessSpec`` of
``config.eval``: gamma^lambda discount, rescoring, OKS-NMS; eval/postprocess.py), so a pose's
score is the one evaluation submits. ``from_config`` and ``from_bundle`` run the same function
(``export.serving_function``), jitted in process or deserialized; they give the same poses.
Crops and joint scores equal ``--mode=eval``'s; image coordinates differ by float32 rounding
(< 1e-3 px, serve/bundle.py). A UDP model (``config.data.udp``) is served in its geometry: UDP
crops, and UDP-DARK decoding on the device instead of cv2's on the host (within 1e-4 heatmap
px where the Newton step is well conditioned).
"""

from __future__ import annotations

import dataclasses
import json
import os

import cv2
import jax
import numpy as np
from absl import logging

from mipnet_jax.core.meta import DatasetMeta
from mipnet_jax.data import inputs
from mipnet_jax.eval.candidates import flat_candidates
from mipnet_jax.eval.postprocess import PostprocessSpec, postprocess
from mipnet_jax.eval.protocol import evaluated_n
from mipnet_jax.models.load import load_model
from mipnet_jax.serve import bundle, draw, export


@dataclasses.dataclass(frozen=True)
class Pose:
  """One predicted person: keypoints [K, 3] (x, y, joint score) image pixels, the merged
  score, its instance index ``lam`` (0: the box's own person), its box [4] (x, y, w, h) and
  that box's score."""

  keypoints: np.ndarray
  score: float
  lam: int
  box: np.ndarray
  box_score: float


def detect(detector, image: np.ndarray, min_box_score: float = 0.0
           ) -> tuple[np.ndarray, np.ndarray]:
  """``detector(image)``'s boxes [M, 4] float32 and scores [M] float64, those scoring below
  ``min_box_score`` left out."""
  boxes, scores = detector(image)
  boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
  scores = np.asarray(scores, np.float64).reshape(-1)
  keep = scores >= min_box_score
  return boxes[keep], scores[keep]


class Predictor:
  """RGB image + boxes -> merged poses of every instance (see the module docstring)."""

  def __init__(self, boxes_fn: bundle.BoxPredictor, meta: DatasetMeta, spec: PostprocessSpec,
               weights: str = "", detector=None):
    """``detector``: None, or any callable RGB image -> (boxes [M, 4] (x, y, w, h), scores
    [M]) (e.g. serve.detector.OnnxDetector), used when a call gives no boxes."""
    self.boxes_fn, self.meta, self.spec, self.weights = boxes_fn, meta, spec, weights
    self.detector = detector

  @classmethod
  def from_config(cls, config, checkpoint: str | None = None) -> Predictor:
    """The model of ``config`` with ``checkpoint`` (None: ``config.eval.checkpoint``; "":
    freshly initialised weights, with a warning), jitted in this process."""
    export.require_device_decode(config)
    checkpoint = config.eval.checkpoint if checkpoint is None else checkpoint
    n = evaluated_n(config)
    loaded = load_model(config, n, checkpoint)
    if not checkpoint:
      logging.warning("predicting with FRESHLY INITIALISED weights (no checkpoint): the poses "
                      "mean nothing")
    fn = jax.jit(export.serving_function(config, loaded.model, n))
    manifest = export.make_manifest(config, loaded.variables, n, loaded.weights, ())
    boxes_fn = bundle.BoxPredictor(lambda *a: fn(loaded.variables, *a), manifest)
    return cls(boxes_fn, inputs.model_meta(config), PostprocessSpec.from_eval(config.eval),
               loaded.weights)

  @classmethod
  def from_bundle(cls, path: str, runtime: str = "jax") -> Predictor:
    """An exported bundle (bundle.load_bundle; ``runtime="onnx"``: its model.onnx under
    onnxruntime) with its config's post-processing."""
    boxes_fn = bundle.load_bundle(path, runtime)
    with open(os.path.join(path, bundle.CONFIG)) as f:
      config = json.load(f)
    return cls(boxes_fn, inputs.model_meta(config), PostprocessSpec.from_eval(
        config["eval"]), boxes_fn.manifest["weights"])

  def __call__(self, image: np.ndarray, boxes=None, box_scores=None) -> list[Pose]:
    """RGB uint8 [H, W, 3], boxes [M, 4] (x, y, w, h) or None (the detector's boxes at or
    above ``min_box_score``, or without a detector the whole image), box_scores [M]
    (default 1) -> the kept poses, best first."""
    if boxes is None and self.detector is not None:
      boxes, box_scores = detect(self.detector, image, self.spec.min_box_score)
    boxes = bundle.whole_image_box(image) if boxes is None else np.asarray(boxes, np.float32)
    boxes = boxes.reshape(-1, 4)
    if not len(boxes):
      return []
    scores = np.ones(len(boxes)) if box_scores is None else np.asarray(box_scores, np.float64)
    crops, centers, scales = self.boxes_fn.crops(image, boxes)
    keypoints, maxvals = self.boxes_fn.run(crops, centers, scales)
    candidates = flat_candidates(np.concatenate([keypoints, maxvals[..., None]], -1), scores,
                                 scales, np.zeros(len(boxes), np.int64))
    kept = postprocess(candidates, self.meta.sigmas, self.spec)
    n = self.boxes_fn.num_instances
    poses = [Pose(candidates.keypoints[i], float(s), int(candidates.lam[i]), boxes[i // n],
                  float(scores[i // n])) for i, s in zip(kept.index.tolist(), kept.score)]
    return sorted(poses, key=lambda p: -p.score)

  def draw(self, image: np.ndarray, poses: list[Pose], min_score: float = 0.0) -> np.ndarray:
    """A copy of the RGB image with the poses scoring >= ``min_score`` drawn (joints above
    the rescoring threshold ``in_vis_thre``): one colour per person, lambda >= 1 dotted and
    labelled "L<lambda>"."""
    canvas = np.ascontiguousarray(image, np.uint8).copy()
    shown = [p for p in poses if p.score >= min_score]
    for person, pose in enumerate(shown):
      color = draw.instance_color(person)
      draw.draw_pose(canvas, pose.keypoints, self.meta, color,
                          min_score=self.spec.in_vis_thre, dashed=pose.lam > 0)
      seen = pose.keypoints[pose.keypoints[:, 2] > self.spec.in_vis_thre]
      if pose.lam > 0 and len(seen):
        at = (int(seen[:, 0].min()), int(max(seen[:, 1].min() - 6, 12)))
        for ink, width in (((0, 0, 0), 4), (color, 2)):     # outlined: readable on any colour
          cv2.putText(canvas, f"L{pose.lam}", at, cv2.FONT_HERSHEY_SIMPLEX, 0.6, ink, width,
                      cv2.LINE_AA)
    return canvas
