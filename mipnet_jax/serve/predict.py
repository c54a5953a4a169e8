"""``--mode=predict``: poses for image files on detection boxes or whole images.

``run_predict`` matches image files to the detection file's ``image_id``s: through
``--annotations`` (a COCO file naming each image's ``file_name`` and ``id``) when given, else
by file name, as COCO names its images (``000000000785.jpg`` is id 785). Without a detection
file every image is one box and the images without numeric names get ids 1, 2, ... in sorted
order. Every detection must name a known image: one of ``--annotations`` (detections of its
images outside ``--images`` are skipped and counted) or, without it, one of ``--images``;
else a one-line error names the detection file. It writes ``predictions.json`` (COCO
keypoint results, each with an extra ``lambda`` field that pycocotools ignores),
``images.json`` (the COCO ``images`` of the ids used), one PNG per image (one colour per
person, lambda >= 1 poses with dotted limbs and an "L<lambda>" label) and ``summary.json``.
A file that cannot be decoded (truncated JPEG, a non-image with an image extension, a file
gone missing) is skipped and counted by reason, and so is any other file of an ``--images``
folder; ``summary.json`` lists each skipped file with its reason, and the run still writes
every good image's results.
"""

from __future__ import annotations

import collections
import dataclasses
import glob
import json
import os

import cv2
import numpy as np

from mipnet_jax.core.runtime import configure_cpu_xla
from mipnet_jax.data import boxes as boxes_lib
from mipnet_jax.data.coco_format import image_table, read_json
from mipnet_jax.data.image import ImageError, read_image
from mipnet_jax.models.load import resolve_checkpoint
from mipnet_jax.serve import bundle
from mipnet_jax.serve.predictor import Pose, Predictor, detect

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


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


def other_files(spec: str) -> list[str]:
  """The files of an ``--images`` folder that ``list_images`` leaves out (other extensions);
  [] for a file or a glob."""
  if not os.path.isdir(spec):
    return []
  return sorted(os.path.join(spec, n) for n in os.listdir(spec)
                if os.path.isfile(os.path.join(spec, n)) and not n.lower().endswith(
                    IMAGE_EXTENSIONS))


@dataclasses.dataclass(frozen=True)
class PredictResult:
  """What ``run_predict`` wrote: files, image / pose counts, the boxes' account, the weights,
  and the files skipped (``skipped``: {reason: count}; ``skipped_files``: [{file, reason}])."""

  paths: dict
  images: int
  poses: int
  boxes: str
  weights: str
  output_dir: str
  skipped: dict = dataclasses.field(default_factory=dict)
  skipped_files: tuple = ()

  def as_dict(self) -> dict:
    return dict(predictions=self.paths["predictions"], images=self.images, poses=self.poses,
                boxes=self.boxes, weights=self.weights, output_dir=self.output_dir,
                skipped=self.skipped)

  def summary(self) -> str:
    """One JSON line (the skipped files are listed in summary.json)."""
    return json.dumps(self.as_dict())


def check_box_sources(boxes: str, detector: bool, video: bool = False) -> None:
  """A detection file (``--boxes``) is for ``--images`` alone: one line otherwise."""
  if boxes and (detector or video):
    raise ValueError("predict: --boxes goes with --images, without --detector or --video")


