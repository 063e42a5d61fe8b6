"""Typed defaults of the ``classifier`` trainable: the single place they live.

Every variant of the classification papers (P000, P002, P003) is a value of these keys; see
``docs/classifier.md`` for the mapping.
"""

from __future__ import annotations

from typing import ClassVar, Literal, Optional, Union

from pydantic import Field, model_validator

from trainables.training_config import AugmentationSpec, TrainingConfig

__all__ = ["ClassifierConfig"]


class ClassifierConfig(TrainingConfig):
    """One classifier trial: the shared training keys (:class:`TrainingConfig`) plus these.

    Attributes:
        backbone: A ``timm`` model name (``resnet18``, ``tf_efficientnetv2_b0``, ...) or a
            paper's name (``ResNet50``, ``EfficientNetV2B0``: ``PAPER_BACKBONES``).
        pretrained: ``False``, ``True`` (timm hub; fails fast offline) or a local
            ``.safetensors``/``.pth`` weights file.
        spatial_dropout: Channel dropout on the backbone's feature map (P002).
        attention: Attention type from the attention registry (``none``, ``mhsa``, ``ela``,
            ``simam``, ``gam``, ...).
        attention_placement: ``none``; ``last_stage`` (on the last feature map before pooling,
            as P000's MHSA on the 4×4 map); ``penultimate_stage`` (between the backbone's last
            two stages); ``head`` (after the projection and spatial dropout).
        attention_heads: MHSA heads; ``attention_residual`` / ``attention_norm``: MHSA's
            residual connection and LayerNorm.
        projection_channels: 0 keeps the backbone's native width; > 0 adds a 1×1 projection
            to that width before the head (P000's 512-channel reading for ResNet50/101).
        pooling: Global pooling of the last feature map: average (gap) or max (gmp).
        dense_units: Hidden dense layers: an int (one layer; 0 = none) or a list (``[512, 256]``).
        dropout: Dropout after each dense layer (and before the output layer without any).
        loss: ``bce`` (binary, one logit), ``ce`` (softmax over K logits), ``focal``,
            ``modified_focal`` (P000), or ``auto`` (bce for two classes, ce otherwise).
            Focal losses use one logit for two classes, K logits otherwise.
        focal_alpha / focal_gamma: α (``None``: no α weighting) and γ of the focal losses.
        label_smoothing: Label smoothing of bce/ce.
        class_weights: Per-class loss weights in class order, ``balanced`` (inverse train
            frequency) or ``None``.
        positive_class: Class name scored as positive by binary metrics; default the
            second class in sorted order (P003's numbers need ``NOCORROSION``).
        select_metric: Validation metric that picks the best epoch (one of ``SELECT_METRICS``).
        fine_tune_fraction: Top fraction of backbone layers that train (0 = frozen backbone,
            1 = all); a layer is a parameterised leaf module in forward order
            (``trainables/finetune.py``); BatchNorm statistics stay frozen in frozen layers.
        phase1_epochs: > 0 enables P003's two-phase schedule: the head alone trains for this
            many epochs at ``phase1_lr``, then ``fine_tune_fraction`` of the backbone joins at
            ``lr`` for the remaining ``epochs - phase1_epochs`` (one continuous curve for ASHA).
        augmentation: Training-batch augmentation: a preset (``p000``, ``p002``, ``p003``,
            ``p004``), ``none``, or a list of ops (``["hflip", {"rotate": {"degrees": 10}}]``);
            see ``trainables/data/augment.py``. The other shared keys (optimiser, schedule,
            batch size, epochs, image size, normalisation, seed, device, AMP, ...) are
            documented on :class:`TrainingConfig`.
        offline_expansion: P004's offline ×k expansion: the train split (only, after
            splitting) is grown to k× its size with augmented copies once, at trial start.
        offline_augmentation: The augmentation that makes those copies (default: ``augmentation``).
        artifacts: Write confusion matrix, ROC, PR, curves and Grad-CAM overlays at the end.
        gradcam_images: How many validation images get a Grad-CAM overlay.
    """

    SELECT_METRICS: ClassVar[tuple[str, ...]] = (
        "val/accuracy", "val/f1", "val/precision", "val/recall", "val/roc_auc", "val/pr_auc", "val/kappa", "val/loss"
    )

    backbone: str = "resnet18"
    pretrained: Union[bool, str] = False
    spatial_dropout: float = Field(0.0, ge=0.0, lt=1.0)
    attention: str = "none"
    attention_placement: Literal["none", "last_stage", "penultimate_stage", "head"] = "none"
    attention_heads: int = Field(8, ge=1)
    attention_residual: bool = True
    attention_norm: bool = True
    projection_channels: int = Field(0, ge=0)
    pooling: Literal["gap", "gmp"] = "gap"
    dense_units: Union[int, list[int]] = 256
    dropout: float = Field(0.5, ge=0.0, lt=1.0)
    loss: Literal["auto", "bce", "ce", "focal", "modified_focal"] = "auto"
    focal_alpha: Optional[float] = Field(0.25, ge=0.0, le=1.0)
    focal_gamma: float = Field(2.0, ge=0.0)
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0)
    class_weights: Union[Literal["balanced"], list[float], None] = None
    positive_class: Optional[str] = None
    select_metric: str = "val/accuracy"
    offline_expansion: int = Field(1, ge=1)
    offline_augmentation: AugmentationSpec = None
    gradcam_images: int = Field(8, ge=0)

    @model_validator(mode="after")
    def _consistent(self) -> "ClassifierConfig":
        if (self.attention == "none") != (self.attention_placement == "none"):
            raise ValueError(
                f"attention {self.attention!r} with attention_placement {self.attention_placement!r}: "
                "set both, or neither"
            )
        widths = [self.dense_units] if isinstance(self.dense_units, int) else self.dense_units
        if any(u < 0 for u in widths) or (isinstance(self.dense_units, list) and 0 in widths):
            raise ValueError(f"dense_units must be 0, a positive width or a list of them, got {self.dense_units!r}")
        return self

    @property
    def hidden_units(self) -> list[int]:
        """``dense_units`` as a list of hidden widths (``0`` → none)."""
        if isinstance(self.dense_units, int):
            return [self.dense_units] if self.dense_units > 0 else []
        return list(self.dense_units)
