"""Our flax variable names <-> the official PyTorch ``state_dict`` keys, as data.

The official models are leoxiaobin/deep-high-resolution-net.pytorch (``pose_hrnet``,
``pose_resnet``), rawalkhirodkar/MIPNet (``*_se_lambda``: MIMBs named ``*_se``) and
ViTAE-Transformer/ViTPose (mmpose ``TopDown``: ``backbone.*`` = ``ViT``, ``keypoint_head.*`` =
``TopdownHeatmapSimpleHead``; our MIPNet-ViT's MIMBs are ``backbone.slot{k}_se.*``). A flax
variable is ``(collection, path)``, e.g. ``("params", ("stage2", "module0", "fuse0_1",
"conv", "kernel"))``; its torch key is the module path given by the first rule of
``MODULE_RULES`` that matches the flax module path, a dot, and the leaf given by ``LEAVES``
for the module's kind (``KINDS``). ``LEAVES`` also holds the axis permutation that turns our
array into torch's: conv kernels HWIO -> OIHW, transposed-conv kernels [kh, kw, Ci, Co] ->
[Ci, Co, kh, kw], Linear kernels [in, out] -> [out, in].

``TORCH_ORDER`` ranks the named torch children in their registration order, so sorting keys
with ``torch_sort_key`` gives ``state_dict()`` order (numbered children sort by number).
"""

from __future__ import annotations

import re
from typing import Callable, Mapping

# Index of a part in the official nn.Sequential(conv, bn[, relu]) steps.
PART_INDEX = {"conv": 0, "deconv": 0, "bn": 1}
# MIMB layers -> the authors' SELambdaLayer: fc = Sequential(Linear, ReLU, Linear, Sigmoid),
# fc_lambda = Sequential(Linear, BatchNorm1d, ReLU, Linear, Sigmoid).
MIMB_PARTS = {"excite_fc1": "fc.0", "excite_fc2": "fc.2", "embed_fc1": "fc_lambda.0",
              "embed_bn": "fc_lambda.1", "embed_fc2": "fc_lambda.3"}
# Template fields computed from the matched groups.
DERIVED: dict[str, Callable[[Mapping[str, str]], object]] = {
    "part_index": lambda g: PART_INDEX[g["part"]],
    # SimpleBaseline's deconv_layers = Sequential(3 x (ConvTranspose2d, BN, ReLU)).
    "deconv_index": lambda g: 3 * int(g["i"]) + PART_INDEX[g["part"]],
    "mimb_part": lambda g: MIMB_PARTS[g["mimb"]],
}

