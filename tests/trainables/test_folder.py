"""Reading classification folders: pre-split and ImageFolder layouts, junk files, errors."""

from __future__ import annotations

import os
import shutil
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import shared_dataset
from trainables.data.config import DataConfig
from trainables.data.folder import IMAGE_SUFFIXES, read_classification_folder, resolve_root

SPLITS = ("train", "val", "test")

# ../shared/datasets/README.md: fastener_corrosion {split}/{corroded,non_corroded}
FASTENER_COUNTS = {
    "train": {"corroded": 110, "non_corroded": 83},
    "val": {"corroded": 30, "non_corroded": 24},
    "test": {"corroded": 22, "non_corroded": 7},
}
XSDD_CLASSES = (
    "finishing_roll_printing",
    "iron_sheet_ash",
    "oxide_scale_of_plate_system",
    "oxide_scale_of_temperature_system",
    "red_iron",
    "slag_inclusion",
    "surface_scratch",
)


def _per_split_class_counts(dataset) -> dict[str, dict[str, int]]:
    return {
        split: dict(Counter(dataset.classes[s.label] for s in dataset.split(split))) for split in SPLITS
    }


def _real_images(n: int) -> list[Path]:
    folder = shared_dataset("fastener_corrosion") / "train" / "corroded"
    return sorted(folder.glob("*.jpg"))[:n]


def _image_folder(root: Path, layout: dict[str, int]) -> Path:
    """Builds ``root/<relative dir>/img<i>.jpg`` from real images; ``layout`` maps dir → count."""
    sources = _real_images(max(layout.values()))
    for rel, count in layout.items():
        folder = root / rel
        folder.mkdir(parents=True, exist_ok=True)
        for i, src in enumerate(sources[:count]):
            shutil.copy(src, folder / f"img{i}.jpg")
    return root


# ---------------------------------------------------------------- real data: fastener_corrosion


@pytest.fixture(scope="module")
def fastener():
    return read_classification_folder(shared_dataset("fastener_corrosion"))


def test_fastener_pre_split_is_kept_with_exact_counts(fastener):
    assert fastener.classes == ("corroded", "non_corroded")
    assert _per_split_class_counts(fastener) == FASTENER_COUNTS
    assert len(fastener.samples) == sum(sum(c.values()) for c in FASTENER_COUNTS.values())


def test_fastener_labels_and_splits_follow_the_folders(fastener):
    for sample in fastener.samples:
        path = Path(sample.path)
        assert path.is_absolute() and path.is_file()
        assert path.parent.name == fastener.classes[sample.label]
        assert path.parent.parent.name == sample.split
        assert path.suffix.lower() == ".jpg"


def test_fastener_split_seed_and_ratios_do_not_reshuffle_a_pre_split_folder(fastener):
    other = read_classification_folder(shared_dataset("fastener_corrosion"), split=(0.5, 0.25, 0.25), seed=123)
    assert {(s.path, s.label, s.split) for s in other.samples} == {
        (s.path, s.label, s.split) for s in fastener.samples
    }


# ---------------------------------------------------------------- real data: xsdd (ImageFolder)


@pytest.fixture(scope="module")
def xsdd_root() -> Path:
    return shared_dataset("xsdd")


@pytest.fixture(scope="module")
def xsdd(xsdd_root):
    return read_classification_folder(xsdd_root, split=(0.7, 0.15, 0.15), seed=0)


def _files_on_disk(root: Path) -> set[Path]:
    return {
        p.resolve()
        for class_dir in root.iterdir()
        if class_dir.is_dir()
        for p in class_dir.iterdir()
        if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
    }


def test_xsdd_has_seven_sorted_classes_and_indexes_every_file_once(xsdd, xsdd_root):
    assert xsdd.classes == XSDD_CLASSES
    paths = [Path(s.path).resolve() for s in xsdd.samples]
    assert len(paths) == len(set(paths)) == 1360
    assert set(paths) == _files_on_disk(xsdd_root)
    assert {p.suffix.lower() for p in paths} == {".jpg", ".png"}  # mixed types are both read
    for sample in xsdd.samples:
        assert Path(sample.path).parent.name == xsdd.classes[sample.label]
        assert sample.split in SPLITS


def test_xsdd_split_is_stratified_per_class(xsdd):
    ratios = dict(zip(SPLITS, (0.7, 0.15, 0.15)))
    per_class = Counter(xsdd.classes[s.label] for s in xsdd.samples)
    counts = _per_split_class_counts(xsdd)
    for name, total in per_class.items():
        for split, ratio in ratios.items():
            assert abs(counts[split].get(name, 0) - ratio * total) <= 1.0, (name, split, counts)
    assert sorted(per_class.values()) == [63, 122, 134, 203, 203, 238, 397]


