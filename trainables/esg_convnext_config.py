"""Typed defaults of the ``esg_convnext`` trainable (P004): the single place they live.

The network keys are :class:`~trainables.models.esg_convnext.EsgConvNeXt`'s switches (see
``docs/esg_convnext.md``); the training defaults are P004's: cross-entropy, AdamW with a linear
warm-up then cosine decay, lr 1e-4, batch 64, 224 px, 100 epochs, offline ×4 expansion of the
train split by rotation, noise and brightness. Cheap to import (no torch).
"""

from __future__ import annotations

from typing import ClassVar, Literal, Optional, Union

from pydantic import Field, model_validator

from trainables.training_config import AugmentationSpec, TrainingConfig

__all__ = ["EsgConvNeXtConfig"]

Variant = Literal["convnext", "block1", "block1_block2", "block1_block2_attention", "esg"]


class EsgConvNeXtConfig(TrainingConfig):
    """One ESG-ConvNeXt trial: the shared training keys (:class:`TrainingConfig`) plus these.

    Attributes:
        size: ConvNeXt V2 size (``atto``, ``femto``, ``pico``, ``nano``, ``tiny``).
        depths / dims: Four stage depths / widths replacing the size's (``None``: the size's).
        variant: P004's Table 2 row: ``convnext``, ``block1``, ``block1_block2``,
            ``block1_block2_attention`` or ``esg``; the switches below override it.
        attention_dw / attention_expand / attention_project: Attention after the depthwise
            7×7, after the 1×1 expansion, after the final projection: a name of the attention
            registry (``none``, ``ela``, ``simam``, ``gam``, ...); ``None`` takes the variant's.
        ela_kernel / gam_rate / simam_lambda: ELA's kernel, GAM's rate, SimAM's λ.
        block1 / block2: The parallel residual / inverted-residual branches (``None``: the variant's).
        branch_fusion: ``sum`` or ``concat`` of the main path and the branches.
        branch_expansion: block2's expansion ratio.
        downsample_act: ``none`` or ``prelu`` after each downsampling (``None``: the variant's).
        block_act: ``gelu`` or ``prelu`` after the expansion.
        drop_path_rate: Stochastic depth.
        label_smoothing: Cross-entropy label smoothing.
        class_weights: Per-class loss weights in class order, ``balanced`` or ``None``.
        positive_class: On a two-class dataset, the class binary metrics score as positive.
        offline_expansion: P004's offline ×k expansion of the train split, after splitting
            (P004 expanded before splitting; ``docs/esg_convnext.md`` says why we don't).
        offline_augmentation: The augmentation that makes those copies (P004: rotation, noise,
            brightness = the ``p004`` preset).
        gradcam_images: Grad-CAM overlays of the first N validation images (as the classifier).
        gradcam_per_class: Grad-CAM of the first test image of every class (``gradcam_class_*``).
        tsne: t-SNE of the penultimate test features (seed 42) as ``tsne.png`` and ``tsne.csv``.
        fps_repeats: Timed forwards per FPS figure (``model/fps_b1``, ``model/fps``).
    """

    SELECT_METRICS: ClassVar[tuple[str, ...]] = (
        "val/accuracy", "val/f1", "val/precision", "val/recall", "val/roc_auc", "val/pr_auc", "val/kappa", "val/loss"
    )

    size: Literal["atto", "femto", "pico", "nano", "tiny"] = "atto"
    depths: Optional[list[int]] = None
    dims: Optional[list[int]] = None
    variant: Variant = "esg"
    attention_dw: Optional[str] = None
    attention_expand: Optional[str] = None
    attention_project: Optional[str] = None
    ela_kernel: int = Field(5, ge=1)
    gam_rate: int = Field(4, ge=1)
    simam_lambda: float = Field(1e-4, gt=0.0)
    block1: Optional[bool] = None
    block2: Optional[bool] = None
    branch_fusion: Literal["sum", "concat"] = "sum"
    branch_expansion: float = Field(4.0, gt=0.0)
    downsample_act: Optional[Literal["none", "prelu"]] = None
    block_act: Literal["gelu", "prelu"] = "gelu"
    drop_path_rate: float = Field(0.0, ge=0.0, lt=1.0)
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0)
    class_weights: Union[Literal["balanced"], list[float], None] = None
    positive_class: Optional[str] = None
    offline_expansion: int = Field(4, ge=1)
    offline_augmentation: AugmentationSpec = "p004"
    gradcam_images: int = Field(0, ge=0)
    gradcam_per_class: bool = True
    tsne: bool = True
    fps_repeats: int = Field(5, ge=1)
    # P004's training defaults (weight decay and warm-up length are not stated: ConvNeXt V2's
    # fine-tuning weight decay 0.05, 5 warm-up epochs)
    select_metric: str = "val/f1"
    optimizer: Literal["adam", "adamw", "sgd"] = "adamw"
    lr: float = Field(1e-4, gt=0.0)
    weight_decay: float = Field(0.05, ge=0.0)
    lr_schedule: Literal["constant", "cosine"] = "cosine"
    warmup_epochs: int = Field(5, ge=0)
    batch_size: int = Field(64, ge=1)
    epochs: int = Field(100, ge=1)
    image_size: int = Field(224, ge=32)
    augmentation: AugmentationSpec = "none"  # P004 augments offline only

    @model_validator(mode="after")
    def _stages(self) -> "EsgConvNeXtConfig":
        for key in ("depths", "dims"):
            value = getattr(self, key)
            if value is not None and (len(value) != 4 or min(value) < 1):
                raise ValueError(f"{key} must be four positive integers (one per stage), got {value}")
        if self.warmup_epochs and self.warmup_epochs >= self.epochs - self.phase1_epochs:
            raise ValueError(
                f"warmup_epochs ({self.warmup_epochs}) must be below the epochs it warms up "
                f"({self.epochs - self.phase1_epochs}); set warmup_epochs lower (P004's default is 5 of 100)"
            )
        return self

    @property
    def network_kwargs(self) -> dict:
        """Keyword arguments of ``EsgConvNeXt`` (``timm.create_model("esg_convnext_<size>", ...)``)."""
        keys = (
            "variant", "attention_dw", "attention_expand", "attention_project", "ela_kernel", "gam_rate",
            "simam_lambda", "block1", "block2", "branch_fusion", "branch_expansion", "downsample_act",
            "block_act", "drop_path_rate",
        )
        kwargs = {key: getattr(self, key) for key in keys}
        kwargs.update({key: tuple(getattr(self, key)) for key in ("depths", "dims") if getattr(self, key) is not None})
        return kwargs
