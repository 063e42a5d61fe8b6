"""Decodes a split sample index into in-memory uint8 tensors, once per process.

Trials that share a worker process (actor reuse) share the decoded arrays; the cache key is
the file list and the target size, so a different dataset or size decodes anew.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from trainables.data.folder import FolderDataset

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "SplitTensors", "decode_images", "load_split_tensors", "normalize"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class SplitTensors:
    images: torch.Tensor  # (N, 3, H, W) uint8
    labels: torch.Tensor  # (N,) int64

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def _decode(path: Path, size: int) -> np.ndarray:
    with Image.open(path) as im:
        rgb = im.convert("RGB")
        if rgb.size != (size, size):
            rgb = rgb.resize((size, size), Image.BILINEAR)
        return np.asarray(rgb, dtype=np.uint8)


@functools.lru_cache(maxsize=8)
def decode_images(paths: tuple[Path, ...], size: int) -> torch.Tensor:
    """Decodes and stretches images to ``size``×``size``; returns (N, 3, H, W) uint8."""
    if not paths:
        return torch.empty((0, 3, size, size), dtype=torch.uint8)
    array = np.stack([_decode(p, size) for p in paths])  # (N, H, W, 3)
    return torch.from_numpy(array).permute(0, 3, 1, 2).contiguous()


def load_split_tensors(dataset: FolderDataset, size: int) -> dict[str, SplitTensors]:
    """Returns ``{"train"|"val"|"test": SplitTensors}`` for the splits that have images."""
    out = {}
    for split in ("train", "val", "test"):
        samples = dataset.split(split)
        if samples:
            images = decode_images(tuple(s.path for s in samples), size)
            labels = torch.tensor([s.label for s in samples], dtype=torch.int64)
            out[split] = SplitTensors(images=images, labels=labels)
    return out


def normalize(images: torch.Tensor, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> torch.Tensor:
    """uint8 (N, 3, H, W) → float32 normalised with per-channel mean/std (on the images' device)."""
    mean_t = torch.tensor(mean, device=images.device).view(1, 3, 1, 1)
    std_t = torch.tensor(std, device=images.device).view(1, 3, 1, 1)
    return (images.float().div_(255.0) - mean_t) / std_t
