"""Converts official PyTorch weights into a variables checkpoint of a config's model.

  python scripts/convert_torch_checkpoint.py --config=configs/hrnet_w32_coco_256x192.py:baseline \\
      --input=pose_hrnet_w32_256x192.pth --output=ckpt/hrnet_w32_coco_baseline
  python scripts/convert_torch_checkpoint.py --config=configs/sbl_r50_coco_256x192.py \\
      --input=resnet50-19c8e357.pth --output=ckpt/r50_imagenet --kind=backbone
  python scripts/convert_torch_checkpoint.py --input=model.pth --npz=model.npz   # no config
  python scripts/convert_torch_checkpoint.py --config=configs/vitpose_b_coco_256x192.py:baseline \\
      --input=mae_pretrain_vit_base.pth --output=ckpt/vitpose_b_mae   # ViTPose's MAE start

The output directory is what ``--config.init_from=`` and ``--config.eval.checkpoint=`` take.
``--kind``: pose (official COCO / authors' MIPNet files: every key must match), backbone
(ImageNet HRNet / torchvision ResNet: the pose head starts fresh, classifier keys are
skipped) or auto (backbone when the file lacks the pose head). An MAE pretrain encoder
({'model': {pos_embed, patch_embed.*, blocks.*, ...}}) is a ViTPose backbone file: its keys
gain ``backbone.``, cls_token / mask_token / norm / decoder keys are skipped, pos_embed is
resized bicubically to the config's patch grid, last_norm and the head start fresh.
``--allow_fresh=mimb`` starts MIPNet's MIMBs fresh from a baseline pose file (the authors'
fine-tuning: ``--config=configs/vitpose_b_coco_256x192.py --allow_fresh=mimb`` on an official
ViTPose-B file gives MIPNet-ViT-B). ``--npz`` re-saves the arrays (``module.`` prefix and
num_batches_tracked dropped) as .npz, which converts later without torch. Prints
the import summary; a file that does not fit the model exits with code 2 and one line naming
the file and its bad keys.
"""

from __future__ import annotations

import sys

from absl import app, flags, logging
from ml_collections import config_flags

from mipnet_jax.interop import torch_import

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment config file (configs/*.py[:ARG]) whose model to fill.",
    lock_config=True)
_INPUT = flags.DEFINE_string("input", None, "Weights file: .pth / .pt / .pth.tar / .npz.")
_OUTPUT = flags.DEFINE_string("output", None, "New checkpoint directory (needs --config).")
_NPZ = flags.DEFINE_string("npz", None, "Also write the input's arrays to this .npz file.")
_KIND = flags.DEFINE_enum("kind", "auto", torch_import.KINDS, "pose, backbone or auto.")
_ALLOW_FRESH = flags.DEFINE_list(
    "allow_fresh", [], "Torch keys that may start fresh (missing or reshaped in the file): "
    "regexes, or mimb (the MIMBs) or head (final_layer, deconv_layers, MIMBs).")
_SEED = flags.DEFINE_integer("seed", 0, "Init seed of the keys that start fresh.")


def run() -> None:
  if not _INPUT.value:
    raise app.UsageError("--input is required")
  if not (_OUTPUT.value or _NPZ.value):
    raise app.UsageError("give --output (with --config) and/or --npz")
  if _NPZ.value:
    state_dict, _ = torch_import.normalize_keys(torch_import.read_state_dict(_INPUT.value))
    path = torch_import.write_npz(state_dict, _NPZ.value)
    print(f"wrote {path}: {len(state_dict)} arrays")
  if _OUTPUT.value:
    if _CONFIG.value is None:
      raise app.UsageError("--output needs --config=configs/X.py[:ARG]")
    report = torch_import.convert(_INPUT.value, _CONFIG.value, _OUTPUT.value, kind=_KIND.value,
                                  allow_fresh=_ALLOW_FRESH.value, seed=_SEED.value)
    print(report.summary())
    print(f"wrote {_OUTPUT.value}: use --config.init_from={_OUTPUT.value} or "
          f"--config.eval.checkpoint={_OUTPUT.value}")


def main(argv) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  logging.set_verbosity(logging.WARNING)    # the summary is printed; no library INFO chatter
  try:
    run()
  except (ValueError, OSError) as e:     # StateDictError, an existing --output, ...
    print(f"convert_torch_checkpoint.py: error: {e}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
  app.run(main)
