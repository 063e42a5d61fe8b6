"""Typed defaults of the ``segmenter`` trainable (cheap to import: no torch).

Every variant of P001 (U-Net with ResNet152, VGG16, InceptionV4 or MobileNetV2 encoders, Dice
loss, per-image F1/IoU) is a value of these keys; see ``docs/segmenter.md``.
"""

from __future__ import annotations

from typing import ClassVar, Literal, Optional, Union

from pydantic import Field, field_validator, model_validator

from trainables.training_config import TrainingConfig

__all__ = ["SEGMENTATION_LOSS_NAMES", "SMP_ARCHS", "SegmenterConfig"]

SMP_ARCHS = (
    "unet", "unetplusplus", "manet", "linknet", "fpn", "pspnet", "deeplabv3", "deeplabv3plus", "pan", "upernet",
    "segformer", "dpt",
)
"""``smp.create_model`` architectures (segmentation-models-pytorch 0.6.0; a test keeps this
list equal to ``smp.MODEL_ARCHITECTURES_MAPPING`` so the config can check names without torch)."""

SEGMENTATION_LOSS_NAMES = ("dice", "bce", "ce", "focal", "jaccard", "lovasz", "tversky", "dice+bce")
"""Names of ``trainables.segmenter_losses.SEGMENTATION_LOSSES`` (kept equal by a test)."""


class SegmenterConfig(TrainingConfig):
    """One segmenter trial: the shared training keys (:class:`TrainingConfig`) plus these.

    Attributes:
        arch: ``smp.create_model`` architecture (``unet``, ``unetplusplus``, ``fpn``,
            ``deeplabv3plus``, ``linknet``, ``manet``, ``pspnet``, ``pan``, ``upernet``,
            ``segformer``, ...).
        encoder: Any smp encoder name (``mobilenet_v2``, ``resnet152``, ``vgg16``,
            ``inceptionv4``, ...) or ``tu-<timm model>``.
        encoder_depth: Encoder stages used (3–5); the input side must be divisible by the
            encoder's output stride (``2**encoder_depth`` for most encoders).
        encoder_weights: ``null`` (random init), ``imagenet`` (smp hub; fails fast offline) or a
            local ``.safetensors``/``.pth`` file loaded into the encoder.
        num_classes: Mask classes including background; ``null`` detects them from the masks
            (0/255 or 0/1 → 2; class indices 0..K-1 → K; COCO: its categories + background).
            Two classes give one logit + sigmoid, more give K logits + softmax.
        loss: ``dice`` (smp ``DiceLoss``, P001), ``bce`` (binary), ``ce`` (K > 2), ``focal``,
            ``jaccard``, ``lovasz``, ``tversky`` or ``dice+bce`` (``dice_weight``·Dice +
            (1 − ``dice_weight``)·BCE; CE for K > 2).
        dice_weight: Weight of the Dice term of ``dice+bce``.
        focal_alpha / focal_gamma: smp ``FocalLoss`` α (``null``: none) and γ.
        tversky_alpha / tversky_beta: smp ``TverskyLoss`` weights of false positives / negatives.
        threshold: Sigmoid probability above which a pixel is foreground (binary masks).
        empty_mask_score: Score of an image whose true and predicted masks are both empty in the
            per-image F1/IoU (smp's ``zero_division``; 1.0 as smp, 0.0 is stricter). Reported as
            ``empty_mask_score`` with every result.
        select_metric: Validation metric that picks the best epoch (one of ``SELECT_METRICS``).
        fine_tune_fraction / phase1_epochs: The shared schedule keys, applied to the encoder
            (phase 1 trains the decoder and head alone).
        overlay_images: The N best and N worst test images get an image / true / predicted
            overlay in ``artifacts/``.
        gradcam_images: How many test images get a Grad-CAM overlay (grad-cam's
            ``SemanticSegmentationTarget`` on the predicted foreground).
    """

    SELECT_METRICS: ClassVar[tuple[str, ...]] = (
        "val/iou", "val/f1", "val/iou_dataset", "val/f1_dataset", "val/pixel_accuracy", "val/precision",
        "val/recall", "val/loss",
    )

    arch: str = "unet"
    encoder: str = "mobilenet_v2"
    encoder_depth: int = Field(5, ge=3, le=5)
    encoder_weights: Optional[str] = None
    num_classes: Optional[int] = Field(None, ge=2, le=255)
    loss: Literal["dice", "bce", "ce", "focal", "jaccard", "lovasz", "tversky", "dice+bce"] = "dice"
    dice_weight: float = Field(0.5, ge=0.0, le=1.0)
    focal_alpha: Optional[float] = Field(None, ge=0.0, le=1.0)
    focal_gamma: float = Field(2.0, ge=0.0)
    tversky_alpha: float = Field(0.5, ge=0.0)
    tversky_beta: float = Field(0.5, ge=0.0)
    threshold: float = Field(0.5, gt=0.0, lt=1.0)
    empty_mask_score: float = Field(1.0, ge=0.0, le=1.0)
    select_metric: str = "val/iou"
    batch_size: int = Field(8, ge=1)
    eval_batch_size: int = Field(16, ge=1)
    overlay_images: int = Field(4, ge=0)
    gradcam_images: int = Field(4, ge=0)

    @field_validator("arch")
    @classmethod
    def _known_arch(cls, arch: str) -> str:
        if arch.lower() not in SMP_ARCHS:
            raise ValueError(f"unknown arch {arch!r}; valid: {', '.join(SMP_ARCHS)}")
        return arch.lower()

    @model_validator(mode="after")
    def _consistent_segmenter(self) -> "SegmenterConfig":
        stride = 2**self.encoder_depth
        if self.image_size % stride:
            below, above = self.image_size // stride * stride, (self.image_size // stride + 1) * stride
            sizes = ", ".join(str(s) for s in (below, above) if s >= 16)
            raise ValueError(
                f"image_size {self.image_size} is not divisible by the encoder's output stride {stride} "
                f"(encoder_depth {self.encoder_depth}); use a multiple of {stride}, e.g. {sizes}"
            )
        if self.num_classes is not None and self.num_classes > 2 and self.loss == "bce":
            raise ValueError(f"loss bce is for binary masks; num_classes is {self.num_classes}: use ce, dice, ...")
        if self.num_classes == 2 and self.loss == "ce":
            raise ValueError("loss ce needs num_classes > 2 (binary masks have one logit): use bce or dice+bce")
        return self

    @property
    def weights_file(self) -> Union[str, None]:
        """``encoder_weights`` when it names a local file, else None."""
        if self.encoder_weights is None or self.encoder_weights == "imagenet":
            return None
        return self.encoder_weights
