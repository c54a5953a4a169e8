"""Which evaluation protocol a dataset uses, and the one-call evaluation of a results file.

``coco``, ``ochuman`` and ``synthetic`` (COCO-format, 17 keypoints) use the COCO protocol
(``coco.CocoEvaluator``); ``crowdpose`` uses the CrowdPose protocol
(``crowdpose.CrowdPoseEvaluator``).
"""

from __future__ import annotations

from mipnet_jax.evaluation.coco import CocoEvaluator, KeypointEvaluator
from mipnet_jax.evaluation.crowdpose import CrowdPoseEvaluator
from mipnet_jax.evaluation.results import load_results_file

PROTOCOLS: dict[str, type[KeypointEvaluator]] = {
    "coco": CocoEvaluator,
    "ochuman": CocoEvaluator,
    "synthetic": CocoEvaluator,
    "crowdpose": CrowdPoseEvaluator,
}


def make_evaluator(dataset: str, annotations: str | dict, *,
                   verbose: bool = False) -> KeypointEvaluator:
  """The evaluator of ``dataset``'s protocol over ground truth ``annotations`` (path or dict)."""
  if dataset not in PROTOCOLS:
    raise ValueError(f"unknown dataset {dataset!r}; known: {', '.join(sorted(PROTOCOLS))}")
  return PROTOCOLS[dataset](annotations, dataset, verbose=verbose)


def evaluate_file(dataset: str, annotations: str, results: str, *,
                  verbose: bool = False) -> dict[str, float]:
  """Metrics {name: value} of the COCO results file ``results`` against ``annotations``.

  Bad input raises a one-line ``ResultsError`` / ``AnnotationError`` naming the file.
  """
  evaluator = make_evaluator(dataset, annotations, verbose=verbose)
  evaluator.add(load_results_file(results), source=results)
  return evaluator.compute()
