"""The COCO keypoint protocol (COCO val / test-dev format, OCHuman, synthetic) via pycocotools.

Exactly what the reference evaluation does (HRNet / MIPNet ``coco.py::_do_python_keypoint_eval``):
``COCOeval(gt, gt.loadRes(results), 'keypoints')``, ``params.useSegm = None``, evaluate,
accumulate, summarize; ``stats[0..9]`` are AP, AP50, AP75, APM, APL, AR, AR50, AR75, ARM,
ARL (OKS thresholds .50:.05:.95, 20 detections per image, GT ``area`` as the OKS scale, GT
ignored when ``iscrowd`` or ``num_keypoints == 0``). The OKS sigmas are the dataset's from
``mipnet_jax.core.meta`` (for the COCO keypoints they equal pycocotools' built-in ones).

Two options serve other datasets' protocols (supplementary Table 12, OCPose): a joint subset
(``JointMap``: the ground truth keeps only the common joints, its ``num_keypoints`` is
recounted over them as the labelled (v > 0) joints, the sigmas are theirs and predictions
hold just those joints), and the area rule ``box_0.53`` (OKS scale and area ranges from
0.53 x box w x h, as CrowdPose's and OPEC-Net's tools, instead of the ``area`` field).

``KeypointMetric`` collects predictions on the host (``add`` / ``add_arrays``) and
evaluates once in ``compute``. No predictions at all is not an error: the protocol runs on an
empty result set (logging a warning), so a metric is 0.0 where the annotations have
ground truth for it and -1.0 (pycocotools' "no ground truth") where they have none, e.g. APM
when no GT person is of medium size (an image-info file without annotations, like COCO
test-dev's, gives -1 everywhere but still checks the predictions). pycocotools' own printing
never reaches stdout: it is dropped, or sent to stderr with ``verbose=True``.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import sys
from collections.abc import Iterable

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from mipnet_jax.data.coco_format import AnnotationError, check_coco_object, read_json
from mipnet_jax.core.meta import DatasetMeta, JointMap, get_meta
from mipnet_jax.eval.metrics.results import results_from_arrays, validate_results

_LOG = logging.getLogger(__name__)

COCO_METRICS = ("AP", "AP50", "AP75", "APM", "APL", "AR", "AR50", "AR75", "ARM", "ARL")
AREA_RULES = ("annotation", "box_0.53")
BOX_AREA_FACTOR = 0.53           # CrowdPose's computeOks / evaluateImg, OPEC-Net's OCPose
MAX_DETS = 20                    # pycocotools' keypoint maxDets, CrowdPose's too


@contextlib.contextmanager
def pycocotools_output(verbose: bool):
  """Sends what pycocotools prints to stderr (verbose) or nowhere; never to stdout."""
  with contextlib.redirect_stdout(sys.stderr if verbose else io.StringIO()):
    yield


def _check_annotation(ann, meta: DatasetMeta, fields: tuple[str, ...], image_ids: set,
                      name: str) -> None:
  if not isinstance(ann, dict):
    raise AnnotationError(f"{name}: annotation {ann!r}: expected an object")
  where = f"{name}: annotation {ann.get('id')!r}"
  for field in ("id", "image_id", "category_id", "keypoints", "bbox"):
    if field not in ann:
      raise AnnotationError(f"{where}: field '{field}' missing")
  if ann["image_id"] not in image_ids:
    raise AnnotationError(f"{where}: field 'image_id' {ann['image_id']!r} names no image")
  expected = 3 * meta.num_keypoints
  if not isinstance(ann["keypoints"], list) or len(ann["keypoints"]) != expected:
    got = len(ann["keypoints"]) if isinstance(ann["keypoints"], list) else "no list of"
    raise AnnotationError(f"{where}: field 'keypoints' has {got} values, expected {expected} "
                          f"(3 x {meta.num_keypoints} keypoints of {meta.name})")
  if not isinstance(ann["bbox"], list) or len(ann["bbox"]) != 4:
    raise AnnotationError(f"{where}: field 'bbox' must hold 4 numbers")
  for field in fields:
    if field not in ann:
      raise AnnotationError(f"{where}: field '{field}' missing")


def load_ground_truth(annotations: str | dict, meta: DatasetMeta,
                      ann_fields: tuple[str, ...] = ("area", "iscrowd", "num_keypoints")
                      ) -> tuple[dict, str]:
  """Reads and checks a COCO-format keypoint annotation file.

  Args:
    annotations: path of the JSON file, or its parsed content (a deep copy is taken).
    meta: the dataset; every annotation must hold 3 x ``meta.num_keypoints`` keypoint values.
    ann_fields: fields the protocol reads from every annotation, besides id, image_id,
      category_id, keypoints and bbox.
  Returns:
    (dataset dict, name for messages: the path, or "annotations").
  """
  name = annotations if isinstance(annotations, str) else "annotations"
  data = read_json(annotations) if isinstance(annotations, str) else copy.deepcopy(annotations)
  check_coco_object(data, name, ("images", "categories"))
  data.setdefault("annotations", [])      # image-info files (test-dev) have none
  for img in data["images"]:
    if not isinstance(img, dict) or "id" not in img:
      raise AnnotationError(f"{name}: image {img!r}: field 'id' missing")
  image_ids = {img["id"] for img in data["images"]}
  for ann in data["annotations"]:
    _check_annotation(ann, meta, ann_fields, image_ids, name)
  return data, name


def coco_api(dataset: dict) -> COCO:
  """A pycocotools COCO object over an already parsed dataset (nothing printed)."""
  coco = COCO()
  coco.dataset = dataset
  with pycocotools_output(False):
    coco.createIndex()
  return coco


def empty_results(gt: COCO) -> COCO:
  """A results COCO object with no predictions (pycocotools' loadRes cannot take [])."""
  return coco_api({"images": list(gt.dataset["images"]),
                   "categories": copy.deepcopy(gt.dataset["categories"]), "annotations": []})


class KeypointMetric:
  """Collects keypoint predictions on the host and evaluates them once with one protocol.

  Subclasses set ``metric_names`` and ``ann_fields`` and implement ``_evaluate``.
  """

  metric_names: tuple[str, ...] = ()
  ann_fields: tuple[str, ...] = ("area", "iscrowd", "num_keypoints")
  default_area_rule = "annotation"

  def __init__(self, annotations: str | dict, dataset: str | DatasetMeta, *,
               verbose: bool = False, joints: JointMap | None = None,
               area_rule: str | None = None):
    """annotations: path or parsed COCO-format ground truth; dataset: its ``DatasetMeta`` or
    a ``get_meta`` name; joints: evaluate only these joints (None: all); area_rule: one of
    AREA_RULES (None: the protocol's own)."""
    self.meta = get_meta(dataset) if isinstance(dataset, str) else dataset
    self.verbose = verbose
    self.area_rule = area_rule or self.default_area_rule
    if self.area_rule not in AREA_RULES:
      raise ValueError(f"area rule must be one of {', '.join(AREA_RULES)}, got {area_rule!r}")
    self.joints = joints
    self.sigmas = np.array(joints.sigmas if joints else self.meta.sigmas)
    fields = tuple(f for f in self.ann_fields
                   if not (f == "area" and self.area_rule != "annotation")
                   and not (f == "num_keypoints" and joints))
    data, self.annotations_name = load_ground_truth(annotations, self.meta, fields)
    self.gt = coco_api(self._prepare_ground_truth(self._select_joints(self._set_area(data))))
    self._image_ids = set(self.gt.getImgIds())
    self._category_ids = set(self.gt.getCatIds())
    self._results: list[dict] = []

  def _set_area(self, data: dict) -> dict:
    """Area rule ``box_0.53``: every GT ``area`` becomes 0.53 x box w x h."""
    if self.area_rule == "box_0.53":
      for ann in data["annotations"]:
        ann["area"] = ann["bbox"][2] * ann["bbox"][3] * BOX_AREA_FACTOR
    return data

  def _select_joints(self, data: dict) -> dict:
    """A joint subset: GT keypoints of those joints only, num_keypoints recounted (v > 0)."""
    if self.joints is None:
      return data
    ids = np.asarray(self.joints.data_ids)
    for ann in data["annotations"]:
      kpts = np.asarray(ann["keypoints"], np.float64).reshape(-1, 3)[ids]
      ann["keypoints"] = kpts.reshape(-1).tolist()
      ann["num_keypoints"] = int((kpts[:, 2] > 0).sum())
    return data

  def _prepare_ground_truth(self, data: dict) -> dict:
    """Protocol hook: adjusts the checked ground truth before indexing."""
    return data

  @property
  def num_keypoints(self) -> int:
    """Joints per prediction: the subset's, or the dataset's."""
    return len(self.sigmas)

  def __len__(self) -> int:
    return len(self._results)

  def add(self, results: Iterable[dict], source: str = "results") -> None:
    """Validates and stores COCO result objects; ``source`` names them in error messages."""
    self._results.extend(validate_results(
        results, image_ids=self._image_ids, category_ids=self._category_ids,
        num_keypoints=self.num_keypoints, source=source,
        annotations_name=self.annotations_name))

  def add_arrays(self, image_ids: np.ndarray, keypoints: np.ndarray, scores: np.ndarray,
                 category_id: int = 1) -> None:
    """Stores P predictions: image_ids [P], keypoints [P, K, 3] (x, y, conf), scores [P]."""
    self.add(results_from_arrays(image_ids, keypoints, scores, category_id))

  def compute(self) -> dict[str, float]:
    """Evaluates everything added so far: {metric name: value}."""
    if self._results:
      with pycocotools_output(self.verbose):
        dt = self.gt.loadRes([dict(r) for r in self._results])
    else:
      _LOG.warning("%s: no predictions to evaluate; every metric is 0.0 where the "
                   "annotations have ground truth for it, -1.0 where they have none",
                   self.annotations_name)
      dt = empty_results(self.gt)
    with pycocotools_output(self.verbose):
      stats = self._evaluate(dt)
    return {name: float(value) for name, value in zip(self.metric_names, stats)}

  def _evaluate(self, dt: COCO) -> np.ndarray:
    raise NotImplementedError


class CocoMetric(KeypointMetric):
  """The COCO keypoint protocol (COCO, OCHuman, synthetic): pycocotools as is."""

  metric_names = COCO_METRICS

  def _evaluate(self, dt: COCO) -> np.ndarray:
    """[10] pycocotools stats: AP, AP50, AP75, APM, APL, AR, AR50, AR75, ARM, ARL."""
    coco_eval = COCOeval(self.gt, dt, "keypoints")
    coco_eval.params.useSegm = None
    coco_eval.params.kpt_oks_sigmas = self.sigmas
    coco_eval.evaluate()
    coco_eval.accumulate()
    coco_eval.summarize()
    return coco_eval.stats
