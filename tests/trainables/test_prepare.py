"""Data preparation on a messy folder built from real photos: skip exactly the bad files,
keep copies of one photo in one split, reuse the manifest and the scan."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import shared_dataset
from tests.fixtures import build_messy_folder
from trainables.data.config import DataConfig
from trainables.data.manifest import read_manifest
from trainables.data.prepare import DataPreparationError, plan_dataset, prepare_dataset


@pytest.fixture()
def messy(tmp_path):
    return tmp_path / "messy", build_messy_folder(tmp_path / "messy")


def test_skips_exactly_the_bad_files_and_keeps_copies_together(messy, tmp_path):
    root, notable = messy
    lines = []
    data = prepare_dataset(DataConfig(path=str(root), split=(0.6, 0.2, 0.2)), "classification", tmp_path / "study", lines.append)
    out = tmp_path / "study" / "data"
    skipped = {line.split("\t")[0] for line in (out / "skipped.txt").read_text().splitlines()}
    expected = {str(notable[k].resolve()) for k in ("truncated", "dup_a", "dup_b", "dup_original")}
    assert skipped == expected  # the truncated file, and every copy of the photo in two classes
    index = read_manifest(data.manifest)
    paths = {s.path for s in index.samples}
    assert not paths & expected
    assert str(notable["png_as_jpg"].resolve()) in paths  # usable, only mislabelled
    assert not any(Path(p).name.startswith((".", "_")) or p.endswith("Thumbs.db") for p in paths)
    assert len(index.samples) == (24 - 1 + 2) + 24  # corroded: less the conflicting photo, plus png and re-save
    split_of = {s.path: s.split for s in index.samples}
    # a re-saved copy is a near-duplicate: it lands in the same split as its original
    assert split_of[str(notable["resaved"].resolve())] == split_of[str(notable["original_of_resaved"].resolve())]
    assert all(s.hash and len(s.hash) == 64 for s in index.samples)
    scan = json.loads((out / "scan.json").read_text())
    assert {f["kind"] for f in scan["findings"]} >= {"truncated", "conflicting_labels", "extension_mismatch", "junk"}
    assert "skipping 4 unusable file(s)" in "\n".join(lines)


def test_no_duplicate_group_straddles_splits(messy, tmp_path):
    root, _ = messy
    data = prepare_dataset(DataConfig(path=str(root)), "classification", tmp_path / "study")
    index = read_manifest(data.manifest)
    scan = json.loads((tmp_path / "study" / "data" / "scan.json").read_text())
    split_of = {s.path: s.split for s in index.samples}
    for finding in scan["findings"]:
        if finding["kind"] in ("duplicate", "near_duplicate"):
            splits = {split_of.get(str((root / p).resolve())) for p in finding["paths"]} - {None}
            assert len(splits) <= 1, finding


def test_stop_policy_refuses_and_keeps_the_report(messy, tmp_path):
    root, _ = messy
    with pytest.raises(DataPreparationError, match="4 unusable file"):
        prepare_dataset(DataConfig(path=str(root), on_bad_files="stop"), "classification", tmp_path / "study")
    assert (tmp_path / "study" / "data" / "scan.txt").read_text().count("truncated") >= 1
    assert not (tmp_path / "study" / "data" / "manifest.json").exists()


def test_manifest_and_scan_are_reused(messy, tmp_path):
    root, _ = messy
    first = prepare_dataset(DataConfig(path=str(root)), "classification", tmp_path / "study")
    before = Path(first.manifest).read_text()
    lines = []
    again = prepare_dataset(DataConfig(path=str(root)), "classification", tmp_path / "study", lines.append)
    assert again.manifest == first.manifest and Path(again.manifest).read_text() == before
    assert any("reusing the split manifest" in line for line in lines)
    lines.clear()
    prepare_dataset(DataConfig(path=str(root)), "classification", tmp_path / "other_study", lines.append)
    assert any("scan of" in line and "reused" in line for line in lines)


def test_segmentation_and_coco_prepare(tmp_path):
    root = shared_dataset("corrosion_seg")
    data = prepare_dataset(DataConfig(path=str(root)), "segmentation", tmp_path / "pairs")
    index = read_manifest(data.manifest)
    assert index.task == "segmentation" and len(index.samples) == 205
    assert {s.split for s in index.samples} == {"train", "val", "test"}
    coco = prepare_dataset(DataConfig(path=str(root), format="coco"), "segmentation", tmp_path / "coco")
    coco_index = read_manifest(coco.manifest)
    assert coco_index.layout == "coco" and len(coco_index.samples) == 205


def _unreadable_folder(root: Path, readable: dict[str, int] | None = None) -> Path:
    """Two classes of files that no decoder reads, plus ``readable`` real images per class."""
    source = sorted((shared_dataset("fastener_corrosion") / "train" / "corroded").glob("*.jpg"))
    for cls in ("corroded", "non_corroded"):
        (root / cls).mkdir(parents=True)
        for i in range(3):
            (root / cls / f"broken{i}.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
        for path in source[: (readable or {}).get(cls, 0)]:
            shutil.copy(path, root / cls / path.name)
    return root


def test_a_folder_of_unreadable_images_is_refused_with_the_scan_report(tmp_path):
    root = _unreadable_folder(tmp_path / "broken")
    lines = []
    with pytest.raises(DataPreparationError, match=r"no usable image \(6 unusable file\(s\) left out"):
        prepare_dataset(DataConfig(path=str(root)), "classification", tmp_path / "study", lines.append)
    assert "6 unreadable" in "\n".join(lines)  # the report was shown first
    assert (tmp_path / "study" / "data" / "scan.txt").is_file()  # and kept
    assert not (tmp_path / "study" / "data" / "manifest.json").exists()


def test_one_class_left_after_skipping_is_refused(tmp_path):
    root = _unreadable_folder(tmp_path / "broken", readable={"corroded": 4})
    with pytest.raises(DataPreparationError, match=r"at least two classes, found \['corroded'\]"):
        plan_dataset(DataConfig(path=str(root)), "classification", log=lambda line: None)


def test_plan_writes_nothing_and_names_a_segmentation_layout(tmp_path):
    from PIL import Image

    for sub in ("images", "masks"):
        (tmp_path / "seg" / sub).mkdir(parents=True)
        Image.new("L", (16, 16)).save(tmp_path / "seg" / sub / "a.png")
    with pytest.raises(DataPreparationError, match=r"a segmentation folder \(segmentation: images/ \+ masks/\).*segmentation trainable"):
        plan_dataset(DataConfig(path=str(tmp_path / "seg")), "classification", log=lambda line: None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seg"]
