"""Reads an image-classification folder into a split sample index.

Layouts:
    * pre-split: ``{train,val|validation,test}/<class>/*`` (test optional), kept as is;
    * ImageFolder: ``<class>/*``, split here, stratified and seeded.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from trainables.data.config import DataConfig

__all__ = ["IMAGE_SUFFIXES", "FolderDataset", "Sample", "read_classification_folder", "resolve_root"]

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})
_SPLIT_ALIASES = {"train": "train", "val": "val", "validation": "val", "valid": "val", "test": "test"}
_JUNK_NAMES = frozenset({"thumbs.db", "desktop.ini"})


@dataclass(frozen=True)
class Sample:
    path: Path
    label: int
    split: str


@dataclass(frozen=True)
class FolderDataset:
    """A split sample index.

    Attributes:
        root: The folder read.
        classes: Class names in label order (sorted).
        samples: Every sample with its label and split (``train``/``val``/``test``).
    """

    root: Path
    classes: tuple[str, ...]
    samples: tuple[Sample, ...]

    def split(self, name: str) -> list[Sample]:
        return [s for s in self.samples if s.split == name]


def resolve_root(data: DataConfig) -> Path:
    """Returns the classification folder a ``DataConfig`` points at (generating synthetic data)."""
    if data.is_synthetic:
        from trainables.data.synthetic import ensure_corrosion_dataset

        return ensure_corrosion_dataset(**data.synthetic.model_dump()) / "classification"
    return Path(data.path).expanduser().resolve()


def _is_image(path: Path) -> bool:
    name = path.name
    if name.startswith(".") or name.lower() in _JUNK_NAMES:
        return False
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES


def _subdirs(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))


def _class_files(split_dir: Path) -> dict[str, list[Path]]:
    return {d.name: sorted(f for f in d.iterdir() if _is_image(f)) for d in _subdirs(split_dir)}


def _stratified_split(
    per_class: dict[str, list[Path]], ratios: tuple[float, float, float], seed: int
) -> dict[str, list[tuple[Path, str]]]:
    rng = np.random.default_rng(seed)
    out: dict[str, list[tuple[Path, str]]] = {}
    for name, files in per_class.items():
        order = rng.permutation(len(files))
        n_train = int(round(ratios[0] * len(files)))
        n_val = int(round(ratios[1] * len(files)))
        names = ["train"] * n_train + ["val"] * n_val + ["test"] * (len(files) - n_train - n_val)
        out[name] = [(files[i], split) for i, split in zip(order, names)]
    return out


def read_classification_folder(
    root: str | os.PathLike, split: tuple[float, float, float] = (0.7, 0.15, 0.15), seed: int = 0
) -> FolderDataset:
    """Indexes a classification folder.

    Args:
        root: Folder in one of the module's layouts.
        split: Train/val/test ratios, used only when the folder is not split already.
        seed: Seed of that split.

    Raises:
        FileNotFoundError: ``root`` does not exist.
        ValueError: unknown layout, fewer than two classes, or a split without images of a class.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset folder {str(root)!r} does not exist (set data.path to an image folder)")
    top = {d.name.lower(): d for d in _subdirs(root)}
    split_dirs = {_SPLIT_ALIASES[k]: v for k, v in top.items() if k in _SPLIT_ALIASES}
    if split_dirs:
        if "train" not in split_dirs or "val" not in split_dirs:
            raise ValueError(
                f"{root}: a pre-split folder needs train/ and val/ (or validation/) sub-folders; "
                f"found {sorted(split_dirs)}"
            )
        per_split = {name: _class_files(d) for name, d in split_dirs.items()}
        classes = sorted(set().union(*(set(c) for c in per_split.values())))
        assignments = {c: [(f, s) for s, files in per_split.items() for f in files.get(c, [])] for c in classes}
    else:
        per_class = _class_files(root)
        classes = sorted(per_class)
        assignments = _stratified_split(per_class, split, seed)
    _check_classes(root, classes, assignments)
    index = {c: i for i, c in enumerate(classes)}
    samples = tuple(Sample(path=f, label=index[c], split=s) for c in classes for f, s in assignments[c])
    return FolderDataset(root=root, classes=tuple(classes), samples=samples)


def _check_classes(root: Path, classes: list[str], assignments: dict[str, list[tuple[Path, str]]]) -> None:
    counts = {c: len(items) for c, items in assignments.items()}
    nonempty = [c for c in classes if counts.get(c)]
    if len(nonempty) < 2:
        raise ValueError(
            f"{root}: expected at least two class folders with images (<class>/*.jpg), found "
            f"{counts or 'no class folders'}"
        )
    for split in ("train", "val"):
        missing = [c for c in nonempty if not any(s == split for _, s in assignments[c])]
        if missing:
            raise ValueError(f"{root}: the {split} split has no images of class(es) {missing}; add images or change data.split")
