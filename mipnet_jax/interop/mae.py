"""MAE pretrain checkpoints -> the ViTPose backbone's official names (training as ViTPose does).

ViTPose trains from MAE's ImageNet encoder (``mae_pretrain_vit_{base,large,huge}.pth``:
``{'model': {cls_token, pos_embed [1, 1 + 14*14, C], patch_embed.proj.*, blocks.*, norm.*}}``).
The official loader (mmcv_custom/checkpoint.py ``load_checkpoint``, strict=False) loads it
into the ``ViT`` backbone; here the same file becomes a *backbone* import (torch_import.py):

  * keys gain the ``backbone.`` prefix of mmpose's TopDown;
  * MAE-only keys are skipped (counted in the report): ``cls_token``, ``mask_token``, the
    final ``norm.*`` / ``fc_norm.*`` (ViTPose has its own ``last_norm``, which starts fresh),
    the classifier ``head.*`` and the pretraining decoder ``decoder_*``;
  * ``pos_embed``'s patch rows are resized bicubically to the model's grid (14x14 -> 16x12 at
    256x192; pos_embed.py), the cls row kept;
  * a smaller patch kernel (MAE ViT-H's 14x14) is zero-padded to the model's (16x16), split
    as the official ``patch_padding='pad'`` does (left = diff // 2).

The pose head (``keypoint_head.*``) and MIPNet-ViT's MIMBs start fresh as in any backbone
import.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

import numpy as np

from mipnet_jax.interop.pos_embed import resize_pos_embed

PREFIX = "backbone."
# Keys of MAE files that ViTPose does not use (regexes matched at the key's start).
SKIP_PATTERNS = (r"cls_token$", r"mask_token$", r"norm\.", r"fc_norm\.", r"head\.", r"decoder_")
# Model keys an MAE file lacks besides the pose head: they keep the model's init.
FRESH_PATTERNS = (r"backbone\.last_norm\.",)
POS_EMBED, PATCH_KERNEL = "pos_embed", "patch_embed.proj.weight"


def is_mae(state_dict: Mapping[str, Any]) -> bool:
  """True for a bare ViT encoder file: ``pos_embed``, the patch kernel and ``blocks.*`` at the
  top level (no ``backbone.`` prefix)."""
  return (POS_EMBED in state_dict and PATCH_KERNEL in state_dict
          and any(k.startswith("blocks.") for k in state_dict))


def adapt(state_dict: Mapping[str, Any], grid_hw: tuple[int, int],
          kernel_hw: tuple[int, int], source: str = "state_dict") -> tuple[dict, list, list]:
  """An MAE encoder state dict -> (state dict in the official ViTPose names, skipped MAE keys,
  notes on what was changed). ``grid_hw``: the model's patch grid (Hp, Wp); ``kernel_hw``: its
  patch kernel size."""
  out, skipped, notes = {}, [], []
  for key, value in state_dict.items():
    if any(re.match(p, key) for p in SKIP_PATTERNS):
      skipped.append(key)
    else:
      out[PREFIX + key] = value
  pos = np.asarray(out[PREFIX + POS_EMBED])
  resized = resize_pos_embed(pos, grid_hw, name=f"{source}: {POS_EMBED}")
  if resized is not pos:
    side = int(round((pos.shape[1] - 1) ** 0.5))
    notes.append(f"{POS_EMBED} resized bicubically {side}x{side} -> "
                 f"{grid_hw[0]}x{grid_hw[1]} patches")
  out[PREFIX + POS_EMBED] = resized
  kernel = np.asarray(out[PREFIX + PATCH_KERNEL])
  if tuple(kernel.shape[2:]) != tuple(kernel_hw):
    out[PREFIX + PATCH_KERNEL] = pad_kernel(kernel, kernel_hw, f"{source}: {PATCH_KERNEL}")
    notes.append(f"{PATCH_KERNEL} zero-padded {kernel.shape[2]}x{kernel.shape[3]} -> "
                 f"{kernel_hw[0]}x{kernel_hw[1]}")
  return out, skipped, notes


def pad_kernel(kernel: np.ndarray, kernel_hw: tuple[int, int], name: str) -> np.ndarray:
  """[O, I, k, k] -> [O, I, K, K] with zeros, ``(K - k) // 2`` of them before (as
  ``F.pad(w, (l, r, l, r))`` with l = (K - k) // 2, r = K - k - l, from the height's diff)."""
  diff = kernel_hw[0] - kernel.shape[2]
  if diff < 0 or kernel_hw[1] - kernel.shape[3] != diff:
    raise ValueError(f"{name}: a {kernel.shape[2]}x{kernel.shape[3]} patch kernel cannot be "
                     f"padded to the model's {kernel_hw[0]}x{kernel_hw[1]}")
  left = diff // 2
  return np.pad(kernel, ((0, 0), (0, 0), (left, diff - left), (left, diff - left)))
