"""The network's input convention: ImageNet normalisation of uint8 crops.

Kept apart from ``data/image.py`` (which needs OpenCV) so that what runs on an accelerator
machine with only a JAX stack (``scripts/bench_accelerator.py``, ``scripts/device_check.py``)
normalises exactly as training and evaluation do.
"""

from __future__ import annotations

import numpy as np

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)


def normalize(crop):
  """uint8 [..., h, w, 3] -> float32 (x / 255 - ImageNet mean) / std, channel order unchanged
  (the reference normalises BGR crops with the RGB statistics too). Takes numpy or jax
  arrays: the pipeline ships uint8 crops and the train/predict steps normalise on device."""
  return (crop.astype(np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
