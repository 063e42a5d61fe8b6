"""The one training loop every trainable shares: :func:`fit` runs a :class:`Task`.

A task supplies only what differs between trainables: its network, its loss, its ``(x, y)``
batches, how predictions are scored and which artifacts it writes. The loop owns the rest:

* :func:`~trainables._runtime.begin_trial` (a reused worker starts clean, seeded);
* resume from ``tune.get_checkpoint()``: model, optimiser, LR scheduler, AMP scaler, RNG state,
  epoch, phase, the best epoch and its weights, history and the resolved config, so an
  interrupted and resumed trial ends exactly as an uninterrupted one;
* the two-phase :class:`~trainables.finetune.FineTuneSchedule` (fresh optimiser per phase);
* a seeded order per epoch (``seed · 100003 + epoch``; a lone last sample joins the previous
  batch: a batch of one breaks BatchNorm's training statistics);
* the NaN guard, ``tune.report`` with a checkpoint every epoch, PBT's learning-rate rescale;
* preemption: asked to stop (SIGTERM, the driver's Ctrl-C), a trial saves its mid-epoch state at
  the next batch boundary and Ray's retry continues at that batch (:mod:`trainables.preemption`);
* at the last epoch: the test split scored with the best epoch's weights, and the artifacts.

Every epoch reports ``epoch``, ``phase``, ``lr``, ``train/loss``, ``val/loss`` and the task's
``val/*`` metrics, ``val/best``, ``best_epoch``, ``resumed_from_epoch``, ``time/train_s``,
``time/train_img_per_s``, ``time/epoch_s`` and ``time/total_s`` (all epochs of the trial so far,
across restarts), and after each (re)start the model's cost (``model/*``).

Example (a trainable)::

    def train_classifier(config: dict) -> None:
        fit(ClassifierTask(ClassifierConfig.model_validate(config)))
"""

from __future__ import annotations

import abc
import logging
import time
from pathlib import Path
from typing import Any, Iterable, Iterator

import torch
from torch import nn

from trainables._registry import ARTIFACT_COUNT_KEY
from trainables._runtime import (
    BEST_REF_KEY,
    autocast,
    begin_trial,
    load_trial_checkpoint,
    quiet_ray_logs,
    report_with_checkpoint,
    reported_checkpoint_name,
    rng_state,
    select_device,
    set_rng_state,
    slim_final_checkpoint,
    trial_dir,
)
from trainables.data.augment import normalize_batch
from trainables.data.tensors import SplitTensors
from trainables.finetune import FineTuneSchedule, enter_phase, train_mode
from trainables.preemption import EpochCursor, Preemption
from trainables.profile import model_profile
from trainables.training_config import TrainingConfig

__all__ = ["Task", "batch_indices", "fit", "predict", "prepare_batch", "train_one_epoch"]

logger = logging.getLogger(__name__)