def test_xsdd_split_is_deterministic_for_a_seed_and_changes_with_it(xsdd, xsdd_root):
    again = read_classification_folder(xsdd_root, split=(0.7, 0.15, 0.15), seed=0)
    assert again.samples == xsdd.samples
    other = read_classification_folder(xsdd_root, split=(0.7, 0.15, 0.15), seed=1)
    assignment = {s.path: s.split for s in xsdd.samples}
    other_assignment = {s.path: s.split for s in other.samples}
    assert assignment.keys() == other_assignment.keys()
    changed = sum(assignment[p] != other_assignment[p] for p in assignment)
    assert changed > 100  # a reshuffle, not a tweak
    # the new split is still stratified with the same per-class sizes
    assert _per_split_class_counts(other) == _per_split_class_counts(xsdd)


def test_two_ratios_give_train_and_val_only(xsdd_root):
    dataset = read_classification_folder(xsdd_root, split=(0.8, 0.2), seed=0)
    counts = _per_split_class_counts(dataset)
    assert counts["test"] == {}
    assert sum(counts["train"].values()) + sum(counts["val"].values()) == 1360
    assert counts["val"]["oxide_scale_of_plate_system"] == round(0.2 * 63)


def test_xsdd_no_sample_in_two_splits(xsdd):
    by_split = {split: {s.path for s in xsdd.split(split)} for split in SPLITS}
    assert not by_split["train"] & by_split["val"]
    assert not by_split["train"] & by_split["test"]
    assert not by_split["val"] & by_split["test"]
    assert sum(len(v) for v in by_split.values()) == len(xsdd.samples)


# ---------------------------------------------------------------- junk files


