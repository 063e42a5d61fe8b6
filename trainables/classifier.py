"""The ``classifier`` trainable: a timm backbone with the papers' heads, losses and fine-tuning.

Every epoch it reports ``train/loss``, ``val/loss`` and the validation metrics
(``val/accuracy``, ``val/precision``, ``val/recall``, ``val/f1``, ``val/roc_auc``,
``val/pr_auc``, ``val/kappa``; per class ``val/f1/<class>`` for more than two classes) with a
checkpoint, plus ``lr``, ``phase`` and, after each (re)start, the model's cost (``model/*``).
The last epoch adds ``test/*`` scored with the weights of the best validation epoch, and
writes the end-of-trial artifacts (confusion matrix, ROC, PR, curves, Grad-CAM overlays) to
``<trial dir>/artifacts/``.

On (re)start it resumes from ``tune.get_checkpoint()``: model, optimiser, LR scheduler, AMP
scaler, epoch, phase, RNG state and the best epoch so far, so a resumed trial ends exactly as an
uninterrupted one.

Example (inside Ray Tune)::

    tuner = tune.Tuner(train_classifier, param_space={"data": {"path": "synthetic:corrosion"}})
"""

from __future__ import annotations

import logging
import time
from typing import Any

import torch
from torch import nn

from trainables._runtime import (
    autocast,
    begin_trial,
    load_trial_checkpoint,
    quiet_ray_logs,
    report_with_checkpoint,
    rng_state,
    select_device,
    set_rng_state,
    trial_dir,
)
from trainables.classifier_build import build_loss, build_model, positive_index
from trainables.classifier_config import ClassifierConfig
from trainables.data.augment import Augmentation, build_augmentation, expand_offline, normalize_batch
from trainables.data.index import SampleIndex
from trainables.data.prepare import load_index
from trainables.data.tensors import SplitTensors, load_split_tensors
from trainables.finetune import FineTuneSchedule, enter_phase, train_mode
from trainables.metrics import classification_metrics
from trainables.profile import model_profile

__all__ = ["evaluate", "load_training_data", "predict", "train_classifier", "train_one_epoch"]

logger = logging.getLogger(__name__)


def _prepare(images: torch.Tensor, cfg: ClassifierConfig, device: torch.device) -> torch.Tensor:
    x = normalize_batch(images.to(device, non_blocking=True), cfg.normalization)
    if cfg.channels_last and device.type == "cuda":
        return x.contiguous(memory_format=torch.channels_last)
    return x


def train_one_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: nn.Module,
    data: SplitTensors,
    cfg: ClassifierConfig,
    generator: torch.Generator,
    device: torch.device,
    scaler: torch.amp.GradScaler,
    augmentation: Augmentation,
) -> float:
    """One pass over ``data`` in a seeded order; returns the mean training loss.

    The order and every augmentation draw come from ``generator``, so a resumed epoch that
    starts from the same generator state replays exactly. BatchNorm layers of frozen backbone
    layers keep their statistics (``finetune.train_mode``).
    """
    train_mode(model)
    use_amp = cfg.amp and device.type == "cuda"
    order = torch.randperm(len(data), generator=generator)
    total, seen = 0.0, 0
    for start in range(0, len(order), cfg.batch_size):
        index = order[start : start + cfg.batch_size]
        images, _ = augmentation(data.images[index], None, generator)  # (B, 3, H, W) uint8
        x = _prepare(images, cfg, device)
        y = data.labels[index].to(device)
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, use_amp):
            loss = loss_fn(model(x).float(), y)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"training loss became {loss.item()} (lr={cfg.lr}); the trial is marked as errored")
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        total += loss.item() * len(index)
        seen += len(index)
    return total / max(seen, 1)


@torch.no_grad()
def predict(model: nn.Module, data: SplitTensors, cfg: ClassifierConfig, device: torch.device) -> torch.Tensor:
    """Logits for every image of ``data`` in order: (N, outputs) float32 on the CPU."""
    model.eval()
    logits = []
    for start in range(0, len(data), cfg.eval_batch_size):
        x = _prepare(data.images[start : start + cfg.eval_batch_size], cfg, device)
        with autocast(device, cfg.amp and device.type == "cuda"):
            logits.append(model(x).float().cpu())
    return torch.cat(logits)


