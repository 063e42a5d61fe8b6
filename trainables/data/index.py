"""The one internal sample index every reader returns and every trial consumes."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal, Optional

__all__ = ["SPLITS", "Sample", "SampleIndex"]

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Sample:
    """One image.

    Attributes:
        path: Absolute image path.
        label: Class index (classification), else None.
        mask: Absolute mask path (segmentation), else None.
        split: ``train``/``val``/``test``, or None until a split is assigned.
        hash: Content hash of the image file (sha256 hex), when known.
    """

    path: str
    label: Optional[int] = None
    mask: Optional[str] = None
    split: Optional[str] = None
    hash: Optional[str] = None


@dataclass(frozen=True)
class SampleIndex:
    """A dataset as read from disk.

    Attributes:
        root: The folder read.
        task: ``classification`` or ``segmentation``.
        layout: How the folder was organised (``imagefolder``, ``presplit``, ``segmentation``,
            ``segmentation_presplit``, ``coco``).
        classes: Class names in label order (segmentation: the mask classes, background first).
        samples: Every usable sample.
    """

    root: str
    task: Literal["classification", "segmentation"]
    layout: str
    classes: tuple[str, ...]
    samples: tuple[Sample, ...]

    @property
    def presplit(self) -> bool:
        return bool(self.samples) and all(s.split is not None for s in self.samples)

    def split(self, name: str) -> list[Sample]:
        return [s for s in self.samples if s.split == name]

    def with_samples(self, samples) -> "SampleIndex":
        return replace(self, samples=tuple(samples))

    def counts(self) -> dict[str, dict[str, int]]:
        """``{split: {class: n}}`` (classification) or ``{split: {"images": n}}``."""
        out: dict[str, dict[str, int]] = {}
        for s in self.samples:
            key = self.classes[s.label] if s.label is not None else "images"
            per_split = out.setdefault(s.split or "unsplit", {})
            per_split[key] = per_split.get(key, 0) + 1
        return out
