"""PyTorch oracle, part 1: the ResNet blocks shared by both networks, the MIMB (the authors'
``SELambdaLayer``) and SimpleBaseline's ``PoseResNet`` (deep-high-resolution-net.pytorch's
``pose_resnet``, MIPNet's ``pose_resnet_se_lambda``). NCHW. See torch_reference.py."""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import nn

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
