"""Keypoint metrics: the COCO protocol (COCO, OCHuman, synthetic) and the CrowdPose protocol,
both on pycocotools, with validated predictions and one-line input errors.

``crowdpose`` uses ``CrowdPoseMetric`` (``METRICS['crowdpose']``), every other dataset
(COCO, OCHuman, synthetic, OCPose, a user's own) ``CocoMetric``; an evaluation split may name
another (``eval_data.<split>.metric``). ``make_metric`` builds one, ``evaluate_file`` scores
a results file in one call.
"""

from __future__ import annotations

from mipnet_jax.core.meta import DatasetMeta, JointMap
from mipnet_jax.data.coco_format import AnnotationError
from mipnet_jax.eval.metrics.coco import (AREA_RULES, COCO_METRICS, MAX_DETS, CocoMetric,
                                          KeypointMetric)
from mipnet_jax.eval.metrics.crowdpose import CROWDPOSE_METRICS, CrowdPoseMetric
from mipnet_jax.eval.metrics.results import ResultsError, load_results_file, validate_results

METRICS: dict[str, type[KeypointMetric]] = {"coco": CocoMetric, "crowdpose": CrowdPoseMetric}


def default_metric(dataset: str) -> str:
  """The protocol a dataset is evaluated with by default: its own for CrowdPose, else COCO's."""
  return "crowdpose" if dataset == "crowdpose" else "coco"


def make_metric(dataset: str | DatasetMeta, annotations: str | dict, *, verbose: bool = False,
                metric: str = "", joints: JointMap | None = None,
                area_rule: str = "") -> KeypointMetric:
  """The keypoint metric over ground truth ``annotations`` (path or dict) of ``dataset`` (its
  meta, or a built-in name): ``metric`` in METRICS ("" = ``default_metric``), ``joints`` a
  subset to evaluate, ``area_rule`` in AREA_RULES ("" = the metric's own)."""
  name = dataset if isinstance(dataset, str) else dataset.name
  metric = metric or default_metric(name)
  if metric not in METRICS:
    raise ValueError(f"unknown metric {metric!r}; known: {', '.join(METRICS)}")
  return METRICS[metric](annotations, dataset, verbose=verbose, joints=joints,
                         area_rule=area_rule or None)


def evaluate_file(dataset: str | DatasetMeta, annotations: str, results: str, *,
                  verbose: bool = False, metric: str = "", joints: JointMap | None = None,
                  area_rule: str = "") -> dict[str, float]:
  """Metrics {name: value} of the COCO results file ``results`` against ``annotations``
  (options as ``make_metric``'s).

  Bad input raises a one-line ``ResultsError`` / ``AnnotationError`` naming the file.
  """
  metric = make_metric(dataset, annotations, verbose=verbose, metric=metric, joints=joints,
                       area_rule=area_rule)
  metric.add(load_results_file(results), source=results)
  return metric.compute()


__all__ = ["AREA_RULES", "COCO_METRICS", "CROWDPOSE_METRICS", "MAX_DETS", "METRICS",
           "AnnotationError", "default_metric",
           "CocoMetric", "CrowdPoseMetric", "KeypointMetric", "ResultsError", "evaluate_file",
           "load_results_file", "make_metric", "validate_results"]
