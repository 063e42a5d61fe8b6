"""Segmentation losses by name, from ``smp.losses``: dice, bce, ce, focal, jaccard, lovasz,
tversky and a weighted dice+bce.

Every loss is called as ``loss(logits, masks)``: logits (N, 1, H, W) for binary masks (one
sigmoid logit) or (N, K, H, W) for K > 2 classes (softmax); masks (N, H, W) integer class
indices. Pixel losses need another signature than the classification losses of
:mod:`trainables.losses` (a mode, per-pixel targets), so they have their own registry of the
same kind (:class:`corrotune.registry.Registry`).

Example:
    >>> import torch
    >>> loss = create_segmentation_loss("dice", num_classes=2)
    >>> masks = torch.zeros(2, 8, 8, dtype=torch.long); masks[:, :4] = 1
    >>> right, wrong = (masks * 20.0 - 10).unsqueeze(1), (10 - masks * 20.0).unsqueeze(1)
    >>> bool(loss(right, masks) < loss(wrong, masks))
    True
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
from segmentation_models_pytorch import losses as smp_losses
from torch import nn

from corrotune.registry import Registry

__all__ = ["SEGMENTATION_LOSSES", "BinaryCrossEntropyMaskLoss", "WeightedSum", "create_segmentation_loss"]

SEGMENTATION_LOSSES: Registry[Callable[..., nn.Module]] = Registry("segmentation loss")
"""Builders by name; each takes ``mode`` (``binary`` | ``multiclass``) and the options of
:func:`create_segmentation_loss`."""


class BinaryCrossEntropyMaskLoss(nn.Module):
    """smp's ``SoftBCEWithLogitsLoss`` on (N, 1, H, W) logits and (N, H, W) 0/1 masks."""

    def __init__(self) -> None:
        super().__init__()
        self.bce = smp_losses.SoftBCEWithLogitsLoss()

    def forward(self, logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        return self.bce(logits, masks.unsqueeze(1).to(logits.dtype))  # (N, 1, H, W) both


class WeightedSum(nn.Module):
    """``Σ wᵢ · lossᵢ(logits, masks)``."""

    def __init__(self, losses: list[nn.Module], weights: list[float]) -> None:
        super().__init__()
        self.losses = nn.ModuleList(losses)
        self.weights = list(weights)

    def forward(self, logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        return sum(w * loss(logits, masks) for w, loss in zip(self.weights, self.losses))


def _cross_entropy(mode: str) -> nn.Module:
    if mode != "multiclass":
        raise ValueError("loss ce needs more than two classes (binary masks have one logit): use bce or dice+bce")
    return nn.CrossEntropyLoss()


@SEGMENTATION_LOSSES.register("dice")
def _dice(mode: str, **_) -> nn.Module:
    return smp_losses.DiceLoss(mode, from_logits=True)


@SEGMENTATION_LOSSES.register("jaccard")
def _jaccard(mode: str, **_) -> nn.Module:
    return smp_losses.JaccardLoss(mode, from_logits=True)


@SEGMENTATION_LOSSES.register("lovasz")
def _lovasz(mode: str, **_) -> nn.Module:
    return smp_losses.LovaszLoss(mode, from_logits=True)


@SEGMENTATION_LOSSES.register("tversky")
def _tversky(mode: str, *, tversky_alpha: float, tversky_beta: float, **_) -> nn.Module:
    return smp_losses.TverskyLoss(mode, from_logits=True, alpha=tversky_alpha, beta=tversky_beta)


@SEGMENTATION_LOSSES.register("focal")
def _focal(mode: str, *, focal_alpha: Optional[float], focal_gamma: float, **_) -> nn.Module:
    return smp_losses.FocalLoss(mode, alpha=focal_alpha, gamma=focal_gamma)


@SEGMENTATION_LOSSES.register("bce")
def _bce(mode: str, **_) -> nn.Module:
    if mode != "binary":
        raise ValueError("loss bce is for binary masks; with more than two classes use ce, dice, focal, ...")
    return BinaryCrossEntropyMaskLoss()


@SEGMENTATION_LOSSES.register("ce")
def _ce(mode: str, **_) -> nn.Module:
    return _cross_entropy(mode)


@SEGMENTATION_LOSSES.register("dice+bce")
def _dice_bce(mode: str, *, dice_weight: float, **_) -> nn.Module:
    """Binary: Dice + BCE; K > 2 classes: Dice + cross-entropy (BCE has no softmax form)."""
    pixel = BinaryCrossEntropyMaskLoss() if mode == "binary" else _cross_entropy(mode)
    return WeightedSum([smp_losses.DiceLoss(mode, from_logits=True), pixel], [dice_weight, 1.0 - dice_weight])


def create_segmentation_loss(
    name: str,
    *,
    num_classes: int,
    dice_weight: float = 0.5,
    focal_alpha: Optional[float] = None,
    focal_gamma: float = 2.0,
    tversky_alpha: float = 0.5,
    tversky_beta: float = 0.5,
) -> nn.Module:
    """Builds the segmentation loss ``name`` for masks with ``num_classes`` classes.

    Args:
        name: Registry key; an unknown name is a KeyError listing the valid ones.
        num_classes: 2 (binary: one logit, smp ``binary`` mode) or K > 2 (``multiclass``).
        dice_weight: ``dice+bce``: weight of the Dice term (the other term gets 1 − it).
        focal_alpha, focal_gamma: smp ``FocalLoss``.
        tversky_alpha, tversky_beta: smp ``TverskyLoss``.

    Raises:
        KeyError: unknown ``name``.
        ValueError: a loss that does not fit ``num_classes`` (bce with K > 2, ce with 2).
    """
    build = SEGMENTATION_LOSSES.get(name)
    mode = "binary" if num_classes == 2 else "multiclass"
    return build(
        mode, dice_weight=dice_weight, focal_alpha=focal_alpha, focal_gamma=focal_gamma,
        tversky_alpha=tversky_alpha, tversky_beta=tversky_beta,
    )
