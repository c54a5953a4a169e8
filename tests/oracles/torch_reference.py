"""Independent PyTorch re-implementation of the official pose networks.

Covers HRNet-W32/W48 (leoxiaobin/deep-high-resolution-net.pytorch, ``pose_hrnet``),
SimpleBaseline ResNet-50/101/152 (``pose_resnet``) and the MIPNet variants with
MIMB blocks (rawalkhirodkar/MIPNet, ``pose_{hrnet,resnet}_se_lambda``).

Used (a) to benchmark PyTorch CPU throughput next to the JAX models and (b) as an
oracle for weight-import tests: ``state_dict()`` key names, shapes and order match
``<shared data>/reference/*official_state_dict_keys.json`` exactly.

All tensors are NCHW. A model is called as ``model(x, lambda_vec)`` with
``x: [B, 3, H, W]`` and ``lambda_vec: [B, 2]`` (ignored when no MIMB slot is on);
it returns heatmaps ``[B, num_joints, H/4, W/4]``. As in the official code, H and
W must be multiples of 32 (nearest-upsampling fusion / deconvs assume even sizes).

Usage: ``python scripts/torch_reference.py --arch hrnet_w32 --batch 8``
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Optional, Sequence

import torch
from torch import nn

ARCHS = ("hrnet_w32", "hrnet_w48", "resnet50", "resnet101", "resnet152")
RESNET_DEPTHS = {"resnet50": (3, 4, 6, 3), "resnet101": (3, 4, 23, 3), "resnet152": (3, 8, 36, 3)}
BN_MOMENTUM = 0.1


def _bn(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, momentum=BN_MOMENTUM)


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride, 1, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convs + identity. [B, cin, H, W] -> [B, planes, H/stride, W/stride]."""

    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1, downsample=None):
        super().__init__()
        self.conv1, self.bn1 = _conv3x3(cin, planes, stride), _bn(planes)
        self.conv2, self.bn2 = _conv3x3(planes, planes), _bn(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        skip = x if self.downsample is None else self.downsample(x)
        return self.relu(out + skip)


class Bottleneck(nn.Module):
    """1x1-3x3-1x1 bottleneck (stride on the 3x3). [B, cin, H, W] -> [B, 4*planes, H/s, W/s]."""

    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1, downsample=None):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(cin, planes, 1, bias=False), _bn(planes)
        self.conv2, self.bn2 = _conv3x3(planes, planes, stride), _bn(planes)
        self.conv3, self.bn3 = nn.Conv2d(planes, planes * 4, 1, bias=False), _bn(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        skip = x if self.downsample is None else self.downsample(x)
        return self.relu(out + skip)


def _make_layer(block, cin: int, planes: int, n: int, stride: int = 1) -> nn.Sequential:
    """``n`` blocks; the first one projects with a 1x1 conv + BN when shape changes."""
    cout = planes * block.expansion
    down = None
    if stride != 1 or cin != cout:
        down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), _bn(cout))
    rest = [block(cout, planes) for _ in range(n - 1)]
    return nn.Sequential(block(cin, planes, stride, down), *rest)


