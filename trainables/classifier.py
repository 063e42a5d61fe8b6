"""The ``classifier`` trainable: a timm backbone with the papers' heads, losses and fine-tuning.

Every epoch it reports ``train/loss``, ``val/loss`` and the validation metrics
(``val/accuracy``, ``val/precision``, ``val/recall``, ``val/f1``, ``val/roc_auc``,
``val/pr_auc``, ``val/kappa``; per class ``val/f1/<class>`` for more than two classes) with a
checkpoint, plus ``lr``, ``phase`` and, after each (re)start, the model's cost (``model/*``).
The last epoch adds ``test/*`` scored with the weights of the best validation epoch, and
writes the end-of-trial artifacts (confusion matrix, ROC, PR, curves, Grad-CAM overlays) to
``<trial dir>/artifacts/``.

The loop (resume, phases, best epoch, reporting, final test) is :func:`trainables.loop.fit`;
this module supplies the :class:`ClassifierTask`.

Example (inside Ray Tune)::

    tuner = tune.Tuner(train_classifier, param_space={"data": {"path": "synthetic:corrosion"}})
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from trainables import loop
from trainables.classifier_build import build_loss, build_model, positive_index
from trainables.classifier_config import ClassifierConfig
from trainables.data.augment import Augmentation, build_augmentation, expand_offline
from trainables.data.index import SampleIndex
from trainables.data.prepare import load_index
from trainables.data.tensors import SplitTensors, load_split_tensors
from trainables.metrics import classification_metrics

__all__ = ["ClassifierTask", "evaluate", "load_training_data", "predict", "train_classifier", "train_one_epoch"]


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
    starts from the same generator state replays exactly (:func:`trainables.loop.train_one_epoch`).
    """
    batches = (
        (augmentation(data.images[index], None, generator)[0], data.labels[index])  # (B, 3, H, W) uint8
        for index in loop.batch_indices(len(data), cfg.batch_size, generator)
    )
    return loop.train_one_epoch(model, optimizer, loss_fn, batches, cfg, device, scaler)


def predict(model: nn.Module, data: SplitTensors, cfg: ClassifierConfig, device: torch.device) -> torch.Tensor:
    """Logits for every image of ``data`` in order: (N, outputs) float32 on the CPU."""
    return loop.predict(model, data.images, cfg, device)


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


class ClassifierTask(loop.Task):
    """Image classification on the shared loop: timm backbone + head, classification metrics."""

    cfg: ClassifierConfig

    def load_data(self) -> dict[str, SplitTensors]:
        dataset, splits = load_training_data(self.cfg)
        self.classes = dataset.classes
        self.positive = positive_index(self.cfg, self.classes)
        self.augmentation = build_augmentation(self.cfg.augmentation)
        return splits

    def build_model(self) -> nn.Module:
        return build_model(self.cfg, len(self.classes))

    def build_loss(self) -> nn.Module:
        return build_loss(self.cfg, len(self.classes), self.splits["train"].labels)

    def train_batch(self, index: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        train = self.splits["train"]
        images, _ = self.augmentation(train.images[index], None, generator)  # (B, 3, H, W) uint8
        return images, train.labels[index]

    def score(self, outputs: torch.Tensor, data: SplitTensors, prefix: str) -> dict[str, float]:
        return classification_metrics(
            outputs, data.labels, len(self.classes), self.positive, prefix=prefix, class_names=self.classes
        )

    def checkpoint_extras(self) -> dict[str, Any]:
        return {"classes": list(self.classes)}

    def write_artifacts(self, model: nn.Module, out_dir: Path, history: list[dict[str, Any]], device: torch.device) -> dict[str, Path]:
        """Confusion matrix, ROC, PR, curves and Grad-CAM overlays of the validation split."""
        from trainables.artifacts import write_trial_artifacts

        cfg, data, positive = self.cfg, self.splits["val"], self.positive
        logits = predict(model, data, cfg, device)
        binary = logits.shape[1] == 1
        scores = torch.sigmoid(logits[:, 0]) if binary else torch.softmax(logits, dim=1)
        if binary:
            preds = (scores >= 0.5).long()
            scores = scores if positive == 1 else 1.0 - scores
        else:
            preds = scores.argmax(dim=1)
        return write_trial_artifacts(
            out_dir,
            targets=data.labels.numpy(), scores=scores.numpy(), preds=preds.numpy(), classes=list(self.classes),
            history=history, positive_index=positive, model=model,
            sample_images=data.images[: cfg.gradcam_images], sample_targets=data.labels[: cfg.gradcam_images].tolist(),
            normalization=cfg.normalization, binary=binary,
        )


def train_classifier(config: dict[str, Any]) -> None:
    """Ray Tune function trainable; ``config`` validates as :class:`ClassifierConfig`."""
    loop.fit(ClassifierTask(ClassifierConfig.model_validate(config)))
