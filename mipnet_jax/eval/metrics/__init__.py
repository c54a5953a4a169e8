"""Keypoint metrics: the COCO protocol (COCO, OCHuman, synthetic) and the CrowdPose protocol,
both on pycocotools, with validated predictions and one-line input errors.

``coco``, ``ochuman`` and ``synthetic`` (COCO-format, 17 keypoints) use ``CocoMetric``;
``crowdpose`` uses ``CrowdPoseMetric``. ``make_metric`` picks the dataset's, ``evaluate_file``
scores a results file in one call.
"""

from __future__ import annotations

from mipnet_jax.data.coco_format import AnnotationError
from mipnet_jax.eval.metrics.coco import COCO_METRICS, CocoMetric, KeypointMetric
from mipnet_jax.eval.metrics.crowdpose import CROWDPOSE_METRICS, CrowdPoseMetric
from mipnet_jax.eval.metrics.results import ResultsError, load_results_file, validate_results

DATASET_METRICS: dict[str, type[KeypointMetric]] = {
    "coco": CocoMetric,
    "ochuman": CocoMetric,
    "synthetic": CocoMetric,
    "crowdpose": CrowdPoseMetric,
}


def make_metric(dataset: str, annotations: str | dict, *, verbose: bool = False) -> KeypointMetric:
  """The metric of ``dataset``'s protocol over ground truth ``annotations`` (path or dict)."""
  if dataset not in DATASET_METRICS:
    raise ValueError(f"unknown dataset {dataset!r}; known: {', '.join(sorted(DATASET_METRICS))}")
  return DATASET_METRICS[dataset](annotations, dataset, verbose=verbose)


def evaluate_file(dataset: str, annotations: str, results: str, *,
                  verbose: bool = False) -> dict[str, float]:
  """Metrics {name: value} of the COCO results file ``results`` against ``annotations``.

  Bad input raises a one-line ``ResultsError`` / ``AnnotationError`` naming the file.
  """
  metric = make_metric(dataset, annotations, verbose=verbose)
  metric.add(load_results_file(results), source=results)
  return metric.compute()


__all__ = ["COCO_METRICS", "CROWDPOSE_METRICS", "DATASET_METRICS", "AnnotationError",
           "CocoMetric", "CrowdPoseMetric", "KeypointMetric", "ResultsError", "evaluate_file",
           "load_results_file", "make_metric", "validate_results"]
