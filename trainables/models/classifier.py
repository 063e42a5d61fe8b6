"""Backbone → global pooling → dense head, the shape shared by the papers' classifiers."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["ClassifierNet", "GlobalPool"]


class GlobalPool(nn.Module):
    """Global average (``gap``) or max (``gmp``) pooling of a feature map or token sequence.

    Args:
        kind: ``gap`` or ``gmp``.
        channels_last: 4-D inputs are (N, H, W, C) (timm's Swin and similar) instead of NCHW.
    """

    def __init__(self, kind: str = "gap", channels_last: bool = False) -> None:
        super().__init__()
        if kind not in ("gap", "gmp"):
            raise ValueError(f"pooling must be 'gap' or 'gmp', got {kind!r}")
        self.kind = kind
        self.channels_last = channels_last

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 4:
            dims = (1, 2) if self.channels_last else (2, 3)  # (N, H, W, C) or (N, C, H, W)
        else:
            dims = (1,)  # (N, L, C) tokens
        return x.mean(dim=dims) if self.kind == "gap" else x.amax(dim=dims)


class ClassifierNet(nn.Module):
    """A feature extractor followed by pooling and a small MLP head.

    Args:
        backbone: Module mapping (N, 3, H, W) to features via ``forward_features`` (timm).
        num_features: Channel width of those features.
        num_outputs: 1 for a binary (sigmoid) head, K for a softmax head.
        pooling: ``gap`` or ``gmp``.
        dense_units: Hidden width; 0 puts the output layer right after pooling.
        dropout: Dropout probability before the output layer.
        feature_format: Layout of 4-D backbone features, ``NCHW`` or ``NHWC`` (timm's
            ``output_fmt``).
    """

    def __init__(
        self,
        backbone: nn.Module,
        num_features: int,
        num_outputs: int,
        pooling: str = "gap",
        dense_units: int = 256,
        dropout: float = 0.5,
        feature_format: str = "NCHW",
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.pool = GlobalPool(pooling, channels_last=feature_format == "NHWC")
        layers: list[nn.Module] = []
        width = num_features
        if dense_units > 0:
            layers += [nn.Linear(width, dense_units), nn.ReLU(inplace=True)]
            width = dense_units
        layers += [nn.Dropout(dropout), nn.Linear(width, num_outputs)]
        self.head = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.backbone.forward_features(x)  # (N, C, h, w), (N, h, w, C) or (N, L, C)
        return self.head(self.pool(features))  # (N, num_outputs)
