"""ONNX export of the serving function: ``model.onnx`` that onnxruntime (or TensorRT, OpenVINO)
runs without JAX.

    crops     uint8 [b, h, w, 3]   the boxes' crops (``bundle.boxes_to_crops``), model colour order
    centers   float32 [b, 2]       the crops' affine parameters (as the bundle's function)
    scales    float32 [b, 2]
 -> keypoints float32 [b, N, K, 2] image pixels (x, y) of every instance lambda = 0..N-1
    maxvals   float32 [b, N, K]    joint scores (heatmap peaks)
    heatmaps  float32 [b, N, h/4, w/4, K]   flip-averaged, as ``predict_step.predict_heatmaps``

``b`` is symbolic. The graph is the bundle's ``predict.jax`` step for step (normalisation,
flip test, trunk once and the lambda head N times, quarter-offset decoding, the inverse affine)
with the weights inside; serve/onnx_models.py says how the network is written.

Route (why not a converter): jax2onnx 0.17.1, the one JAX -> ONNX converter, converts the
HRNet serving function but not SimpleBaseline's max pooling, fixes the batch size, takes
~2 minutes for HRNet-W32, and pins ``orbax-checkpoint<0.11.37`` (ours is 0.12). Writing the
two architectures' nodes from their variables takes ~100 lines per network, exports in a
second, keeps the batch dynamic, and gives onnxruntime the graph it runs fastest (BN folded
into the convolutions, native ConvTranspose / Resize), at the price of a second description
of the networks that tests/serve/test_onnx_export.py holds equal to the flax one.
"""

from __future__ import annotations

import numpy as np
import onnx

from mipnet_jax.serve import bundle, onnx_graph, onnx_models
from mipnet_jax.serve.onnx_graph import Graph, value_info

INPUTS = ("crops", "centers", "scales")
OUTPUTS = ("keypoints", "maxvals", "heatmaps")


def serving_model(model, variables: dict, num_instances: int, flip_permutation,
                  input_hw: tuple[int, int], heatmap_hw: tuple[int, int],
                  name: str = "mipnet_jax") -> onnx.ModelProto:
  """The module docstring's graph; ``flip_permutation`` None: no flip test."""
  g = Graph()
  x = onnx_graph.normalize(g, "crops")
  if flip_permutation is not None:
    x = onnx_graph.with_mirror(g, x)
  heat = onnx_models.network(g, model, variables, x, num_instances, input_hw)  # [b', N, K, h, w]
  if flip_permutation is not None:
    heat = onnx_graph.flip_average(g, heat, np.asarray(flip_permutation, np.int64))
  coords, maxvals = onnx_graph.decode_quarter(g, heat, heatmap_hw)
  keypoints = onnx_graph.heatmap_to_image(g, coords, "centers", "scales", heatmap_hw)
  for out, src in (("keypoints", keypoints), ("maxvals", maxvals)):
    g.nodes.append(onnx.helper.make_node("Identity", [src], [out]))
  g.nodes.append(onnx.helper.make_node("Transpose", [heat], ["heatmaps"], perm=[0, 1, 3, 4, 2]))
  (h, w), (hh, hw), n, k = input_hw, heatmap_hw, num_instances, model.num_keypoints
  inputs = [value_info("crops", np.uint8, ["b", h, w, 3]),
            value_info("centers", np.float32, ["b", 2]),
            value_info("scales", np.float32, ["b", 2])]
  outputs = [value_info("keypoints", np.float32, ["b", n, k, 2]),
             value_info("maxvals", np.float32, ["b", n, k]),
             value_info("heatmaps", np.float32, ["b", n, hh, hw, k])]
  return g.model(inputs, outputs, name, doc=__doc__.split("\n\n")[1])


def network_model(model, variables: dict, num_instances: int,
                  input_hw: tuple[int, int]) -> onnx.ModelProto:
  """The network alone, for benchmarks beside ``predict_instances`` and PyTorch: normalised
  ``images`` float32 [b, 3, h, w] -> ``heatmaps`` [b, N, K, h/4, w/4] (NCHW per instance)."""
  g = Graph()
  heat = onnx_models.network(g, model, variables, "images", num_instances, input_hw)
  g.nodes.append(onnx.helper.make_node("Identity", [heat], ["heatmaps"]))
  h, w = input_hw
  out = ["b", num_instances, model.num_keypoints, h // 4, w // 4]
  return g.model([value_info("images", np.float32, ["b", 3, h, w])],
                 [value_info("heatmaps", np.float32, out)], "network")


def export_onnx(config, model, variables: dict, num_instances: int, flip_permutation,
                path: str) -> int:
  """Writes ``serving_model`` for ``config``'s sizes to ``path``; returns its size in bytes.
  HRNet's geometry only: a UDP model (``config.data.udp``) raises a one-line ValueError."""
  bundle.require_onnx_geometry(config)
  proto = serving_model(model, variables, num_instances, flip_permutation,
                        tuple(config.data.image_hw), tuple(config.data.heatmap_hw),
                        name=config.experiment)
  onnx.save(proto, path)
  return len(proto.SerializeToString())
