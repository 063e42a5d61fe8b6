"""Classification losses by name: ``bce``, ``ce``, ``focal`` and ``modified_focal`` (P000).

Every loss is a pure ``nn.Module`` called as ``loss(logits, targets)``:

* binary (sigmoid) form, ``num_outputs == 1``: logits (N, 1) (or (N,)) for class 1;
* multi-class (softmax) form, ``num_outputs == K >= 2``: logits (N, K) (K = 2 included);

targets are (N,) integer class indices, and the result is the mean over the batch.

Conventions (shared by ``focal`` and ``modified_focal``; ``bce``/``ce`` where they apply):

* **alpha.** Binary form: a scalar α gives α_t = α for class 1 and 1 − α for class 0
  (Lin et al.); a pair ``[α0, α1]`` gives α_t = α_y. Multi-class form: a scalar α is the same
  α for every class (a constant factor), a length-K sequence is per-class α_c. ``None``
  means α_t = 1 (no α weighting) in both forms.
* **label smoothing** s replaces the one-hot target by q = (1 − s)·onehot(y) + s/C, with
  C = 2 in the binary form (so bce's target is y(1 − s) + s/2) and C = K otherwise. The
  focal losses use the smoothed-target cross-entropy form, summing their per-class term over
  q: L = Σ_c q_c·ℓ_c. With s = 0 this is the usual true-class loss; with γ = 0, α = None it
  is exactly smoothed cross-entropy.
* **class weights** ``[w_0, …, w_{C−1}]`` (two for the binary form) multiply each sample's
  loss by the weight of its true class, then the batch mean is a plain mean:
  mean_i(w_{y_i}·L_i). ``ce`` is the exception: it keeps torch's semantics
  (``F.cross_entropy(weight=...)``), a weighted mean Σ w_{y_i}ℓ_i / Σ w_{y_i}, and with label
  smoothing torch also weights the smoothing term per class.

Example:
    >>> import torch
    >>> from trainables.losses import create_loss
    >>> loss = create_loss("modified_focal", num_outputs=1, alpha=0.25, gamma=2.0)
    >>> logits, targets = torch.tensor([[3.0], [-2.0]]), torch.tensor([1, 0])
    >>> bool(loss(logits, targets) > 0)
    True
"""

from __future__ import annotations

import math
from numbers import Real
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from corrotune.registry import Registry

__all__ = [
    "LOSSES",
    "BinaryCrossEntropyLoss",
    "CrossEntropyLoss",
    "FocalLoss",
    "ModifiedFocalLoss",
    "create_loss",
]

LOSSES: Registry[Callable[..., nn.Module]] = Registry("loss")
"""Loss builders by name; each takes ``create_loss``'s keyword arguments."""

_REDUCTIONS = ("mean", "sum", "none")


# ---------------------------------------------------------------- validation


def _check_num_outputs(num_outputs: int) -> None:
    if isinstance(num_outputs, bool) or not isinstance(num_outputs, int) or num_outputs < 1:
        raise ValueError(f"num_outputs must be a positive int, got {num_outputs!r}")


def _check_label_smoothing(label_smoothing: float) -> None:
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing!r}")


def _check_reduction(reduction: str) -> None:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {list(_REDUCTIONS)}, got {reduction!r}")


def _per_class(name: str, values: Sequence[float], num_classes: int, form: str) -> list[float]:
    try:
        floats = [float(v) for v in values]
    except TypeError:
        raise ValueError(f"{name} must be a sequence of {num_classes} numbers, got {values!r}") from None
    if len(floats) != num_classes:
        raise ValueError(f"{name} needs one value per class ({num_classes} for the {form} form), got {len(floats)}")
    return floats


def _class_weights(class_weights: Sequence[float] | None, num_classes: int, form: str) -> torch.Tensor | None:
    if class_weights is None:
        return None
    weights = _per_class("class_weights", class_weights, num_classes, form)
    if not all(math.isfinite(w) and w >= 0 for w in weights) or sum(weights) <= 0:
        raise ValueError(f"class_weights must be finite, >= 0 and not all zero, got {weights}")
    return torch.tensor(weights, dtype=torch.float32)


def _alpha_vector(alpha: float | Sequence[float] | None, num_classes: int, binary: bool) -> torch.Tensor:
    """α per class: (C,), C = 2 in the binary form."""
    if alpha is None:
        return torch.ones(num_classes)
    if isinstance(alpha, Real):
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], a sequence of one value per class, or None; got {alpha!r}")
        if binary:
            return torch.tensor([1.0 - float(alpha), float(alpha)])
        return torch.full((num_classes,), float(alpha))
    values = _per_class("alpha", alpha, num_classes, "binary" if binary else "multi-class")
    if not all(0.0 <= a <= 1.0 for a in values):
        raise ValueError(f"alpha values must each be in [0, 1], got {values}")
    return torch.tensor(values, dtype=torch.float32)


