"""Builds the classifier's network and loss from a :class:`ClassifierConfig`."""

from __future__ import annotations

import torch
from torch import nn
from torchvision.ops.misc import Permute

from trainables._backbones import create_backbone
from trainables.classifier_config import ClassifierConfig
from trainables.losses import create_loss
from trainables.models.attention import create_attention
from trainables.models.classifier import ClassifierNet

__all__ = ["build_loss", "build_model", "num_outputs", "positive_index"]


def num_outputs(cfg: ClassifierConfig, num_classes: int) -> int:
    """1 (sigmoid) for two classes unless the loss is ``ce``; K (softmax) otherwise.

    Raises:
        ValueError: ``bce`` with more than two classes.
    """
    if cfg.loss == "bce" and num_classes != 2:
        raise ValueError(f"loss: bce needs exactly two classes, the dataset has {num_classes}")
    return 1 if num_classes == 2 and cfg.loss != "ce" else num_classes


def _attention(cfg: ClassifierConfig, channels: int) -> nn.Module:
    kwargs = {}
    if cfg.attention == "mhsa":
        kwargs = {"heads": cfg.attention_heads, "residual": cfg.attention_residual, "norm": cfg.attention_norm}
    return create_attention(cfg.attention, channels, **kwargs)


def _insert_penultimate_attention(backbone: nn.Module, cfg: ClassifierConfig) -> None:
    """Wraps the backbone's second-to-last stage so its output passes through attention."""
    info = getattr(backbone, "feature_info", None)
    if not info or len(info) < 2:
        raise ValueError(f"backbone {cfg.backbone!r} exposes no stages; use attention_placement last_stage or head")
    stage = info[-2]
    module = backbone.get_submodule(stage["module"])
    attention = _attention(cfg, stage["num_chs"])
    if getattr(backbone, "output_fmt", "NCHW") == "NHWC":  # (N, H, W, C) stages, e.g. Swin
        attention = nn.Sequential(Permute([0, 3, 1, 2]), attention, Permute([0, 2, 3, 1]))
    backbone.set_submodule(stage["module"], nn.Sequential(module, attention))


def build_model(cfg: ClassifierConfig, num_classes: int) -> ClassifierNet:
    """The network for ``num_classes``, with attention where ``attention_placement`` says."""
    backbone = create_backbone(cfg.backbone, cfg.pretrained)
    width = backbone.num_features
    stage_attention = head_attention = None
    if cfg.attention_placement == "penultimate_stage":
        _insert_penultimate_attention(backbone, cfg)
    elif cfg.attention_placement == "last_stage":
        stage_attention = _attention(cfg, width)
    elif cfg.attention_placement == "head":
        head_attention = _attention(cfg, cfg.projection_channels or width)
    return ClassifierNet(
        backbone,
        num_features=width,
        num_outputs=num_outputs(cfg, num_classes),
        pooling=cfg.pooling,
        dense_units=cfg.hidden_units,
        dropout=cfg.dropout,
        feature_format=str(getattr(backbone, "output_fmt", "NCHW")),
        spatial_dropout=cfg.spatial_dropout,
        projection_channels=cfg.projection_channels,
        stage_attention=stage_attention,
        head_attention=head_attention,
    )


def _class_weights(cfg: ClassifierConfig, train_labels: torch.Tensor, num_classes: int) -> list[float] | None:
    if cfg.class_weights is None:
        return None
    if cfg.class_weights == "balanced":  # n / (K · n_c), as sklearn's "balanced"
        counts = torch.bincount(train_labels, minlength=num_classes).clamp(min=1).float()
        return (counts.sum() / (num_classes * counts)).tolist()
    if len(cfg.class_weights) != num_classes:
        raise ValueError(f"class_weights has {len(cfg.class_weights)} values for {num_classes} classes")
    return list(cfg.class_weights)


def build_loss(cfg: ClassifierConfig, num_classes: int, train_labels: torch.Tensor) -> nn.Module:
    """The loss module (called as ``loss(logits, targets)`` with integer targets)."""
    outputs = num_outputs(cfg, num_classes)
    name = cfg.loss if cfg.loss != "auto" else ("bce" if outputs == 1 else "ce")
    return create_loss(
        name,
        num_outputs=outputs,
        alpha=cfg.focal_alpha,
        gamma=cfg.focal_gamma,
        label_smoothing=cfg.label_smoothing,
        class_weights=_class_weights(cfg, train_labels, num_classes),
    )


def positive_index(cfg: ClassifierConfig, classes: tuple[str, ...]) -> int:
    """Label index that binary metrics score as positive."""
    if cfg.positive_class is None:
        return 1
    if cfg.positive_class not in classes:
        raise ValueError(f"positive_class {cfg.positive_class!r} is not a class of the dataset {list(classes)}")
    return classes.index(cfg.positive_class)
