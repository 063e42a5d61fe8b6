"""Data preparation on a messy folder built from real photos: skip exactly the bad files,
keep copies of one photo in one split, reuse the manifest and the scan."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import shared_dataset
from tests.fixtures import build_messy_folder
from trainables.data.config import DataConfig
from trainables.data.manifest import read_manifest
from trainables.data.prepare import DataPreparationError, prepare_dataset


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
