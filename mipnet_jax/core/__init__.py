"""Shared foundations: keypoint metadata, box geometry, the heatmap codec, progress and
process-level XLA settings. Imports nothing else of the package."""
