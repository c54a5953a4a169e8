"""ViTPose's official weights <-> our variables (mipnet_jax/interop/torch_import.py with the
ViT rules of models/torch_names.py): the state_dict layouts of S/B/L/H against the reference
file (jax.eval_shape), the exact round trip, and MIPNet-ViT fine-tuned from a ViTPose file.
The PyTorch forward check is tests/oracles/test_torch_reference.py; MAE files: test_mae.py."""

from __future__ import annotations

import functools
import json

import jax
import numpy as np
import pytest
from conftest import assert_trees_equal, random_variables

from mipnet_jax import experiments
from mipnet_jax.interop import torch_import
from mipnet_jax.models import build_model

# Fresh inits in tests: RBG keys compile their random ops far faster than threefry on CPU.
RNG = functools.partial(jax.random.key, impl="rbg")
PROBE_HW = (64, 64)                  # variables of the quick models (4 x 4 patches)


def make_model(arch: str, arg: str = ""):
  cfg = experiments.experiment(arch, "coco", (256, 192), arg)
  return build_model(cfg.model, cfg.num_instances)


def variables_of(model, seed: int = 0):
  return random_variables(model, PROBE_HW, seed)


VITPOSE_PARAMS = {"vitpose_s": 24_290_577, "vitpose_b": 89_994_513, "vitpose_l": 308_544_785,
                  "vitpose_h": 637_208_849}
VIT_HW = (256, 192)                  # the official size: pos_embed [1, 193, C]


@pytest.mark.parametrize("arch", sorted(VITPOSE_PARAMS))
def test_vitpose_layout_equals_official(shared_data, arch):
  path = shared_data / "reference" / "vitpose_state_dict_keys.json"
  if not path.is_file():
    pytest.skip(f"reference layout {path} absent")
  official = json.loads(path.read_text())["models"][f"{arch}_coco_256x192"]["state_dict"]
  ref = [(k, tuple(s)) for k, s in official if not k.endswith("num_batches_tracked")]
  got = torch_import.torch_layout(make_model(arch, "baseline"), VIT_HW)   # jax.eval_shape
  assert list(got) == [k for k, _ in ref], "torch key names / order differ"
  assert list(got.items()) == ref, "torch shapes differ"
  params = sum(int(np.prod(s)) for k, s in got.items() if not k.endswith(("running_mean",
                                                                            "running_var")))
  assert params == VITPOSE_PARAMS[arch]


@pytest.mark.parametrize("arg", ["quick,baseline", "quick"], ids=["vitpose", "mipnet_vitpose"])
def test_vitpose_round_trip_is_exact(arg):
  model = make_model("vitpose_b", arg)
  variables = variables_of(model)
  state_dict = torch_import.to_state_dict(variables, model)
  assert list(state_dict)[:2] == ["backbone.pos_embed", "backbone.patch_embed.proj.weight"]
  assert state_dict["backbone.blocks.0.attn.qkv.weight"].shape == (192, 64)   # [3C, C]
  back, report = torch_import.import_state_dict(state_dict, model, kind="pose")
  assert report.kind == "pose" and not report.fresh and not report.skipped
  assert_trees_equal(back, variables)


def test_vitpose_baseline_file_fine_tunes_into_mipnet_vitpose():
  """The authors' recipe on ViTPose: an official-layout ViTPose pose file loads into MIPNet-ViT
  with ``allow_fresh=("mimb",)``; only the three MIMBs start fresh, everything else is the
  file's. Without the alias the missing MIMB keys are one error."""
  baseline = torch_import.to_state_dict(variables_of(make_model("vitpose_b", "quick,baseline")))
  mipnet = make_model("vitpose_b", "quick")
  with pytest.raises(torch_import.StateDictError, match="missing: backbone.slot2_se.se_layers"):
    torch_import.check_state_dict(baseline, mipnet)
  variables, report = torch_import.import_state_dict(baseline, mipnet, allow_fresh=("mimb",),
                                                     rng=RNG(0))
  assert report.kind == "pose" and not report.skipped
  assert sorted({k.split(".")[1] for k in report.fresh}) == ["slot2_se", "slot3_se", "slot4_se"]
  assert len(report.loaded) == len(baseline)
  np.testing.assert_array_equal(variables["params"]["backbone"]["block2"]["attn"]["qkv"]["kernel"],
                                baseline["backbone.blocks.2.attn.qkv.weight"].T)
