"""The one registry of attention modules: (N, C, H, W) → (N, C, H, W), built as ``cls(channels, **kw)``.

"Attention type" is one categorical search parameter over ``ATTENTION.names()``; the P000
classifier head and the P004 ESG-ConvNeXt blocks both build their attention through
:func:`create_attention`::

    attn = create_attention("ela", 64, kernel_size=5)
    attn(torch.randn(2, 64, 8, 8)).shape  # torch.Size([2, 64, 8, 8])
    create_attention("elA", 64)
    # KeyError: Unknown attention module 'elA'; did you mean 'ela'? Valid names: cbam, eca, ...

What comes from where:

* ``none``: ``nn.Identity`` (accepts and ignores ``channels`` and any keyword).
* ``mhsa``: written here around timm's ``layers.Attention`` (QKV projection, scaled dot-product
  attention, output projection); adds the token reshaping, LayerNorm, residual and positional
  encodings (P000).
* ``ela``: timm's ``EfficientLocalAttn`` (``get_attn('ela')``) with P004's settings as defaults.
* ``simam``, ``gam``: written here (timm has neither), following P004's definitions.
* ``se``, ``cbam``, ``eca``: timm's ``SEModule``, ``CbamModule``, ``EcaModule`` unchanged.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import torch
from timm.layers import Attention, build_sincos2d_pos_embed, get_attn, trunc_normal_
from timm.layers.coord_attn import EfficientLocalAttn  # what get_attn("ela") returns
from torch import nn

from corrotune.registry import Registry

__all__ = [
    "ATTENTION",
    "ATTENTION_OPTIONS",
    "POS_ENCODINGS",
    "EfficientLocalAttention",
    "GlobalAttentionMechanism",
    "MultiHeadSelfAttention2d",
    "SimAM",
    "create_attention",
    "create_attention_with_options",
]

ATTENTION: Registry[type[nn.Module]] = Registry("attention module")
POS_ENCODINGS = ("none", "learned", "sincos")

ATTENTION.register("none")(nn.Identity)
ATTENTION.register("se")(get_attn("se"))  # SEModule, Hu et al. 2018: rd_ratio 1/16, divisor 8
ATTENTION.register("cbam")(get_attn("cbam"))  # CbamModule, Woo et al. 2018: rd_ratio 1/16, 7×7
ATTENTION.register("eca")(get_attn("eca"))  # EcaModule, Wang et al. 2020: kernel adapted to C


def create_attention(name: str, channels: int, **kwargs: Any) -> nn.Module:
    """Builds the attention module registered as ``name``.

    Args:
        name: A key of :data:`ATTENTION` (``"none"`` gives ``nn.Identity()``).
        channels: Channel count C of the (N, C, H, W) input.
        **kwargs: Module-specific options (``heads`` for ``mhsa``, ``kernel_size`` for ``ela``...).

    Raises:
        KeyError: for an unknown name, with a did-you-mean hint and the valid names.
    """
    return ATTENTION.get(name)(channels, **kwargs)


ATTENTION_OPTIONS: dict[str, dict[str, str]] = {
    "ela": {"ela_kernel": "kernel_size"},
    "gam": {"gam_rate": "rate"},
    "simam": {"simam_lambda": "e_lambda"},
}
"""Config key → module keyword, per attention name: the options a study file sets by name."""


def create_attention_with_options(
    name: str, channels: int, *, ela_kernel: int = 5, gam_rate: int = 4, simam_lambda: float = 1e-4
) -> nn.Module:
    """Builds attention ``name`` with only the config options that belong to it.

    A study file sets ``ela_kernel``, ``gam_rate`` and ``simam_lambda`` once; whichever module a
    slot holds takes its own (``ela`` gets ``kernel_size=ela_kernel``...), the others ignore them.

    Args:
        name: A key of :data:`ATTENTION`.
        channels: Channel count C of the (N, C, H, W) input.
        ela_kernel: ELA's 1-D kernel size.
        gam_rate: GAM's reduction rate r.
        simam_lambda: SimAM's λ.

    Raises:
        KeyError: for an unknown name, with a did-you-mean hint and the valid names.
    """
    options = {"ela_kernel": ela_kernel, "gam_rate": gam_rate, "simam_lambda": simam_lambda}
    kwargs = {keyword: options[key] for key, keyword in ATTENTION_OPTIONS.get(name, {}).items()}
    return create_attention(name, channels, **kwargs)


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


@ATTENTION.register("mhsa")
class MultiHeadSelfAttention2d(nn.Module):
    """Multi-head self-attention over the H·W spatial tokens of a feature map (P000).

    P000 states scaled dot-product attention softmax(QKᵀ/√d_k)V, multi-head, with an output
    projection; the rest is our choice. Tokens are the C-vectors at each position (d_k = C/heads).
    The block is **pre-norm** (ViT style)::

        t = tokens(x);  h = LayerNorm(t) + pos;  y = proj(MHSA(h));  out = t + y

    so the residual path carries the raw input: with a zero output projection the module is the
    identity, and the attention branch is invariant to a per-token affine rescaling of x.
    The positional encoding enters the attention input only (Q, K and V), never the residual.
    Attention is timm's ``layers.Attention`` (fused ``scaled_dot_product_attention``).

    Args:
        channels: C; must be divisible by ``heads``.
        heads: Number of heads (default 8; P000 does not state it).
        residual: Add the input to the attention output (default True).
        norm: LayerNorm over channels on the attention input (default True).
        pos_encoding: ``"none"`` (default, as P000 states none; the module is then
            permutation-equivariant over positions), ``"learned"`` (a (1, tokens, C) table,
            truncated-normal std 0.02) or ``"sincos"`` (timm's fixed 2-D sin-cos encoding, built
            for each H×W; computed at width ceil(C/4)·4 and cut to C).
        tokens: H·W of the map; required for ``"learned"`` (16 for P000's 4×4 map). The table is
            created eagerly, not at the first forward, so an optimiser built before the first
            batch sees it and checkpoints load into a fresh module. Another H·W raises ValueError.
        dropout: Dropout on the attention weights and after the output projection (default 0).
        qkv_bias: Bias in the QKV projection (default True, like ``nn.MultiheadAttention``).

    Raises:
        ValueError: ``channels % heads != 0`` (the message lists the valid head counts), an
            unknown ``pos_encoding``, or ``"learned"`` without ``tokens``.
    """

    def __init__(
        self,
        channels: int,
        heads: int = 8,
        residual: bool = True,
        norm: bool = True,
        pos_encoding: str = "none",
        tokens: int | None = None,
        dropout: float = 0.0,
        qkv_bias: bool = True,
    ) -> None:
        super().__init__()
        if heads < 1 or channels % heads:
            raise ValueError(
                f"mhsa: channels={channels} is not divisible by heads={heads}; "
                f"valid head counts: {', '.join(map(str, _divisors(channels)))}"
            )
        if pos_encoding not in POS_ENCODINGS:
            raise ValueError(f"mhsa: pos_encoding must be one of {POS_ENCODINGS}, got {pos_encoding!r}")
        if pos_encoding == "learned" and (tokens is None or tokens < 1):
            raise ValueError("mhsa: pos_encoding='learned' needs tokens=H*W (16 for a 4x4 map)")
        self.channels = channels
        self.heads = heads
        self.residual = residual
        self.pos_encoding = pos_encoding
        self.norm = nn.LayerNorm(channels) if norm else nn.Identity()
        self.attn = Attention(channels, num_heads=heads, qkv_bias=qkv_bias, attn_drop=dropout, proj_drop=dropout)
        if pos_encoding == "learned":
            self.pos_embed = nn.Parameter(torch.zeros(1, tokens, channels))
            trunc_normal_(self.pos_embed, std=0.02)
        else:
            self.register_parameter("pos_embed", None)

    def _positions(self, h: int, w: int, like: torch.Tensor) -> torch.Tensor | None:
        """The (1, H·W, C) encoding for an H×W map, or None."""
        if self.pos_encoding == "learned":
            if self.pos_embed.shape[1] != h * w:
                raise ValueError(
                    f"mhsa: learned positions were built for {self.pos_embed.shape[1]} tokens, got {h}x{w}={h * w}"
                )
            return self.pos_embed
        if self.pos_encoding == "sincos":
            dim = 4 * math.ceil(self.channels / 4)
            table = build_sincos2d_pos_embed([h, w], dim=dim, device=like.device, dtype=like.dtype)
            return table[:, : self.channels].unsqueeze(0)
        return None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape  # (N, C, H, W)
        tokens = x.flatten(2).transpose(1, 2)  # (N, H·W, C)
        y = self.norm(tokens)  # (N, H·W, C)
        pos = self._positions(h, w, y)
        if pos is not None:
            y = y + pos  # (N, H·W, C)
        y = self.attn(y)  # (N, H·W, C): proj(softmax(QKᵀ/√d_k)V)
        if self.residual:
            y = tokens + y
        return y.transpose(1, 2).reshape(n, c, h, w)  # (N, C, H, W)


class _FittedGroupNorm(nn.GroupNorm):
    """GroupNorm with the largest group count ≤ ``max_groups`` that divides the channels."""

    def __init__(self, num_channels: int, max_groups: int = 16, **kwargs: Any) -> None:
        groups = max(d for d in _divisors(num_channels) if d <= max(1, max_groups))
        super().__init__(groups, num_channels, **kwargs)


@ATTENTION.register("ela")
class EfficientLocalAttention(EfficientLocalAttn):
    """Efficient Local Attention (Xu & Wan 2024) as P004 inserts it: timm's implementation.

    timm's ``EfficientLocalAttn`` (``get_attn('ela')``) with P004's description as defaults:
    strip pooling z_h (mean over W) and z_w (mean over H), depthwise 1-D conv of ``kernel_size``
    5, GroupNorm, **no** activation before the sigmoid (timm's default is SiLU), and
    Y = x · y_h · y_w — a pure gate in (0, 1). timm uses one conv and one GroupNorm per direction
    where the ELA reference code shares them (an [external default] in papers.md; P004's text
    does not say).

    Args:
        channels: C.
        kernel_size: Odd 1-D kernel (default 5, P004; the ELA paper uses 5 or 7).
        groups: GroupNorm groups (default 16, the ELA reference); the largest divisor of C that is
            ≤ ``groups`` is used, so C=40 gets 10 groups and C=6 gets 6.
        **kwargs: Passed to timm (``act_layer`` default ``nn.Identity``, ``bias``, ``gate_layer``,
            ``has_skip``).

    Raises:
        ValueError: an even ``kernel_size`` (the strips would change length).
    """

    def __init__(self, channels: int, kernel_size: int = 5, groups: int = 16, **kwargs: Any) -> None:
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"ela: kernel_size must be odd and positive, got {kernel_size}")
        kwargs.setdefault("act_layer", nn.Identity)
        super().__init__(
            channels,
            kernel_size=kernel_size,
            norm_layer=partial(_FittedGroupNorm, max_groups=groups),
            **kwargs,
        )
    # forward is timm's: (N, C, H, W) -> x · sigmoid(GN(conv_h(z_h))) · sigmoid(GN(conv_w(z_w)))


@ATTENTION.register("simam")
class SimAM(nn.Module):
    """Parameter-free SimAM (Yang et al. 2021) as P004 defines it.

    Per channel, with μ and σ² = Σ(x − μ)²/(H·W − 1) over the map::

        1/e* = (x − μ)² / (4(σ² + λ)) + 0.5,    out = x · sigmoid(1/e*)

    For a 1×1 map (H·W − 1 = 0) σ² is taken as 0, so out = x · sigmoid(0.5).

    Args:
        channels: Accepted for the common signature and ignored.
        e_lambda: λ > 0 (default 1e-4; P004 does not state it, the SimAM reference uses 1e-4).
    """

    def __init__(self, channels: int | None = None, e_lambda: float = 1e-4) -> None:
        super().__init__()
        if e_lambda <= 0:
            raise ValueError(f"simam: e_lambda must be positive, got {e_lambda}")
        self.e_lambda = e_lambda

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]  # x: (N, C, H, W)
        n = max(h * w - 1, 1)
        d = (x - x.mean(dim=(2, 3), keepdim=True)).pow(2)  # (N, C, H, W)
        variance = d.sum(dim=(2, 3), keepdim=True) / n  # (N, C, 1, 1)
        inverse_energy = d / (4 * (variance + self.e_lambda)) + 0.5  # (N, C, H, W)
        return x * torch.sigmoid(inverse_energy)  # (N, C, H, W)

    def extra_repr(self) -> str:
        return f"e_lambda={self.e_lambda}"


class _GamChannelGate(nn.Module):
    """GAM's M_C: per-position MLP over channels (C → C/r → C), sigmoid. Returns the gate."""

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.mlp(x.permute(0, 2, 3, 1))  # (N, H, W, C)
        return torch.sigmoid(y.permute(0, 3, 1, 2))  # (N, C, H, W), in (0, 1)


class _GamSpatialGate(nn.Module):
    """GAM's M_S: k×k conv C → C/r, BN, ReLU, k×k conv C/r → C, BN, sigmoid. Returns the gate."""

    def __init__(self, channels: int, hidden: int, kernel_size: int) -> None:
        super().__init__()
        pad = kernel_size // 2
        self.conv = nn.Sequential(
            nn.Conv2d(channels, hidden, kernel_size, padding=pad),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, kernel_size, padding=pad),
            nn.BatchNorm2d(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.conv(x))  # (N, C, H, W), in (0, 1)


@ATTENTION.register("gam")
class GlobalAttentionMechanism(nn.Module):
    """Global Attention Mechanism (Liu et al. 2021) as P004 places it.

    F2 = M_C(F1) ⊗ F1, then F3 = M_S(F2) ⊗ F2 (channel gate first, spatial gate second). Unlike
    the widely copied reference code, M_C ends in the sigmoid the paper's formula has, so the
    whole module is a gate in (0, 1) on x.

    Args:
        channels: C.
        rate: Reduction r for both sub-modules (default 4, the GAM paper's; P004 does not state
            it); hidden width max(1, C // r), so C < r still works.
        kernel_size: Odd spatial kernel (default 7).
    """

    def __init__(self, channels: int, rate: int = 4, kernel_size: int = 7) -> None:
        super().__init__()
        if rate < 1:
            raise ValueError(f"gam: rate must be >= 1, got {rate}")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"gam: kernel_size must be odd and positive, got {kernel_size}")
        hidden = max(1, channels // rate)
        self.channel = _GamChannelGate(channels, hidden)
        self.spatial = _GamSpatialGate(channels, hidden, kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x * self.channel(x)  # (N, C, H, W): F2
        return x * self.spatial(x)  # (N, C, H, W): F3