class SELambdaLayer(nn.Module):
    """MIMB: x * SE(x) * g(lambda). x [B, C, H, W], lam [B, 2] -> [B, C, H, W]."""

    def __init__(self, channels: int, reduction: int = 4):
        super().__init__()
        hidden = channels // reduction
        self.fc = nn.Sequential(
            nn.Linear(channels, hidden, bias=False), nn.ReLU(inplace=True),
            nn.Linear(hidden, channels, bias=False), nn.Sigmoid())
        self.fc_lambda = nn.Sequential(
            nn.Linear(2, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
            nn.Linear(hidden, channels), nn.Sigmoid())

    def forward(self, x: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
        b, c = x.shape[:2]
        y = self.fc(x.mean(dim=(2, 3))).view(b, c, 1, 1)  # == AdaptiveAvgPool2d(1)
        z = self.fc_lambda(lam).view(b, c, 1, 1)
        return x * y * z


class SELambdaModule(nn.Module):
    """One MIMB per branch: list of [B, C_i, H_i, W_i] -> same list."""

    def __init__(self, channel_list: Sequence[int]):
        super().__init__()
        self.se_layers = nn.ModuleList(SELambdaLayer(c) for c in channel_list)

    def forward(self, xs: list, lam: torch.Tensor) -> list:
        return [layer(x, lam) for layer, x in zip(self.se_layers, xs)]


class HighResolutionModule(nn.Module):
    """Parallel branches of BasicBlocks, then multi-resolution fusion.

    Input list of ``[B, C_i, H/2^i, W/2^i]``; output the same list (or only the
    highest-resolution entry when ``multi_scale_output`` is False).
    """

    def __init__(self, channels: Sequence[int], num_blocks: int, multi_scale_output: bool = True):
        super().__init__()
        n = len(channels)
        self.branches = nn.ModuleList(
            _make_layer(BasicBlock, c, c, num_blocks) for c in channels)
        self.fuse_layers = None
        if n > 1:
            self.fuse_layers = nn.ModuleList(
                nn.ModuleList(self._fuse(channels, i, j) for j in range(n))
                for i in range(n if multi_scale_output else 1))
        self.relu = nn.ReLU(inplace=True)

    @staticmethod
    def _fuse(ch: Sequence[int], i: int, j: int) -> Optional[nn.Module]:
        """Map branch j to branch i's channels and resolution."""
        if j == i:
            return None
        if j > i:  # lower resolution: 1x1 conv, BN, nearest upsample
            return nn.Sequential(nn.Conv2d(ch[j], ch[i], 1, 1, 0, bias=False),
                                 nn.BatchNorm2d(ch[i]),
                                 nn.Upsample(scale_factor=2 ** (j - i), mode="nearest"))
        steps = []  # higher resolution: (i-j) stride-2 3x3 convs, ReLU on all but the last
        for k in range(i - j):
            last = k == i - j - 1
            cout = ch[i] if last else ch[j]
            layers = [nn.Conv2d(ch[j], cout, 3, 2, 1, bias=False), nn.BatchNorm2d(cout)]
            steps.append(nn.Sequential(*layers, *([] if last else [nn.ReLU(inplace=True)])))
        return nn.Sequential(*steps)

    def forward(self, xs: list) -> list:
        xs = [branch(x) for branch, x in zip(self.branches, xs)]
        if self.fuse_layers is None:
            return xs
        out = []
        for i, fuse in enumerate(self.fuse_layers):
            y = xs[i]
            for j, f in enumerate(fuse):
                if j != i:
                    y = y + f(xs[j])
            out.append(self.relu(y))
        return out


class PoseHRNet(nn.Module):
    """HRNet-W{width} pose net. [B, 3, H, W] (+ lam [B, 2]) -> [B, J, H/4, W/4]."""

    def __init__(self, width: int, num_joints: int = 17, mimb_slots=(False,) * 4):
        super().__init__()
        stage_ch = [[width * 2 ** b for b in range(n)] for n in (2, 3, 4)]
        self.conv1, self.bn1 = _conv3x3(3, 64, 2), _bn(64)
        self.conv2, self.bn2 = _conv3x3(64, 64, 2), _bn(64)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = _make_layer(Bottleneck, 64, 64, 4)
        prev = [256]
        for s, (ch, n_mod) in enumerate(zip(stage_ch, (1, 4, 3)), start=2):
            self.add_module(f"transition{s - 1}", self._transition(prev, ch))
            mods = [HighResolutionModule(ch, 4, multi_scale_output=not (s == 4 and m == n_mod - 1))
                    for m in range(n_mod)]
            self.add_module(f"stage{s}", nn.Sequential(*mods))
            prev = ch
        self.final_layer = nn.Conv2d(width, num_joints, 1, 1, 0)
        # MIMB slots, registered last as in the authors' code (keys follow the baseline keys).
        se_channels = (stage_ch[0], stage_ch[1], stage_ch[2], [width])
        for k, on in enumerate(mimb_slots):
            self.register_module(f"stage{k + 1}_se", SELambdaModule(se_channels[k]) if on else None)
        self.mimb_slots = tuple(bool(s) for s in mimb_slots)
        _init_normal(self, init_linear=True)

    @staticmethod
    def _transition(prev: Sequence[int], cur: Sequence[int]) -> nn.ModuleList:
        layers = []
        for i, c in enumerate(cur):
            if i < len(prev):
                layers.append(None if c == prev[i] else nn.Sequential(
                    _conv3x3(prev[i], c), nn.BatchNorm2d(c), nn.ReLU(inplace=True)))
            else:  # new branch: stride-2 3x3 convs from the lowest-resolution input
                steps = []
                for k in range(i + 1 - len(prev)):
                    cout = c if k == i - len(prev) else prev[-1]
                    steps.append(nn.Sequential(_conv3x3(prev[-1], cout, 2), nn.BatchNorm2d(cout),
                                               nn.ReLU(inplace=True)))
                layers.append(nn.Sequential(*steps))
        return nn.ModuleList(layers)

    @staticmethod
    def _apply_transition(trans: nn.ModuleList, ys: list) -> list:
        return [ys[i] if t is None else t(ys[min(i, len(ys) - 1)]) for i, t in enumerate(trans)]

    def forward(self, x: torch.Tensor, lambda_vec: Optional[torch.Tensor] = None) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        ys = [self.layer1(self.relu(self.bn2(self.conv2(x))))]
        for s in (2, 3, 4):
            xs = self._apply_transition(getattr(self, f"transition{s - 1}"), ys)
            if self.mimb_slots[s - 2]:
                xs = getattr(self, f"stage{s - 1}_se")(xs, lambda_vec)
            ys = getattr(self, f"stage{s}")(xs)
        if self.mimb_slots[3]:
            ys = self.stage4_se(ys, lambda_vec)
        return self.final_layer(ys[0])


class PoseResNet(nn.Module):
    """SimpleBaseline: ResNet + 3 deconvs(256) + 1x1 conv. [B,3,H,W] -> [B,J,H/4,W/4]."""

    def __init__(self, depths: Sequence[int], num_joints: int = 17, mimb_slots=(False,) * 4):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False), _bn(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin = 64
        for k, (planes, n) in enumerate(zip((64, 128, 256, 512), depths)):
            stride = 1 if k == 0 else 2
            self.add_module(f"layer{k + 1}", _make_layer(Bottleneck, cin, planes, n, stride))
            cin = planes * 4
        deconvs = []
        for _ in range(3):
            deconvs += [nn.ConvTranspose2d(cin, 256, 4, 2, 1, bias=False), _bn(256),
                        nn.ReLU(inplace=True)]
            cin = 256
        self.deconv_layers = nn.Sequential(*deconvs)
        self.final_layer = nn.Conv2d(256, num_joints, 1, 1, 0)
        for k, (on, c) in enumerate(zip(mimb_slots, (64, 256, 512, 1024))):  # input of layer k+1
            self.register_module(f"layer{k + 1}_se", SELambdaModule([c]) if on else None)
        self.mimb_slots = tuple(bool(s) for s in mimb_slots)
        _init_normal(self, init_linear=False)  # MIMB linears keep PyTorch default init

    def forward(self, x: torch.Tensor, lambda_vec: Optional[torch.Tensor] = None) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for k in range(4):
            if self.mimb_slots[k]:
                x = getattr(self, f"layer{k + 1}_se")([x], lambda_vec)[0]
            x = getattr(self, f"layer{k + 1}")(x)
        return self.final_layer(self.deconv_layers(x))


def _init_normal(model: nn.Module, init_linear: bool) -> None:
    """Conv/deconv (and optionally Linear) weights ~ N(0, 0.001), biases 0; BN2d (1, 0)."""
    types = (nn.Conv2d, nn.ConvTranspose2d) + ((nn.Linear,) if init_linear else ())
    for m in model.modules():
        if isinstance(m, types):
            nn.init.normal_(m.weight, std=0.001)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def build_model(arch: str, num_joints: int = 17,
                mimb_slots=(False, False, False, False)) -> nn.Module:
    """Build ``arch`` (one of ARCHS); ``mimb_slots`` is the authors' MODEL.SE_MODULES."""
    slots = tuple(bool(s) for s in mimb_slots)
    if len(slots) != 4:
        raise ValueError(f"mimb_slots needs 4 entries, got {mimb_slots!r}")
    if arch in ("hrnet_w32", "hrnet_w48"):
        return PoseHRNet(int(arch[-2:]), num_joints, slots)
    if arch in RESNET_DEPTHS:
        return PoseResNet(RESNET_DEPTHS[arch], num_joints, slots)
    raise ValueError(f"unknown arch {arch!r}; expected one of {ARCHS}")


def shared_data_dir() -> Path:
    """$MIPNET_SHARED_DATA if set, else ``<repo root>/../shared/data``."""
    env = os.environ.get("MIPNET_SHARED_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2].parent / "shared" / "data"


def reference_layout(arch: str, mipnet: bool = False) -> Optional[list]:
    """[(key, shape)] from the reference JSON for ``arch``; None if file or model is absent."""
    name = arch if arch.startswith("hrnet") else f"{arch}_simple_baseline"
    fname = "mipnet_official_state_dict_keys.json" if mipnet else "official_state_dict_keys.json"
    path = shared_data_dir() / "reference" / fname
    if not path.is_file():
        return None
    layout = json.loads(path.read_text())["models"].get(("mipnet_" if mipnet else "") + name)
    return None if layout is None else [(k, tuple(s)) for k, s in layout]


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
    p.add_argument("--arch", choices=ARCHS, default="hrnet_w32")
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
    model = build_model(a.arch, a.num_joints, slots)
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
