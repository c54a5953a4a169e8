"""Independent PyTorch re-implementation of the official pose networks.

Covers HRNet-W32/W48 (leoxiaobin/deep-high-resolution-net.pytorch, ``pose_hrnet``),
SimpleBaseline ResNet-50/101/152 (``pose_resnet``) and the MIPNet variants with
MIMB blocks (rawalkhirodkar/MIPNet, ``pose_{hrnet,resnet}_se_lambda``) and ViTPose-S/B/L/H
(ViTAE-Transformer/ViTPose, torch_vitpose.py; its layouts in ``vitpose_state_dict_keys.json``).

Used (a) to benchmark PyTorch CPU throughput next to the JAX models and (b) as an
oracle for weight-import tests: ``state_dict()`` key names, shapes and order match
``<shared data>/reference/*_state_dict_keys.json`` exactly.

All tensors are NCHW. A model is called as ``model(x, lambda_vec)`` with
``x: [B, 3, H, W]`` and ``lambda_vec: [B, 2]`` (ignored when no MIMB slot is on);
it returns heatmaps ``[B, num_joints, H/4, W/4]``. As in the official code, H and
W must be multiples of 32 (nearest-upsampling fusion / deconvs assume even sizes); a ViTPose
runs at the size it was built for (``image_hw``, multiples of 16).

The networks live in torch_resnet.py (ResNet blocks, the MIMB, SimpleBaseline) and
torch_hrnet.py (HRNet); this module builds them and holds the layout, loss and throughput
helpers.

Usage: ``python tests/oracles/torch_reference.py --arch hrnet_w32 --batch 8``
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Optional, Sequence

import sys

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))   # the sibling oracle parts
from torch_hrnet import PoseHRNet  # noqa: E402
from torch_resnet import PoseResNet  # noqa: E402
from torch_vitpose import SIZES as VITPOSE_SIZES, TopDownViTPose, build_vitpose  # noqa: E402,F401

ARCHS = ("hrnet_w32", "hrnet_w48", "resnet50", "resnet101", "resnet152")
ALL_ARCHS = ARCHS + tuple(VITPOSE_SIZES)
RESNET_DEPTHS = {"resnet50": (3, 4, 6, 3), "resnet101": (3, 4, 23, 3), "resnet152": (3, 8, 36, 3)}


def build_model(arch: str, num_joints: int = 17,
                mimb_slots=(False, False, False, False), image_hw=(256, 192)) -> nn.Module:
    """Build ``arch`` (one of ALL_ARCHS); ``mimb_slots`` is the authors' MODEL.SE_MODULES;
    ``image_hw`` sizes ViTPose's position embedding (the CNNs take any multiple of 32)."""
    slots = tuple(bool(s) for s in mimb_slots)
    if len(slots) != 4:
        raise ValueError(f"mimb_slots needs 4 entries, got {mimb_slots!r}")
    if arch in VITPOSE_SIZES:
        return build_vitpose(arch, num_joints, slots, tuple(image_hw))
    if arch in ("hrnet_w32", "hrnet_w48"):
        return PoseHRNet(int(arch[-2:]), num_joints, slots)
    if arch in RESNET_DEPTHS:
        return PoseResNet(RESNET_DEPTHS[arch], num_joints, slots)
    raise ValueError(f"unknown arch {arch!r}; expected one of {ALL_ARCHS}")