def test_junk_files_are_not_indexed(tmp_path):
    root = _image_folder(tmp_path / "ds", {"corroded": 4, "non_corroded": 4})
    for class_dir in ("corroded", "non_corroded"):
        folder = root / class_dir
        (folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
        shutil.copy(folder / "img0.jpg", folder / "._img0.jpg")  # AppleDouble, named like an image
        (folder / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0")
        (folder / "desktop.ini").write_text("[.ShellClassInfo]\n")
        (folder / "notes.txt").write_text("inspected 2024-03-01\n")
        (folder / ".hidden").mkdir()
        shutil.copy(folder / "img0.jpg", folder / ".hidden" / "img9.jpg")
    (root / ".DS_Store").write_bytes(b"\x00")
    (root / ".thumbnails").mkdir()  # hidden folder is no class

    dataset = read_classification_folder(root, seed=0)
    assert dataset.classes == ("corroded", "non_corroded")
    names = sorted(Path(s.path).name for s in dataset.samples)
    assert names == sorted([f"img{i}.jpg" for i in range(4)] * 2)


def test_uppercase_suffixes_are_images(tmp_path):
    root = _image_folder(tmp_path / "ds", {"a": 4, "b": 4})
    for p in (root / "a").glob("*.jpg"):
        p.rename(p.with_suffix(".JPG"))
    dataset = read_classification_folder(root)
    assert Counter(s.label for s in dataset.samples) == {0: 4, 1: 4}


def test_macosx_resource_folder_is_not_a_class(tmp_path):
    """macOS zips add ``__MACOSX/<class>/._*``; it must not become a class and shift the labels."""
    root = _image_folder(tmp_path / "ds", {"corroded": 4, "non_corroded": 4})
    junk = root / "__MACOSX" / "corroded"
    junk.mkdir(parents=True)
    shutil.copy(root / "corroded" / "img0.jpg", junk / "._img0.jpg")
    dataset = read_classification_folder(root)
    assert dataset.classes == ("corroded", "non_corroded")
    assert {Path(s.path).parent.name for s in dataset.samples if s.label == 0} == {"corroded"}


def test_empty_class_folder_is_not_a_class(tmp_path):
    root = _image_folder(tmp_path / "ds", {"a": 4, "c": 4})
    (root / "b").mkdir()
    dataset = read_classification_folder(root)
    assert dataset.classes == ("a", "c")
    assert Counter(s.label for s in dataset.samples) == {0: 4, 1: 4}


def test_validation_alias_is_the_val_split(tmp_path):
    root = _image_folder(tmp_path / "ds", {"train/a": 3, "train/b": 3, "validation/a": 2, "validation/b": 2})
    dataset = read_classification_folder(root)
    assert dataset.classes == ("a", "b")
    assert _per_split_class_counts(dataset) == {"train": {"a": 3, "b": 3}, "val": {"a": 2, "b": 2}, "test": {}}


# ---------------------------------------------------------------- errors


def test_missing_path_is_file_not_found_naming_it(tmp_path):
    missing = tmp_path / "no" / "such_dataset"
    with pytest.raises(FileNotFoundError) as info:
        read_classification_folder(missing)
    assert str(missing) in str(info.value)


def test_a_file_instead_of_a_folder_is_file_not_found(tmp_path):
    path = tmp_path / "data.zip"
    path.write_bytes(b"PK")
    with pytest.raises(FileNotFoundError, match="data.zip"):
        read_classification_folder(path)


def test_single_class_is_a_value_error(tmp_path):
    root = _image_folder(tmp_path / "ds", {"corroded": 5})
    with pytest.raises(ValueError, match="two class"):
        read_classification_folder(root)


def test_one_class_with_images_and_one_empty_is_a_value_error(tmp_path):
    root = _image_folder(tmp_path / "ds", {"corroded": 5})
    (root / "non_corroded").mkdir()
    (root / "non_corroded" / "notes.txt").write_text("todo")
    with pytest.raises(ValueError, match="two class"):
        read_classification_folder(root)


def test_empty_folder_is_a_value_error(tmp_path):
    with pytest.raises(ValueError):
        read_classification_folder(tmp_path)


def test_pre_split_without_val_gets_val_carved_from_train(tmp_path):
    root = _image_folder(tmp_path / "ds", {"train/a": 6, "train/b": 6, "test/a": 2, "test/b": 2})
    index = read_classification_folder(root, split=(0.5, 0.25, 0.25))
    counts = Counter((index.classes[s.label], s.split) for s in index.samples)
    assert counts == {("a", "train"): 4, ("a", "val"): 2, ("b", "train"): 4, ("b", "val"): 2, ("a", "test"): 2, ("b", "test"): 2}
    assert all("/test/" in s.path for s in index.samples if s.split == "test")


def test_pre_split_without_train_is_a_value_error(tmp_path):
    root = _image_folder(tmp_path / "ds", {"val/a": 3, "val/b": 3, "test/a": 2, "test/b": 2})
    with pytest.raises(ValueError, match="train/") as info:
        read_classification_folder(root)
    assert "test" in str(info.value) and "val" in str(info.value)


def test_val_split_missing_a_class_is_a_value_error_naming_it(tmp_path):
    root = _image_folder(tmp_path / "ds", {"train/rust": 3, "train/clean": 3, "val/rust": 2})
    with pytest.raises(ValueError, match="val") as info:
        read_classification_folder(root)
    assert "clean" in str(info.value)


def test_train_split_missing_a_class_is_a_value_error(tmp_path):
    root = _image_folder(tmp_path / "ds", {"train/rust": 3, "val/rust": 2, "val/clean": 2})
    with pytest.raises(ValueError, match="train") as info:
        read_classification_folder(root)
    assert "clean" in str(info.value)


def test_image_folder_too_small_for_a_val_split_is_a_value_error(tmp_path):
    # 2 images per class: round(0.15 * 2) == 0 val images
    root = _image_folder(tmp_path / "ds", {"a": 2, "b": 2})
    with pytest.raises(ValueError, match="val"):
        read_classification_folder(root)


# ---------------------------------------------------------------- resolve_root


def test_resolve_root_of_synthetic_data_is_a_readable_classification_folder():
    data = DataConfig(path="synthetic:corrosion", synthetic={"num_images": 20, "image_size": 32})
    root = resolve_root(data)
    assert root.is_dir()
    assert os.environ["CORROTUNE_CACHE_DIR"] in str(root)  # the test cache, not ~/.cache
    dataset = read_classification_folder(root, data.split, data.split_seed)
    assert dataset.classes == ("corrosion", "no_corrosion")
    assert len(dataset.samples) == 20
    assert {s.split for s in dataset.samples} >= {"train", "val"}
    assert resolve_root(data) == root  # cached, same folder


def test_resolve_root_of_a_path_is_absolute(tmp_path, monkeypatch):
    (tmp_path / "images").mkdir()
    monkeypatch.chdir(tmp_path)
    assert resolve_root(DataConfig(path="images")) == (tmp_path / "images").resolve()


def test_a_segmentation_folder_is_not_read_as_classes(tmp_path):
    from trainables.data.folder import folder_layout, scan_classification_folder

    for split in ("train", "val"):
        for sub in ("images", "masks"):
            (tmp_path / split / sub).mkdir(parents=True)
            shutil.copy(_real_images(1)[0], tmp_path / split / sub / "a.jpg")
    assert folder_layout(tmp_path) == ("segmentation_presplit", [])
    with pytest.raises(ValueError, match=r"a segmentation folder \(segmentation_presplit: images/ \+ masks/\), not classes"):
        scan_classification_folder(tmp_path)
