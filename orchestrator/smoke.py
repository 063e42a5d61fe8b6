"""``corrotune run STUDY --smoke``: any study shrunk to a minutes-long CPU check of its structure.

Every cell, factor, search space, objective and the report stay; what costs time shrinks:
epochs (2; a two-phase schedule gets 1 + 1), image size (32 px, 64 for segmentation), batch
size, search trials per cell (2), confirm repeats (2), pretrained weights (off: no download),
AMP, warm-up epochs, offline expansion, Grad-CAM and t-SNE, kept checkpoints, and the dataset (a synthetic set
gets 120 images; a classification image folder is replaced by a subset of symlinks, a few
images per class and split; a segmentation dataset is kept whole). The study is renamed
``<name>_smoke`` so it never meets the real one.

Example:
    >>> overrides, changes = smoke_overrides(load_study("studies/papers/p000_resnet_mhsa_focal.yaml",
    ...                                                 ["data.path=/data/phase5"]))
    >>> study = load_study("studies/papers/p000_resnet_mhsa_focal.yaml", ["data.path=/data/phase5", *overrides])
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Callable

from orchestrator.spec import Study
from trainables import TRAINABLES

__all__ = ["SMOKE_EPOCHS", "smoke_overrides", "subset_image_folder"]

SMOKE_EPOCHS = 2
SMOKE_TRIALS = 2
SMOKE_REPEATS = 2
SMOKE_BATCH = 16
IMAGES_PER_CLASS = {"train": 24, "val": 8, "test": 8, None: 24}
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


def _shrinkers(task: str) -> dict[str, Callable[[Any], Any]]:
    small_side = 64 if task == "segmentation" else 32
    return {
        "epochs": lambda v: min(v, SMOKE_EPOCHS),
        "phase1_epochs": lambda v: min(v, SMOKE_EPOCHS - 1),
        "warmup_epochs": lambda v: min(v, SMOKE_EPOCHS - 1),
        "image_size": lambda v: min(v, small_side),
        "batch_size": lambda v: min(v, SMOKE_BATCH),
        "pretrained": lambda v: False,
        "tsne": lambda v: False,
        "gradcam_per_class": lambda v: False,
        "encoder_weights": lambda v: None,
        "offline_expansion": lambda v: 1,
        "gradcam_images": lambda v: min(v, 2),
        "amp": lambda v: False,
    }


def _params(study: Study, task: str) -> list[tuple[str, Any, Any]]:
    """``(dotted study key, old, new)`` for every trainable config value the smoke run shrinks:
    in ``params`` (or the trainable's default) and in named factor levels (``backbone: {v2_s:
    {image_size: 384}}``). A factor whose values are the key itself (``epochs: [10, 20]``) is the
    thing being compared and is kept."""
    fields = TRAINABLES.get(study.trainable).config_model.model_fields
    shrinkers = _shrinkers(task)
    factor_keys = {k for keys in study.ablation.factor_keys().values() for k in keys}
    changes = []
    for key, shrink in shrinkers.items():
        if key in fields and key not in factor_keys:
            old = study.params[key] if key in study.params else fields[key].default
            if shrink(old) != old:
                changes.append((f"params.{key}", old, shrink(old)))
    for factor, levels in study.ablation.factors.items():
        for level, values in levels.items() if isinstance(levels, dict) else []:
            for key, old in values.items():
                if key in shrinkers and shrinkers[key](old) != old:
                    changes.append((f"ablation.factors.{factor}.{level}.{key}", old, shrinkers[key](old)))
    return changes


def subset_image_folder(path: Path, target: Path) -> int:
    """Mirrors a classification folder (``<class>/*`` or ``<split>/<class>/*``) with a few images
    per class as symlinks under ``target``; returns how many (0: not such a layout, nothing made)."""
    splits = [d for d in sorted(path.iterdir()) if d.is_dir() and d.name in ("train", "val", "test")]
    roots = [(s.name, s) for s in splits] or [(None, path)]
    linked = 0
    for split, root in roots:
        for class_dir in sorted(d for d in root.iterdir() if d.is_dir()):
            images = sorted(f for f in class_dir.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
            if not images:
                continue
            destination = target / (split or "") / class_dir.name
            destination.mkdir(parents=True, exist_ok=True)
            for image in images[: IMAGES_PER_CLASS[split]]:
                link = destination / image.name
                if not link.exists():
                    os.symlink(image.resolve(), link)
                linked += 1
    return linked


def _data(study: Study, task: str) -> tuple[list[str], list[str]]:
    data = study.data
    if data.is_synthetic:
        overrides, changes = [], []
        side = 64 if task == "segmentation" else 32
        for key, small in (("num_images", 120), ("image_size", side)):
            old = getattr(data.synthetic, key)
            if old > small:
                overrides.append(f"data.synthetic.{key}={small}")
                changes.append(f"data.synthetic.{key} {old} -> {small}")
        return overrides, changes
    path = Path(data.path)
    if task != "classification" or data.format != "auto" or not path.is_dir():
        return [], [f"data.path kept whole (a {task} dataset, {data.format} layout: only class folders are subset)"]
    from corrotune.paths import cache_dir

    target = cache_dir("smoke") / hashlib.sha256(str(path).encode()).hexdigest()[:12]
    linked = subset_image_folder(path, target)
    if not linked:
        return [], ["data.path kept whole (not a <class>/ or <split>/<class>/ image folder)"]
    return [f"data.path={target}"], [f"data.path {path} -> {linked} images linked under {target}"]


def smoke_overrides(study: Study) -> tuple[list[str], list[str]]:
    """``--set`` overrides that shrink ``study`` to a CPU smoke run, and each change in words."""
    task = TRAINABLES.get(study.trainable).task
    overrides, changes = [f"name={study.name}_smoke"], [f"name -> {study.name}_smoke"]
    for key, old, new in _params(study, task):
        overrides.append(f"{key}={json.dumps(new)}")  # JSON is YAML: false, null, 32
        changes.append(f"{key} {old} -> {new}")
    if study.search and study.trials_per_cell > SMOKE_TRIALS:
        overrides.append(f"search.num_samples={SMOKE_TRIALS}")
        changes.append(f"search trials per cell {study.trials_per_cell} -> {SMOKE_TRIALS}")
    if study.ablation.repeats > SMOKE_REPEATS:
        overrides.append(f"ablation.repeats={SMOKE_REPEATS}")
        changes.append(f"confirm repeats {study.ablation.repeats} -> {SMOKE_REPEATS}")
    if study.scheduler.grace_period > 1:
        overrides.append("scheduler.grace_period=1")
        changes.append(f"scheduler.grace_period {study.scheduler.grace_period} -> 1")
    if study.resources.gpu:
        overrides.append("resources.gpu=0")
        changes.append(f"resources.gpu {study.resources.gpu} -> 0")
    if study.checkpoints.num_to_keep > 1:
        overrides.append("checkpoints.num_to_keep=1")
        changes.append(f"checkpoints kept {study.checkpoints.num_to_keep} -> 1")
    data_overrides, data_changes = _data(study, task)
    return overrides + data_overrides, changes + data_changes