# (flax module path, full-match regex; torch module path, str.format template). First wins.
MODULE_RULES: tuple[tuple[str, str], ...] = (
    # Stems: HRNet conv1/bn1/conv2/bn2 and ResNet conv1/bn1 (ours sit under stem/).
    (r"stem/(?P<name>(conv|bn)\d)", "{name}"),
    # ResNet layers (HRNet's layer1 sits under stem/): Bottleneck blocks.
    (r"(stem/)?(?P<layer>layer\d)/block(?P<k>\d+)/downsample_(?P<part>conv|bn)",
     "{layer}.{k}.downsample.{part_index}"),
    (r"(stem/)?(?P<layer>layer\d)/block(?P<k>\d+)/(?P<name>(conv|bn)\d)", "{layer}.{k}.{name}"),
    # HRNet transitions. An existing branch only gets a module when its width changes, which
    # in HRNet happens only for transition1's branch 0 (4 x stem width -> C): one
    # Sequential(conv, bn, relu). New branches are Sequentials of such steps.
    (r"transition1/branch0/(?P<part>conv|bn)0", "transition1.0.{part_index}"),
    (r"transition(?P<t>\d)/branch(?P<i>\d)/(?P<part>conv|bn)(?P<j>\d)",
     "transition{t}.{i}.{j}.{part_index}"),
    # HRNet modules: branches of BasicBlocks, fuse paths (up: conv1x1 + bn; down: steps).
    (r"stage(?P<s>\d)/module(?P<m>\d+)/branch(?P<b>\d)_block(?P<k>\d+)/(?P<name>(conv|bn)\d)",
     "stage{s}.{m}.branches.{b}.{k}.{name}"),
    (r"stage(?P<s>\d)/module(?P<m>\d+)/fuse(?P<i>\d)_(?P<j>\d)/(?P<part>conv|bn)",
     "stage{s}.{m}.fuse_layers.{i}.{j}.{part_index}"),
    (r"stage(?P<s>\d)/module(?P<m>\d+)/fuse(?P<i>\d)_(?P<j>\d)/(?P<part>conv|bn)(?P<q>\d)",
     "stage{s}.{m}.fuse_layers.{i}.{j}.{q}.{part_index}"),
    # SimpleBaseline head.
    (r"deconv/(?P<part>deconv|bn)(?P<i>\d)", "deconv_layers.{deconv_index}"),
    (r"final_layer", "final_layer"),
    # MIMBs: {stage,layer}{k}_mimb/branch{b} -> {stage,layer}{k}_se.se_layers.{b}.
    (r"(?P<slot>(stage|layer)\d)_mimb/branch(?P<b>\d)/(?P<mimb>\w+)",
     "{slot}_se.se_layers.{b}.{mimb_part}"),
    # ViTPose: the ViT backbone (pos_embed is a parameter of the backbone itself) ...
    (r"backbone/pos_embed", "backbone"),
    (r"backbone/patch_embed", "backbone.patch_embed.proj"),
    (r"backbone/block(?P<i>\d+)/(?P<name>norm1|norm2)", "backbone.blocks.{i}.{name}"),
    (r"backbone/block(?P<i>\d+)/(?P<name>attn|mlp)/(?P<fc>\w+)", "backbone.blocks.{i}.{name}.{fc}"),
    (r"backbone/last_norm", "backbone.last_norm"),
    # ... its head, and MIPNet-ViT's MIMBs (slot{k}_mimb: one branch, on the token grid).
    (r"keypoint_head/deconv/(?P<part>deconv|bn)(?P<i>\d)",
     "keypoint_head.deconv_layers.{deconv_index}"),
    (r"keypoint_head/final_layer", "keypoint_head.final_layer"),
    (r"(?P<slot>slot\d)_mimb/branch(?P<b>\d)/(?P<mimb>\w+)",
     "backbone.{slot}_se.se_layers.{b}.{mimb_part}"),
)

# (last flax module name, full-match regex) -> kind of module. First wins.
KINDS: tuple[tuple[str, str], ...] = (
    (r"deconv\d+", "deconv"),
    (r"(embed|excite)_fc\d|qkv|proj|fc\d", "linear"),
    (r"norm\d|last_norm", "layernorm"),
    (r"pos_embed", "pos_embed"),
    (r"patch_embed", "conv"),
    (r"(\w+_)?bn\d*", "bn"),
    (r"(downsample_)?conv\d*|final_layer", "conv"),
)

# kind -> {(collection, flax leaf): (torch leaf, permutation of our axes into torch's)}.
LEAVES: dict[str, dict[tuple[str, str], tuple[str, tuple[int, ...] | None]]] = {
    "conv": {("params", "kernel"): ("weight", (3, 2, 0, 1)),     # HWIO -> OIHW
             ("params", "bias"): ("bias", None)},
    "deconv": {("params", "kernel"): ("weight", (2, 3, 0, 1))},  # [kh,kw,Ci,Co] -> [Ci,Co,kh,kw]
    "linear": {("params", "kernel"): ("weight", (1, 0)),         # [in, out] -> [out, in]
               ("params", "bias"): ("bias", None)},
    "layernorm": {("params", "scale"): ("weight", None), ("params", "bias"): ("bias", None)},
    "pos_embed": {("params", "embedding"): ("pos_embed", None)},
    "bn": {("params", "scale"): ("weight", None), ("params", "bias"): ("bias", None),
           ("batch_stats", "mean"): ("running_mean", None),
           ("batch_stats", "var"): ("running_var", None)},
}

