"""Fine-tune fraction, BatchNorm freezing, two-phase schedules, optimisers and LR schedules.

What a *layer* is (the one definition every fine-tune fraction in this project uses):

* A layer is a module of the backbone that **owns parameters directly**
  (``list(m.parameters(recurse=False))`` is non-empty), with exactly those direct parameters.
  Almost always that is a leaf (conv, norm, linear), but not only: timm's ``BatchNormAct2d``
  holds its ``act``/``drop`` as children, ConvNeXt blocks own their layer-scale ``gamma`` and a
  ViT root owns ``cls_token``/``pos_embed``. Counting leaves only would leave those weights
  frozen at fraction 1, so every direct owner is a layer. Modules without parameters
  (activations, pooling, dropout, ``Add``) are not layers; Keras counts them, so P003's "270
  layers of B0" is a different number from ``L`` here.
* Layers are ordered by **first use in a forward pass**: a forward pre-hook on every module
  records when it is first entered while ``forward_features`` (what ``ClassifierNet`` calls;
  ``forward`` when a module has none) runs once, in eval mode and without gradients, on a
  zero image of ``input_size`` px. Registration order is not always forward order. A
  container that owns parameters is placed where it is entered, before its children.
* Layers the forward pass **never reaches** go **first** (the bottom), in registration order.
  timm keeps such parts in a ``num_classes=0`` backbone: MobileNetV3's ``conv_head`` and
  ConvNeXt's ``head.norm`` belong to ``forward_head``, which ``ClassifierNet`` never calls.
  At the top they would use up a small fraction's budget on weights that get no gradient; at
  the bottom they are unfrozen only with the whole backbone, so fraction 1 still means every
  backbone parameter. The backbone's own direct parameters (a ViT's ``cls_token`` and
  ``pos_embed``) also land here, as ``forward_features`` is called without entering the root.

``L`` is the number of layers; fraction ``f`` unfreezes the top (last) ``ceil(f·L)`` of them.

The two-phase schedule (P003): phase 1 trains the head only at lr₁ for E₁ epochs; phase 2
unfreezes the top fraction of the backbone and trains at lr₂ for E₂ epochs. Epochs are 1-based
and continuous across phases, so Ray's schedulers (ASHA) see one learning curve. At the first
epoch of a phase the trainable calls :func:`enter_phase`, which (1) applies the phase's
fraction, (2) builds a **fresh** optimiser with the phase's lr over the now-trainable
parameters (as P003's Keras ``compile`` after unfreezing does) and (3) a fresh LR schedule over
the phase's epochs. A trial resumed mid-phase calls :func:`enter_phase` for its current phase
and then loads the saved optimiser and scheduler state dicts: the parameter order is the
model's registration order filtered by ``requires_grad``, so it is the same on rebuild.

Example::

    schedule = FineTuneSchedule.two_phase(25, 1e-4, 25, 1e-5, phase2_fraction=0.2)
    for epoch in range(start_epoch, schedule.total_epochs + 1):
        phase = schedule.phase_for_epoch(epoch)
        if phase.epoch_in_phase == 1 or optimizer is None:  # phase start, or a fresh process
            optimizer, scheduler = enter_phase(model, phase, "adam", 0.0, "constant", 0,
                                               schedule.epochs_in_phase(phase.index))
            if phase.epoch_in_phase > 1:  # resumed mid-phase: continue the saved states
                optimizer.load_state_dict(state["optimizer"])
                scheduler.load_state_dict(state["scheduler"])
        train_mode(model)  # instead of model.train(): frozen BatchNorm keeps its statistics
        ...  # train one epoch
        scheduler.step()
"""

from __future__ import annotations

import difflib
import math
import weakref
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Optional

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

__all__ = [
    "LR_SCHEDULES",
    "OPTIMIZERS",
    "FineTuneSchedule",
    "Phase",
    "backbone_layers",
    "build_lr_scheduler",
    "build_optimizer",
    "enter_phase",
    "fine_tune_layer_count",
    "set_fine_tune_fraction",
    "train_mode",
]

Layers = list[tuple[str, nn.Module]]

# --------------------------------------------------------------------------- layers

