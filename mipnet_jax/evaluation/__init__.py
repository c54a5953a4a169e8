"""Keypoint evaluation: the COCO protocol (COCO, OCHuman, synthetic) and the CrowdPose
protocol, both on pycocotools, with validated predictions and one-line input errors."""

from mipnet_jax.data.coco_format import AnnotationError
from mipnet_jax.evaluation.coco import COCO_METRICS, CocoEvaluator, KeypointEvaluator
from mipnet_jax.evaluation.crowdpose import CROWDPOSE_METRICS, CrowdPoseEvaluator
from mipnet_jax.evaluation.protocols import PROTOCOLS, evaluate_file, make_evaluator
from mipnet_jax.evaluation.results import ResultsError, load_results_file, validate_results

__all__ = [
    "COCO_METRICS",
    "CROWDPOSE_METRICS",
    "PROTOCOLS",
    "AnnotationError",
    "CocoEvaluator",
    "CrowdPoseEvaluator",
    "KeypointEvaluator",
    "ResultsError",
    "evaluate_file",
    "load_results_file",
    "make_evaluator",
    "validate_results",
]
