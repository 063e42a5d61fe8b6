"""Reads an image-classification folder into a :class:`SampleIndex`.

Layouts:
    * pre-split: ``{train,val|validation,test}/<class>/*`` (test optional), kept as is; without
      ``val/`` (``train/`` + ``test/`` only) validation is carved from train when splitting;
    * ImageFolder: ``<class>/*``, split by :func:`assign_splits` (stratified, seeded).
"""

from __future__ import annotations

import os
from pathlib import Path

from trainables.data.config import DataConfig
from trainables.data.index import Sample, SampleIndex
from trainables.data.splits import split_index

__all__ = [
    "IMAGE_SUFFIXES",
    "JUNK_NAMES",
    "SPLIT_ALIASES",
    "is_image_file",
    "folder_layout",
    "is_junk",
    "read_classification_folder",
    "resolve_root",
    "scan_classification_folder",
]

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})
SPLIT_ALIASES = {"train": "train", "val": "val", "validation": "val", "valid": "val", "test": "test"}
JUNK_NAMES = frozenset({".ds_store", "thumbs.db", "desktop.ini"})


def is_junk(path: Path) -> bool:
    """OS litter: ``.DS_Store``, AppleDouble ``._*`` files, ``Thumbs.db``, ``desktop.ini``."""
    return path.name.lower() in JUNK_NAMES or path.name.startswith("._")


def is_image_file(path: Path) -> bool:
    return path.is_file() and not path.name.startswith(".") and not is_junk(path) and path.suffix.lower() in IMAGE_SUFFIXES


def resolve_root(data: DataConfig, task: str = "classification") -> Path:
    """Returns the dataset folder a ``DataConfig`` points at (generating synthetic data: its
    ``classification/`` or ``segmentation/`` folder, by ``task``)."""
    if data.is_synthetic:
        from trainables.data.synthetic import ensure_corrosion_dataset

        return ensure_corrosion_dataset(**data.synthetic.model_dump()) / ("segmentation" if task == "segmentation" else "classification")
    return Path(data.path).expanduser().resolve()


def subdirs(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))


def split_dirs(root: Path) -> dict[str, Path]:
    """``{"train"|"val"|"test": folder}`` for the split folders directly under ``root``."""
    return {SPLIT_ALIASES[d.name.lower()]: d for d in subdirs(root) if d.name.lower() in SPLIT_ALIASES}


def folder_layout(root: Path) -> tuple[str, list[str]]:
    """``(layout, class folder names)`` from folder names alone (cheap: no file is read).

    Layouts as :class:`~trainables.data.scan.ScanReport` names them: ``imagefolder``,
    ``presplit``, ``segmentation``, ``segmentation_presplit`` or ``unknown``; segmentation
    layouts have no class folders.
    """
    splits = split_dirs(root)
    sources = list(splits.values()) or [root]
    if all({"images", "masks"} <= {d.name.lower() for d in subdirs(folder)} for folder in sources):
        return ("segmentation_presplit" if splits else "segmentation"), []
    names = sorted({d.name for folder in sources for d in subdirs(folder)})
    return ("presplit" if splits else "imagefolder" if names else "unknown"), names


def scan_classification_folder(root: str | os.PathLike) -> SampleIndex:
    """Indexes a classification folder without assigning splits to an unsplit one.

    Raises:
        FileNotFoundError: ``root`` does not exist.
        ValueError: a pre-split folder without train/, or fewer than two classes with images.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset folder {str(root)!r} does not exist (set data.path to an image folder)")
    layout, _ = folder_layout(root)
    if layout.startswith("segmentation"):
        raise ValueError(
            f"{root}: a segmentation folder ({layout}: images/ + masks/), not classes; a classification "
            "trainable reads <class>/* or {train,val,test}/<class>/* folders: use a segmentation trainable"
        )
    splits = split_dirs(root)
    if splits and "train" not in splits:
        raise ValueError(f"{root}: a pre-split folder needs a train/ sub-folder (val/ is carved from it when missing); found {sorted(splits)}")
    sources = splits or {None: root}
    per_split = {split: {d.name: sorted(f for f in d.iterdir() if is_image_file(f)) for d in subdirs(folder)} for split, folder in sources.items()}
    classes = sorted({c for files in per_split.values() for c, paths in files.items() if paths})
    if len(classes) < 2:
        found = {c: len(p) for files in per_split.values() for c, p in files.items()}
        raise ValueError(
            f"{root}: expected at least two class folders with images (<class>/*.jpg), found {found or 'no class folders'}"
        )
    label = {c: i for i, c in enumerate(classes)}
    samples = [
        Sample(path=str(path.resolve()), label=label[c], split=split)
        for split, files in per_split.items()
        for c, paths in files.items()
        if c in label
        for path in paths
    ]
    return SampleIndex(
        root=str(root), task="classification", layout="presplit" if splits else "imagefolder",
        classes=tuple(classes), samples=tuple(sorted(samples, key=lambda s: (s.label, s.split or "", s.path))),
    )


def read_classification_folder(
    root: str | os.PathLike, split: tuple[float, float, float] = (0.7, 0.15, 0.15), seed: int = 0
) -> SampleIndex:
    """Indexes a classification folder and splits it (an unsplit one by ``split`` and ``seed``).

    Raises:
        FileNotFoundError: ``root`` does not exist.
        ValueError: unknown layout, fewer than two classes, or a split without images of a class.
    """
    return split_index(scan_classification_folder(root), split, seed)
