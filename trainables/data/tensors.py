"""Turns a sample index into per-split uint8 tensors, via the decode-once disk cache.

Every image is decoded and resized once per (dataset, size, resize policy) into a memory-mapped
store that all trials on a node share (:mod:`trainables.data.cache`); a trial copies its
splits out of it into memory. Trials that share a worker process (actor reuse) also share the
in-process arrays.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import numpy as np
import torch

from trainables.data.cache import open_decoded
from trainables.data.index import Sample, SampleIndex

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "SplitTensors", "load_split_tensors", "normalize"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class SplitTensors:
    images: torch.Tensor  # (N, 3, H, W) uint8
    labels: torch.Tensor  # (N,) int64

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@functools.lru_cache(maxsize=4)
def _decoded(entries: tuple[tuple[str, str], ...], size: int, policy: str) -> np.ndarray:
    return open_decoded(list(entries), size, policy, kind="image")


def _fingerprint(sample: Sample) -> str:
    if sample.hash:
        return sample.hash
    stat = os.stat(sample.path)
    return f"{os.path.abspath(sample.path)}|{stat.st_size}|{stat.st_mtime_ns}"


def load_split_tensors(dataset: SampleIndex, size: int, resize: str = "stretch") -> dict[str, SplitTensors]:
    """Returns ``{"train"|"val"|"test": SplitTensors}`` for the splits that have images.

    The cache holds the whole dataset in path order, so one cache serves every split and split
    seed. Samples without a content hash (read outside a study) are keyed by absolute path,
    size and modification time instead.
    """
    ordered = sorted(dataset.samples, key=lambda s: s.path)
    decoded = _decoded(tuple((s.path, _fingerprint(s)) for s in ordered), size, resize)  # (N, H, W, 3)
    row = {s.path: i for i, s in enumerate(ordered)}
    out = {}
    for split in ("train", "val", "test"):
        samples = dataset.split(split)
        if samples:
            rows = np.fromiter((row[s.path] for s in samples), dtype=np.int64, count=len(samples))
            images = torch.from_numpy(np.ascontiguousarray(decoded[rows])).permute(0, 3, 1, 2).contiguous()
            labels = torch.tensor([s.label for s in samples], dtype=torch.int64)
            out[split] = SplitTensors(images=images, labels=labels)
    return out


def normalize(images: torch.Tensor, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> torch.Tensor:
    """uint8 (N, 3, H, W) → float32 normalised with per-channel mean/std (on the images' device)."""
    mean_t = torch.tensor(mean, device=images.device).view(1, 3, 1, 1)
    std_t = torch.tensor(std, device=images.device).view(1, 3, 1, 1)
    return (images.float().div_(255.0) - mean_t) / std_t
