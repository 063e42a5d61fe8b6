"""The training keys every trainable built on :func:`trainables.loop.fit` shares.

Each trainable's pydantic config inherits :class:`TrainingConfig` and adds its task's keys
(``ClassifierConfig``: backbone, head, losses; ``SegmenterConfig``: arch, encoder, masks), so
optimiser, schedule, fine-tuning and data-handling keys mean the same in every study.
Cheap to import (no torch).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator

from trainables.data.config import DataConfig

__all__ = ["AugmentationSpec", "TrainingConfig"]

AugmentationSpec = Union[str, list[Union[str, dict[str, Any]]], None]


class TrainingConfig(BaseModel):
    """Keys of the shared training loop. Search spaces suggest values for these same keys.

    Attributes:
        data: Dataset section (filled from the study's ``data``).
        select_metric: Validation metric that picks the best epoch, whose weights score the
            test split at the end (higher is better, except losses). Each trainable lists the
            metrics it reports in ``SELECT_METRICS``.
        optimizer: adam | adamw | sgd; ``momentum`` for sgd.
        lr_schedule: ``constant`` or ``cosine`` (after ``warmup_epochs`` of linear warm-up).
        fine_tune_fraction: Top fraction of backbone (encoder) layers that train (0 = frozen,
            1 = all); see ``trainables/finetune.py`` for what a layer is.
        phase1_epochs: > 0 enables the two-phase schedule: the head (decoder) alone trains for
            this many epochs at ``phase1_lr``, then ``fine_tune_fraction`` of the backbone joins
            at ``lr`` for the remaining ``epochs - phase1_epochs``.
        batch_size: Training batch size. A lone last sample joins the previous batch (a batch
            of one breaks BatchNorm).
        epochs: Epoch budget (the schedulers' ``max_t``).
        image_size: Square input side in pixels.
        resize: How images (and masks) reach ``image_size``: stretch, letterbox or center_crop.
        normalization: ``imagenet`` mean/std, ``unit`` (÷255) or ``caffe``.
        augmentation: Training-batch augmentation: a preset, ``none`` or a list of ops
            (``trainables/data/augment.py``); masks move with their images.
        seed: Seeds weights, batch order and augmentation.
        device: ``auto`` takes CUDA when present.
        amp: Mixed precision (CUDA only; ignored on CPU).
        channels_last: NHWC memory format (CUDA only; ignored on CPU).
        profile: Report params, FLOPs and batch-1 latency (``model/*``) once at the start.
        artifacts: Write the task's end-of-trial artifacts.
    """

    model_config = ConfigDict(extra="forbid")

    SELECT_METRICS: ClassVar[tuple[str, ...]] = ("val/loss",)
    """Metrics ``select_metric`` may name; each trainable's config sets its own."""

    data: DataConfig
    select_metric: str = "val/loss"
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    lr: float = Field(1e-3, gt=0.0)
    weight_decay: float = Field(0.0, ge=0.0)
    lr_schedule: Literal["constant", "cosine"] = "constant"
    warmup_epochs: int = Field(0, ge=0)
    fine_tune_fraction: float = Field(1.0, ge=0.0, le=1.0)
    phase1_epochs: int = Field(0, ge=0)
    phase1_lr: float = Field(1e-3, gt=0.0)
    batch_size: int = Field(32, ge=1)
    eval_batch_size: int = Field(128, ge=1)
    epochs: int = Field(10, ge=1)
    image_size: int = Field(128, ge=16)
    resize: Literal["stretch", "letterbox", "center_crop"] = "stretch"
    normalization: Literal["imagenet", "unit", "caffe"] = "imagenet"
    augmentation: AugmentationSpec = "hflip"
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: bool = True
    channels_last: bool = True
    profile: bool = True
    artifacts: bool = True

    @model_validator(mode="after")
    def _consistent_training(self) -> "TrainingConfig":
        if self.phase1_epochs >= self.epochs:
            raise ValueError(f"phase1_epochs ({self.phase1_epochs}) must be below epochs ({self.epochs})")
        if self.select_metric not in self.SELECT_METRICS:
            raise ValueError(
                f"select_metric {self.select_metric!r} is not reported by this trainable; "
                f"valid: {', '.join(self.SELECT_METRICS)}"
            )
        return self
