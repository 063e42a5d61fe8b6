"""Typed defaults of the ``classifier`` trainable: the single place they live."""

from __future__ import annotations

from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field

from trainables.data.config import DataConfig

__all__ = ["ClassifierConfig"]


class ClassifierConfig(BaseModel):
    """One classifier trial. Search spaces suggest values for these same keys.

    Attributes:
        data: Dataset section (filled from the study's ``data``).
        backbone: A ``timm`` model name (``resnet18``, ``efficientnetv2_rw_s``, ...).
        pretrained: ``False``, ``True`` (timm hub; fails fast offline) or a local
            ``.safetensors``/``.pth`` weights file.
        pooling: Global pooling of the last feature map: average (gap) or max (gmp).
        dropout: Dropout before the output layer (and after the dense layer).
        dense_units: Width of the hidden dense layer; 0 removes it.
        loss: ``bce`` (binary, one logit), ``ce`` (softmax over K logits) or ``auto``
            (bce for two classes, ce otherwise).
        positive_class: Class name scored as positive by binary metrics; default the
            second class in sorted order.
        epochs: Epoch budget (the schedulers' ``max_t``).
        image_size: Square input side in pixels.
        resize: How images reach ``image_size``: stretch, letterbox (pad, keep aspect) or
            center_crop.
        normalization: ``imagenet`` mean/std, ``unit`` (÷255) or ``caffe`` (BGR mean subtraction).
        augmentation: Training-batch augmentation: a preset (``p000``, ``p002``, ``p003``,
            ``p004``), ``none``, or a list of ops (``["hflip", {"rotate": {"degrees": 10}}]``);
            see ``trainables/data/augment.py``.
        offline_expansion: P004's offline ×k expansion: the train split (only, after
            splitting) is grown to k× its size with augmented copies once, at trial start.
        offline_augmentation: The augmentation that makes those copies (default: ``augmentation``).
        seed: Seeds weights, batch order and augmentation.
        device: ``auto`` takes CUDA when present.
        amp: Mixed precision (CUDA only; ignored on CPU).
        channels_last: NHWC memory format (CUDA only; ignored on CPU).
    """

    model_config = ConfigDict(extra="forbid")

    data: DataConfig
    backbone: str = "resnet18"
    pretrained: Union[bool, str] = False
    pooling: Literal["gap", "gmp"] = "gap"
    dropout: float = Field(0.5, ge=0.0, lt=1.0)
    dense_units: int = Field(256, ge=0)
    loss: Literal["auto", "bce", "ce"] = "auto"
    positive_class: Union[str, None] = None
    lr: float = Field(1e-3, gt=0.0)
    weight_decay: float = Field(0.0, ge=0.0)
    batch_size: int = Field(32, ge=1)
    eval_batch_size: int = Field(128, ge=1)
    epochs: int = Field(10, ge=1)
    image_size: int = Field(128, ge=16)
    resize: Literal["stretch", "letterbox", "center_crop"] = "stretch"
    normalization: Literal["imagenet", "unit", "caffe"] = "imagenet"
    augmentation: Union[str, list[Union[str, dict[str, Any]]], None] = "hflip"
    offline_expansion: int = Field(1, ge=1)
    offline_augmentation: Union[str, list[Union[str, dict[str, Any]]], None] = None
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: bool = True
    channels_last: bool = True
