"""MAE pretrain encoders as ViTPose backbone imports (mipnet_jax/interop/mae.py through
torch_import): renamed, MAE-only keys skipped and counted, pos_embed resized, last_norm and
the pose head fresh; the .pth route reads MAE's {'model': ...} file with weights_only=True."""

import functools

import jax
import numpy as np
import pytest
from conftest import random_variables

from mipnet_jax import experiments
from mipnet_jax.interop import mae, pos_embed, torch_import
from mipnet_jax.models import build_model

# Fresh inits in tests: RBG keys compile their random ops far faster than threefry on CPU.
RNG = functools.partial(jax.random.key, impl="rbg")
HW = (128, 96)                  # 8 x 6 patches
MAE_GRID = 4                    # the file's 4 x 4 grid (MAE's own: 14 x 14)
MAE_ONLY = ("cls_token", "mask_token", "norm.weight", "norm.bias", "decoder_embed.weight",
            "decoder_blocks.0.norm1.weight", "decoder_pred.bias")


def config(arg: str = "quick,baseline"):
  return experiments.experiment("vitpose_b", "coco", HW, arg)


def mae_file(kernel: int = 16, seed: int = 0) -> dict[str, np.ndarray]:
  """An MAE-style encoder state dict for the quick ViTPose (C = 64): its backbone's weights
  without the prefix and last_norm, a 4x4 (+1) pos_embed, and MAE-only keys."""
  cfg = config()
  model = build_model(cfg.model, cfg.num_instances)
  official = torch_import.to_state_dict(random_variables(model, HW, seed))
  out = {k[len("backbone."):]: v for k, v in official.items()
         if k.startswith("backbone.") and not k.startswith("backbone.last_norm")}
  rng = np.random.default_rng(seed + 1)
  out["pos_embed"] = (0.02 * rng.normal(size=(1, 1 + MAE_GRID ** 2, 64))).astype(np.float32)
  out["patch_embed.proj.weight"] = rng.normal(size=(64, 3, kernel, kernel)).astype(np.float32)
  for key in MAE_ONLY:
    out[key] = np.ones((1, 1, 64) if key.endswith("token") else (64,), np.float32)
  return out


def test_mae_encoder_imports_as_backbone():
  cfg = config("quick")                    # MIPNet-ViT: its MIMBs start fresh too
  model = build_model(cfg.model, cfg.num_instances)
  state_dict = mae_file()
  variables, report = torch_import.import_state_dict(state_dict, model, HW, rng=RNG(0))
  assert report.kind == "backbone"
  assert sorted(report.skipped) == sorted(MAE_ONLY)
  assert len(report.loaded) == 1 + 2 + 4 * 12          # pos_embed, patch embed, 4 blocks
  assert {k.split(".")[1] for k in report.fresh if k.startswith("backbone.")} == {
      "last_norm", "slot2_se", "slot3_se", "slot4_se"}
  assert any(k.startswith("keypoint_head.") for k in report.fresh)
  summary = report.summary()
  assert "7 skipped" in summary and "resized bicubically 4x4 -> 8x6 patches" in summary
  params = variables["params"]["backbone"]
  table = params["pos_embed"]["embedding"]
  np.testing.assert_array_equal(table, pos_embed.resize_pos_embed(state_dict["pos_embed"], (8, 6)))
  np.testing.assert_array_equal(table[:, 0], state_dict["pos_embed"][:, 0])     # cls row
  np.testing.assert_array_equal(params["block3"]["mlp"]["fc2"]["kernel"],
                                state_dict["blocks.3.mlp.fc2.weight"].T)
  np.testing.assert_array_equal(params["last_norm"]["scale"], np.ones(64))      # fresh init


def test_smaller_patch_kernel_is_zero_padded_as_official():
  state_dict = mae_file(kernel=14)
  cfg = config()
  variables, report = torch_import.import_state_dict(state_dict, build_model(
      cfg.model, cfg.num_instances), HW, kind="backbone", rng=RNG(0))
  kernel = variables["params"]["backbone"]["patch_embed"]["kernel"]             # HWIO
  np.testing.assert_array_equal(kernel[1:15, 1:15], state_dict[
      "patch_embed.proj.weight"].transpose(2, 3, 1, 0))
  assert not kernel[0].any() and not kernel[15].any() and not kernel[:, 0].any()
  assert "zero-padded 14x14 -> 16x16" in report.summary()
  with pytest.raises(ValueError, match="cannot be padded"):
    mae.pad_kernel(np.zeros((2, 3, 18, 18)), (16, 16), "x")


def test_non_square_mae_grid_is_a_clear_error():
  state_dict = mae_file()
  state_dict["pos_embed"] = state_dict["pos_embed"][:, :-1]
  cfg = config()
  with pytest.raises(ValueError, match="mae.pth: pos_embed: 15 patch positions are not a square"):
    torch_import.check_state_dict(state_dict, build_model(cfg.model, 1), HW, source="mae.pth")


def test_pth_with_model_wrapper_is_read_and_fits(tmp_path):
  torch = pytest.importorskip("torch", reason="torch not installed; .pth route skipped")
  path = tmp_path / "mae_pretrain_vit_tiny.pth"
  arrays = mae_file()
  torch.save({"model": {k: torch.tensor(v) for k, v in arrays.items()}}, path)
  read = torch_import.read_state_dict(str(path))                 # weights_only=True
  assert read.keys() == arrays.keys()
  np.testing.assert_array_equal(read["blocks.1.attn.qkv.weight"],
                                arrays["blocks.1.attn.qkv.weight"])
  cfg = config()      # what convert() / --config.init_from's converter run, without the init
  report = torch_import.check_state_dict(read, build_model(cfg.model, cfg.num_instances), HW,
                                         source=str(path))
  assert report.kind == "backbone" and len(report.skipped) == len(MAE_ONLY)
  assert report.summary().startswith(f"{path}: backbone weights, 51 arrays loaded")