_LAYER_CACHE: "weakref.WeakKeyDictionary[nn.Module, Layers]" = weakref.WeakKeyDictionary()


def _owns_parameters(module: nn.Module) -> bool:
    return next(module.parameters(recurse=False), None) is not None


def _probe_shapes(backbone: nn.Module, input_size: int) -> list[tuple[int, int]]:
    """``(channels, size)`` to try: RGB at ``input_size`` first, then the first conv's channels
    (a timm model built with ``in_chans=1``) and the model's own size (ViT, Swin fix theirs)."""
    channels = [3]
    first_conv = next((m for m in backbone.modules() if isinstance(m, nn.modules.conv._ConvNd)), None)
    if first_conv is not None and first_conv.in_channels != 3:
        channels.append(first_conv.in_channels)
    sizes = [input_size]
    cfg_size = (getattr(backbone, "pretrained_cfg", None) or {}).get("input_size")
    if cfg_size and int(cfg_size[-1]) != input_size:
        sizes.append(int(cfg_size[-1]))
    return [(c, size) for size in sizes for c in channels]


def _forward_order(backbone: nn.Module, input_size: int) -> dict[int, int]:
    """``id(module) → rank`` of first entry during one eval forward pass of a zero image."""
    first_use: dict[int, int] = {}

    def record(module: nn.Module, _args: Any) -> None:
        first_use.setdefault(id(module), len(first_use))

    reference = next(backbone.parameters(), None)
    device = reference.device if reference is not None else torch.device("cpu")
    dtype = reference.dtype if reference is not None and reference.is_floating_point() else torch.float32
    run = backbone.forward_features if hasattr(backbone, "forward_features") else backbone
    modes = {module: module.training for module in backbone.modules()}
    hooks = [module.register_forward_pre_hook(record) for module in backbone.modules()]
    errors = []
    try:
        backbone.eval()
        for channels, size in _probe_shapes(backbone, input_size):
            first_use.clear()
            x = torch.zeros(1, channels, size, size, device=device, dtype=dtype)  # (1, C, H, W)
            try:
                with torch.no_grad():
                    run(x)
                return first_use
            except Exception as err:  # a size the model refuses; try its own size next
                errors.append(f"{channels}×{size}×{size}: {type(err).__name__}: {err}")
    finally:
        for hook in hooks:
            hook.remove()
        for module, training in modes.items():
            module.training = training
    raise RuntimeError(f"could not run a probe forward pass of {type(backbone).__name__} ({'; '.join(errors)})")


def _cache_is_current(backbone: nn.Module, layers: Layers) -> bool:
    """The cached layers are still the backbone's parameter owners, under the same names."""
    modules = dict(backbone.named_modules())
    owners = {id(m) for m in modules.values() if _owns_parameters(m)}
    return owners == {id(m) for _, m in layers} and all(modules.get(name) is m for name, m in layers)


def backbone_layers(backbone: nn.Module, input_size: int = 64) -> Layers:
    """The backbone's layers, bottom (input side) to top, as ``(qualified name, module)``.

    See the module docstring for what a layer is and how the order is found. The result is
    cached per module instance (recomputed if parameter-owning submodules changed); the probe runs
    on a zero image in eval mode without gradients and restores every module's train/eval flag.

    Args:
        backbone: The feature extractor (a timm model built with ``num_classes=0``).
        input_size: Side of the square RGB probe image; if the pass fails, the first conv's
            input channels and the model's own ``pretrained_cfg`` size are tried next.
    """
    cached = _LAYER_CACHE.get(backbone)
    if cached is not None and _cache_is_current(backbone, cached):
        return list(cached)
    owners = [(name, module) for name, module in backbone.named_modules() if _owns_parameters(module)]
    rank = _forward_order(backbone, input_size)
    unreached = [(name, module) for name, module in owners if id(module) not in rank]
    reached = sorted((item for item in owners if id(item[1]) in rank), key=lambda item: rank[id(item[1])])
    layers = unreached + reached
    _LAYER_CACHE[backbone] = layers
    return list(layers)