def _check_inputs(logits: torch.Tensor, targets: torch.Tensor, num_outputs: int) -> None:
    if targets.ndim != 1:
        raise ValueError(f"targets must be (N,) class indices, got shape {tuple(targets.shape)}")
    if targets.is_floating_point() or targets.is_complex():
        raise TypeError(f"targets must be integer class indices, got dtype {targets.dtype}")
    n = targets.shape[0]
    if tuple(logits.shape) != (n, num_outputs) and not (num_outputs == 1 and tuple(logits.shape) == (n,)):
        raise ValueError(f"logits must be ({n}, {num_outputs}) for these targets, got {tuple(logits.shape)}")


# ---------------------------------------------------------------- shared math


def _target_distribution(targets: torch.Tensor, num_classes: int, label_smoothing: float) -> torch.Tensor:
    """q = (1 − s)·onehot(y) + s/C: (N, C). scatter_ rejects out-of-range labels."""
    q = torch.zeros(targets.shape[0], num_classes, device=targets.device)
    q.scatter_(1, targets.long().unsqueeze(1), 1.0)
    if label_smoothing:
        q = q * (1.0 - label_smoothing) + label_smoothing / num_classes
    return q


def _log1m_softmax(log_p: torch.Tensor) -> torch.Tensor:
    """log(1 − p_c) from log-softmax (N, K), stable for p_c → 1 and with finite gradients.

    The row's top class uses log Σ_{j≠c} p_j (exact even when p_c rounds to 1); every other
    class has p_c ≤ 1/2, where log1p(−p_c) is exact.
    """
    top = log_p.argmax(dim=1, keepdim=True)
    is_top = torch.zeros_like(log_p, dtype=torch.bool).scatter_(1, top, True)
    others = log_p.masked_fill(is_top, float("-inf"))
    log_1m_top = torch.logsumexp(others, dim=1, keepdim=True)  # (N, 1)
    log_1m_rest = torch.log1p(-others.exp())  # top class reads log1p(0) = 0, masked below
    return torch.where(is_top, log_1m_top.expand_as(log_p), log_1m_rest)


