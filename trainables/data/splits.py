"""Deterministic, stratified train/val/test splits that keep duplicate groups together."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from typing import Optional, Sequence

import numpy as np

from trainables.data.index import SPLITS, SampleIndex

__all__ = ["assign_splits", "check_splits", "needs_val_carved", "split_index"]


def _targets(total: int, ratios: Sequence[float]) -> list[int]:
    counts = [int(round(r * total)) for r in ratios[:-1]]
    return counts + [total - sum(counts)]


def _deal(
    labels: Sequence[Optional[int]], groups: Sequence[str], ratios: Sequence[float], names: Sequence[str], seed: int
) -> list[str]:
    """The split name of each sample: per class, whole groups dealt to the emptiest quota."""
    members: dict[tuple[int, str], list[int]] = defaultdict(list)
    for i, (label, group) in enumerate(zip(labels, groups)):
        members[(-1 if label is None else label, group)].append(i)
    strata: dict[int, list[str]] = defaultdict(list)
    for stratum, group in members:
        strata[stratum].append(group)
    rng = np.random.default_rng(seed)
    assigned: dict[int, str] = {}
    for stratum in sorted(strata):
        group_keys = sorted(strata[stratum])
        group_keys = [group_keys[i] for i in rng.permutation(len(group_keys))]
        total = sum(len(members[(stratum, g)]) for g in group_keys)
        quota = _targets(total, ratios)
        filled = [0] * len(names)
        for group in group_keys:
            size = len(members[(stratum, group)])
            # the split with the largest unfilled share of its quota takes the group
            k = max(range(len(names)), key=lambda j: (quota[j] - filled[j]) / max(quota[j], 1))
            filled[k] += size
            for i in members[(stratum, group)]:
                assigned[i] = names[k]
    return [assigned[i] for i in range(len(labels))]


def needs_val_carved(index: SampleIndex) -> bool:
    """A pre-split index with ``train`` but no ``val`` (e.g. ``train/`` + ``test/`` only)."""
    return index.presplit and bool(index.split("train")) and not index.split("val")


def assign_splits(
    index: SampleIndex,
    ratios: Sequence[float],
    seed: int = 0,
    groups: Optional[Sequence[str]] = None,
) -> SampleIndex:
    """Assigns ``train``/``val``/``test`` to every sample of an unsplit index.

    Within each class (stratum), whole groups are shuffled with ``seed`` and dealt to the split
    whose quota is furthest from full, so copies of one photo (same group) never straddle splits
    and every split gets close to ``ratio × class size`` images.

    A pre-split index is returned unchanged, except one without ``val`` (``train/`` and
    ``test/`` only, as P004's 8:2 protocol ships): validation is carved from its train split
    the same way (stratified, groups kept whole), at ``val / (train + val)`` of ``ratios``.

    Args:
        index: Samples without splits, or a pre-split index.
        ratios: Train/val/test fractions summing to 1 (a two-value ratio gives train/val).
        seed: Seed of the shuffle.
        groups: One group key per sample (e.g. a duplicate-cluster id); default each sample alone.
    """
    groups = list(groups) if groups is not None else [str(i) for i in range(len(index.samples))]
    if needs_val_carved(index):
        rows = [i for i, s in enumerate(index.samples) if s.split == "train"]
        carved = _deal(
            [index.samples[i].label for i in rows], [groups[i] for i in rows],
            [ratios[0] / (ratios[0] + ratios[1]), ratios[1] / (ratios[0] + ratios[1])], ("train", "val"), seed,
        )
        new_split = dict(zip(rows, carved))
        return index.with_samples(replace(s, split=new_split.get(i, s.split)) for i, s in enumerate(index.samples))
    if index.presplit:
        return index
    names = SPLITS[: len(ratios)]
    assigned = _deal([s.label for s in index.samples], groups, ratios, names, seed)
    return index.with_samples(replace(sample, split=split) for sample, split in zip(index.samples, assigned))


def check_splits(index: SampleIndex, required: Sequence[str] = ("train", "val")) -> None:
    """Raises ValueError naming the split and class when a required split lacks a class."""
    if index.task != "classification":
        for split in required:
            if not index.split(split):
                raise ValueError(f"{index.root}: the {split} split has no images; add images or change data.split")
        return
    present = {s.label for s in index.samples}
    for split in required:
        labels = {s.label for s in index.split(split)}
        missing = [index.classes[c] for c in sorted(present - labels)]
        if missing:
            raise ValueError(
                f"{index.root}: the {split} split has no images of class(es) {missing}; "
                "add images or change data.split"
            )


def split_index(
    index: SampleIndex, ratios: Sequence[float], seed: int = 0, groups: Optional[Sequence[str]] = None
) -> SampleIndex:
    """:func:`assign_splits`, then :func:`check_splits`: a split every trainable can use."""
    index = assign_splits(index, ratios, seed, groups)
    check_splits(index)
    return index
