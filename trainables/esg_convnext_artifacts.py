"""P004's extra measurements and figures: FPS, penultimate features, t-SNE, per-class Grad-CAM."""

from __future__ import annotations

import csv
import logging
import statistics
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn

from trainables._runtime import autocast
from trainables.loop import prepare_batch
from trainables.training_config import TrainingConfig

__all__ = ["first_of_each_class", "images_per_second", "penultimate_features", "save_tsne", "tsne_embedding"]

logger = logging.getLogger(__name__)

TSNE_SEED = 42
"""P004's t-SNE seed."""


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def images_per_second(
    model: nn.Module, image_size: int, batch_size: int, device: torch.device, repeats: int = 5, amp: bool = False
) -> float:
    """Inference images/s at ``batch_size``: median of ``repeats`` timed eval forwards after a warm-up.

    The model's train/eval flag is put back; CUDA is synchronised around each forward.
    """
    was_training = model.training
    model.eval()
    x = torch.zeros(batch_size, 3, image_size, image_size, device=device)  # (B, 3, H, W)
    timings = []
    try:
        with autocast(device, amp and device.type == "cuda"):
            for i in range(repeats + 1):
                _sync(device)
                started = time.perf_counter()
                model(x)
                _sync(device)
                if i:  # the first forward warms caches and kernels up
                    timings.append(time.perf_counter() - started)
    finally:
        model.train(was_training)
    return batch_size / statistics.median(timings)


@torch.no_grad()
def penultimate_features(model: nn.Module, images: torch.Tensor, cfg: TrainingConfig, device: torch.device) -> np.ndarray:
    """``model.features`` (the input of the last Linear) of every uint8 image, as (N, C) float32."""
    was_training = model.training
    model.eval()
    chunks = []
    try:
        for start in range(0, len(images), cfg.eval_batch_size):
            x = prepare_batch(images[start : start + cfg.eval_batch_size], cfg, device)
            with autocast(device, cfg.amp and device.type == "cuda"):
                chunks.append(model.features(x).float().cpu())  # (B, C)
    finally:
        model.train(was_training)
    return torch.cat(chunks).numpy()


def tsne_embedding(features: np.ndarray, seed: int = TSNE_SEED) -> np.ndarray:
    """scikit-learn's t-SNE of (N, C) features to (N, 2), PCA-initialised, seeded.

    Perplexity is the usual 30, lowered to (N − 1)/3 for small sets (it must stay below N).

    Raises:
        ValueError: fewer than 3 samples.
    """
    from sklearn.manifold import TSNE

    n = len(features)
    if n < 3:
        raise ValueError(f"t-SNE needs at least 3 samples, got {n}")
    perplexity = min(30.0, (n - 1) / 3)
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(features)


def save_tsne(features: np.ndarray, labels: Sequence[int], classes: Sequence[str], out_dir: Path) -> list[Path]:
    """Writes ``tsne.png`` (points coloured by true class) and ``tsne.csv`` (x, y, label, class)."""
    points = tsne_embedding(features)
    labels = np.asarray(labels)
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path = out_dir / "tsne.csv"
    with csv_path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["x", "y", "label", "class"])
        for (x, y), label in zip(points, labels):
            writer.writerow([f"{x:.6f}", f"{y:.6f}", int(label), classes[int(label)]])
    fig = Figure(figsize=(5.5, 4.5))
    ax = fig.add_subplot()
    for index, name in enumerate(classes):
        mask = labels == index
        if mask.any():
            ax.scatter(points[mask, 0], points[mask, 1], s=12, label=name)
    ax.set_title(f"t-SNE of penultimate test features (seed {TSNE_SEED})", fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(fontsize=7, loc="best", markerscale=1.5)
    png_path = out_dir / "tsne.png"
    fig.savefig(png_path, dpi=100, bbox_inches="tight")
    return [png_path, csv_path]


def first_of_each_class(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Index of the first sample of every class present, in class order."""
    return torch.tensor([int(torch.nonzero(labels == c)[0]) for c in range(num_classes) if (labels == c).any()], dtype=torch.long)