def _class_log_probs(logits: torch.Tensor, num_outputs: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(log p_c, log(1 − p_c)), each (N, C); the binary form is expanded to C = 2 classes."""
    if num_outputs == 1:
        z = logits.reshape(-1).float()  # (N,) logit of class 1
        log_p = torch.stack([F.logsigmoid(-z), F.logsigmoid(z)], dim=1)  # (N, 2)
        return log_p, log_p.flip(1)
    log_p = F.log_softmax(logits.float(), dim=1)  # (N, K)
    return log_p, _log1m_softmax(log_p)


def _reduce(loss: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return loss.mean()
    return loss.sum() if reduction == "sum" else loss


# ---------------------------------------------------------------- losses


class BinaryCrossEntropyLoss(nn.Module):
    """Binary cross-entropy on one logit, with label smoothing and per-class sample weights.

    L_i = w_{y_i} · −[ỹ_i log σ(z_i) + (1 − ỹ_i) log(1 − σ(z_i))],  ỹ = y(1 − s) + s/2,

    reduced by the mean over the batch. Both logs come from logsigmoid, so the tiny losses of
    confident, correct predictions keep their digits (torch's BCE-with-logits loses them for y = 0).

    Args:
        num_outputs: Must be 1 (one logit for class 1); anything else is a ValueError.
        label_smoothing: s in [0, 1).
        class_weights: ``[w0, w1]``: each sample's loss is multiplied by the weight of its true
            class (w1/w0 plays the role of ``pos_weight`` but also scales the smoothing part).
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"`` (per-sample, (N,)).
    """

    def __init__(
        self,
        num_outputs: int = 1,
        *,
        label_smoothing: float = 0.0,
        class_weights: Sequence[float] | None = None,
        reduction: str = "mean",
    ) -> None:
        super().__init__()
        _check_num_outputs(num_outputs)
        if num_outputs != 1:
            raise ValueError(f"bce is binary: num_outputs must be 1, got {num_outputs}; use 'ce' for softmax logits")
        _check_label_smoothing(label_smoothing)
        _check_reduction(reduction)
        self.num_outputs, self.label_smoothing, self.reduction = 1, float(label_smoothing), reduction
        self.register_buffer("class_weights", _class_weights(class_weights, 2, "binary"), persistent=False)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """logits (N, 1) or (N,), targets (N,) in {0, 1} → scalar (or (N,) with ``"none"``)."""
        _check_inputs(logits, targets, 1)
        log_p, _ = _class_log_probs(logits, 1)  # (N, 2): log(1 − σ(z)), log σ(z)
        q = _target_distribution(targets, 2, self.label_smoothing)  # (N, 2): 1 − ỹ, ỹ
        loss = (q * -log_p).sum(dim=1)  # (N,); logsigmoid on both sides keeps small losses exact
        if self.class_weights is not None:
            loss = loss * self.class_weights[targets.long()]
        return _reduce(loss, self.reduction)


class CrossEntropyLoss(nn.Module):
    """Softmax cross-entropy over K ≥ 2 logits: ``F.cross_entropy`` with torch's semantics.

    L = −Σ_c q_c log softmax(z)_c,  q = (1 − s)·onehot(y) + s/K.

    Args:
        num_outputs: K ≥ 2 (K = 2 is a softmax binary head); 1 is a ValueError.
        label_smoothing: s in [0, 1).
        class_weights: K per-class weights, as torch's ``weight=``: the batch mean is weighted,
            Σ w_{y_i}ℓ_i / Σ w_{y_i} (so a single sample's loss does not depend on its weight).
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"``.
    """

    def __init__(
        self,
        num_outputs: int,
        *,
        label_smoothing: float = 0.0,
        class_weights: Sequence[float] | None = None,
        reduction: str = "mean",
    ) -> None:
        super().__init__()
        _check_num_outputs(num_outputs)
        if num_outputs < 2:
            raise ValueError(f"ce is multi-class: num_outputs must be >= 2, got {num_outputs}; use 'bce' for one logit")
        _check_label_smoothing(label_smoothing)
        _check_reduction(reduction)
        self.num_outputs, self.label_smoothing, self.reduction = num_outputs, float(label_smoothing), reduction
        weights = _class_weights(class_weights, num_outputs, "multi-class")
        self.register_buffer("class_weights", weights, persistent=False)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """logits (N, K), targets (N,) in [0, K) → scalar (or (N,) with ``"none"``)."""
        _check_inputs(logits, targets, self.num_outputs)
        return F.cross_entropy(
            logits.float(),
            targets.long(),
            weight=self.class_weights,
            label_smoothing=self.label_smoothing,
            reduction=self.reduction,
        )


class FocalLoss(nn.Module):
    """Focal loss (Lin et al. 2017), binary (sigmoid) or multi-class (softmax) form.

    L = −α_t (1 − p_t)^γ log(p_t),

    with p_t = σ(z) if y = 1 else 1 − σ(z) (binary) or softmax(z)_y (multi-class). With label
    smoothing s the per-class term is summed over the smoothed target q (see the module
    docstring): L = −Σ_c q_c α_c (1 − p_c)^γ log p_c. Computed from logsigmoid / log-softmax,
    with log(1 − p) taken stably, so no clipping is needed. γ = 0, α = None is cross-entropy;
    binary γ = 0, α = 0.5 is half of BCE.

    Args:
        num_outputs: 1 for the binary form, K ≥ 2 for the multi-class form.
        alpha: Binary: scalar α (α for class 1, 1 − α for class 0) or ``[α0, α1]``.
            Multi-class: scalar α for every class, or one α_c per class. ``None``: no α.
        gamma: Focusing parameter γ ≥ 0.
        label_smoothing: s in [0, 1), applied to the target distribution.
        class_weights: One weight per class (2 in the binary form), multiplying each sample's
            loss by its true class's weight; the batch mean stays a plain mean.
        eps: Clip for p_t; unused here (kept for one signature with :class:`ModifiedFocalLoss`).
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"``.
    """

    modified = False

    def __init__(
        self,
        num_outputs: int,
        *,
        alpha: float | Sequence[float] | None = 0.25,
        gamma: float = 2.0,
        label_smoothing: float = 0.0,
        class_weights: Sequence[float] | None = None,
        eps: float = 1e-7,
        reduction: str = "mean",
    ) -> None:
        super().__init__()
        _check_num_outputs(num_outputs)
        if not (gamma >= 0 and math.isfinite(gamma)):
            raise ValueError(f"gamma must be a finite number >= 0, got {gamma!r}")
        _check_label_smoothing(label_smoothing)
        if not 0.0 < eps < 0.5:
            raise ValueError(f"eps must be in (0, 0.5), got {eps!r}")
        _check_reduction(reduction)
        binary = num_outputs == 1
        num_classes = 2 if binary else num_outputs
        self.num_outputs, self.num_classes = num_outputs, num_classes
        self.gamma, self.label_smoothing, self.eps = float(gamma), float(label_smoothing), float(eps)
        self.reduction = reduction
        self.register_buffer("alpha", _alpha_vector(alpha, num_classes, binary), persistent=False)
        form = "binary" if binary else "multi-class"
        self.register_buffer("class_weights", _class_weights(class_weights, num_classes, form), persistent=False)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """logits (N, 1)/(N,) or (N, K), targets (N,) → scalar (or (N,) with ``"none"``)."""
        _check_inputs(logits, targets, self.num_outputs)
        log_p, log_1mp = _class_log_probs(logits, self.num_outputs)  # (N, C) each
        if self.modified:  # p clipped to [eps, 1 - eps], in log space
            low, high = math.log(self.eps), math.log1p(-self.eps)
            log_p, log_1mp = log_p.clamp(low, high), log_1mp.clamp(low, high)
        terms = self.alpha * torch.exp(self.gamma * log_1mp) * -log_p  # (N, C): α_c (1 − p_c)^γ (−log p_c)
        if self.modified:
            terms = terms * F.softplus(-log_p)  # log(1 + 1/p_c) = log(1 + e^{−log p_c})
        q = _target_distribution(targets, self.num_classes, self.label_smoothing)  # (N, C)
        loss = (q * terms).sum(dim=1)  # (N,)
        if self.class_weights is not None:
            loss = loss * self.class_weights[targets.long()]
        return _reduce(loss, self.reduction)


class ModifiedFocalLoss(FocalLoss):
    """P000's modified focal loss, binary (sigmoid) or multi-class (softmax) form.

    L = −α_t (1 − p_t)^γ · log(p_t) · log(1 + 1/p_t),  p_t clipped to [ε, 1 − ε].

    The extra factor log(1 + 1/p_t) grows as a prediction becomes confidently wrong and tends
    to ln 2 as p_t → 1. As with Keras' clipped losses, p_t outside [ε, 1 − ε] gets zero
    gradient. α, γ, label smoothing and class weights follow :class:`FocalLoss` (smoothing:
    L = −Σ_c q_c α_c (1 − p_c)^γ log(p_c) log(1 + 1/p_c)).

    Args:
        num_outputs: 1 for the binary form, K ≥ 2 for the multi-class form.
        alpha: As :class:`FocalLoss` (P000 leaves it unstated; default 0.25).
        gamma: γ ≥ 0 (P000 leaves it unstated; default 2).
        label_smoothing: s in [0, 1).
        class_weights: One weight per class (2 in the binary form), per sample.
        eps: ε in (0, 0.5): p_t is clipped to [ε, 1 − ε].
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"``.
    """

    modified = True


# ---------------------------------------------------------------- registry


@LOSSES.register("bce")
def _build_bce(*, num_outputs, alpha, gamma, label_smoothing, class_weights, eps) -> nn.Module:
    del alpha, gamma, eps  # not used by bce
    return BinaryCrossEntropyLoss(num_outputs, label_smoothing=label_smoothing, class_weights=class_weights)


@LOSSES.register("ce")
def _build_ce(*, num_outputs, alpha, gamma, label_smoothing, class_weights, eps) -> nn.Module:
    del alpha, gamma, eps  # not used by ce
    return CrossEntropyLoss(num_outputs, label_smoothing=label_smoothing, class_weights=class_weights)


@LOSSES.register("focal")
def _build_focal(**options) -> nn.Module:
    return FocalLoss(**options)


@LOSSES.register("modified_focal")
def _build_modified_focal(**options) -> nn.Module:
    return ModifiedFocalLoss(**options)


def create_loss(
    name: str,
    *,
    num_outputs: int,
    alpha: float | Sequence[float] | None = 0.25,
    gamma: float = 2.0,
    label_smoothing: float = 0.0,
    class_weights: Sequence[float] | None = None,
    eps: float = 1e-7,
) -> nn.Module:
    """Builds the loss registered as ``name`` (``bce``, ``ce``, ``focal``, ``modified_focal``).

    Args:
        name: Registry key; an unknown name is a KeyError listing the valid ones.
        num_outputs: Logits per sample: 1 for the binary (sigmoid) form, K ≥ 2 for softmax.
        alpha: Focal losses only: scalar, one value per class, or None (see :class:`FocalLoss`).
        gamma: Focal losses only: γ ≥ 0.
        label_smoothing: s in [0, 1).
        class_weights: One weight per class (2 for the binary form).
        eps: Clip for ``modified_focal``'s p_t.

    Returns:
        An ``nn.Module`` called as ``loss(logits, targets)`` returning the batch mean.

    Raises:
        KeyError: unknown ``name``.
        ValueError: a parameter out of range, or ``num_outputs`` that the loss cannot take
            (``bce`` needs 1, ``ce`` needs ≥ 2); the message names the parameter.
    """
    build = LOSSES.get(name)
    return build(
        num_outputs=num_outputs,
        alpha=alpha,
        gamma=gamma,
        label_smoothing=label_smoothing,
        class_weights=class_weights,
        eps=eps,
    )