def run_predict(predictor: Predictor, images: str, out_dir: str, boxes: str = "",
                annotations: str = "", min_box_score: float | None = None,
                draw_min_score: float = 0.3, detector=None) -> PredictResult:
  """Poses of every image of ``images`` (list_images), on the boxes of the detection file
  ``boxes``, of ``detector`` (a callable image -> boxes, scores; serve/detector.py) or on
  whole images; writes predictions.json, images.json, summary.json and one PNG per image
  under ``out_dir``; boxes scoring below ``min_box_score`` (default the predictor's
  ``config.eval.min_box_score``) are dropped."""
  if min_box_score is None:
    min_box_score = predictor.spec.min_box_score
  check_box_sources(boxes, detector is not None)
  paths = list_images(images)
  ids = image_ids(paths, annotations, need_ids=bool(boxes))
  per_image, report = ({}, "whole images") if not boxes else detections_by_image(
      boxes, ids, annotations, min_box_score)
  detected = collections.Counter()
  os.makedirs(out_dir, exist_ok=True)
  results, table, pngs = [], [], _png_names(paths)
  skipped = [dict(file=p, reason="not an image file") for p in other_files(images)]
  done = []
  for path in paths:
    try:
      image = read_image(path, "rgb")
    except ImageError as e:
      skipped.append(dict(file=path, reason=e.kind))
      continue
    done.append(path)
    found = None                                          # None: the whole image
    if detector is not None:
      found = detect(detector, image, min_box_score)
      detected.update(boxes=len(found[0]), images=bool(len(found[0])))
    elif boxes:
      found = per_image.get(ids[path], (np.zeros((0, 4), np.float32), np.zeros(0)))
    poses = predictor(image) if found is None else (
        predictor(image, *found) if len(found[0]) else [])
    results += pose_results(poses, ids[path])
    table.append(dict(id=ids[path], file_name=os.path.basename(path), height=image.shape[0],
                      width=image.shape[1]))
    cv2.imwrite(os.path.join(out_dir, pngs[path]),
                predictor.draw(image, poses, draw_min_score)[..., ::-1])
  out = {k: os.path.join(out_dir, f"{k}.json") for k in ("predictions", "images", "summary")}
  with open(out["predictions"], "w") as f:
    json.dump(results, f)
  with open(out["images"], "w") as f:
    json.dump(table, f, indent=1)
  counts = dict(collections.Counter(s["reason"] for s in skipped))
  if detector is not None:
    report = (f"detector {getattr(detector, 'path', type(detector).__name__)}: "
              f"{detected['boxes']} person boxes in {detected['images']} of {len(done)} "
              f"images (score >= {min_box_score:g})")
  result = PredictResult(dict(out, pngs=[os.path.join(out_dir, pngs[p]) for p in done]),
                         len(done), len(results), report, predictor.weights, out_dir,
                         counts, tuple(skipped))
  with open(out["summary"], "w") as f:
    json.dump(dict(result.as_dict(), skipped_files=skipped), f, indent=1)
  return result


def predict_mode(config, bundle_dir: str | None, images: str, out_dir: str, boxes: str = "",
                 annotations: str = "", workdir: str | None = None,
                 draw_min_score: float = 0.3, detector: str = "", video: str = "",
                 det_every: int = 5, runtime: str = "jax"):
  """``--mode=predict`` with ``config``'s model (``resolve_checkpoint``) or, when ``config`` is
  None, the bundle at ``bundle_dir``; ``detector``: an ONNX person detector giving the
  boxes, a named one (serve/detector_zoo.py, fetched on first use) or a file; ``video``: a
  video file instead of ``images`` (serve/video.py; detection every ``det_every`` frames);
  ``runtime``: the bundle's jax.export function or its model.onnx (onnxruntime).
  Cheap input checks run first: a bad glob, detection file or detector fails before the
  model loads. Returns a ``PredictResult`` or, for a video, a ``VideoResult``."""
  check_box_sources(boxes, bool(detector), bool(video))
  if not video:
    paths = list_images(images)
    ids = image_ids(paths, annotations, need_ids=bool(boxes))
    if boxes:
      detections_by_image(boxes, ids, annotations)
  found = None
  if detector:
    from mipnet_jax.serve.detector import OnnxDetector    # optional extra: onnxruntime
    from mipnet_jax.serve.detector_zoo import resolve_detector
    found = OnnxDetector(resolve_detector(detector))
  if config is None:
    if runtime == "jax":
      configure_cpu_xla(bundle.read_manifest(bundle_dir)["architecture"])
    predictor = Predictor.from_bundle(bundle_dir, runtime)
  else:
    predictor = Predictor.from_config(config, resolve_checkpoint(config, workdir))
  if video:
    from mipnet_jax.serve.video import run_video
    return run_video(predictor, video, out_dir, found, det_every, draw_min_score)
  return run_predict(predictor, images, out_dir, boxes, annotations,
                     draw_min_score=draw_min_score, detector=found)
