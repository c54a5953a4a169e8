"""Independent PyTorch ViTPose: the official ``ViT`` backbone + ``TopdownHeatmapSimpleHead``.

Written from ViTAE-Transformer/ViTPose (mmpose/models/backbones/vit.py,
mmpose/models/heads/topdown_heatmap_simple_head.py) and the architecture facts of
``<shared data>/reference/vitpose_state_dict_keys.json``; attribute names are those of mmpose's
``TopDown`` (``backbone.*``, ``keypoint_head.*``), so ``state_dict()`` names, shapes and order
are the released checkpoints'. Facts used:
  * patch embedding Conv2d(3, C, 16, stride 16, padding 2) with bias; tokens row-major (h, w);
  * ``pos_embed`` [1, 1 + Hp*Wp, C] sized from ``img_size`` and added as
    ``x + pos_embed[:, 1:] + pos_embed[:, :1]`` (no cls token);
  * pre-norm blocks, LayerNorm eps 1e-6, exact GELU, qkv Linear with bias whose output rows
    are [q; k; v] x heads x head_dim, attention ``softmax((q * head_dim^-0.5) k^T) v``;
  * ``last_norm`` (LayerNorm 1e-6), then tokens -> [B, C, Hp, Wp];
  * head: num_deconv x (ConvTranspose2d 4x4 s2 p1 no bias, BatchNorm2d eps 1e-5, ReLU), then
    Conv2d 1x1 with bias to the joints.

MIPNet-ViT (ours, no official code): MIMBs ``backbone.slot{k}_se`` (an ``SELambdaModule``
with one ``SELambdaLayer``, registered after ``last_norm``) modulate the tokens as a grid:
squeeze = mean over the tokens, channel gates. Slot k sits after ``slot_blocks[k]`` blocks
(default the quarters of the depth); slot 4 acts on the ``last_norm`` output.

Eval-mode only matters for the tests (no drop path: rates are kept for the layout only).
A model is called as ``model(x [B, 3, H, W], lambda_vec [B, L])`` -> [B, J, 4 Hp, 4 Wp].
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import nn

from torch_resnet import SELambdaModule

LN_EPS = 1e-6
PATCH, PATCH_PAD = 16, 2
# embed_dim, depth, num_heads of the official COCO configs (ViTPose_{small,base,large,huge}).
SIZES = {"vitpose_s": (384, 12, 12), "vitpose_b": (768, 12, 12), "vitpose_l": (1024, 24, 16),
         "vitpose_h": (1280, 32, 16)}


class Attention(nn.Module):
    """Multi-head self-attention: [B, N, C] -> [B, N, C]."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim, bias=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        # [B, N, 3*C] -> [3, B, heads, N, head_dim]: rows [q; k; v], each head-major.
        q, k, v = self.qkv(x).view(b, n, 3, self.num_heads, c // self.num_heads).permute(
            2, 0, 3, 1, 4)
        attn = torch.softmax((q * self.scale) @ k.transpose(-2, -1), dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """x + attn(norm1(x)), then x + mlp(norm2(x)) (eval: no drop path)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LN_EPS)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=LN_EPS)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(3, dim, PATCH, stride=PATCH, padding=PATCH_PAD)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)                                   # [B, C, Hp, Wp]


class ViT(nn.Module):
    """The backbone: [B, 3, H, W] -> [B, C, Hp, Wp]; MIMB slots as in the module docstring."""

    def __init__(self, img_size: Sequence[int], embed_dim: int, depth: int, num_heads: int,
                 mlp_ratio: float = 4.0, mimb_slots=(False,) * 4,
                 slot_blocks: Optional[Sequence[int]] = None):
        super().__init__()
        h, w = img_size
        # Parameter first: state_dict() lists a module's own parameters before its children.
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + (h // PATCH) * (w // PATCH), embed_dim))
        self.patch_embed = PatchEmbed(embed_dim)
        self.blocks = nn.ModuleList(Block(embed_dim, num_heads, mlp_ratio) for _ in range(depth))
        self.last_norm = nn.LayerNorm(embed_dim, eps=LN_EPS)
        self.slot_blocks = tuple(slot_blocks or ((k + 1) * depth // 4 for k in range(4)))
        self.mimb_slots = tuple(bool(s) for s in mimb_slots)
        for k, on in enumerate(self.mimb_slots):
            self.register_module(f"slot{k + 1}_se", SELambdaModule([embed_dim]) if on else None)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)

    def _mimb(self, k: int, x: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
        """MIMB of slot k+1 on tokens [B, N, C], as a [B, C, N, 1] grid (mean over tokens)."""
        if not self.mimb_slots[k]:
            return x
        grid = x.transpose(1, 2).unsqueeze(-1)
        return getattr(self, f"slot{k + 1}_se")([grid], lam)[0].squeeze(-1).transpose(1, 2)

    def forward(self, x: torch.Tensor, lam: Optional[torch.Tensor] = None) -> torch.Tensor:
        grid = self.patch_embed(x)
        b, c, hp, wp = grid.shape
        x = grid.flatten(2).transpose(1, 2)                   # [B, Hp*Wp, C], row-major
        x = x + self.pos_embed[:, 1:] + self.pos_embed[:, :1]
        start = 0
        for k, stop in enumerate(self.slot_blocks):
            for blk in self.blocks[start:stop]:
                x = blk(x)
            if k == 3:
                x = self.last_norm(x)
            x = self._mimb(k, x, lam)
            start = stop
        return x.transpose(1, 2).reshape(b, c, hp, wp)


class TopdownHeatmapSimpleHead(nn.Module):
    """Deconvolutions + 1x1 conv: [B, C, h, w] -> [B, J, h * 2^num_deconv, w * 2^num_deconv]."""

    def __init__(self, in_channels: int, num_joints: int, deconv_features=(256, 256)):
        super().__init__()
        layers, cin = [], in_channels
        for cout in deconv_features:
            layers += [nn.ConvTranspose2d(cin, cout, 4, 2, 1, output_padding=0, bias=False),
                       nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
            cin = cout
        self.deconv_layers = nn.Sequential(*layers)
        self.final_layer = nn.Conv2d(cin, num_joints, 1, 1, 0)
        for m in self.modules():          # the official init_weights
            if isinstance(m, (nn.ConvTranspose2d, nn.Conv2d)):
                nn.init.normal_(m.weight, std=0.001)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.final_layer(self.deconv_layers(x))


class TopDownViTPose(nn.Module):
    """mmpose ``TopDown`` as the checkpoints name it: ``backbone`` then ``keypoint_head``."""

    def __init__(self, embed_dim: int = 768, depth: int = 12, num_heads: int = 12,
                 img_size: Sequence[int] = (256, 192), num_joints: int = 17,
                 deconv_features: Sequence[int] = (256, 256), mlp_ratio: float = 4.0,
                 mimb_slots=(False,) * 4, slot_blocks: Optional[Sequence[int]] = None):
        super().__init__()
        self.backbone = ViT(img_size, embed_dim, depth, num_heads, mlp_ratio, mimb_slots,
                            slot_blocks)
        self.keypoint_head = TopdownHeatmapSimpleHead(embed_dim, num_joints,
                                                      tuple(deconv_features))

    def forward(self, x: torch.Tensor, lambda_vec: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self.keypoint_head(self.backbone(x, lambda_vec))


def build_vitpose(arch: str, num_joints: int = 17, mimb_slots=(False,) * 4,
                  img_size: Sequence[int] = (256, 192)) -> TopDownViTPose:
    """ViTPose-{S,B,L,H} (``arch`` a key of SIZES) at ``img_size``."""
    dim, depth, heads = SIZES[arch]
    return TopDownViTPose(dim, depth, heads, img_size, num_joints, mimb_slots=mimb_slots)
