"""HRNet's configuration space (models/hrnet.py): num_blocks as one count or per-stage,
per-branch counts (the official yamls' STAGE{2,3,4}.NUM_BLOCKS), branch_channels
(STAGE4.NUM_CHANNELS), the config route through build_model and the field checks. Shapes only
(jax.eval_shape, no compile); the official key names and a forward on imported weights are in
tests/interop/test_torch_import.py."""

from __future__ import annotations

import jax
import ml_collections
import pytest
from flax import traverse_util

from mipnet_jax.models import build_model
from mipnet_jax.models.hrnet import HRNet, branch_widths, stage_blocks
from mipnet_jax.models.variables import abstract_variables

HW = (64, 64)
TINY = dict(name="hrnet", width=8, stem_width=16, stage_modules=(1, 1, 2))
PER_BRANCH = ((1, 2), (1, 1, 3), (2, 1, 1, 1))


def block_counts(params) -> dict[tuple[str, str, int], int]:
  """{(stage, module, branch): number of branch{b}_block{k} children} of a params tree."""
  counts: dict[tuple[str, str, int], int] = {}
  for path in traverse_util.flatten_dict(params):
    if path[0].startswith("stage") and "_block" in path[2] and path[3:] == ("conv1", "kernel"):
      b = int(path[2][len("branch"):path[2].index("_")])
      counts[path[0], path[1], b] = counts.get((path[0], path[1], b), 0) + 1
  return counts


def test_stage_blocks_expands_an_int_and_keeps_per_branch_counts():
  assert stage_blocks(4) == ((4, 4), (4, 4, 4), (4, 4, 4, 4))
  assert stage_blocks([[1, 2], [1, 1, 3], [2, 1, 1, 1]]) == PER_BRANCH
  assert branch_widths(32) == (32, 64, 128, 256)
  assert branch_widths(32, [8, 12, 20, 24]) == (8, 12, 20, 24)


def test_per_branch_counts_build_exactly_those_blocks():
  params = abstract_variables(build_model({**TINY, "num_blocks": PER_BRANCH}, 1), HW)["params"]
  expected = {("stage2", "module0", 0): 1, ("stage2", "module0", 1): 2,
              ("stage3", "module0", 0): 1, ("stage3", "module0", 1): 1,
              ("stage3", "module0", 2): 3}
  for m in ("module0", "module1"):   # both stage-4 modules, the last one single-scale
    expected |= {("stage4", m, 0): 2, ("stage4", m, 1): 1, ("stage4", m, 2): 1,
                 ("stage4", m, 3): 1}
  assert block_counts(params) == expected


def test_an_int_equals_the_same_count_on_every_branch():
  shapes = lambda nb: jax.tree.map(lambda x: x.shape, abstract_variables(
      build_model({**TINY, "num_blocks": nb}, 2), HW))
  assert shapes(2) == shapes(((2, 2), (2, 2, 2), (2, 2, 2, 2)))


def test_branch_channels_set_every_branch_and_mimb_width():
  v = abstract_variables(build_model({**TINY, "branch_channels": (8, 12, 20, 24)}, 2), HW)
  p = v["params"]
  assert p["transition1"]["branch1"]["conv0"]["kernel"].shape == (3, 3, 64, 12)
  assert p["transition3"]["branch3"]["conv0"]["kernel"].shape == (3, 3, 20, 24)
  assert p["stage4"]["module1"]["fuse0_3"]["conv"]["kernel"].shape == (1, 1, 24, 8)
  assert p["stage3_mimb"]["branch2"]["excite_fc1"]["kernel"].shape == (20, 5)
  assert p["final_layer"]["kernel"].shape == (1, 1, 8, 17)


def test_config_lists_become_nested_tuples():
  """ml_collections keeps lists as lists; the module needs hashable (nested) tuples."""
  cfg = ml_collections.ConfigDict({**TINY, "num_blocks": [[1, 2], [1, 1, 3], [2, 1, 1, 1]],
                                   "branch_channels": [8, 12, 20, 24]})
  assert isinstance(cfg.num_blocks[0], list)
  model = build_model(cfg, 1)
  assert model.num_blocks == PER_BRANCH and model.branch_channels == (8, 12, 20, 24)
  assert hash(model) == hash(build_model(cfg, 1))
  assert model.blocks == PER_BRANCH and model.channels == (8, 12, 20, 24)


@pytest.mark.parametrize("field,value,message", [
    ("num_blocks", ((1, 1), (1, 1), (1, 1, 1, 1)),
     r"HRNet num_blocks: stage 3 has 3 branches, so it needs 3 block counts, got \(1, 1\)"),
    ("num_blocks", ((1, 1), (1, 1, 1), (1, 1, 1)),
     r"HRNet num_blocks: stage 4 has 4 branches, so it needs 4 block counts, got \(1, 1, 1\)"),
    ("num_blocks", ((1, 1), (1, 1, 1)), r"HRNet num_blocks needs an int or 3 per-stage tuples"),
    ("num_blocks", (4, 4, 4), r"HRNet num_blocks: stage 2 has 2 branches, .* got 4"),
    ("num_blocks", ((1, 0), (1, 1, 1), (1, 1, 1, 1)), r"stage 2 block counts must be ints >= 1"),
    ("num_blocks", "4", r"HRNet num_blocks needs an int or per-stage tuples, got '4'"),
    ("branch_channels", (8, 16, 32), r"HRNet branch_channels needs 4 widths >= 1"),
    ("stage_modules", (1, 4), r"HRNet stage_modules needs 3 counts >= 1"),
])
def test_bad_fields_fail_at_build_naming_the_field(field, value, message):
  with pytest.raises(ValueError, match=message):
    build_model({**TINY, field: value}, 1)
  with pytest.raises(ValueError, match=message):      # the module itself, not only the config
    HRNet(**{field: value})