class Task(abc.ABC):
    """What one kind of trainable adds to the shared loop.

    Subclasses set ``self.splits`` in :meth:`load_data` and implement the abstract methods.
    ``SplitTensors.labels`` holds the targets: (N,) class indices or (N, H, W) masks.

    Args:
        cfg: The trial's validated config.
    """

    def __init__(self, cfg: TrainingConfig) -> None:
        self.cfg = cfg
        self.splits: dict[str, SplitTensors] = {}

    @abc.abstractmethod
    def load_data(self) -> dict[str, SplitTensors]:
        """Reads the trial's splits (``train``, ``val``, optionally ``test``)."""

    @abc.abstractmethod
    def build_model(self) -> nn.Module:
        """The network (a pure ``nn.Module``); called after :meth:`load_data`."""

    @abc.abstractmethod
    def build_loss(self) -> nn.Module:
        """The loss, called as ``loss(outputs, targets)``."""

    @abc.abstractmethod
    def train_batch(self, index: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """The augmented training batch at ``index``: (B, 3, H, W) uint8 images and targets.

        Every random draw comes from ``generator`` (exact resume depends on it).
        """

    @abc.abstractmethod
    def score(self, outputs: torch.Tensor, data: SplitTensors, prefix: str) -> dict[str, float]:
        """Metrics ``{f"{prefix}/<name>": value}`` of ``outputs`` (model outputs of every sample
        of ``data`` in order, on the CPU) against ``data.labels``."""

    def write_artifacts(self, model: nn.Module, out_dir: Path, history: list[dict[str, Any]], device: torch.device) -> dict[str, Path]:
        """Writes end-of-trial files into ``out_dir`` with the best weights loaded; returns them."""
        return {}

    def checkpoint_extras(self) -> dict[str, Any]:
        """Task keys stored in every checkpoint beside the loop's (e.g. ``classes``)."""
        return {}

    def report_extras(self) -> dict[str, Any]:
        """Task keys reported with every epoch's metrics (e.g. a scoring convention)."""
        return {}

    def targets_for_loss(self, data: SplitTensors) -> torch.Tensor:
        """The targets ``loss(outputs, targets)`` takes for a whole split."""
        return data.labels


# --------------------------------------------------------------------------- steps


def batch_indices(n: int, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    """A seeded permutation of ``range(n)`` cut into batches; a lone last sample joins the one before.

    Training BatchNorm cannot normalise a batch of one ("Expected more than 1 value per
    channel"), so ``n = k·b + 1`` gives ``k - 1`` batches of ``b`` and one of ``b + 1``. The cut
    depends only on ``n`` and ``batch_size``, so a resumed epoch replays it exactly.
    """
    order = torch.randperm(n, generator=generator)
    batches = list(torch.split(order, batch_size))
    if len(batches) > 1 and len(batches[-1]) == 1:
        batches[-2:] = [torch.cat(batches[-2:])]
    return batches


def prepare_batch(images: torch.Tensor, cfg: TrainingConfig, device: torch.device) -> torch.Tensor:
    """uint8 (B, 3, H, W) → normalised float on ``device`` (NHWC on CUDA with ``channels_last``)."""
    x = normalize_batch(images.to(device, non_blocking=True), cfg.normalization)
    if cfg.channels_last and device.type == "cuda":
        return x.contiguous(memory_format=torch.channels_last)
    return x


def train_one_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    cfg: TrainingConfig,
    device: torch.device,
    scaler: torch.amp.GradScaler,
    cursor: EpochCursor | None = None,
) -> float:
    """One pass over ``batches`` of (uint8 images, targets); returns the sample-weighted mean loss.

    BatchNorm layers of frozen backbone layers keep their statistics (``finetune.train_mode``).
    With a ``cursor`` the loss continues its sums, and each batch boundary is reported to it
    (where a preempted trial saves its mid-epoch state and stops: ``trainables.preemption``).

    Raises:
        FloatingPointError: the loss became NaN or infinite (the trial errors, Ray records it).
    """
    train_mode(model)
    use_amp = cfg.amp and device.type == "cuda"
    total, seen = (cursor.loss_sum, cursor.seen) if cursor is not None else (0.0, 0)
    for images, targets in batches:
        x = prepare_batch(images, cfg, device)
        y = targets.to(device)
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, use_amp):
            loss = loss_fn(model(x).float(), y)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"training loss became {loss.item()} (lr={cfg.lr}); the trial is marked as errored")
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        total += loss.item() * len(images)
        seen += len(images)
        if cursor is not None:
            cursor.batch_done(total, seen)
    return total / max(seen, 1)


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, cfg: TrainingConfig, device: torch.device) -> torch.Tensor:
    """Model outputs for every image of ``images`` (N, 3, H, W) uint8 in order, float32 on the CPU."""
    model.eval()
    outputs = []
    for start in range(0, len(images), cfg.eval_batch_size):
        x = prepare_batch(images[start : start + cfg.eval_batch_size], cfg, device)
        with autocast(device, cfg.amp and device.type == "cuda"):
            outputs.append(model(x).float().cpu())
    return torch.cat(outputs)


def evaluate(task: Task, model: nn.Module, loss_fn: nn.Module, data: SplitTensors, device: torch.device, prefix: str) -> dict[str, float]:
    """``{prefix}/loss`` and the task's metrics on ``data``."""
    outputs = predict(model, data.images, task.cfg, device)
    metrics = task.score(outputs, data, prefix)
    metrics[f"{prefix}/loss"] = float(loss_fn(outputs, task.targets_for_loss(data)))
    return metrics


# --------------------------------------------------------------------------- schedule and state


