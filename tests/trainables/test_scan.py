"""The dataset scan: every messy-folder problem found, with the right severity, on real images."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from tests.conftest import shared_dataset
from trainables.data.scan import Finding, ScanReport, content_hash, perceptual_hash, scan_path

XSDD_COUNTS = {
    "red_iron": 397, "slag_inclusion": 238, "finishing_roll_printing": 203, "oxide_scale_of_temperature_system": 203,
    "surface_scratch": 134, "iron_sheet_ash": 122, "oxide_scale_of_plate_system": 63,
}
NEU_CLASSES = ("crazing", "inclusion", "patches", "pitted_surface", "rolled-in_scale", "scratches")


def _photos(n: int) -> list[Path]:
    """``n`` (<= 20) distinct real colour photos (256×256 JPEG) from fastener_corrosion.

    One file per Roboflow original (the name before ``.rf.``): the set also holds flipped copies.
    The first 20 originals have no near-duplicates among themselves (checked by eye and by the scan).
    """
    originals: dict[str, Path] = {}
    for path in sorted((shared_dataset("fastener_corrosion") / "train" / "corroded").glob("*.jpg")):
        originals.setdefault(path.name.split(".rf.")[0], path)
    return list(originals.values())[:n]


def _kinds(report: ScanReport) -> dict[str, list[Finding]]:
    out: dict[str, list[Finding]] = {}
    for f in report.findings:
        out.setdefault(f.kind, []).append(f)
    return out


def _one(report: ScanReport, kind: str) -> Finding:
    found = _kinds(report).get(kind, [])
    assert len(found) == 1, f"expected one {kind} finding, got {found}"
    return found[0]


def _hamming(a: int, b: int) -> int:
    return bin(a ^ b).count("1")


def _save_jpeg(image: Image.Image, path: Path, **kwargs) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, "JPEG", **kwargs)


# ------------------------------------------------------------------------ a messy class folder


@pytest.fixture(scope="module")
def messy(tmp_path_factory) -> Path:
    """``a/``, ``b/``, ``c/`` class folders with every problem the scan must name, one each."""
    root = tmp_path_factory.mktemp("messy")
    src = _photos(16)
    a, b, c = root / "a", root / "b", root / "c"
    for d in (a, b, c):
        d.mkdir()
    for i in range(3):  # plain, healthy images
        shutil.copy(src[i], c / f"ok{i}.jpg")
    shutil.copy(src[3], a / "ok.jpg")
    shutil.copy(src[4], b / "ok.jpg")
    (a / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1" + bytes(100))
    (a / "._ok.jpg").write_bytes(b"\x00\x05\x16\x07" + bytes(60))  # AppleDouble header
    (b / "Thumbs.db").write_bytes(bytes(64))
    (c / ".ipynb_checkpoints").mkdir()
    shutil.copy(src[5], c / ".ipynb_checkpoints" / "ok0-checkpoint.jpg")
    (root / "__MACOSX" / "c").mkdir(parents=True)  # left by unzipping a macOS archive: not a class
    (root / "__MACOSX" / "c" / "._ok0.jpg").write_bytes(b"\x00\x05\x16\x07" + bytes(60))
    (a / "notes.txt").write_text("labelled by hand\n")
    data = src[6].read_bytes()
    (a / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (a / "zero.jpg").write_bytes(b"")
    (a / "garbage.png").write_bytes(bytes(range(256)) * 4)
    png = next((shared_dataset("xsdd") / "red_iron").glob("*.png"), None) or next(shared_dataset("xsdd").rglob("*.png"))
    shutil.copy(png, b / "png_named.jpg")  # PNG content, .jpg suffix (a real X-SDD PNG, grey content)
    with Image.open(src[7]) as im:
        im.convert("L").save(a / "grey.png")
    with Image.open(src[8]) as im:
        rgba = im.convert("RGBA")
        alpha = np.full(rgba.size[::-1], 255, np.uint8)
        alpha[:, : rgba.size[0] // 2] = 0  # left half transparent
        rgba.putalpha(Image.fromarray(alpha))
        rgba.save(b / "rgba.png")
    with Image.open(src[9]) as im:
        _save_jpeg(im.convert("CMYK"), b / "cmyk.jpg")
    with Image.open(src[10]) as im:
        deep = np.asarray(im.convert("L"), dtype=np.uint16) * 257  # full 16-bit range
        Image.fromarray(deep).save(b / "deep16.png")
    shutil.copy(src[11], a / "shared.jpg")  # same bytes in two classes
    shutil.copy(src[11], b / "shared.jpg")
    shutil.copy(src[12], a / "twice.jpg")  # same bytes twice in one class
    shutil.copy(src[12], a / "twice_copy.jpg")
    with Image.open(src[13]) as im:
        shutil.copy(src[13], a / "photo.jpg")
        _save_jpeg(im, a / "photo_q70.jpg", quality=70)  # near-duplicate, same class
        _save_jpeg(im.resize((230, 230), Image.Resampling.BILINEAR), b / "photo_small.jpg", quality=90)  # other class
    with Image.open(src[14]) as im:
        _save_jpeg(im.crop((118, 118, 138, 138)), c / "tiny.jpg")  # the bolt, in colour
        exif = Image.Exif()
        exif[0x0112] = 6  # rotate 90° CW on display
        _save_jpeg(im, c / "rotated.jpg", exif=exif)
    shutil.copy(src[15], root / "loose.jpg")  # not in a class folder
    return root


@pytest.fixture(scope="module")
def messy_report(messy) -> ScanReport:
    return scan_path(messy)


def test_messy_layout_and_counts(messy_report):
    r = messy_report
    assert r.layout == "imagefolder"
    # a: ok grey photo photo_q70 twice twice_copy (shared, truncated, zero, garbage skipped)
    # b: ok png_named rgba cmyk deep16 photo_small (shared skipped); c: ok0-2 tiny rotated
    assert r.classes == {"a": 6, "b": 6, "c": 5}
    assert r.num_images == 17
    assert r.num_files == 29


def test_messy_junk_and_non_images(messy_report):
    junk = _kinds(messy_report)["junk"]
    assert {(f.severity, p) for f in junk for p in f.paths} == {
        ("warning", "a/.DS_Store"), ("warning", "a/._ok.jpg"), ("warning", "b/Thumbs.db"),
        ("warning", "c/.ipynb_checkpoints/ok0-checkpoint.jpg"), ("warning", "__MACOSX/c/._ok0.jpg"),
    }
    assert _one(messy_report, "non_image").paths == ["a/notes.txt"]
    assert _one(messy_report, "non_image").severity == "info"
    stray = _one(messy_report, "stray_file")
    assert (stray.severity, stray.paths) == ("warning", ["loose.jpg"])


def test_messy_broken_files_are_errors(messy_report):
    for kind, path in [("truncated", "a/truncated.jpg"), ("zero_byte", "a/zero.jpg"), ("unreadable", "a/garbage.png")]:
        f = _one(messy_report, kind)
        assert (f.severity, f.paths) == ("error", [path])
    assert "truncated" in _one(messy_report, "truncated").detail


def test_messy_unusable_is_exactly_the_skipped_files(messy_report):
    assert messy_report.unusable() == [
        "a/garbage.png", "a/shared.jpg", "a/truncated.jpg", "a/zero.jpg", "b/shared.jpg",
    ]


def test_messy_extension_mismatch(messy_report):
    f = _one(messy_report, "extension_mismatch")
    assert (f.severity, f.paths) == ("warning", ["b/png_named.jpg"])
    assert f.detail.startswith("PNG content with .jpg extension")


def test_messy_modes_and_their_conversions(messy_report):
    modes = {f.paths[0]: f for f in _kinds(messy_report)["mode"]}
    assert set(modes) == {"a/grey.png", "b/rgba.png", "b/cmyk.jpg", "b/deep16.png"}
    assert all(len(f.paths) == 1 and f.severity == "warning" for f in modes.values())
    assert "replicated to 3" in modes["a/grey.png"].detail
    assert "composited on black" in modes["b/rgba.png"].detail
    assert "CMYK" in modes["b/cmyk.jpg"].detail
    assert modes["b/deep16.png"].detail.startswith("I;16") and "scaled to 8-bit" in modes["b/deep16.png"].detail
    grey = _one(messy_report, "grey_content")  # the X-SDD PNG: RGB file, grey content
    assert (grey.severity, grey.paths) == ("info", ["b/png_named.jpg"])


def test_messy_sizes_and_orientation(messy_report):
    extreme = _one(messy_report, "extreme_size")
    assert (extreme.severity, extreme.paths) == ("warning", ["c/tiny.jpg"])
    assert extreme.detail.startswith("20x20")
    outlier = _one(messy_report, "size_outlier")  # 256x256 dominates
    assert outlier.severity == "info"
    assert outlier.paths == ["b/photo_small.jpg", "b/png_named.jpg", "c/tiny.jpg"]
    assert "dominant 256x256" in outlier.detail and "20x20 x1" in outlier.detail and "128x128 x1" in outlier.detail
    rotated = _one(messy_report, "exif_orientation")
    assert (rotated.severity, rotated.paths) == ("warning", ["c/rotated.jpg"])


def test_messy_duplicates(messy_report):
    conflict = _one(messy_report, "conflicting_labels")
    assert (conflict.severity, conflict.paths) == ("error", ["a/shared.jpg", "b/shared.jpg"])
    duplicate = _one(messy_report, "duplicate")
    assert (duplicate.severity, duplicate.paths) == ("warning", ["a/twice.jpg", "a/twice_copy.jpg"])
    # photo, its q70 re-save (class a) and its resized copy (class b) form one near group across classes
    near = _one(messy_report, "near_conflicting_labels")
    assert (near.severity, near.paths) == ("warning", ["a/photo.jpg", "a/photo_q70.jpg", "b/photo_small.jpg"])
    assert "near_duplicate" not in _kinds(messy_report)
    assert "leakage" not in _kinds(messy_report)


def test_messy_nothing_unexpected(messy_report):
    assert sorted(_kinds(messy_report)) == sorted([
        "junk", "non_image", "stray_file", "truncated", "zero_byte", "unreadable", "extension_mismatch", "mode",
        "grey_content", "mixed_formats", "extreme_size", "size_outlier", "exif_orientation", "conflicting_labels",
        "duplicate", "near_conflicting_labels",
    ])
    mixed = _one(messy_report, "mixed_formats")  # by content: PNGs besides the JPEGs
    assert mixed.paths == ["a/grey.png", "b/deep16.png", "b/png_named.jpg", "b/rgba.png"]


def test_messy_summary_and_json(messy_report, messy):
    text = messy_report.summary()
    assert text.splitlines()[0] == f"{messy}: imagefolder, 17 images in 3 classes (6 a, 6 b, 5 c)"
    assert "1 truncated:" in text and "2 conflicting_labels:" in text and "replicated to 3" in text
    data = json.loads(json.dumps(messy_report.to_json()))
    assert list(data) == ["root", "layout", "num_files", "num_images", "classes", "unusable", "findings", "hashes"]
    assert set(data["unusable"]) <= set(data["hashes"]) and all(len(h) == 64 for h in data["hashes"].values())
    assert data["unusable"] == messy_report.unusable()
    assert list(data["findings"][0]) == ["kind", "severity", "paths", "detail"]
    severities = [f["severity"] for f in data["findings"]]
    assert severities == sorted(severities, key=["error", "warning", "info"].index)


def test_truncation_is_detected_even_when_the_caller_allows_it(messy, monkeypatch):
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    report = scan_path(messy, near_duplicate_threshold=0)
    assert _one(report, "truncated").paths == ["a/truncated.jpg"]
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # restored


def test_progress_counts_every_decoded_file(messy):
    calls = []
    scan_path(messy, progress=lambda done, total: calls.append((done, total)))
    total = calls[-1][1]
    assert calls == [(i, total) for i in range(1, total + 1)]
    assert total == 22  # every image in a class folder: 17 usable, 2 shared copies, truncated, zero, garbage


def test_flipped_and_turned_copies_are_near_duplicates(tmp_path):
    """Roboflow-style augmented copies (mirrored, quarter-turned, re-encoded) are still one photo."""
    photo, other_a, other_b = _photos(3)
    for cls, src in (("x", other_a), ("y", other_b)):
        (tmp_path / cls).mkdir()
        shutil.copy(src, tmp_path / cls / "other.jpg")
    shutil.copy(photo, tmp_path / "x" / "photo.jpg")
    with Image.open(photo) as im:
        _save_jpeg(im.transpose(Image.Transpose.FLIP_LEFT_RIGHT), tmp_path / "x" / "mirrored.jpg", quality=80)
        _save_jpeg(im.transpose(Image.Transpose.ROTATE_90), tmp_path / "x" / "turned.jpg", quality=80)
    report = scan_path(tmp_path)
    near = _one(report, "near_duplicate")
    assert near.paths == ["x/mirrored.jpg", "x/photo.jpg", "x/turned.jpg"]
    assert "flipped or turned" in near.detail
    assert "near_duplicate" not in _kinds(scan_path(tmp_path, near_duplicate_threshold=0))


def test_opaque_alpha_and_palette_are_reported_as_what_they_are(tmp_path):
    src = _photos(4)
    for cls in ("x", "y"):
        (tmp_path / cls).mkdir()
    with Image.open(src[0]) as im:
        im.convert("RGBA").save(tmp_path / "x" / "opaque.png")
    with Image.open(src[1]) as im:
        im.convert("P").save(tmp_path / "x" / "palette.png")
    shutil.copy(src[2], tmp_path / "y" / "a.jpg")
    shutil.copy(src[3], tmp_path / "y" / "b.jpg")
    modes = {f.paths[0]: f for f in _kinds(scan_path(tmp_path))["mode"]}
    assert modes["x/opaque.png"].severity == "info" and "no visible change" in modes["x/opaque.png"].detail
    assert modes["x/palette.png"].severity == "warning" and "palette" in modes["x/palette.png"].detail


def test_size_limits_are_parameters_and_mixed_sizes_are_noted(tmp_path):
    """Web-scraped folders have no dominant size: one info finding, no per-file outliers."""
    for k, (src, side) in enumerate(zip(_photos(4), (256, 200, 150, 100))):
        cls = tmp_path / ("x" if k % 2 else "y")
        cls.mkdir(exist_ok=True)
        with Image.open(src) as im:
            _save_jpeg(im.resize((side, side - 10)), cls / f"{k}.jpg")
    report = scan_path(tmp_path, extreme_max_side=199)
    assert "size_outlier" not in _kinds(report)
    mixed = _one(report, "mixed_sizes")
    assert mixed.severity == "info" and mixed.detail.startswith("4 distinct sizes") and "width 100..256" in mixed.detail
    assert {p for f in _kinds(report)["extreme_size"] for p in f.paths} == {"y/0.jpg", "x/1.jpg"}


# ------------------------------------------------------------------------------- pre-split folders


def test_presplit_leakage_and_near_leakage(tmp_path):
    src = _photos(9)
    for i, split in enumerate(("train", "val", "test")):
        for j, cls in enumerate(("x", "y")):
            (tmp_path / split / cls).mkdir(parents=True)
            shutil.copy(src[2 * i + j], tmp_path / split / cls / "own.jpg")
    shutil.copy(src[6], tmp_path / "train" / "x" / "leak.jpg")
    shutil.copy(src[6], tmp_path / "test" / "x" / "leak.jpg")
    shutil.copy(src[7], tmp_path / "train" / "y" / "p.jpg")
    with Image.open(src[7]) as im:
        _save_jpeg(im.resize((240, 240)), tmp_path / "val" / "y" / "p_small.jpg")
    report = scan_path(tmp_path)
    assert report.layout == "presplit"
    assert report.classes == {"test/x": 2, "test/y": 1, "train/x": 2, "train/y": 2, "val/x": 1, "val/y": 2}
    leak = _one(report, "leakage")
    assert (leak.severity, leak.paths) == ("warning", ["test/x/leak.jpg", "train/x/leak.jpg"])
    assert "splits test, train" in leak.detail
    near = _one(report, "near_leakage")
    assert (near.severity, near.paths) == ("warning", ["train/y/p.jpg", "val/y/p_small.jpg"])
    assert report.unusable() == []
    assert not [f for f in report.findings if f.severity == "error"]


def test_presplit_without_val_and_class_missing_from_val(tmp_path):
    src = _photos(4)
    for split, cls, i in [("train", "x", 0), ("train", "y", 1), ("test", "x", 2), ("test", "y", 3)]:
        (tmp_path / split / cls).mkdir(parents=True)
        shutil.copy(src[i], tmp_path / split / cls / "img.jpg")
    report = scan_path(tmp_path)
    carved = _one(report, "val_from_train")
    assert (carved.severity, carved.paths) == ("info", ["train/"])
    assert "carved from train/" in carved.detail
    assert not [f for f in report.findings if f.kind == "layout"]


# ---------------------------------------------------------------------------- layout problems


def test_single_class_and_empty_class_folder(tmp_path):
    src = _photos(2)
    (tmp_path / "only").mkdir()
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / ".DS_Store").write_bytes(bytes(8))
    for i, p in enumerate(src):
        shutil.copy(p, tmp_path / "only" / f"{i}.jpg")
    report = scan_path(tmp_path)
    layout = {tuple(f.paths): f for f in _kinds(report)["layout"]}
    assert set(layout) == {("empty/",), ()}
    assert all(f.severity == "error" for f in layout.values())
    assert "at least two classes" in layout[()].detail and "['only']" in layout[()].detail
    assert report.classes == {"empty": 0, "only": 2}
    assert report.unusable() == []  # layout errors name folders, not files


def test_images_without_any_folder_structure(tmp_path):
    for i, p in enumerate(_photos(3)):
        shutil.copy(p, tmp_path / f"{i}.jpg")
    report = scan_path(tmp_path)
    assert report.layout == "unknown"
    assert (_one(report, "layout").severity, report.num_images, report.classes) == ("error", 3, {})


def test_missing_root_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        scan_path(tmp_path / "nope")


# ------------------------------------------------------------------------------- segmentation


@pytest.fixture(scope="module")
def seg_folder(tmp_path_factory) -> Path:
    """Real corrosion_seg pairs with one of each mask problem, plus a COCO file that drifted."""
    real = shared_dataset("corrosion_seg")
    stems = [p.stem for p in sorted((real / "images").glob("*.jpg"))[40:47]]
    root = tmp_path_factory.mktemp("seg")
    (root / "images").mkdir()
    (root / "masks").mkdir()
    for stem in stems:
        shutil.copy(real / "images" / f"{stem}.jpg", root / "images" / f"{stem}.jpg")
    good, no_mask, wrong_size, empty, jpeg_mask, grey_levels, orphan = stems
    for stem in (good, no_mask, wrong_size, empty, jpeg_mask, grey_levels, orphan):
        if stem != no_mask:
            shutil.copy(real / "masks" / f"{stem}.png", root / "masks" / f"{stem}.png")
    (root / "images" / f"{orphan}.jpg").unlink()  # its mask stays: a mask without image
    with Image.open(real / "masks" / f"{wrong_size}.png") as m:
        m.resize((320, 320), Image.Resampling.NEAREST).save(root / "masks" / f"{wrong_size}.png")
    Image.new("L", (640, 640), 0).save(root / "masks" / f"{empty}.png")
    with Image.open(real / "masks" / f"{jpeg_mask}.png") as m:
        (root / "masks" / f"{jpeg_mask}.png").unlink()
        m.save(root / "masks" / f"{jpeg_mask}.jpg", "JPEG", quality=75)
    with Image.open(real / "masks" / f"{grey_levels}.png") as m:
        levels = (np.asarray(m) > 0).astype(np.uint8) * 100
        levels[:10] = 200
        Image.fromarray(levels).save(root / "masks" / f"{grey_levels}.png")
    listed = [good, no_mask, wrong_size, empty, jpeg_mask]  # grey_levels left out; one ghost added
    coco = {
        "images": [{"id": i, "file_name": f"{s}.jpg", "width": 640, "height": 640} for i, s in enumerate(listed)]
        + [{"id": 99, "file_name": "ghost.jpg", "width": 640, "height": 640}],
        "annotations": [], "categories": [{"id": 1, "name": "corrosion"}],
    }
    (root / "annotations.coco.json").write_text(json.dumps(coco))
    (root / "stems.json").write_text(json.dumps(stems))  # a non-COCO json: non_image
    return root


def test_segmentation_findings(seg_folder):
    good, no_mask, wrong_size, empty, jpeg_mask, grey_levels, orphan = json.loads((seg_folder / "stems.json").read_text())
    report = scan_path(seg_folder)
    assert report.layout == "segmentation"
    assert report.classes == {"images": 4} and report.num_images == 4  # good, empty, jpeg_mask, grey_levels
    missing = _one(report, "image_without_mask")
    assert (missing.severity, missing.paths) == ("error", [f"images/{no_mask}.jpg"])
    lonely = _one(report, "mask_without_image")
    assert (lonely.severity, lonely.paths) == ("warning", [f"masks/{orphan}.png"])
    size = _one(report, "mask_size_mismatch")
    assert (size.severity, size.paths) == ("error", [f"images/{wrong_size}.jpg", f"masks/{wrong_size}.png"])
    assert size.detail == "mask 320x320 vs image 640x640"
    blank = _one(report, "empty_mask")
    assert (blank.severity, blank.paths) == ("info", [f"masks/{empty}.png"])
    not_binary = {f.paths[0]: f for f in _kinds(report)["mask_not_binary"]}
    assert set(not_binary) == {f"masks/{jpeg_mask}.jpg", f"masks/{grey_levels}.png"}
    assert not_binary[f"masks/{jpeg_mask}.jpg"].severity == "warning"
    assert "snapped to the nearest valid class value" in not_binary[f"masks/{jpeg_mask}.jpg"].detail
    assert not_binary[f"masks/{grey_levels}.png"].severity == "info"
    assert "values 0, 100, 200" in not_binary[f"masks/{grey_levels}.png"].detail
    assert report.unusable() == [f"images/{no_mask}.jpg", f"images/{wrong_size}.jpg", f"masks/{wrong_size}.png"]
    coco = _one(report, "coco")
    assert (coco.severity, coco.paths) == ("info", ["annotations.coco.json"])
    assert "6 images" in coco.detail and "corrosion" in coco.detail
    assert _one(report, "coco_missing_image").paths == ["ghost.jpg"]
    assert _one(report, "coco_unlisted_image").paths == [f"images/{grey_levels}.jpg"]
    assert _one(report, "non_image").paths == ["stems.json"]
    assert "mode" not in _kinds(report)  # L masks are not images to convert


def test_segmentation_colour_masks_stem_clashes_and_broken_json(tmp_path):
    real = shared_dataset("corrosion_seg")
    stems = [p.stem for p in sorted((real / "images").glob("*.jpg"))[80:82]]
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    for stem in stems:
        shutil.copy(real / "images" / f"{stem}.jpg", tmp_path / "images" / f"{stem}.jpg")
    shutil.copy(real / "masks" / f"{stems[0]}.png", tmp_path / "masks" / f"{stems[0]}.png")
    shutil.copy(real / "masks" / f"{stems[0]}.png", tmp_path / "masks" / f"{stems[0]}.bmp")  # same stem twice
    with Image.open(real / "masks" / f"{stems[1]}.png") as m:
        colour = np.zeros((*m.size[::-1], 3), np.uint8)
        colour[np.asarray(m) > 0] = (255, 0, 0)  # red = corrosion, as some tools export
        Image.fromarray(colour).save(tmp_path / "masks" / f"{stems[1]}.png")
    (tmp_path / "_annotations.coco.json").write_text('{"images": [')  # cut off mid-write
    report = scan_path(tmp_path)
    clash = _one(report, "stem_clash")
    assert (clash.severity, clash.paths) == ("warning", [f"masks/{stems[0]}.bmp", f"masks/{stems[0]}.png"])
    colour_finding = _one(report, "mask_not_binary")
    assert (colour_finding.severity, colour_finding.paths) == ("warning", [f"masks/{stems[1]}.png"])
    assert "colour-coded RGB mask (2 colours)" in colour_finding.detail
    assert _one(report, "extension_mismatch").paths == [f"masks/{stems[0]}.bmp"]  # PNG bytes, .bmp name
    assert (_one(report, "bad_json").severity, _one(report, "bad_json").paths) == ("warning", ["_annotations.coco.json"])
    assert report.num_images == 2 and report.unusable() == []


def test_segmentation_presplit(tmp_path):
    real = shared_dataset("corrosion_seg")
    stems = [p.stem for p in sorted((real / "images").glob("*.jpg"))[60:63]]
    for split, stem in zip(("train", "val", "test"), stems):
        for sub, suffix in (("images", ".jpg"), ("masks", ".png")):
            (tmp_path / split / sub).mkdir(parents=True)
            shutil.copy(real / sub / f"{stem}{suffix}", tmp_path / split / sub / f"{stem}{suffix}")
    shutil.copy(real / "images" / f"{stems[0]}.jpg", tmp_path / "test" / "images" / "again.jpg")
    shutil.copy(real / "masks" / f"{stems[0]}.png", tmp_path / "test" / "masks" / "again.png")
    report = scan_path(tmp_path)
    assert report.layout == "segmentation_presplit"
    assert report.classes == {"test/images": 2, "train/images": 1, "val/images": 1}
    assert report.summary().splitlines()[0].endswith("segmentation_presplit, 4 image/mask pairs over 3 splits (2 test/images, 1 train/images, 1 val/images)")
    leak = _one(report, "leakage")
    assert leak.paths == ["test/images/again.jpg", f"train/images/{stems[0]}.jpg"]
    assert report.unusable() == []


# ------------------------------------------------------------------------------------- hashes


def test_content_hash_is_sha256_of_bytes():
    path = _photos(1)[0]
    assert content_hash(path) == hashlib.sha256(path.read_bytes()).hexdigest()


def test_perceptual_hash_survives_reencoding_and_resizing_but_separates_photos():
    a, b = _photos(2)
    with Image.open(a) as im_a, Image.open(b) as im_b:
        buffer = io.BytesIO()
        im_a.save(buffer, "JPEG", quality=70)
        resaved = Image.open(io.BytesIO(buffer.getvalue()))
        h = perceptual_hash(im_a)
        assert 0 <= h < 2**64
        assert _hamming(h, perceptual_hash(resaved)) <= 3
        assert _hamming(h, perceptual_hash(im_a.resize((200, 200)))) <= 3
        assert _hamming(h, perceptual_hash(im_a.convert("L"))) <= 1
        assert _hamming(h, perceptual_hash(im_b)) > 12
        deep = Image.fromarray(np.asarray(im_a.convert("L"), dtype=np.uint16) * 257)
        assert _hamming(h, perceptual_hash(deep)) <= 3  # 16-bit hashed on its own range


# ----------------------------------------------------------------------------- the real datasets


@pytest.fixture(scope="module")
def timings() -> dict[str, float]:
    return {}


def _scan_real(name: str, timings: dict[str, float]) -> ScanReport:
    start = time.perf_counter()
    report = scan_path(shared_dataset(name))
    timings[name] = time.perf_counter() - start
    return report


def test_real_xsdd(timings):
    r = _scan_real("xsdd", timings)
    assert (r.layout, r.num_images, r.classes) == ("imagefolder", 1360, XSDD_COUNTS)
    assert r.unusable() == [] and not [f for f in r.findings if f.severity == "error"]
    outlier = _one(r, "size_outlier")
    assert outlier.detail.endswith("122x128 x1, 130x128 x1") and "dominant 128x128 (1358 of 1360)" in outlier.detail
    assert len(outlier.paths) == 2
    mixed = _one(r, "mixed_formats")
    assert len(mixed.paths) == 142 and "1218 JPEG, 142 PNG" in mixed.detail
    assert all(p.endswith(".png") for p in mixed.paths)
    assert "extension_mismatch" not in _kinds(r)  # every .png is a PNG, every .jpg a JPEG
    assert len(_one(r, "grey_content").paths) == 1360  # RGB files, grey content
    duplicates = _kinds(r)["duplicate"]  # red_iron 2078-2081 = 2082-2085, 2205-2209 = 2210-2214
    assert len(duplicates) == 9 and all(len(f.paths) == 2 and f.paths[0].startswith("red_iron/") for f in duplicates)
    assert _one(r, "non_image").paths == ["SOURCE.txt"]


def test_real_neu_cls(timings):
    r = _scan_real("neu_cls", timings)
    assert (r.layout, r.num_images, r.classes) == ("imagefolder", 1800, {c: 300 for c in NEU_CLASSES})
    assert r.unusable() == []
    grey = _one(r, "grey_content")
    assert len(grey.paths) == 1800 and grey.severity == "info"
    assert "1800 grey_content" in r.summary()
    assert _one(r, "duplicate").paths == ["patches/patches_101.jpg", "patches/patches_105.jpg"]
    # textures shot under one light share their 8x8 layout (dHash alone pairs up thousands of
    # them across all classes); the detail check leaves a few same-defect pairs
    assert "near_conflicting_labels" not in _kinds(r)
    near = _kinds(r).get("near_duplicate", [])
    assert len(near) <= 5 and all(len({p.split("/")[0] for p in f.paths}) == 1 for f in near)


def test_real_fastener_corrosion(timings):
    r = _scan_real("fastener_corrosion", timings)
    counts = {"train/corroded": 110, "train/non_corroded": 83, "val/corroded": 30, "val/non_corroded": 24,
              "test/corroded": 22, "test/non_corroded": 7}
    assert (r.layout, r.classes, r.unusable()) == ("presplit", counts, [])
    assert ": presplit, 276 images in 2 classes over 3 splits (110 train/corroded," in r.summary().splitlines()[0]  # not "6 classes"
    assert {p for f in _kinds(r)["non_image"] for p in f.paths} == {"EXCLUDED_AMBIGUOUS.txt", "SOURCE.txt"}
    # SOURCE.txt: 2 originals (same Roboflow stem before ".rf.") occur in two splits: both are leakage
    by_original: dict[str, set[str]] = {}
    for group, _ in r.classes.items():
        for path in (shared_dataset("fastener_corrosion") / group).glob("*.jpg"):
            by_original.setdefault(path.name.split(".rf.")[0], set()).add(f"{group}/{path.name}")
    across = [paths for paths in by_original.values() if len({p.split("/")[0] for p in paths}) > 1]
    assert len(across) == 2
    leaked = [set(f.paths) for f in r.findings if f.kind in ("leakage", "near_leakage")]
    for paths in across:
        assert any(paths <= group for group in leaked), paths


def test_real_corrosion_seg(timings):
    r = _scan_real("corrosion_seg", timings)
    assert (r.layout, r.num_images, r.classes) == ("segmentation", 205, {"images": 205})
    assert r.unusable() == []
    kinds = _kinds(r)
    for kind in ("image_without_mask", "mask_without_image", "mask_size_mismatch", "empty_mask", "mask_not_binary",
                 "coco_missing_image", "coco_unlisted_image", "mode"):
        assert kind not in kinds
    coco = _one(r, "coco")
    assert coco.paths == ["annotations.coco.json"] and "205 images, 2140 annotations" in coco.detail
    # SOURCE.txt: "205 test images come from 197 originals": 8 pairs of Roboflow copies
    pairs = kinds["near_duplicate"]
    assert len(pairs) == 8 and all(len(f.paths) == 2 for f in pairs)


def test_real_scan_speed(timings):
    """Runs last in this module: every real dataset scanned at a few hundred images/s or more."""
    sizes = {"xsdd": 1360, "neu_cls": 1800, "fastener_corrosion": 276, "corrosion_seg": 205}
    for name, seconds in timings.items():
        print(f"{name}: {seconds:.2f} s, {sizes[name] / seconds:.0f} images/s")
    assert timings.get("neu_cls", 0) < 15
