"""The parts of an ESG-ConvNeXt block (P004): timm's ConvNeXt V2 block with every module switchable.

One block, with every switch on (``docs/esg_convnext.md`` draws the whole network)::

    x ─┬─ dw 7×7 → attn_dw → LN → fc1 C→4C → act → attn_expand → GRN → fc2 4C→C → attn_project ─┐
       ├─ block1: 3×3 conv → PReLU → 3×3 conv → PReLU  (+ 1×1 conv of x) ─────────────────────┤ fuse
       ├─ block2: 1×1 C→eC → 3×3 dw → 1×1 eC→C → SimAM ────────────────────────────────────────┘ (sum|concat)
       └──────────────────────────────────────────────────────────── + DropPath(fused) ──→ out

With every switch off the block is timm's ``ConvNeXtBlock(conv_mlp=True, use_grn=True,
ls_init_value=None)`` with the same parameter names (``conv_dw``, ``norm``, ``mlp.fc1``,
``mlp.grn``, ``mlp.fc2``), so timm ConvNeXt V2 weights load unchanged.
"""

from __future__ import annotations

from functools import partial, reduce
from typing import Callable, Optional

import torch
from timm.layers import ConvNormAct, DropPath, GlobalResponseNormMlp, LayerNorm2d, create_conv2d, get_act_layer
from torch import nn

from trainables.models.attention import SimAM

__all__ = ["ACTIVATIONS", "FUSIONS", "BranchFusion", "EsgBlock", "EsgMlp", "InvertedResidualBranch", "ResidualBranch"]

ACTIVATIONS = ("gelu", "prelu")
"""``block_act`` values: the activation after the 1×1 expansion."""
FUSIONS = ("sum", "concat")
"""``branch_fusion`` values: how the main path and the parallel branches are joined."""


def _activation(name: str) -> Callable[[int], nn.Module]:
    """``channels → module``. PReLU has one learnable slope per channel (P004 says only "PReLU")."""
    if name == "gelu":
        gelu = get_act_layer("gelu")  # timm's GELU, the class timm's ConvNeXt uses
        return lambda channels: gelu()
    if name == "prelu":
        return lambda channels: nn.PReLU(num_parameters=channels)
    raise ValueError(f"block_act must be one of {ACTIVATIONS}, got {name!r}")


class EsgMlp(GlobalResponseNormMlp):
    """timm's 1×1-conv GRN MLP (fc1 → act → GRN → fc2) with an attention slot after the activation.

    Args:
        channels: C (input and output).
        hidden: Expanded width (4C in ConvNeXt V2).
        act: ``gelu`` or ``prelu`` (per-channel slopes).
        attention: Applied to the (N, hidden, H, W) activation, before GRN (``nn.Identity`` for none).
    """

    def __init__(self, channels: int, hidden: int, act: str = "gelu", attention: Optional[nn.Module] = None) -> None:
        super().__init__(channels, hidden, act_layer=partial(_activation(act), hidden), use_conv=True)
        self.attn = attention if attention is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.fc1(x))  # (N, 4C, H, W)
        x = self.attn(x)  # (N, 4C, H, W): SimAM in P004
        return self.fc2(self.grn(x))  # (N, C, H, W); timm's drop1/drop2 are p=0 in ConvNeXt