def fine_tune_layer_count(fraction: float, num_layers: int) -> int:
    """``ceil(fraction · num_layers)``, robust to float noise (``0.1 · 30`` is 3, not 4)."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fine_tune_fraction must lie in [0, 1], got {fraction}")
    return min(num_layers, math.ceil(round(fraction * num_layers, 9)))


def set_fine_tune_fraction(backbone: nn.Module, fraction: float, input_size: int = 64) -> int:
    """Freezes the backbone, then unfreezes its top ``ceil(fraction · L)`` layers.

    Args:
        backbone: The feature extractor.
        fraction: 0 freezes the whole backbone (P000, P003 part 1), 1 trains all of it.
        input_size: Probe image size for :func:`backbone_layers`.

    Returns:
        The number of trainable layers.
    """
    layers = backbone_layers(backbone, input_size)
    count = fine_tune_layer_count(fraction, len(layers))
    for parameter in backbone.parameters():
        parameter.requires_grad_(False)
    for _, module in layers[len(layers) - count :]:
        for parameter in module.parameters(recurse=False):
            parameter.requires_grad_(True)
    return count


def train_mode(model: nn.Module) -> None:
    """``model.train()``, except BatchNorm whose parameters are all frozen stays in eval mode.

    Such a BatchNorm normalises with its stored running mean/variance and does not update
    them, as Keras does for a non-trainable ``BatchNormalization``. Covers every ``_BatchNorm``
    (timm's ``BatchNormAct2d`` included). A BatchNorm without affine parameters has nothing to
    freeze and trains. Call this instead of ``model.train()`` every epoch.
    """
    model.train()
    for module in model.modules():
        if isinstance(module, _BatchNorm):
            parameters = list(module.parameters(recurse=False))
            if parameters and not any(p.requires_grad for p in parameters):
                module.eval()


# --------------------------------------------------------------------------- schedule


@dataclass(frozen=True)
class Phase:
    """Where one epoch lies in a :class:`FineTuneSchedule`.

    Attributes:
        index: 1 or 2.
        lr: The phase's base learning rate.
        fine_tune_fraction: Fraction of backbone layers trained in this phase.
        epoch_in_phase: 1-based epoch within the phase (1 = the phase starts).
    """

    index: int
    lr: float
    fine_tune_fraction: float
    epoch_in_phase: int


@dataclass(frozen=True)
class FineTuneSchedule:
    """One or two training phases; build with :meth:`single` or :meth:`two_phase`.

    A single phase has ``phase2_epochs == 0``. Epochs are 1-based and continuous: phase 2's
    first epoch is ``phase1_epochs + 1``.
    """

    phase1_epochs: int
    phase1_lr: float
    phase1_fraction: float = 0.0
    phase2_epochs: int = 0
    phase2_lr: Optional[float] = None
    phase2_fraction: float = 0.0

    def __post_init__(self) -> None:
        if self.phase1_epochs < 1:
            raise ValueError(f"phase 1 needs at least one epoch, got {self.phase1_epochs}")
        if self.phase2_epochs < 0:
            raise ValueError(f"phase2_epochs must be >= 0, got {self.phase2_epochs}")
        if self.phase2_epochs and self.phase2_lr is None:
            raise ValueError("phase2_lr is required when phase2_epochs > 0")
        for name in ("phase1_lr", "phase2_lr"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be > 0, got {value}")
        for name in ("phase1_fraction", "phase2_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {getattr(self, name)}")

    @classmethod
    def single(cls, epochs: int, lr: float, fine_tune_fraction: float = 0.0) -> "FineTuneSchedule":
        """One phase of ``epochs`` at ``lr`` with the top ``fine_tune_fraction`` trained."""
        return cls(phase1_epochs=epochs, phase1_lr=lr, phase1_fraction=fine_tune_fraction)

    @classmethod
    def two_phase(
        cls, phase1_epochs: int, phase1_lr: float, phase2_epochs: int, phase2_lr: float, phase2_fraction: float
    ) -> "FineTuneSchedule":
        """P003: head only at ``phase1_lr``, then the top ``phase2_fraction`` at ``phase2_lr``."""
        if phase2_epochs < 1:
            raise ValueError(f"phase 2 needs at least one epoch, got {phase2_epochs}")
        return cls(phase1_epochs, phase1_lr, 0.0, phase2_epochs, phase2_lr, phase2_fraction)

    @property
    def num_phases(self) -> int:
        return 2 if self.phase2_epochs else 1

    @property
    def total_epochs(self) -> int:
        return self.phase1_epochs + self.phase2_epochs

    def epochs_in_phase(self, index: int) -> int:
        """Length of phase ``index`` (1 or 2) in epochs."""
        if index not in range(1, self.num_phases + 1):
            raise ValueError(f"phase index must be in 1..{self.num_phases}, got {index}")
        return self.phase1_epochs if index == 1 else self.phase2_epochs

    def phase_for_epoch(self, epoch: int) -> Phase:
        """The phase of 1-based ``epoch``; raises ``ValueError`` outside ``1..total_epochs``."""
        if not 1 <= epoch <= self.total_epochs:
            raise ValueError(f"epoch must be in 1..{self.total_epochs}, got {epoch}")
        if epoch <= self.phase1_epochs:
            return Phase(1, self.phase1_lr, self.phase1_fraction, epoch)
        assert self.phase2_lr is not None  # phase2_epochs > 0 here, checked in __post_init__
        return Phase(2, self.phase2_lr, self.phase2_fraction, epoch - self.phase1_epochs)


# --------------------------------------------------------------------------- optimisers


def _adam(params, lr: float, weight_decay: float, momentum: float) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)


def _adamw(params, lr: float, weight_decay: float, momentum: float) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


def _sgd(params, lr: float, weight_decay: float, momentum: float) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=momentum > 0)


OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {"adam": _adam, "adamw": _adamw, "sgd": _sgd}
"""Optimiser constructors by name, each ``(params, lr, weight_decay, momentum)``."""


def _unknown(kind: str, name: str, valid: Iterable[str]) -> ValueError:
    valid = sorted(valid)
    close = difflib.get_close_matches(str(name).lower(), valid, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return ValueError(f"Unknown {kind} {name!r}; valid names: {valid}.{hint}")


def build_optimizer(
    name: str, params: Iterable, lr: float, weight_decay: float = 0.0, momentum: float = 0.9
) -> torch.optim.Optimizer:
    """An optimiser by name.

    Args:
        name: ``adam`` (L2 ``weight_decay``), ``adamw`` (decoupled decay) or ``sgd`` (Nesterov
            momentum; plain SGD when ``momentum`` is 0).
        params: Parameters or parameter groups.
        lr: Learning rate.
        weight_decay: Weight decay for every parameter.
        momentum: SGD momentum; ignored by the Adam family.

    Raises:
        ValueError: unknown name (the message lists the valid ones).
    """
    if name not in OPTIMIZERS:
        raise _unknown("optimizer", name, OPTIMIZERS)
    return OPTIMIZERS[name](params, lr, weight_decay, momentum)


# --------------------------------------------------------------------------- LR schedules


class _EpochFactor:
    """LR multiplier for the scheduler's step count ``t`` (0 during the first epoch).

    Warm-up (``t < W``): ``(t + 1) / (W + 1)``, rising towards 1 without a zero-lr epoch.
    Then ``constant``: 1; ``cosine``: ``m + (1 − m) · ½ (1 + cos(π · p))`` with
    ``p = (t − W) / (T − W)`` clamped to 1, so the first post-warm-up epoch is at the base lr
    and the curve reaches ``m`` (``min_lr_ratio``) one step after the last epoch.

    A plain object (not a lambda): ``LambdaLR.state_dict`` saves its attributes.
    """

    def __init__(self, kind: str, total_epochs: int, warmup_epochs: int, min_lr_ratio: float) -> None:
        self.kind = kind
        self.total_epochs = total_epochs
        self.warmup_epochs = warmup_epochs
        self.min_lr_ratio = min_lr_ratio

    def __call__(self, t: int) -> float:
        warmup = self.warmup_epochs
        if t < warmup:
            return (t + 1) / (warmup + 1)
        if self.kind == "constant":
            return 1.0
        progress = min(1.0, (t - warmup) / (self.total_epochs - warmup))
        return self.min_lr_ratio + (1.0 - self.min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


LR_SCHEDULES = ("constant", "cosine")
"""Valid ``kind`` values of :func:`build_lr_scheduler`."""


def build_lr_scheduler(
    optimizer: torch.optim.Optimizer,
    kind: str,
    total_epochs: int,
    warmup_epochs: int = 0,
    min_lr_ratio: float = 0.0,
) -> torch.optim.lr_scheduler.LRScheduler:
    """A per-epoch LR schedule: linear warm-up, then constant or cosine.

    Step it once at the end of every epoch. Epoch ``k`` (1-based) of ``T`` trains at
    ``base · factor(k − 1)`` (see :class:`_EpochFactor`); e.g. base 1e-3, ``cosine``, T=5, W=2:
    1/3e-3, 2/3e-3, 1e-3, 0.75e-3, 0.25e-3. Its ``state_dict`` round-trips.

    Args:
        optimizer: The optimiser whose groups' ``lr`` is the base.
        kind: ``constant`` or ``cosine``.
        total_epochs: Epochs the schedule spans (one phase's length).
        warmup_epochs: Leading epochs of linear warm-up, fewer than ``total_epochs``.
        min_lr_ratio: Where the cosine ends, as a fraction of the base lr.
    """
    if kind not in LR_SCHEDULES:
        raise _unknown("lr schedule", kind, LR_SCHEDULES)
    if total_epochs < 1:
        raise ValueError(f"total_epochs must be >= 1, got {total_epochs}")
    if not 0 <= warmup_epochs < total_epochs:
        raise ValueError(f"warmup_epochs must be in [0, total_epochs={total_epochs}), got {warmup_epochs}")
    if not 0.0 <= min_lr_ratio <= 1.0:
        raise ValueError(f"min_lr_ratio must lie in [0, 1], got {min_lr_ratio}")
    factor = _EpochFactor(kind, total_epochs, warmup_epochs, min_lr_ratio)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


# --------------------------------------------------------------------------- phases


def enter_phase(
    model: nn.Module,
    phase: Phase,
    optimizer_name: str,
    weight_decay: float,
    scheduler_kind: str,
    warmup_epochs: int,
    phase_epochs: int,
    *,
    min_lr_ratio: float = 0.0,
    momentum: float = 0.9,
    input_size: int = 64,
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """Sets up training for ``phase``: fraction applied, fresh optimiser and LR schedule.

    Every parameter outside ``model.backbone`` (the head, attention modules; an smp model's
    decoder and segmentation head outside ``model.encoder``) is made
    trainable; the backbone's top ``phase.fine_tune_fraction`` of layers is trainable, the rest
    frozen. The optimiser gets the trainable parameters in ``model.parameters()`` order, so a
    resumed trial that calls this again with the same phase can ``load_state_dict`` the saved
    optimiser and scheduler states.

    Args:
        model: A network with a ``.backbone`` (e.g. ``ClassifierNet``) or an ``.encoder`` (smp models).
        phase: From :meth:`FineTuneSchedule.phase_for_epoch`.
        optimizer_name: See :func:`build_optimizer`.
        weight_decay: For every trainable parameter.
        scheduler_kind: See :func:`build_lr_scheduler`.
        warmup_epochs: Warm-up epochs at the start of this phase.
        phase_epochs: Length of this phase (``schedule.epochs_in_phase(phase.index)``).
        min_lr_ratio: End of a cosine schedule, relative to ``phase.lr``.
        momentum: SGD momentum.
        input_size: Probe image size for :func:`backbone_layers`.

    Returns:
        ``(optimizer, scheduler)``; step the scheduler once per epoch.
    """
    backbone = getattr(model, "backbone", None)
    if not isinstance(backbone, nn.Module):
        backbone = getattr(model, "encoder", None)  # segmentation-models-pytorch: the encoder is the backbone
    if not isinstance(backbone, nn.Module):
        raise TypeError(f"enter_phase needs a model with a `.backbone` (or `.encoder`) module, got {type(model).__name__}")
    for parameter in model.parameters():
        parameter.requires_grad_(True)
    set_fine_tune_fraction(backbone, phase.fine_tune_fraction, input_size)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = build_optimizer(optimizer_name, trainable, phase.lr, weight_decay, momentum)
    scheduler = build_lr_scheduler(optimizer, scheduler_kind, phase_epochs, warmup_epochs, min_lr_ratio)
    return optimizer, scheduler