def evaluate(
    model: nn.Module,
    loss_fn: nn.Module,
    data: SplitTensors,
    cfg: ClassifierConfig,
    device: torch.device,
    classes: tuple[str, ...],
    positive: int,
    prefix: str,
) -> dict[str, float]:
    """Scores ``data``; returns ``{prefix}/loss`` and the classification metrics."""
    logits = predict(model, data, cfg, device)
    metrics = classification_metrics(logits, data.labels, len(classes), positive, prefix=prefix, class_names=classes)
    metrics[f"{prefix}/loss"] = float(loss_fn(logits, data.labels))
    return metrics


def load_training_data(cfg: ClassifierConfig) -> tuple[SampleIndex, dict[str, SplitTensors]]:
    """The trial's sample index and decoded splits, the train split expanded offline if asked."""
    dataset = load_index(cfg.data, "classification")
    splits = load_split_tensors(dataset, cfg.image_size, cfg.resize)
    if cfg.offline_expansion > 1:
        train = splits["train"]
        offline = cfg.offline_augmentation if cfg.offline_augmentation is not None else cfg.augmentation
        images, labels = expand_offline(
            train.images, train.labels, cfg.offline_expansion, offline, torch.Generator().manual_seed(cfg.seed)
        )
        splits["train"] = SplitTensors(images=images, labels=labels)
    return dataset, splits


def _schedule(cfg: ClassifierConfig) -> FineTuneSchedule:
    if cfg.phase1_epochs:
        return FineTuneSchedule.two_phase(
            cfg.phase1_epochs, cfg.phase1_lr, cfg.epochs - cfg.phase1_epochs, cfg.lr, cfg.fine_tune_fraction
        )
    return FineTuneSchedule.single(cfg.epochs, cfg.lr, cfg.fine_tune_fraction)


def _enter(model: nn.Module, schedule: FineTuneSchedule, cfg: ClassifierConfig, epoch: int):
    """The phase of ``epoch`` with a fresh optimiser and LR schedule over its trainable params."""
    phase = schedule.phase_for_epoch(epoch)
    optimizer, scheduler = enter_phase(
        model, phase, cfg.optimizer, cfg.weight_decay, cfg.lr_schedule, cfg.warmup_epochs,
        schedule.epochs_in_phase(phase.index), momentum=cfg.momentum, input_size=cfg.image_size,
    )
    return phase, optimizer, scheduler


def _scale_lr(optimizer, scheduler, ratio: float) -> None:
    """PBT restarts a trial from another trial's checkpoint with a mutated learning rate: the
    restored optimiser and schedule carry the old one, so scale them to the new (an exact resume
    has ``ratio == 1``)."""
    if ratio == 1.0:
        return
    for group in optimizer.param_groups:
        group["lr"] *= ratio
        if "initial_lr" in group:
            group["initial_lr"] *= ratio
    scheduler.base_lrs = [lr * ratio for lr in scheduler.base_lrs]
    if hasattr(scheduler, "_last_lr"):
        scheduler._last_lr = [group["lr"] for group in optimizer.param_groups]


def _is_better(value: float, best: float | None, metric: str) -> bool:
    lower_is_better = metric.endswith("loss")
    return best is None or (value < best if lower_is_better else value > best)


