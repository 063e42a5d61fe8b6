"""Backbone → (attention) → projection → spatial dropout → (attention) → pooling → dense head.

The shape shared by the classification papers: P000 (MHSA on the last 4×4 map before pooling,
FC 512 → 256), P002 (SpatialDropout2D → pooling → Dense → Dropout), P003 (GAP/GMP over an
EfficientNetV2). Every part is switchable; attention modules are built by the caller from the
attention registry and passed in, so this module stays a pure ``nn.Module``.
"""

from __future__ import annotations

from typing import Optional, Sequence

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


def _dense_stack(width: int, units: Sequence[int], dropout: float) -> tuple[list[nn.Module], int]:
    layers: list[nn.Module] = []
    for hidden in units:
        layers += [nn.Linear(width, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout)]
        width = hidden
    return layers, width


class ClassifierNet(nn.Module):
    """A feature extractor followed by the papers' configurable head.

    Args:
        backbone: Module mapping (N, 3, H, W) to features via ``forward_features`` (timm).
        num_features: Channel width of those features.
        num_outputs: 1 for a binary (sigmoid) head, K for a softmax head.
        pooling: ``gap`` or ``gmp``.
        dense_units: Hidden widths of the MLP (``[512, 256]`` as P000); empty puts the output
            layer right after pooling. Each hidden layer is Linear → ReLU → Dropout.
        dropout: Dropout after each hidden layer, and before the output layer when there is none.
        feature_format: Layout of 4-D backbone features, ``NCHW`` or ``NHWC`` (timm's
            ``output_fmt``); NHWC features are permuted to NCHW first.
        spatial_dropout: Channel dropout on the feature map (Keras' SpatialDropout2D).
        projection_channels: If > 0, a 1×1 convolution (+ BN + ReLU) to this width before the
            head attention and pooling (P000's "512 channels" reading for ResNet50/101).
        stage_attention: Applied to the backbone's feature map at its native width
            (placement ``last_stage``).
        head_attention: Applied after the projection and spatial dropout (placement ``head``).
    """

    def __init__(
        self,
        backbone: nn.Module,
        num_features: int,
        num_outputs: int,
        pooling: str = "gap",
        dense_units: Sequence[int] = (256,),
        dropout: float = 0.5,
        feature_format: str = "NCHW",
        spatial_dropout: float = 0.0,
        projection_channels: int = 0,
        stage_attention: Optional[nn.Module] = None,
        head_attention: Optional[nn.Module] = None,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.nhwc = feature_format == "NHWC"
        self.stage_attention = stage_attention or nn.Identity()
        width = num_features
        if projection_channels > 0:
            self.projection = nn.Sequential(
                nn.Conv2d(width, projection_channels, kernel_size=1, bias=False),
                nn.BatchNorm2d(projection_channels),
                nn.ReLU(inplace=True),
            )
            width = projection_channels
        else:
            self.projection = nn.Identity()
        self.spatial_dropout = nn.Dropout2d(spatial_dropout) if spatial_dropout > 0 else nn.Identity()
        self.head_attention = head_attention or nn.Identity()
        self.pool = GlobalPool(pooling)
        layers, width = _dense_stack(width, list(dense_units), dropout)
        if not dense_units:
            layers.append(nn.Dropout(dropout))
        self.head = nn.Sequential(*layers, nn.Linear(width, num_outputs))

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """The head's input map before pooling: (N, C', h, w), or (N, L, C) for token backbones."""
        features = self.backbone.forward_features(x)  # (N, C, h, w), (N, h, w, C) or (N, L, C)
        if features.ndim == 4 and self.nhwc:
            features = features.permute(0, 3, 1, 2)  # (N, C, h, w)
        if features.ndim != 4:
            return features
        features = self.stage_attention(features)
        return self.head_attention(self.spatial_dropout(self.projection(features)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.feature_map(x)))  # (N, num_outputs)
