"""Backbone → global pooling → dense head, the shape shared by the papers' classifiers."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["ClassifierNet", "GlobalPool"]


class GlobalPool(nn.Module):
    """Global average (``gap``) or max (``gmp``) pooling of a feature map or token sequence."""

    def __init__(self, kind: str = "gap") -> None:
        super().__init__()
        if kind not in ("gap", "gmp"):
            raise ValueError(f"pooling must be 'gap' or 'gmp', got {kind!r}")
        self.kind = kind

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dims = (2, 3) if x.ndim == 4 else (1,)  # (N, C, H, W) or (N, L, C)
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
    """

    def __init__(
        self,
        backbone: nn.Module,
        num_features: int,
        num_outputs: int,
        pooling: str = "gap",
        dense_units: int = 256,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.pool = GlobalPool(pooling)
        layers: list[nn.Module] = []
        width = num_features
        if dense_units > 0:
            layers += [nn.Linear(width, dense_units), nn.ReLU(inplace=True)]
            width = dense_units
        layers += [nn.Dropout(dropout), nn.Linear(width, num_outputs)]
        self.head = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.backbone.forward_features(x)  # (N, C, h, w)
        return self.head(self.pool(features))  # (N, num_outputs)