class _Best:
    """The best epoch so far by ``select_metric`` and a CPU copy of its weights."""

    def __init__(self, metric: str, state: dict | None = None) -> None:
        self.metric = metric
        self.score, self.epoch, self.weights = None, 0, None
        if state:  # resumed: the best epoch so far, from the checkpoint
            self.score, self.epoch, self.weights = state["best_score"], state["best_epoch"], state["best_model"]

    def update(self, metrics: dict[str, float], model: nn.Module, epoch: int) -> None:
        if _is_better(metrics[self.metric], self.score, self.metric):
            self.score, self.epoch = metrics[self.metric], epoch
            self.weights = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def train_classifier(config: dict[str, Any]) -> None:
    """Ray Tune function trainable; ``config`` validates as :class:`ClassifierConfig`."""
    cfg = ClassifierConfig.model_validate(config)
    begin_trial(cfg.seed)  # a reused worker: nothing of the previous trial leaks into this one
    quiet_ray_logs()
    device = select_device(cfg.device)
    dataset, splits = load_training_data(cfg)
    augmentation = build_augmentation(cfg.augmentation)
    classes = dataset.classes
    positive = positive_index(cfg, classes)

    model = build_model(cfg, len(classes)).to(device)
    if cfg.channels_last and device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    loss_fn = build_loss(cfg, len(classes), splits["train"].labels)
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.amp and device.type == "cuda")
    schedule = _schedule(cfg)

    state = load_trial_checkpoint()
    start_epoch = state["epoch"] + 1 if state else 1
    if state:
        model.load_state_dict(state["model"])
    phase, optimizer, scheduler = _enter(model, schedule, cfg, start_epoch)
    if state:
        if state["phase"] == phase.index:  # mid-phase: continue the optimiser and schedule
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            saved_lr = _schedule(ClassifierConfig.model_validate(state["config"])).phase_for_epoch(start_epoch).lr
            _scale_lr(optimizer, scheduler, phase.lr / saved_lr)
        scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"])
    best = _Best(cfg.select_metric, state)
    history: list[dict[str, Any]] = list(state["history"]) if state else []
    profile = model_profile(model, cfg.image_size, device) if cfg.profile else {}

    for epoch in range(start_epoch, cfg.epochs + 1):
        started = time.perf_counter()
        if schedule.phase_for_epoch(epoch).index != phase.index:
            phase, optimizer, scheduler = _enter(model, schedule, cfg, epoch)
        lr = optimizer.param_groups[0]["lr"]
        generator = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)
        train_loss = train_one_epoch(model, optimizer, loss_fn, splits["train"], cfg, generator, device, scaler, augmentation)
        train_seconds = time.perf_counter() - started
        scheduler.step()
        metrics: dict[str, Any] = {
            "epoch": epoch, "phase": phase.index, "lr": lr, "train/loss": train_loss,
            "time/train_s": train_seconds, "time/train_img_per_s": len(splits["train"]) / train_seconds,
        }
        metrics.update(evaluate(model, loss_fn, splits["val"], cfg, device, classes, positive, "val"))
        best.update(metrics, model, epoch)
        metrics.update({"val/best": best.score, "best_epoch": best.epoch, "resumed_from_epoch": start_epoch - 1})
        metrics.update(profile)
        profile = {}
        history.append({k: v for k, v in metrics.items() if isinstance(v, (int, float))})
        if epoch == cfg.epochs:
            metrics.update(_finish(model, best, loss_fn, splits, cfg, device, classes, positive, history))
        metrics["time/epoch_s"] = time.perf_counter() - started
        report_with_checkpoint(
            metrics,
            {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict(),
                "rng": rng_state(),
                "epoch": epoch,
                "phase": phase.index,
                "best_score": best.score,
                "best_epoch": best.epoch,
                "best_model": best.weights,
                "history": history,
                "config": cfg.model_dump(mode="json"),
                "classes": list(classes),
            },
        )


def _finish(model, best: _Best, loss_fn, splits, cfg, device, classes, positive, history) -> dict[str, float]:
    """Test scores and artifacts with the best epoch's weights; the last weights are put back."""
    last = {k: v.detach().clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best.weights)
    try:
        metrics = evaluate(model, loss_fn, splits["test"], cfg, device, classes, positive, "test") if "test" in splits else {}
        if cfg.artifacts:
            # the count lets the W&B logger wait until every file reached the study directory
            metrics["artifacts/files"] = len(_write_artifacts(model, splits["val"], cfg, device, classes, positive, history))
        return metrics
    finally:
        model.load_state_dict(last)


def _write_artifacts(model, data: SplitTensors, cfg, device, classes, positive, history) -> dict:
    """Writes ``<trial dir>/artifacts/``; returns file name → path of what was written."""
    from trainables.artifacts import write_trial_artifacts

    out_dir = trial_dir()
    if out_dir is None:
        logger.warning("no trial directory (not running under Ray Tune): artifacts skipped")
        return {}
    logits = predict(model, data, cfg, device)
    binary = logits.shape[1] == 1
    scores = torch.sigmoid(logits[:, 0]) if binary else torch.softmax(logits, dim=1)
    if binary:
        preds = (scores >= 0.5).long()
        scores = scores if positive == 1 else 1.0 - scores
    else:
        preds = scores.argmax(dim=1)
    return write_trial_artifacts(
        out_dir / "artifacts",
        targets=data.labels.numpy(), scores=scores.numpy(), preds=preds.numpy(), classes=list(classes),
        history=history, positive_index=positive, model=model,
        sample_images=data.images[: cfg.gradcam_images], sample_targets=data.labels[: cfg.gradcam_images].tolist(),
        normalization=cfg.normalization, binary=binary,
    )
