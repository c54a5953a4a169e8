"""HRNet and SimpleBaseline (with MIMBs) as ONNX nodes, from the model's fields and variables.

Each function mirrors the flax module of the same name (models/layers.py, hrnet.py,
simple_baseline.py, mimb.py, topdown.py) and reads the same variables, so a renamed or
restructured module fails here by a missing name, and tests/serve/test_onnx_export.py
compares the outputs. What differs, for speed at inference and not in the result beyond
float32 rounding:

* BatchNorm is folded into the convolution before it (kernel x mul, bias add);
* the transposed convolutions are ONNX ``ConvTranspose`` (the JAX model's sub-pixel form is an
  XLA:CPU speed device of the same operator), nearest upsampling is ``Resize``;
* a MIMB's instance gate ``F_em(lambda)`` depends on lambda only, so its N values are
  constants [N, C] computed here; the first MIMB broadcasts the trunk's features to the N
  instances (rows image-major, ``b * N + lambda``, as ``TopDownNet.instances``).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from mipnet_jax.models.hrnet import HRNet
from mipnet_jax.models.mimb import encode_lambda
from mipnet_jax.models.simple_baseline import RESNET_BLOCKS, SimpleBaseline
from mipnet_jax.models.topdown import NUM_SLOTS
from mipnet_jax.serve.onnx_graph import F32, Graph, bn_fold


@dataclasses.dataclass(frozen=True)
class Scope:
  """The params and batch_stats of one module (``scope / "name"`` is a child)."""

  params: dict
  stats: dict
  path: str = ""

  def __truediv__(self, name: str) -> Scope:
    if name not in self.params:
      raise KeyError(f"ONNX export: the variables have no module {self.path}/{name}")
    return Scope(self.params[name], self.stats.get(name, {}), f"{self.path}/{name}")

  def __contains__(self, name: str) -> bool:
    return name in self.params


def conv_bn(g: Graph, s: Scope, x: str, conv: str, bn: str, stride: int = 1,
            relu: bool = False) -> str:
  """``conv`` (no bias) + BatchNorm ``bn`` (+ ReLU), the BN folded into the kernel."""
  mul, add = bn_fold(**(s / bn).params, **(s / bn).stats)
  kernel = np.asarray((s / conv).params["kernel"], F32) * mul
  y = g.conv(x, kernel, add, stride, hint=(s / conv).path.strip("/").replace("/", "."))
  return g.relu(y) if relu else y


def conv_bn_chain(g: Graph, s: Scope, x: str, steps) -> str:
  """layers.ConvBNChain: ``steps`` of (strides, relu), children conv{j} / bn{j}."""
  for j, (stride, relu) in enumerate(steps):
    x = conv_bn(g, s, x, f"conv{j}", f"bn{j}", stride, relu)
  return x


def residual_block(g: Graph, s: Scope, x: str, stride: int = 1) -> str:
  """layers.BasicBlock (conv1, conv2) or layers.Bottleneck (conv1..conv3; stride on conv2),
  told apart by their variables; the projection when ``downsample_conv`` exists."""
  bottleneck = "conv3" in s
  y = conv_bn(g, s, x, "conv1", "bn1", 1 if bottleneck else stride, relu=True)
  y = conv_bn(g, s, y, "conv2", "bn2", stride if bottleneck else 1, relu=bottleneck)
  if bottleneck:
    y = conv_bn(g, s, y, "conv3", "bn3")
  if "downsample_conv" in s:
    x = conv_bn(g, s, x, "downsample_conv", "downsample_bn", stride)
  return g.relu(g.add(y, x))


def res_layer(g: Graph, s: Scope, x: str, num_blocks: int, stride: int) -> str:
  """layers.ResLayer: Bottlenecks block{k}, the first one strided."""
  for k in range(num_blocks):
    x = residual_block(g, s / f"block{k}", x, stride if k == 0 else 1)
  return x


# --- MIMB and the instance broadcast --------------------------------------------------------

def instance_gate(s: Scope, num_instances: int, lambda_dim: int, code: str) -> np.ndarray:
  """F_em of every lambda = 0..N-1 (mimb.MIMB in float32): [N, C]."""
  lam = np.asarray(encode_lambda(np.arange(num_instances), lambda_dim, code), F32)
  z = lam @ np.asarray((s / "embed_fc1").params["kernel"], F32) + (s / "embed_fc1").params["bias"]
  mul, add = bn_fold(**(s / "embed_bn").params, **(s / "embed_bn").stats)
  z = np.maximum(z * mul + add, 0)
  z = z @ np.asarray((s / "embed_fc2").params["kernel"], F32) + (s / "embed_fc2").params["bias"]
  return (1 / (1 + np.exp(-z))).astype(F32)


def mimb(g: Graph, s: Scope, x: str, z: np.ndarray, per_image: bool) -> str:
  """One MIMB on x [R, C, h, w] with instance gates z [N, C] -> [R', C, h, w]: R' = R x N when
  ``per_image`` (x the trunk's features, R images), else R' = R (rows already b * N + lambda)."""
  n = len(z)
  x5 = g.op("Unsqueeze", x, g.ints([1])) if per_image else g.reshape_tail(x, [-1, n], 1)
  gate = g.const(z[None], "lambda_gate")                                 # [1, N, C]
  if "excite_fc1" in s:
    y = g.op("Flatten", g.op("GlobalAveragePool", x), axis=1)            # [R, C]
    y = g.relu(g.op("MatMul", y, g.const(np.asarray((s / "excite_fc1").params["kernel"], F32))))
    y = g.op("Sigmoid", g.op("MatMul", y, g.const(
        np.asarray((s / "excite_fc2").params["kernel"], F32))))
    y = g.op("Unsqueeze", y, g.ints([1])) if per_image else g.reshape_tail(y, [-1, n], 1)
    gate = g.mul(y, gate)                                                # [b, N, C]
  out = g.mul(x5, g.op("Unsqueeze", gate, g.ints([3, 4])))               # [b, N, C, h, w]
  return g.reshape_tail(out, [-1], 2)


# --- HRNet ---------------------------------------------------------------------------------

def transition(g: Graph, s: Scope, xs: list, in_channels, out_channels) -> list:
  """hrnet.Transition."""
  outs = []
  for i, c_out in enumerate(out_channels):
    if i < len(in_channels):
      outs.append(xs[i] if c_out == in_channels[i] else
                  conv_bn_chain(g, s / f"branch{i}", xs[i], ((1, True),)))
    else:
      outs.append(conv_bn_chain(g, s / f"branch{i}", xs[-1],
                                ((2, True),) * (i + 1 - len(in_channels))))
  return outs


def hr_module(g: Graph, s: Scope, xs: list, num_blocks: tuple, multi_scale: bool) -> list:
  """hrnet.HRModule: branches of BasicBlocks (num_blocks[b] on branch b), then
  relu(sum_j fuse_ij(x_j))."""
  ys = []
  for b, x in enumerate(xs):
    for k in range(num_blocks[b]):
      x = residual_block(g, s / f"branch{b}_block{k}", x)
    ys.append(x)
  if len(ys) == 1:
    return ys
  outs = []
  for i in range(len(ys) if multi_scale else 1):
    total = None
    for j, y in enumerate(ys):
      if j > i:
        y = conv_bn(g, s / f"fuse{i}_{j}", y, "conv", "bn")
        f = float(2 ** (j - i))
        y = g.op("Resize", y, "", g.const(np.array([1, 1, f, f], F32)), mode="nearest",
                 coordinate_transformation_mode="asymmetric", nearest_mode="floor")
      elif j < i:
        y = conv_bn_chain(g, s / f"fuse{i}_{j}", y,
                          tuple((2, t != i - j - 1) for t in range(i - j)))
      total = y if total is None else g.add(total, y)
    outs.append(g.relu(total))
  return outs


def hrnet_segment(g: Graph, model: HRNet, s: Scope, k: int, feats):
  """Segment k of hrnet.HRNet (its ``_segment``)."""
  c = model.channels
  if k == 0:
    t = s / "stem"
    x = conv_bn(g, t, feats, "conv1", "bn1", 2, relu=True)
    x = conv_bn(g, t, x, "conv2", "bn2", 2, relu=True)
    x = res_layer(g, t / "layer1", x, 4, 1)
    return transition(g, s / "transition1", [x], (4 * model.stem_width,), c[:2])
  if k == NUM_SLOTS:
    final = s / "final_layer"
    return g.conv(feats[0], final.params["kernel"], final.params["bias"], hint="final_layer")
  stage = s / f"stage{k + 1}"
  modules = model.stage_modules[k - 1]
  for m in range(modules):
    multi = k < 3 or m < modules - 1
    feats = hr_module(g, stage / f"module{m}", feats, model.blocks[k - 1], multi)
  if k < 3:
    feats = transition(g, s / f"transition{k + 1}", feats, c[:k + 1], c[:k + 2])
  return feats


# --- SimpleBaseline ------------------------------------------------------------------------

def simple_baseline_segment(g: Graph, model: SimpleBaseline, s: Scope, k: int, feats):
  """Segment k of simple_baseline.SimpleBaseline (its ``_segment``)."""
  if k == 0:
    x = conv_bn(g, s / "stem", feats, "conv1", "bn1", 2, relu=True)
    return [g.op("MaxPool", x, kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])]
  x = res_layer(g, s / f"layer{k}", feats[0], RESNET_BLOCKS[model.depth][k - 1],
                1 if k == 1 else 2)
  if k < NUM_SLOTS:
    return [x]
  head = s / "deconv"
  for i in range(len(model.deconv_features)):
    mul, add = bn_fold(**(head / f"bn{i}").params, **(head / f"bn{i}").stats)
    kernel = np.asarray((head / f"deconv{i}").params["kernel"], F32) * mul  # [4, 4, Ci, Co]
    x = g.relu(g.op("ConvTranspose", x, g.const(kernel.transpose(2, 3, 0, 1), "deconv_w"),
                    g.const(add, "deconv_b"), kernel_shape=[4, 4], strides=[2, 2],
                    pads=[1, 1, 1, 1]))
  final = s / "final_layer"
  return g.conv(x, final.params["kernel"], final.params["bias"], hint="final_layer")


SEGMENTS = {HRNet: hrnet_segment, SimpleBaseline: simple_baseline_segment}


def network(g: Graph, model, variables: dict, x: str, num_instances: int,
            input_hw: tuple[int, int]) -> str:
  """``model.predict_instances`` as nodes: normalised images [B, 3, H, W] -> heatmaps
  [B, N, K, H/4, W/4] (trunk once, the lambda head on B x N rows). The flax model checks the
  arguments first (``jax.eval_shape``, no compile): sizes, N, the variables' shapes."""
  segment = SEGMENTS.get(type(model))
  if segment is None:
    raise ValueError(f"ONNX export knows {', '.join(c.__name__ for c in SEGMENTS)}, not "
                     f"{type(model).__name__}")
  jax.eval_shape(lambda v, im: model.apply(v, im, num_instances,
                                           method=model.predict_instances),
                 variables, jax.ShapeDtypeStruct((1, *input_hw, 3), jnp.float32))
  s = Scope(variables["params"], variables["batch_stats"])
  feats, expanded = x, False
  for k in range(NUM_SLOTS + 1):
    feats = segment(g, model, s, k, feats)
    if k < NUM_SLOTS and model.mimb_slots[k]:
      group = s / f"{model.MIMB_PREFIX}{k + 1}_mimb"
      feats = [mimb(g, group / f"branch{i}", f,
                    instance_gate(group / f"branch{i}", num_instances, model.lambda_dim,
                                  model.lambda_code), per_image=not expanded)
               for i, f in enumerate(feats)]
      expanded = True
  return g.reshape_tail(feats, [-1, num_instances], 1)
