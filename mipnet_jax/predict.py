"""Poses for images: the Python API (notebooks) and ``--mode=predict``.

    predictor = Predictor.from_config(config, checkpoint)     # or Predictor.from_bundle(dir)
    poses = predictor(image_rgb, boxes_xywh)                  # boxes None: the whole image
    canvas = predictor.draw(image_rgb, poses)

A ``Predictor`` runs the network on every box (all N instances, serving.BoxPredictor) and
merges the candidates of the image as evaluation does (``config.eval``: gamma^lambda
discount, rescoring, OKS-NMS; postprocess.py), so a pose's score is the one evaluation
submits. ``from_config`` and ``from_bundle`` run the same function (export.serving_function),
jitted in process or deserialized; they give the same poses. Crops and joint scores equal
``--mode=eval``'s; image coordinates differ by float32 rounding (< 1e-3 px, serving.py).

``run_predict`` (the mode) matches image files to the detection file's ``image_id``s: through
``--annotations`` (a COCO file naming each image's ``file_name`` and ``id``) when given, else
by file name, as COCO names its images (``000000000785.jpg`` is id 785). Without a detection
file every image is one box and the images without numeric names get ids 1, 2, ... in sorted
order. Every detection must name a known image: one of ``--annotations`` (detections of its
images outside ``--images`` are skipped and counted) or, without it, one of ``--images``;
else a one-line error names the detection file. It writes ``predictions.json`` (COCO
keypoint results, each with an extra ``lambda`` field that pycocotools ignores),
``images.json`` (the COCO ``images`` of the ids used) and one PNG per image: one colour per
person, lambda >= 1 poses with dotted limbs and an "L<lambda>" label.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os

import cv2
import jax
import numpy as np
from absl import logging

from mipnet_jax import evaluate, export, postprocess, serving, visualize
from mipnet_jax.data import boxes as boxes_lib
from mipnet_jax.data.coco_format import image_table, read_json
from mipnet_jax.data.image import read_image
from mipnet_jax.data.meta import DatasetMeta, get_meta

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


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


@dataclasses.dataclass(frozen=True)
class Merge:
  """The box filter and post-processing of ``config.eval`` (see postprocess.postprocess)."""

  min_box_score: float = 0.0
  gamma: float = 0.9
  gamma_mode: str = "power"
  in_vis_thre: float = 0.2
  nms: str = "oks"
  nms_threshold: float = 0.9
  keep_lambda: int = -1

  @classmethod
  def from_eval(cls, ev) -> Merge:
    """From ``config.eval`` (a ConfigDict or the dict of a bundle's config.json)."""
    return cls(**{f.name: type(f.default)(ev[f.name]) for f in dataclasses.fields(cls)})


class Predictor:
  """RGB image + boxes -> merged poses of every instance (see the module docstring)."""

  def __init__(self, boxes_fn: serving.BoxPredictor, meta: DatasetMeta, merge: Merge,
               weights: str = ""):
    self.boxes_fn, self.meta, self.merge, self.weights = boxes_fn, meta, merge, weights

  @classmethod
  def from_config(cls, config, checkpoint: str | None = None) -> Predictor:
    """The model of ``config`` with ``checkpoint`` (None: ``config.eval.checkpoint``; "":
    freshly initialised weights, with a warning), jitted in this process."""
    export.require_device_decode(config)
    checkpoint = config.eval.checkpoint if checkpoint is None else checkpoint
    n = config.eval.num_instances or config.num_instances
    model, variables, weights = evaluate.model_and_variables(config, n, checkpoint)
    if not checkpoint:
      logging.warning("predicting with FRESHLY INITIALISED weights (no checkpoint): the poses "
                      "mean nothing")
    fn = jax.jit(export.config_serving_function(config, model, n))
    manifest = export.make_manifest(config, variables, n, weights, ())
    boxes_fn = serving.BoxPredictor(lambda *a: fn(variables, *a), manifest)
    return cls(boxes_fn, get_meta(config.data.name), Merge.from_eval(config.eval), weights)

  @classmethod
  def from_bundle(cls, path: str) -> Predictor:
    """An exported bundle (serving.load_bundle) with its config's post-processing."""
    boxes_fn = serving.load_bundle(path)
    with open(os.path.join(path, serving.CONFIG)) as f:
      config = json.load(f)
    return cls(boxes_fn, get_meta(config["data"]["name"]), Merge.from_eval(config["eval"]),
               boxes_fn.manifest["weights"])

  def __call__(self, image: np.ndarray, boxes=None, box_scores=None) -> list[Pose]:
    """RGB uint8 [H, W, 3], boxes [M, 4] (x, y, w, h) or None (the whole image), box_scores
    [M] (default 1) -> the kept poses, best first."""
    boxes = serving.whole_image_box(image) if boxes is None else np.asarray(boxes, np.float32)
    boxes = boxes.reshape(-1, 4)
    if not len(boxes):
      return []
    scores = np.ones(len(boxes)) if box_scores is None else np.asarray(box_scores, np.float64)
    crops, centers, scales = self.boxes_fn.crops(image, boxes)
    keypoints, maxvals = self.boxes_fn.run(crops, centers, scales)
    candidates = evaluate.flat_candidates(
        np.concatenate([keypoints, maxvals[..., None]], -1), scores, scales,
        np.zeros(len(boxes), np.int64))
    m = self.merge
    kept = postprocess.postprocess(
        candidates, self.meta.sigmas, gamma=m.gamma, gamma_mode=m.gamma_mode,
        in_vis_thre=m.in_vis_thre, nms=m.nms, nms_threshold=m.nms_threshold,
        keep_lambda=None if m.keep_lambda < 0 else m.keep_lambda)
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
      color = visualize.instance_color(person)
      visualize.draw_pose(canvas, pose.keypoints, self.meta, color,
                          min_score=self.merge.in_vis_thre, dashed=pose.lam > 0)
      seen = pose.keypoints[pose.keypoints[:, 2] > self.merge.in_vis_thre]
      if pose.lam > 0 and len(seen):
        at = (int(seen[:, 0].min()), int(max(seen[:, 1].min() - 6, 12)))
        for ink, width in (((0, 0, 0), 4), (color, 2)):     # outlined: readable on any colour
          cv2.putText(canvas, f"L{pose.lam}", at, cv2.FONT_HERSHEY_SIMPLEX, 0.6, ink, width,
                      cv2.LINE_AA)
    return canvas


def list_images(spec: str) -> list[str]:
  """``--images``: an image file, a folder (its images) or a glob -> sorted image paths."""
  if os.path.isdir(spec):
    paths = [os.path.join(spec, name) for name in os.listdir(spec)]
  else:
    paths = glob.glob(os.path.expanduser(spec))
  paths = sorted(p for p in paths if os.path.isfile(p) and p.lower().endswith(IMAGE_EXTENSIONS))
  if not paths:
    raise ValueError(f"--images={spec}: no image file matches ({', '.join(IMAGE_EXTENSIONS)})")
  return paths


def image_ids(paths: list[str], annotations: str = "", need_ids: bool = False) -> dict[str, int]:
  """Image path -> id: by ``file_name`` in the COCO file ``annotations``; else from the file
  name's digits (``000000000785.jpg`` -> 785); else, unless ``need_ids``, 1, 2, ... in order."""
  if annotations:
    data = read_json(annotations)
    table = image_table(data.get("images", []) if isinstance(data, dict) else [], annotations)
    by_name = {os.path.basename(img["file_name"]): i for i, img in table.items()}
    missing = [p for p in paths if os.path.basename(p) not in by_name]
    if missing:
      raise ValueError(f"{missing[0]}: not an image of {annotations} (no 'file_name' matches)")
    return {p: by_name[os.path.basename(p)] for p in paths}
  stems = [os.path.splitext(os.path.basename(p))[0] for p in paths]
  if all(s.isdigit() for s in stems):
    ids = {p: int(s) for p, s in zip(paths, stems)}
    if len(set(ids.values())) < len(ids):
      raise ValueError("--images: two files have the same numeric name (image id)")
    return ids
  if need_ids:
    bad = next(p for p, s in zip(paths, stems) if not s.isdigit())
    raise ValueError(f"{bad}: no image id in the file name; pass --annotations=ANN.json (COCO "
                     f"images with file_name and id) to match the detection file's image_ids")
  return {p: i + 1 for i, p in enumerate(paths)}


def detections_by_image(det_path: str, ids: dict[str, int], annotations: str = "",
                        min_score: float = 0.0) -> tuple[dict[int, tuple], str]:
  """The detection file's boxes per image id: {id: (boxes [M, 4], scores [M])} for the ids of
  ``ids``, and a one-line report. Every detection must name an image of ``annotations`` (if
  given; detections of its other images are skipped) or else one of ``ids``."""
  if annotations:
    data = read_json(annotations)
    known = image_table(data.get("images", []) if isinstance(data, dict) else [], annotations)
    unknown = f"is not an image of {annotations}"
  else:
    known = set(ids.values())
    unknown = ("matches no file of --images by name (pass --annotations=ANN.json to map "
               "image ids to file names)")
  kept, report = boxes_lib.read_detections(det_path, known, min_score, unknown)
  wanted = set(ids.values())
  found: dict[int, list] = {}
  for _, det in kept:
    if det["image_id"] in wanted:
      found.setdefault(det["image_id"], []).append(det)
    else:
      report.skipped["image not in --images"] += 1
  per_image = {i: (np.array([d["bbox"] for d in dets], np.float32),
                   np.array([d["score"] for d in dets], np.float64))
               for i, dets in found.items()}
  return per_image, str(report)


def pose_results(poses: list[Pose], image_id: int) -> list[dict]:
  """Poses -> COCO keypoint results (plus the pose's ``lambda``)."""
  return [{"image_id": image_id, "category_id": 1,
           "keypoints": p.keypoints[:, :3].astype(np.float64).reshape(-1).tolist(),
           "score": p.score, "lambda": p.lam} for p in poses]


def _png_names(paths: list[str]) -> dict[str, str]:
  stems = [os.path.splitext(os.path.basename(p))[0] for p in paths]
  return {p: f"{s}.png" if stems.count(s) == 1 else f"{s}_{k}.png"
          for k, (p, s) in enumerate(zip(paths, stems))}


def run_predict(predictor: Predictor, images: str, out_dir: str, boxes: str = "",
                annotations: str = "", min_box_score: float | None = None,
                draw_min_score: float = 0.3) -> dict:
  """``--mode=predict``: poses of every image of ``images`` (list_images), on the boxes of
  the detection file ``boxes`` or on whole images; writes predictions.json, images.json and
  one PNG per image under ``out_dir``; detections scoring below ``min_box_score`` (default
  the predictor's ``config.eval.min_box_score``) are dropped. Returns {"paths", "images",
  "poses", "boxes", "weights"}."""
  if min_box_score is None:
    min_box_score = predictor.merge.min_box_score
  paths = list_images(images)
  ids = image_ids(paths, annotations, need_ids=bool(boxes))
  per_image, report = ({}, "whole images") if not boxes else detections_by_image(
      boxes, ids, annotations, min_box_score)
  os.makedirs(out_dir, exist_ok=True)
  results, table, pngs = [], [], _png_names(paths)
  for path in paths:
    image = read_image(path, "rgb")
    if boxes:
      found = per_image.get(ids[path], (np.zeros((0, 4), np.float32), np.zeros(0)))
      poses = predictor(image, *found) if len(found[0]) else []
    else:
      poses = predictor(image)
    results += pose_results(poses, ids[path])
    table.append(dict(id=ids[path], file_name=os.path.basename(path), height=image.shape[0],
                      width=image.shape[1]))
    canvas = predictor.draw(image, poses, draw_min_score)
    cv2.imwrite(os.path.join(out_dir, pngs[path]), canvas[..., ::-1])
  out = dict(predictions=os.path.join(out_dir, "predictions.json"),
             images=os.path.join(out_dir, "images.json"))
  with open(out["predictions"], "w") as f:
    json.dump(results, f)
  with open(out["images"], "w") as f:
    json.dump(table, f, indent=1)
  return dict(paths=dict(out, pngs=[os.path.join(out_dir, pngs[p]) for p in paths]),
              images=len(paths), poses=len(results), boxes=report, weights=predictor.weights)