# Named torch children in registration order (siblings are all named or all numbered).
TORCH_ORDER = (
    "conv1", "bn1", "conv2", "bn2", "conv3", "bn3", "downsample",
    "layer1", "transition1", "stage2", "transition2", "stage3", "transition3", "stage4",
    "layer2", "layer3", "layer4", "deconv_layers", "final_layer",
    "stage1_se", "stage2_se", "stage3_se", "stage4_se",
    "layer1_se", "layer2_se", "layer3_se", "layer4_se",
    "branches", "fuse_layers", "se_layers", "fc", "fc_lambda",
    # ViTPose (mmpose TopDown: backbone, then keypoint_head; a module's own parameters first)
    "backbone", "keypoint_head", "pos_embed", "patch_embed", "blocks", "last_norm",
    "slot1_se", "slot2_se", "slot3_se", "slot4_se", "norm1", "attn", "qkv", "proj", "norm2", "mlp",
    "fc1", "fc2",
    "weight", "bias", "running_mean", "running_var",
)
_RANK = {name: i for i, name in enumerate(TORCH_ORDER)}

# Torch keys of the pose head: absent from backbone-only (ImageNet) files.
HEAD_PATTERNS = (r"final_layer\.", r"deconv_layers\.", r"\w+_se\.", r"keypoint_head\.",
                 r"backbone\.\w+_se\.")
# Keys of ImageNet classification files that a pose model does not have: torchvision
# ResNet's fc, HRNet-Image-Classification's incre/downsamp/final/classifier head and the
# extra multi-scale fuse outputs of its last stage-4 module. Skipped in backbone imports.
BACKBONE_EXTRA_PATTERNS = (r"fc\.", r"classifier\.", r"incre_modules\.", r"downsamp_modules\.",
                           r"final_layer\.\d+\.", r"stage4\.\d+\.fuse_layers\.")
# Named sets of keys that may start fresh (``allow_fresh``), besides plain regexes.
FRESH_ALIASES = {"mimb": (r"\w+_se\.", r"backbone\.\w+_se\."), "head": HEAD_PATTERNS}
# Buffers of the official models that carry no weights.
IGNORED_SUFFIXES = (".num_batches_tracked",)
# Prefix that torch.nn.DataParallel adds to every key.
DATA_PARALLEL_PREFIX = "module."


class _Fields(dict):
  """Template fields: the matched groups, plus DERIVED ones computed on demand."""

  def __missing__(self, key: str) -> object:
    return DERIVED[key](self)


def torch_module(flax_module_path: str) -> str:
  """'stage2/module0/fuse1_0/conv0' -> 'stage2.0.fuse_layers.1.0.0.0'."""
  for pattern, template in MODULE_RULES:
    m = re.fullmatch(pattern, flax_module_path)
    if m:
      return template.format_map(_Fields({k: v for k, v in m.groupdict().items() if v}))
  raise KeyError(f"no torch name rule for flax module {flax_module_path!r}")


def module_kind(flax_module_name: str) -> str:
  """'conv0' -> 'conv', 'deconv1' -> 'deconv', 'embed_fc2' -> 'linear', 'bn' -> 'bn'."""
  for pattern, kind in KINDS:
    if re.fullmatch(pattern, flax_module_name):
      return kind
  raise KeyError(f"no module kind for flax module {flax_module_name!r}")


def torch_key(collection: str, path: tuple[str, ...]) -> tuple[str, tuple[int, ...] | None]:
  """The torch key of our variable (collection, path) and the permutation of our array's axes
  that gives torch's (None: same layout)."""
  module, leaf = "/".join(path[:-1]), path[-1]
  leaves = LEAVES[module_kind(path[-2])]
  if (collection, leaf) not in leaves:
    raise KeyError(f"no torch name for {collection}/{'/'.join(path)}")
  name, perm = leaves[(collection, leaf)]
  return f"{torch_module(module)}.{name}", perm


def torch_sort_key(key: str) -> tuple:
  """Sort key giving the official ``state_dict()`` order of torch keys."""
  return tuple((0, int(part)) if part.isdigit() else (1, _RANK[part])
               for part in key.split("."))


def matches_any(key: str, patterns: tuple[str, ...] | list[str]) -> bool:
  """True if one of the regexes matches at the start of ``key``."""
  return any(re.match(p, key) for p in patterns)
