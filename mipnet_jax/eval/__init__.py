"""Evaluation: the protocol and post-processing spec, the predict step, post-processing and
OKS-NMS, one split end to end, pluggable evaluators, the confidence sweep and the metrics."""