def shared_data_dir() -> Path:
    """$MIPNET_SHARED_DATA if set, else ``<repo root>/../shared/data``."""
    env = os.environ.get("MIPNET_SHARED_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2].parent / "shared" / "data"


def reference_layout(arch: str, mipnet: bool = False) -> Optional[list]:
    """[(key, shape)] from the reference JSON for ``arch``; None if file or model is absent."""
    if arch in VITPOSE_SIZES:
        return None if mipnet else _vitpose_reference_layout(arch)
    name = arch if arch.startswith("hrnet") else f"{arch}_simple_baseline"
    fname = "mipnet_official_state_dict_keys.json" if mipnet else "official_state_dict_keys.json"
    path = shared_data_dir() / "reference" / fname
    if not path.is_file():
        return None
    layout = json.loads(path.read_text())["models"].get(("mipnet_" if mipnet else "") + name)
    return None if layout is None else [(k, tuple(s)) for k, s in layout]


def _vitpose_reference_layout(arch: str) -> Optional[list]:
    """[(key, shape)] of the official ``{arch}_coco_256x192``, num_batches_tracked excluded."""
    path = shared_data_dir() / "reference" / "vitpose_state_dict_keys.json"
    if not path.is_file():
        return None
    model = json.loads(path.read_text())["models"].get(f"{arch}_coco_256x192")
    return None if model is None else [(k, tuple(s)) for k, s in model["state_dict"]
                                       if not k.endswith("num_batches_tracked")]


def state_dict_layout(model: nn.Module) -> list:
    """[(key, shape)] of ``model.state_dict()`` in order, num_batches_tracked excluded."""
    return [(k, tuple(v.shape)) for k, v in model.state_dict().items()
            if not k.endswith("num_batches_tracked")]


def count_trainable(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def joints_mse_loss(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Official JointsMSELoss(use_target_weight=True).

    pred, target [B, J, h, w]; weight [B, J]. Returns
    mean_j 0.5 * mean_{b,hw} (w_bj * (pred - target))^2, i.e. a global mean.
    """
    w = weight[:, :, None, None]
    return 0.5 * ((pred * w - target * w) ** 2).mean()


def measure_throughput(model: nn.Module, batch: int, image_hw: tuple, train: bool, iters: int,
                       warmup: int, num_joints: int = 17, num_threads: Optional[int] = None,
                       seed: int = 0) -> dict:
    """Time ``iters`` steps after ``warmup`` on random NCHW images [batch, 3, H, W].

    Inference: eval() + inference_mode forward. Training: train() + forward,
    JointsMSE against random [batch, J, H/4, W/4] targets, backward, Adam(1e-3) step.
    Returns {"img_per_s", "sec_per_iter"}.
    """
    prev_threads = torch.get_num_threads()
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    try:
        gen = torch.Generator().manual_seed(seed)
        h, w = image_hw
        x = torch.randn(batch, 3, h, w, generator=gen)
        lam = torch.zeros(batch, 2)
        lam[torch.arange(batch), torch.randint(0, 2, (batch,), generator=gen)] = 1.0
        if train:
            model.train()
            target = torch.rand(batch, num_joints, h // 4, w // 4, generator=gen)
            tw = torch.ones(batch, num_joints)
            opt = torch.optim.Adam(model.parameters(), lr=1e-3)

            def step():
                opt.zero_grad(set_to_none=True)
                joints_mse_loss(model(x, lam), target, tw).backward()
                opt.step()
        else:
            model.eval()

            def step():
                with torch.inference_mode():
                    model(x, lam)
        for _ in range(warmup):
            step()
        t0 = time.perf_counter()
        for _ in range(iters):
            step()
        sec = (time.perf_counter() - t0) / max(iters, 1)
    finally:
        torch.set_num_threads(prev_threads)
    return {"img_per_s": batch / sec, "sec_per_iter": sec}


def main(argv: Optional[Sequence[str]] = None) -> None:
    p = argparse.ArgumentParser(description="PyTorch reference pose-net throughput (CPU).")
    p.add_argument("--arch", choices=ALL_ARCHS, default="hrnet_w32")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--height", type=int, default=256)
    p.add_argument("--width", type=int, default=192)
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--num-joints", type=int, default=17)
    p.add_argument("--num-threads", type=int, default=None)
    p.add_argument("--mimb", action="store_true", help="MIPNet slots (False, False, True, True)")
    p.add_argument("--mode", choices=("both", "infer", "train"), default="both")
    a = p.parse_args(argv)
    torch.manual_seed(0)
    slots = (False, False, True, True) if a.mimb else (False,) * 4
    model = build_model(a.arch, a.num_joints, slots, (a.height, a.width))
    name = ("mipnet_" if a.mimb else "") + a.arch
    print(f"torch {torch.__version__}, threads {a.num_threads or torch.get_num_threads()}, "
          f"{name}: {count_trainable(model):,} trainable params")
    print(f"{'arch':<18}{'mode':<7}{'batch':>6}{'HxW':>10}{'s/iter':>10}{'img/s':>9}")
    modes = ("infer", "train") if a.mode == "both" else (a.mode,)
    for mode in modes:
        r = measure_throughput(model, a.batch, (a.height, a.width), mode == "train", a.iters,
                               a.warmup, a.num_joints, a.num_threads)
        print(f"{name:<18}{mode:<7}{a.batch:>6}{f'{a.height}x{a.width}':>10}"
              f"{r['sec_per_iter']:>10.3f}{r['img_per_s']:>9.2f}")


if __name__ == "__main__":
    main()
