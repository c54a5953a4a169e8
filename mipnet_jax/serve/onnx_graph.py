"""A small ONNX graph builder and the serving function's steps around the network.

``Graph`` collects nodes and initializers (``onnx.helper``) and names every value
``{hint}_{n}``. Tensors inside are NCHW (ONNX's convolution layout); the steps here mirror
the JAX serving function (``predict_step.image_joints_fn``) one operation at a time:

* ``normalize``: uint8 NHWC crops -> float32 NCHW ``(x / 255 - mean) / std``
  (``core.normalize.normalize``);
* ``with_mirror`` / ``flip_average``: the flip test (``predict_step.predict_heatmaps`` and
  ``flip_back``: mirror the width, exchange left/right channels, shift one column right);
* ``decode_quarter``: argmax + quarter offset (``codec.decode_heatmaps``);
* ``heatmap_to_image``: heatmap pixels -> image pixels in float32 (``codec.heatmap_to_image``
  with ``xp=jax.numpy``).

Opset 17, IR version 8: onnxruntime >= 1.14 and every current TensorRT / OpenVINO read it.
"""

from __future__ import annotations

import itertools

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from mipnet_jax.core.geometry import PIXEL_STD
from mipnet_jax.core.normalize import IMAGENET_MEAN, IMAGENET_STD

OPSET = 17
IR_VERSION = 8
BN_EPSILON = 1e-5          # layers.BatchNorm's epsilon
INT64_MIN = np.iinfo(np.int64).min
F32 = np.float32