class ResidualBranch(nn.Module):
    """P004's block1: 3×3 conv → PReLU → 3×3 conv → PReLU, plus a 1×1 conv of the input.

    P004 draws the 1×1 conv as the one "raising channels"; inside a block input and output
    widths are equal, so it is a learned 1×1 skip (kept: it is part of the paper's branch).
    No normalisation: P004 lists none.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.act1 = nn.PReLU(num_parameters=channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.act2 = nn.PReLU(num_parameters=channels)
        self.skip = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act2(self.conv2(self.act1(self.conv1(x))))  # (N, C, H, W)
        return y + self.skip(x)  # (N, C, H, W)


class InvertedResidualBranch(nn.Module):
    """P004's block2: 1×1 expand → 3×3 depthwise → 1×1 project → SimAM.

    Norms and activations follow MobileNetV2's inverted residual [external default; P004 lists
    none]: BatchNorm + ReLU6 after the expansion and the depthwise conv, BatchNorm (linear) after
    the projection. No identity skip of its own: the block's residual add is the skip.

    Args:
        channels: C.
        expansion: Hidden width ``max(1, round(C · expansion))`` (``branch_expansion``).
        simam_lambda: SimAM's λ.
    """

    def __init__(self, channels: int, expansion: float = 4.0, simam_lambda: float = 1e-4) -> None:
        super().__init__()
        hidden = max(1, round(channels * expansion))
        self.expand = ConvNormAct(channels, hidden, 1, act_layer=nn.ReLU6)
        self.conv_dw = ConvNormAct(hidden, hidden, 3, groups=hidden, act_layer=nn.ReLU6)
        self.project = ConvNormAct(hidden, channels, 1, apply_act=False)
        self.attn = SimAM(channels, e_lambda=simam_lambda)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv_dw(self.expand(x))  # (N, eC, H, W)
        return self.attn(self.project(y))  # (N, C, H, W)


class BranchFusion(nn.Module):
    """Joins the main path with the parallel branches: ``sum`` or ``concat`` → 1×1 conv back to C.

    Args:
        mode: ``sum`` (no parameters) or ``concat`` (a 1×1 conv of ``inputs · C`` → C, with bias).
        channels: C of every input.
        inputs: Number of tensors joined (main path + branches).
    """

    def __init__(self, mode: str, channels: int, inputs: int) -> None:
        super().__init__()
        if mode not in FUSIONS:
            raise ValueError(f"branch_fusion must be one of {FUSIONS}, got {mode!r}")
        self.mode = mode
        self.proj = nn.Conv2d(inputs * channels, channels, 1) if mode == "concat" else None

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        if self.proj is None:
            return reduce(torch.add, features)  # (N, C, H, W)
        return self.proj(torch.cat(features, dim=1))  # (N, k·C, H, W) → (N, C, H, W)

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}"


class EsgBlock(nn.Module):
    """A ConvNeXt V2 block with P004's attention slots and parallel multi-scale branches.

    Args:
        channels: C.
        attention_dw / attention_expand / attention_project: Modules for the three slots (after
            the depthwise 7×7 on C channels, after the expansion on 4C, after the projection on C);
            ``None`` leaves a slot empty (``nn.Identity``).
        block1: Add :class:`ResidualBranch`; ``block2``: add :class:`InvertedResidualBranch`.
        branch_fusion: ``sum`` or ``concat`` (only used when a branch is on).
        branch_expansion: block2's expansion ratio.
        simam_lambda: λ of block2's SimAM.
        block_act: ``gelu`` or ``prelu`` after the expansion.
        drop_path: Stochastic-depth probability of the fused residual.
        mlp_ratio: Expansion of the main path (4, ConvNeXt V2).
    """

    def __init__(
        self,
        channels: int,
        attention_dw: Optional[nn.Module] = None,
        attention_expand: Optional[nn.Module] = None,
        attention_project: Optional[nn.Module] = None,
        block1: bool = False,
        block2: bool = False,
        branch_fusion: str = "sum",
        branch_expansion: float = 4.0,
        simam_lambda: float = 1e-4,
        block_act: str = "gelu",
        drop_path: float = 0.0,
        mlp_ratio: int = 4,
    ) -> None:
        super().__init__()
        self.conv_dw = create_conv2d(channels, channels, kernel_size=7, depthwise=True, bias=True)
        self.attn_dw = attention_dw if attention_dw is not None else nn.Identity()
        self.norm = LayerNorm2d(channels)
        self.mlp = EsgMlp(channels, mlp_ratio * channels, act=block_act, attention=attention_expand)
        self.attn_project = attention_project if attention_project is not None else nn.Identity()
        self.block1 = ResidualBranch(channels) if block1 else None
        self.block2 = InvertedResidualBranch(channels, branch_expansion, simam_lambda) if block2 else None
        branches = int(block1) + int(block2)
        self.fuse = BranchFusion(branch_fusion, channels, 1 + branches) if branches else None
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.attn_dw(self.conv_dw(x))  # (N, C, H, W): ELA in P004
        y = self.mlp(self.norm(y))  # (N, C, H, W)
        y = self.attn_project(y)  # (N, C, H, W): GAM in P004
        if self.fuse is not None:
            parts = [y]
            if self.block1 is not None:
                parts.append(self.block1(x))  # (N, C, H, W)
            if self.block2 is not None:
                parts.append(self.block2(x))  # (N, C, H, W)
            y = self.fuse(parts)  # (N, C, H, W)
        return self.drop_path(y) + x  # (N, C, H, W)