def schedule_of(cfg: TrainingConfig) -> FineTuneSchedule:
    """One phase, or the two-phase schedule when ``phase1_epochs`` > 0."""
    if cfg.phase1_epochs:
        return FineTuneSchedule.two_phase(
            cfg.phase1_epochs, cfg.phase1_lr, cfg.epochs - cfg.phase1_epochs, cfg.lr, cfg.fine_tune_fraction
        )
    return FineTuneSchedule.single(cfg.epochs, cfg.lr, cfg.fine_tune_fraction)


def _enter(model: nn.Module, schedule: FineTuneSchedule, cfg: TrainingConfig, epoch: int):
    """The phase of ``epoch`` with a fresh optimiser and LR schedule over its trainable params."""
    phase = schedule.phase_for_epoch(epoch)
    optimizer, scheduler = enter_phase(
        model, phase, cfg.optimizer, cfg.weight_decay, cfg.lr_schedule, cfg.warmup_epochs,
        schedule.epochs_in_phase(phase.index), momentum=cfg.momentum, input_size=cfg.image_size,
    )
    return phase, optimizer, scheduler


def scale_lr(optimizer, scheduler, ratio: float) -> None:
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


class _Best:
    """The best epoch so far by ``select_metric``, a CPU copy of its weights, and where they are stored.

    ``ref`` names this trial's checkpoint that holds them (``best_model``): every later checkpoint
    refers to it instead of holding a copy. None until they are stored in one.
    """

    def __init__(self, metric: str, state: dict | None = None) -> None:
        self.metric = metric
        self.lower_is_better = metric.endswith("loss")
        self.score, self.epoch, self.weights, self.ref = None, 0, None, None
        if state:  # resumed: the best epoch so far, from the checkpoint
            self.score, self.epoch, self.weights = state["best_score"], state["best_epoch"], state["best_model"]
            self.ref = state.get(BEST_REF_KEY)

    def update(self, metrics: dict[str, float], model: nn.Module, epoch: int) -> None:
        value = metrics[self.metric]
        better = self.score is None or (value < self.score if self.lower_is_better else value > self.score)
        if better:
            self.score, self.epoch, self.ref = value, epoch, None
            self.weights = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}

    def checkpoint_keys(self, model_state: dict[str, Any], epoch: int) -> dict[str, Any]:
        """``best_model`` (or the reference to the checkpoint holding it) for epoch ``epoch``'s checkpoint."""
        if self.ref is not None:
            return {"best_model": None, BEST_REF_KEY: self.ref}
        # the best epoch is this one: the same tensors as ``model``, which torch.save writes once
        return {"best_model": model_state if self.epoch == epoch else self.weights, BEST_REF_KEY: None}

    def stored(self, checkpoint_name: str | None, epoch: int) -> None:
        """Called after epoch ``epoch``'s checkpoint was reported as ``checkpoint_name``.

        Only the best epoch's own checkpoint becomes the reference: the pruner keeps the
        checkpoint whose ``epoch`` is a kept one's ``best_epoch``. Weights inherited from another
        trial (PBT) are stored in every checkpoint until this trial finds a better epoch.
        """
        if self.ref is None and self.epoch == epoch:
            self.ref = checkpoint_name


def _epoch_batches(task: Task, cursor: EpochCursor) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    for index in cursor.remaining():
        yield task.train_batch(index, cursor.generator)


# --------------------------------------------------------------------------- the loop