class Graph:
  """Nodes and initializers of one ONNX graph; every method returns its output's name."""

  def __init__(self):
    self.nodes: list = []
    self.initializers: list = []
    self._ids = itertools.count()

  def name(self, hint: str) -> str:
    return f"{hint}_{next(self._ids)}"

  def const(self, value, hint: str = "const") -> str:
    """An initializer holding ``value`` (its numpy dtype kept)."""
    name = self.name(hint)
    self.initializers.append(numpy_helper.from_array(np.asarray(value), name))
    return name

  def op(self, op_type: str, *inputs: str, hint: str = "", outputs: int = 1, **attrs):
    """One node; its output name, or a list of ``outputs`` names."""
    names = [self.name(hint or op_type.lower()) for _ in range(outputs)]
    self.nodes.append(helper.make_node(op_type, list(inputs), names, **attrs))
    return names[0] if outputs == 1 else names

  # --- layers -------------------------------------------------------------------------------

  def conv(self, x: str, kernel_hwio, bias=None, stride: int = 1, hint: str = "conv") -> str:
    """PyTorch-style ``Conv2d(k, stride, padding=k // 2)``: the flax kernel [kh, kw, Cin,
    Cout] as ONNX's [Cout, Cin, kh, kw]; ``bias`` [Cout] or None."""
    kernel = np.asarray(kernel_hwio, F32)
    kh, kw = kernel.shape[:2]
    inputs = [x, self.const(kernel.transpose(3, 2, 0, 1), hint + "_w")]
    if bias is not None:
      inputs.append(self.const(np.asarray(bias, F32), hint + "_b"))
    return self.op("Conv", *inputs, hint=hint, kernel_shape=[kh, kw], strides=[stride] * 2,
                   pads=[kh // 2, kw // 2, kh // 2, kw // 2])

  def relu(self, x: str) -> str:
    return self.op("Relu", x)

  def add(self, a: str, b: str) -> str:
    return self.op("Add", a, b)

  def mul(self, a: str, b: str) -> str:
    return self.op("Mul", a, b)

  def ints(self, values, hint: str = "ints") -> str:
    return self.const(np.asarray(values, np.int64), hint)

  def slice(self, x: str, axis: int, start: int, end: int, step: int = 1) -> str:
    return self.op("Slice", x, self.ints([start]), self.ints([end]), self.ints([axis]),
                   self.ints([step]))

  def mirror(self, x: str, axis: int) -> str:
    """``x`` reversed along ``axis`` (a Slice with step -1)."""
    return self.slice(x, axis, -1, INT64_MIN, -1)

  def reshape_tail(self, x: str, head, keep_from: int) -> str:
    """Reshape to ``head`` (ints, -1 allowed) followed by ``x``'s dims from ``keep_from`` on
    (read at run time, so the batch stays dynamic)."""
    tail = self.op("Shape", x, start=keep_from)
    return self.op("Reshape", x, self.op("Concat", self.ints(head), tail, axis=0))

  # --- the model file -----------------------------------------------------------------------

  def model(self, inputs: list, outputs: list, name: str, doc: str = "") -> onnx.ModelProto:
    """The ModelProto of this graph (checked with ``onnx.checker``)."""
    graph = helper.make_graph(self.nodes, name, inputs, outputs, self.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="mipnet_jax", doc_string=doc)
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return model


def bn_fold(scale, bias, mean, var) -> tuple[np.ndarray, np.ndarray]:
  """BatchNorm at inference as ``x * mul + add`` (layers.BatchNorm's float32 arithmetic)."""
  mul = np.asarray(scale, F32) / np.sqrt(np.asarray(var, F32) + F32(BN_EPSILON))
  return mul, np.asarray(bias, F32) - np.asarray(mean, F32) * mul


def value_info(name: str, dtype, shape) -> onnx.ValueInfoProto:
  """A graph input or output; a str in ``shape`` is a symbolic dimension."""
  return helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(np.dtype(dtype)),
                                       list(shape))


# --- the serving steps around the network ---------------------------------------------------

def normalize(g: Graph, crops: str) -> str:
  """uint8 crops [b, h, w, 3] -> float32 [b, 3, h, w], ``(x / 255 - mean) / std``."""
  x = g.op("Transpose", g.op("Cast", crops, to=TensorProto.FLOAT), perm=[0, 3, 1, 2])
  mean = g.const(IMAGENET_MEAN.astype(F32).reshape(1, 3, 1, 1), "mean")
  std = g.const(IMAGENET_STD.astype(F32).reshape(1, 3, 1, 1), "std")
  x = g.op("Div", x, g.const(F32(255.0)))
  return g.op("Div", g.op("Sub", x, mean), std)


def with_mirror(g: Graph, x: str) -> str:
  """[b, 3, h, w] -> [2b, 3, h, w]: the crops, then their mirror images."""
  return g.op("Concat", x, g.mirror(x, 3), axis=0)


def flip_average(g: Graph, heat: str, flip_permutation) -> str:
  """Heatmaps [2b, N, K, h, w] of (crops, mirrored crops) -> [b, N, K, h, w]: the mean of
  the plain ones and the mirrored ones brought back (``predict_step.flip_back``)."""
  plain, mirrored = g.op("Split", heat, axis=0, outputs=2)
  back = g.op("Gather", g.mirror(mirrored, 4), g.ints(flip_permutation, "flip_perm"), axis=2)
  back = g.op("Concat", g.slice(back, 4, 0, 1), g.slice(back, 4, 0, -1), axis=4)
  return g.mul(g.add(plain, back), g.const(F32(0.5)))


def decode_quarter(g: Graph, heat: str, heatmap_hw: tuple[int, int]) -> tuple[str, str]:
  """Heatmaps [b, N, K, h, w] -> (coords [b, N, K, 2] (x, y) heatmap pixels, maxvals
  [b, N, K]): ``codec.decode_heatmaps`` step by step (first maximum in row-major order;
  maximum <= 0 -> (0, 0); 0.25 towards the larger neighbour when 1 < x < w-1, 1 < y < h-1)."""
  h, w = heatmap_hw
  flat = g.op("Reshape", heat, g.ints([0, 0, 0, -1]))                    # [b, N, K, h*w]
  idx = g.op("ArgMax", flat, axis=-1, keepdims=1)                        # int64 [b, N, K, 1]
  maxv = g.op("GatherElements", flat, idx, axis=-1)
  xy = g.op("Concat", g.op("Mod", idx, g.ints(w)), g.op("Div", idx, g.ints(w)), axis=-1)
  positive = g.op("Cast", g.op("Greater", maxv, g.const(F32(0))), to=TensorProto.FLOAT)
  coords = g.mul(g.op("Cast", xy, to=TensorProto.FLOAT), positive)
  p = g.op("Cast", g.op("Floor", g.add(coords, g.const(F32(0.5)))), to=TensorProto.INT64)
  inside = g.op("And", g.op("Greater", p, g.ints([1, 1])), g.op("Less", p, g.ints([w - 1, h - 1])))
  inside = g.op("ReduceMin", g.op("Cast", inside, to=TensorProto.FLOAT), axes=[-1],
                keepdims=1)                                              # both axes inside
  c = g.op("Min", g.op("Max", p, g.ints([1, 1])), g.ints([w - 2, h - 2]))
  cx, cy = g.op("Split", c, g.ints([1, 1]), axis=-1, outputs=2)

  def at(dy: int, dx: int) -> str:
    i = g.add(g.op("Mul", g.add(cy, g.ints(dy)), g.ints(w)), g.add(cx, g.ints(dx)))
    return g.op("GatherElements", flat, i, axis=-1)

  dx = g.op("Sign", g.op("Sub", at(0, 1), at(0, -1)))
  dy = g.op("Sign", g.op("Sub", at(1, 0), at(-1, 0)))
  shift = g.mul(g.mul(g.op("Concat", dx, dy, axis=-1), g.const(F32(0.25))), inside)
  return g.add(coords, shift), g.op("Squeeze", maxv, g.ints([-1]))


def heatmap_to_image(g: Graph, coords: str, centers: str, scales: str,
                     heatmap_hw: tuple[int, int]) -> str:
  """coords [b, N, K, 2] heatmap pixels, centers / scales [b, 2] -> image pixels, float32
  (``codec.heatmap_to_image``'s device arithmetic)."""
  h, w = heatmap_hw
  size = g.mul(scales, g.const(F32(PIXEL_STD)))
  cx, cy = g.op("Split", centers, g.ints([1, 1]), axis=1, outputs=2)
  sx = g.slice(size, 1, 0, 1)
  top = g.op("Sub", cy, g.mul(sx, g.const(F32(0.5))))
  left = g.op("Sub", cx, g.op("Sub", cy, top))
  step = g.op("Div", g.op("Concat", g.op("Sub", cx, left), g.op("Sub", cy, top), axis=1),
              g.const(F32(w * 0.5)))                                     # [b, 2]
  origin = g.op("Sub", centers, g.mul(step, g.const(np.array([w * 0.5, h * 0.5], F32))))
  lead = g.ints([-1, 1, 1, 2])
  return g.add(g.mul(coords, g.op("Reshape", step, lead)), g.op("Reshape", origin, lead))
