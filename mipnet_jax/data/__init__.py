"""Datasets: per-dataset metadata, box and affine geometry (targets and decoding share it)."""
