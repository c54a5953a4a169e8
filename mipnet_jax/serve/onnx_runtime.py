"""onnxruntime sessions for the person detectors and the exported pose model (no JAX here).

    crops_fn = onnx_crops_fn("runs/x/export/model.onnx")
    keypoints, maxvals = crops_fn(crops, centers, scales)     # serve/onnx_export.py's contract

onnxruntime is the optional extra ``pip install -e ".[onnx]"``; the execution providers default
to the GPU ones this onnxruntime build has (CUDA), then the CPU.
"""

from __future__ import annotations

import os

import numpy as np

PREFERRED_PROVIDERS = ("CUDAExecutionProvider", "CPUExecutionProvider")


def default_providers() -> tuple[str, ...]:
  """The available providers of PREFERRED_PROVIDERS, in that order."""
  import onnxruntime
  available = set(onnxruntime.get_available_providers())
  return tuple(p for p in PREFERRED_PROVIDERS if p in available)


def open_session(path: str, what: str, providers=None):
  """An ``onnxruntime.InferenceSession`` of the file ``path``; a one-line ValueError naming
  the file (and ``what`` it should be) when it is missing or not a usable ONNX model."""
  import onnxruntime      # optional extra: pip install -e ".[onnx]"
  if not os.path.isfile(path):
    raise ValueError(f"{path}: {what} file not found")
  try:
    return onnxruntime.InferenceSession(path, providers=list(providers or default_providers()))
  except Exception as e:  # noqa: BLE001  (onnxruntime raises its own exception types)
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    raise ValueError(f"{path}: not a usable ONNX model ({first})") from None


def onnx_crops_fn(path: str, providers=None):
  """``f(crops uint8 [b, h, w, 3], centers [b, 2], scales [b, 2]) -> (keypoints [b, N, K, 2],
  maxvals [b, N, K])`` of an exported ``model.onnx``; a one-line ValueError when the file is
  not one (other inputs or outputs)."""
  session = open_session(path, "pose model", providers)
  names = ([i.name for i in session.get_inputs()], [o.name for o in session.get_outputs()])
  if names[0] != ["crops", "centers", "scales"] or names[1][:2] != ["keypoints", "maxvals"]:
    raise ValueError(f"{path}: not an exported pose model (inputs {names[0]}, outputs "
                     f"{names[1]}; expected crops, centers, scales -> keypoints, maxvals)")

  def run(crops, centers, scales):
    feed = dict(crops=np.ascontiguousarray(crops, np.uint8),
                centers=np.ascontiguousarray(centers, np.float32),
                scales=np.ascontiguousarray(scales, np.float32))
    return tuple(session.run(["keypoints", "maxvals"], feed))

  return run
