"""PyTorch oracle, part 2: HRNet's ``PoseHighResolutionNet`` (``pose_hrnet``, MIPNet's
``pose_hrnet_se_lambda``). NCHW. See torch_reference.py."""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import nn

from torch_resnet import (BasicBlock, Bottleneck, SELambdaModule, _bn, _conv3x3, _init_normal,
                          _make_layer)


class HighResolutionModule(nn.Module):
    """Parallel branches of BasicBlocks, then multi-resolution fusion.

    Input list of ``[B, C_i, H/2^i, W/2^i]``; output the same list (or only the
    highest-resolution entry when ``multi_scale_output`` is False).
    """

    def __init__(self, channels: Sequence[int], num_blocks: Sequence[int],
                 multi_scale_output: bool = True):
        super().__init__()
        n = len(channels)
        if len(num_blocks) != n:  # the official _check_branches
            raise ValueError(f"NUM_BRANCHES({n}) <> NUM_BLOCKS({len(num_blocks)})")
        self.branches = nn.ModuleList(
            _make_layer(BasicBlock, c, c, b) for c, b in zip(channels, num_blocks))
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
    """HRNet-W{width} pose net. [B, 3, H, W] (+ lam [B, 2]) -> [B, J, H/4, W/4].

    The yaml's MODEL.EXTRA as arguments: ``num_modules`` = STAGE{2,3,4}.NUM_MODULES,
    ``num_blocks`` = STAGE{2,3,4}.NUM_BLOCKS, ``channels`` = STAGE4.NUM_CHANNELS (stage s
    uses the first s; default width * 2^b), BLOCK BASIC, FUSE_METHOD SUM; ``stem`` replaces
    the fixed 64 of the stem (official: 64). ``width`` is channels[0].
    """

    def __init__(self, width: int, num_joints: int = 17, mimb_slots=(False,) * 4, stem: int = 64,
                 num_modules=(1, 4, 3), num_blocks=((4, 4), (4, 4, 4), (4, 4, 4, 4)),
                 channels: Optional[Sequence[int]] = None):
        super().__init__()
        channels = list(channels or [width * 2 ** b for b in range(4)])
        width = channels[0]
        stage_ch = [channels[:n] for n in (2, 3, 4)]
        self.conv1, self.bn1 = _conv3x3(3, stem, 2), _bn(stem)
        self.conv2, self.bn2 = _conv3x3(stem, stem, 2), _bn(stem)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = _make_layer(Bottleneck, stem, stem, 4)
        prev = [4 * stem]
        for s, (ch, n_mod, blocks) in enumerate(zip(stage_ch, num_modules, num_blocks), start=2):
            self.add_module(f"transition{s - 1}", self._transition(prev, ch))
            mods = [HighResolutionModule(ch, blocks,
                                         multi_scale_output=not (s == 4 and m == n_mod - 1))
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