def fit(task: Task) -> None:
    """Trains ``task`` under Ray Tune: one report with a checkpoint per epoch (see the module doc)."""
    cfg = task.cfg
    begin_trial(cfg.seed)  # a reused worker: nothing of the previous trial leaks into this one
    quiet_ray_logs()
    device = select_device(cfg.device)
    task.splits = task.load_data()

    model = task.build_model().to(device)
    if cfg.channels_last and device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    loss_fn = task.build_loss()
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.amp and device.type == "cuda")
    schedule = schedule_of(cfg)

    state = load_trial_checkpoint()
    if state and "model" not in state:  # the finished trial's slim checkpoint: nothing is left to run
        logger.info("trial already finished at epoch %s; nothing to resume", state.get("epoch"))
        return
    if state and state["epoch"] >= cfg.epochs:  # finished, but stopped before its checkpoint was slimmed
        slim_final_checkpoint(tuple(task.checkpoint_extras()))
        return
    preemption = Preemption(cfg.model_dump(mode="json"))
    state = preemption.resume(state)  # a preempted epoch of this checkpoint continues at its batch
    start_epoch = state["epoch"] + 1 if state else 1
    if state:
        model.load_state_dict(state["model"])
    phase, optimizer, scheduler = _enter(model, schedule, cfg, start_epoch)
    if state:
        if state["phase"] == phase.index:  # mid-phase: continue the optimiser and schedule
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            saved_lr = schedule_of(type(cfg).model_validate(state["config"])).phase_for_epoch(start_epoch).lr
            scale_lr(optimizer, scheduler, phase.lr / saved_lr)
        scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"])
    best = _Best(cfg.select_metric, state)
    history: list[dict[str, Any]] = list(state["history"]) if state else []
    elapsed = float(state.get("elapsed_s", 0.0)) if state else 0.0
    profile = model_profile(model, cfg.image_size, device) if cfg.profile else {}

    for epoch in range(start_epoch, cfg.epochs + 1):
        started = time.perf_counter()
        if schedule.phase_for_epoch(epoch).index != phase.index:
            phase, optimizer, scheduler = _enter(model, schedule, cfg, epoch)
        lr = optimizer.param_groups[0]["lr"]
        generator = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)
        cursor = preemption.cursor(epoch, generator, batch_indices(len(task.splits["train"]), cfg.batch_size, generator), lambda: {
            "model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(), "phase": phase.index, "config": cfg.model_dump(mode="json"),
            "elapsed_s": elapsed + time.perf_counter() - started,
        })
        train_loss = train_one_epoch(model, optimizer, loss_fn, _epoch_batches(task, cursor), cfg, device, scaler, cursor)
        train_seconds = time.perf_counter() - started + cursor.train_s
        scheduler.step()
        metrics: dict[str, Any] = {
            "epoch": epoch, "phase": phase.index, "lr": lr, "train/loss": train_loss,
            "time/train_s": train_seconds, "time/train_img_per_s": len(task.splits["train"]) / train_seconds,
            **task.report_extras(),
        }
        metrics.update(evaluate(task, model, loss_fn, task.splits["val"], device, "val"))
        best.update(metrics, model, epoch)
        metrics.update({"val/best": best.score, "best_epoch": best.epoch, "resumed_from_epoch": start_epoch - 1})
        metrics.update(profile)
        profile = {}
        history.append({k: v for k, v in metrics.items() if isinstance(v, (int, float))})
        if epoch == cfg.epochs:
            metrics.update(_finish(task, model, best, loss_fn, device, history))
        metrics["time/epoch_s"] = time.perf_counter() - started
        elapsed += metrics["time/epoch_s"]
        metrics["time/total_s"] = elapsed
        model_state = model.state_dict()
        report_with_checkpoint(
            metrics,
            {
                "model": model_state,
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict(),
                "rng": rng_state(),
                "epoch": epoch,
                "phase": phase.index,
                "best_score": best.score,
                "best_epoch": best.epoch,
                **best.checkpoint_keys(model_state, epoch),
                "history": history,
                "elapsed_s": elapsed,
                "config": cfg.model_dump(mode="json"),
                **task.checkpoint_extras(),
            },
        )
        best.stored(reported_checkpoint_name(), epoch)
        preemption.epoch_ended()
    preemption.close()
    if start_epoch <= cfg.epochs:
        # a finished trial keeps what export and the report read: the best weights, not the optimiser
        slim_final_checkpoint(tuple(task.checkpoint_extras()))


def _finish(task: Task, model: nn.Module, best: _Best, loss_fn: nn.Module, device, history) -> dict[str, Any]:
    """Test scores and artifacts with the best epoch's weights; the last weights are put back."""
    last = {k: v.detach().clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best.weights)
    try:
        test = task.splits.get("test")
        metrics: dict[str, Any] = evaluate(task, model, loss_fn, test, device, "test") if test is not None else {}
        if task.cfg.artifacts:
            out_dir = trial_dir()
            if out_dir is None:
                logger.warning("no trial directory (not running under Ray Tune): artifacts skipped")
            else:
                written = task.write_artifacts(model, out_dir / "artifacts", history, device)
                # the count lets the W&B logger wait until every image reached the study directory
                metrics[ARTIFACT_COUNT_KEY] = sum(1 for p in written.values() if p.suffix == ".png" and p.parent.name == "artifacts")
        return metrics
    finally:
        model.load_state_dict(last)
