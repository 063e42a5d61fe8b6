"""Splits: deterministic, stratified, and duplicate groups never straddle two splits."""

from collections import Counter

import pytest

from trainables.data.index import Sample, SampleIndex
from trainables.data.splits import assign_splits, check_splits


def _index(labels, split=None):
    samples = tuple(Sample(path=f"/d/{i}.png", label=label, split=split) for i, label in enumerate(labels))
    return SampleIndex(root="/d", task="classification", layout="imagefolder", classes=("a", "b", "c"), samples=samples)


def test_stratified_counts_follow_the_ratios_per_class():
    index = assign_splits(_index([0] * 100 + [1] * 40 + [2] * 20), (0.7, 0.15, 0.15), seed=0)
    counts = Counter((s.label, s.split) for s in index.samples)
    assert [counts[(0, k)] for k in ("train", "val", "test")] == [70, 15, 15]
    assert [counts[(1, k)] for k in ("train", "val", "test")] == [28, 6, 6]
    assert [counts[(2, k)] for k in ("train", "val", "test")] == [14, 3, 3]


def test_same_seed_same_split_other_seed_other_split():
    index = _index([0] * 50 + [1] * 50)
    first = [s.split for s in assign_splits(index, (0.7, 0.15, 0.15), seed=1).samples]
    again = [s.split for s in assign_splits(index, (0.7, 0.15, 0.15), seed=1).samples]
    other = [s.split for s in assign_splits(index, (0.7, 0.15, 0.15), seed=2).samples]
    assert first == again and first != other


def test_duplicate_groups_stay_in_one_split():
    labels = [0] * 60 + [1] * 60
    groups = [f"g{i // 3}" for i in range(120)]  # every photo saved three times
    index = assign_splits(_index(labels), (0.7, 0.15, 0.15), seed=3, groups=groups)
    by_group = {}
    for sample, group in zip(index.samples, groups):
        by_group.setdefault(group, set()).add(sample.split)
    assert all(len(splits) == 1 for splits in by_group.values())
    counts = Counter(s.split for s in index.samples)
    assert abs(counts["train"] - 84) <= 3 and counts["val"] >= 15 and counts["test"] >= 15


def test_two_ratios_give_train_and_val_only():
    index = assign_splits(_index([0] * 10 + [1] * 10), (0.8, 0.2), seed=0)
    assert Counter(s.split for s in index.samples) == {"train": 16, "val": 4}


def test_presplit_index_is_kept():
    index = _index([0, 1, 0, 1], split="train")
    index = index.with_samples([*index.samples[:2], *(Sample(s.path, s.label, split="val") for s in index.samples[2:])])
    assert assign_splits(index, (0.5, 0.25, 0.25)) is index


def test_train_and_test_only_get_val_carved_from_train_stratified_and_grouped():
    labels = [0] * 60 + [1] * 30
    groups = [f"g{i // 2}" for i in range(90)]  # every photo saved twice
    index = _index(labels, split="train").with_samples(
        [*_index(labels, split="train").samples, *(Sample(f"/d/t{i}.png", label=i % 2, split="test") for i in range(10))]
    )
    carved = assign_splits(index, (0.7, 0.15, 0.15), seed=0, groups=groups + [f"t{i}" for i in range(10)])
    counts = Counter((s.label, s.split) for s in carved.samples)
    # val share of train+val: 0.15 / 0.85 of each class, whole groups
    assert counts[(0, "val")] == pytest.approx(60 * 0.15 / 0.85, abs=2) and counts[(1, "val")] == pytest.approx(30 * 0.15 / 0.85, abs=2)
    assert [s.split for s in carved.samples[90:]] == ["test"] * 10  # the test split is kept
    by_group = {}
    for sample, group in zip(carved.samples[:90], groups):
        by_group.setdefault(group, set()).add(sample.split)
    assert all(len(splits) == 1 for splits in by_group.values())
    check_splits(carved)


def test_a_split_without_a_class_is_an_error():
    index = _index([0, 0, 1, 1]).with_samples(
        Sample(path=f"/d/{i}", label=label, split=split)
        for i, (label, split) in enumerate([(0, "train"), (0, "val"), (1, "train"), (1, "train")])
    )
    with pytest.raises(ValueError, match=r"the val split has no images of class\(es\) \['b'\]"):
        check_splits(index)
