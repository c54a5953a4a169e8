"""The flax <-> torch name rules as data: hand-checked examples of module names, keys, the
axis permutations, the official key order and the head / backbone patterns."""

import pytest

from mipnet_jax.models import torch_names


def test_name_rules_examples():
  assert torch_names.torch_module("stage2/module0/fuse1_0/conv0") == "stage2.0.fuse_layers.1.0.0.0"
  assert torch_names.torch_module("deconv/bn2") == "deconv_layers.7"
  assert torch_names.torch_key("batch_stats", ("layer4_mimb", "branch0", "embed_bn", "var")) == (
      "layer4_se.se_layers.0.fc_lambda.1.running_var", None)
  assert torch_names.torch_key("params", ("transition1", "branch0", "conv0", "kernel")) == (
      "transition1.0.0.weight", (3, 2, 0, 1))
  with pytest.raises(KeyError, match="no torch name rule"):
    torch_names.torch_module("stage2/module0/unknown")


def test_module_kinds_and_their_leaves():
  assert [torch_names.module_kind(n) for n in ("conv0", "deconv1", "embed_fc2", "bn")] == [
      "conv", "deconv", "linear", "bn"]
  with pytest.raises(KeyError, match="no module kind for flax module 'pool'"):
    torch_names.module_kind("pool")
  # Dense [in, out] -> Linear [out, in]; BN scale -> weight in the same layout.
  assert torch_names.torch_key("params", ("layer4_mimb", "branch0", "embed_fc1", "kernel")) == (
      "layer4_se.se_layers.0.fc_lambda.0.weight", (1, 0))
  assert torch_names.torch_key("params", ("layer4_mimb", "branch0", "embed_bn", "scale")) == (
      "layer4_se.se_layers.0.fc_lambda.1.weight", None)
  with pytest.raises(KeyError, match="no torch name for batch_stats/"):
    torch_names.torch_key("batch_stats", ("transition1", "branch0", "conv0", "kernel"))


def test_official_key_order():
  keys = ["layer1.10.conv1.weight", "layer1.2.conv1.weight", "layer1.2.bn1.weight",
          "conv1.weight", "layer1.2.bn1.bias"]
  # Numbers compare as numbers (2 before 10), names by the official module order.
  assert sorted(keys, key=torch_names.torch_sort_key) == [
      "conv1.weight", "layer1.2.conv1.weight", "layer1.2.bn1.weight", "layer1.2.bn1.bias",
      "layer1.10.conv1.weight"]


def test_head_and_backbone_patterns_match_at_the_start():
  head = torch_names.HEAD_PATTERNS
  assert torch_names.matches_any("final_layer.weight", head)
  assert torch_names.matches_any("deconv_layers.0.weight", head)
  assert torch_names.matches_any("stage4_se.se_layers.0.fc.0.weight", head)
  assert not torch_names.matches_any("layer1.0.conv1.weight", head)
  assert not torch_names.matches_any("module.final_layer.weight", head)      # start only
  extra = torch_names.BACKBONE_EXTRA_PATTERNS
  assert torch_names.matches_any("fc.weight", extra)
  assert not torch_names.matches_any("layer3_se.se_layers.0.fc.0.weight", extra)
