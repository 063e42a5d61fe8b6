"""The ``classifier`` trainable: a timm backbone with a dense head, as a Ray Tune function.

Every epoch it reports ``train/loss``, ``val/loss``, ``val/accuracy``, ``val/f1`` (and the
other validation metrics) with a checkpoint; the last epoch adds ``test/*`` scored with the
weights of the best validation epoch. On (re)start it resumes from ``tune.get_checkpoint()``:
model, optimiser, AMP scaler, epoch, best score and RNG state.

Example (inside Ray Tune)::

    tuner = tune.Tuner(train_classifier, param_space={"data": {"path": "synthetic:corrosion"}})
"""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import nn

from trainables._backbones import create_backbone
from trainables._runtime import (
    autocast,
    load_trial_checkpoint,
    quiet_ray_logs,
    report_with_checkpoint,
    rng_state,
    seed_everything,
    select_device,
    set_rng_state,
)
from trainables.classifier_config import ClassifierConfig
from trainables.data.augment import Augmentation, build_augmentation, expand_offline, normalize_batch
from trainables.data.index import SampleIndex
from trainables.data.prepare import load_index
from trainables.data.tensors import SplitTensors, load_split_tensors
from trainables.metrics import classification_metrics
from trainables.models.classifier import ClassifierNet

__all__ = ["build_model", "evaluate", "load_training_data", "train_classifier", "train_one_epoch"]

SELECTION_METRIC = "val/accuracy"
"""Metric that picks the best epoch whose weights score the test split."""


def build_model(cfg: ClassifierConfig, num_classes: int) -> ClassifierNet:
    """Builds the network for ``num_classes`` (one logit when the loss is binary)."""
    backbone = create_backbone(cfg.backbone, cfg.pretrained)
    return ClassifierNet(
        backbone,
        num_features=backbone.num_features,
        num_outputs=1 if _is_binary(cfg, num_classes) else num_classes,
        pooling=cfg.pooling,
        dense_units=cfg.dense_units,
        dropout=cfg.dropout,
        feature_format=str(getattr(backbone, "output_fmt", "NCHW")),
    )


def _is_binary(cfg: ClassifierConfig, num_classes: int) -> bool:
    if cfg.loss == "bce" and num_classes != 2:
        raise ValueError(f"loss: bce needs exactly two classes, the dataset has {num_classes}")
    return cfg.loss == "bce" or (cfg.loss == "auto" and num_classes == 2)


def _loss_fn(binary: bool) -> nn.Module:
    return nn.BCEWithLogitsLoss() if binary else nn.CrossEntropyLoss()


def _loss(loss_fn: nn.Module, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    if isinstance(loss_fn, nn.BCEWithLogitsLoss):
        return loss_fn(logits.reshape(-1), targets.float())
    return loss_fn(logits, targets)


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
    starts from the same generator state replays exactly.
    """
    model.train()
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
            loss = _loss(loss_fn, model(x), y)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"training loss became {loss.item()} (lr={cfg.lr}); the trial is marked as errored")
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        total += loss.item() * len(index)
        seen += len(index)
    return total / max(seen, 1)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loss_fn: nn.Module,
    data: SplitTensors,
    cfg: ClassifierConfig,
    device: torch.device,
    num_classes: int,
    positive_index: int,
    prefix: str,
) -> dict[str, float]:
    """Scores ``data``; returns ``{prefix}/loss`` and the classification metrics."""
    model.eval()
    logits = []
    for start in range(0, len(data), cfg.eval_batch_size):
        x = _prepare(data.images[start : start + cfg.eval_batch_size], cfg, device)
        with autocast(device, cfg.amp and device.type == "cuda"):
            logits.append(model(x).float().cpu())
    all_logits = torch.cat(logits)
    metrics = classification_metrics(all_logits, data.labels, num_classes, positive_index, prefix=prefix)
    metrics[f"{prefix}/loss"] = float(_loss(loss_fn, all_logits, data.labels))
    return metrics


def _positive_index(cfg: ClassifierConfig, classes: tuple[str, ...]) -> int:
    if cfg.positive_class is None:
        return 1
    if cfg.positive_class not in classes:
        raise ValueError(f"positive_class {cfg.positive_class!r} is not a class of the dataset {list(classes)}")
    return classes.index(cfg.positive_class)


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


def train_classifier(config: dict[str, Any]) -> None:
    """Ray Tune function trainable; ``config`` validates as :class:`ClassifierConfig`."""
    cfg = ClassifierConfig.model_validate(config)
    quiet_ray_logs()
    device = select_device(cfg.device)
    dataset, splits = load_training_data(cfg)
    augmentation = build_augmentation(cfg.augmentation)
    num_classes = len(dataset.classes)
    positive_index = _positive_index(cfg, dataset.classes)

    seed_everything(cfg.seed)
    model = build_model(cfg, num_classes).to(device)
    if cfg.channels_last and device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    loss_fn = _loss_fn(_is_binary(cfg, num_classes))
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.amp and device.type == "cuda")

    start_epoch, best_score, best_epoch, best_weights = 1, float("-inf"), 0, None
    state = load_trial_checkpoint()
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"])
        start_epoch = state["epoch"] + 1
        best_score, best_epoch, best_weights = state["best_score"], state["best_epoch"], state["best_model"]

    for epoch in range(start_epoch, cfg.epochs + 1):
        started = time.perf_counter()
        generator = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)
        train_loss = train_one_epoch(
            model, optimizer, loss_fn, splits["train"], cfg, generator, device, scaler, augmentation
        )
        metrics = {"epoch": epoch, "train/loss": train_loss, "resumed_from_epoch": start_epoch - 1}
        metrics.update(evaluate(model, loss_fn, splits["val"], cfg, device, num_classes, positive_index, "val"))
        if metrics[SELECTION_METRIC] > best_score:
            best_score, best_epoch = metrics[SELECTION_METRIC], epoch
            best_weights = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        metrics["val/best_accuracy"], metrics["best_epoch"] = best_score, best_epoch
        if epoch == cfg.epochs and "test" in splits:
            metrics.update(_score_test(model, best_weights, loss_fn, splits["test"], cfg, device, num_classes, positive_index))
        metrics["time/epoch_s"] = time.perf_counter() - started
        report_with_checkpoint(
            metrics,
            {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scaler": scaler.state_dict(),
                "rng": rng_state(),
                "epoch": epoch,
                "best_score": best_score,
                "best_epoch": best_epoch,
                "best_model": best_weights,
                "config": cfg.model_dump(mode="json"),
                "classes": list(dataset.classes),
            },
        )


def _score_test(model, best_weights, loss_fn, data, cfg, device, num_classes, positive_index) -> dict[str, float]:
    """Scores the test split with the best epoch's weights, then puts the last weights back."""
    last = {k: v.detach().clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_weights)
    try:
        return evaluate(model, loss_fn, data, cfg, device, num_classes, positive_index, "test")
    finally:
        model.load_state_dict(last)
