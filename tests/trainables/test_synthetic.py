"""The procedural corrosion dataset: rendering, layout, caching and difficulty."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from trainables.data import synthetic
from trainables.data.synthetic import (
    GENERATOR_VERSION,
    ensure_corrosion_dataset,
    generate_corrosion_dataset,
    render_sample,
)

SPLITS = ("train", "val", "test")
CLASSES = ("corrosion", "no_corrosion")
SMALL = {"num_images": 40, "image_size": 32, "seed": 5}


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory) -> Path:
    return generate_corrosion_dataset(tmp_path_factory.mktemp("synthetic") / "ds", **SMALL)


def _stems(folder: Path) -> set[str]:
    return {p.stem for p in folder.glob("*.png")}


def _pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _dilate(mask: np.ndarray) -> np.ndarray:
    padded = np.pad(mask, 1)
    h, w = mask.shape
    return np.max([padded[dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3)], axis=0)


def _rust_coloured_fraction(image: np.ndarray) -> float:
    """Share of saturated orange/red/brown pixels: a crude hand-made rust detector."""
    rgb = image.astype(np.float32) / 255.0
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    top = rgb.max(axis=-1)
    saturation = (top - rgb.min(axis=-1)) / (top + 1e-6)
    return float(((r - g > 0.08) & (g >= b) & (saturation > 0.35) & (top > 0.15)).mean())


def _auc(positives: list[float], negatives: list[float]) -> float:
    pos, neg = np.asarray(positives)[:, None], np.asarray(negatives)[None, :]
    return float((pos > neg).mean() + 0.5 * (pos == neg).mean())


# --------------------------------------------------------------------------- render_sample


@pytest.mark.parametrize("image_size", [16, 48])
def test_render_sample_shapes_dtypes_and_masks(image_size):
    for index in range(12):
        for positive in (True, False):
            image, mask = render_sample(index, seed=1, image_size=image_size, positive=positive)
            assert image.shape == (image_size, image_size, 3) and image.dtype == np.uint8
            assert mask.shape == (image_size, image_size) and mask.dtype == np.uint8
            assert set(np.unique(mask)) <= {0, 255}
            assert mask.any() == positive


def test_render_sample_is_deterministic_and_seeded():
    image, mask = render_sample(7, seed=2, image_size=32, positive=True)
    again, mask_again = render_sample(7, seed=2, image_size=32, positive=True)
    assert image.tobytes() == again.tobytes() and mask.tobytes() == mask_again.tobytes()
    assert not np.array_equal(image, render_sample(7, seed=3, image_size=32, positive=True)[0])
    assert not np.array_equal(image, render_sample(8, seed=2, image_size=32, positive=True)[0])


def test_negative_is_the_positive_without_rust():
    for index in range(8):
        positive, mask = render_sample(index, image_size=40, positive=True)
        negative, _ = render_sample(index, image_size=40, positive=False)
        outside = ~_dilate(mask > 0)  # the optional blur spreads rust by one pixel
        assert np.array_equal(positive[outside], negative[outside])
        assert not np.array_equal(positive, negative)


def test_render_sample_rejects_bad_arguments():
    with pytest.raises(ValueError, match="index"):
        render_sample(-1, positive=True)
    with pytest.raises(ValueError, match="image_size"):
        render_sample(0, image_size=8, positive=True)


def test_rust_colour_separates_classes_only_partly():
    """A hand-made colour detector beats chance but is far from perfect: the task is not trivial."""
    positives = [render_sample(i, image_size=48, positive=True) for i in range(40)]
    negatives = [render_sample(i, image_size=48, positive=False)[0] for i in range(100, 140)]
    pos_scores = [_rust_coloured_fraction(image) for image, _ in positives]
    neg_scores = [_rust_coloured_fraction(image) for image in negatives]
    assert np.mean(pos_scores) > np.mean(neg_scores)
    assert 0.65 < _auc(pos_scores, neg_scores) < 0.98
    assert max(neg_scores) > np.median(pos_scores)  # rust-coloured paint and marks on negatives
    covers = [np.count_nonzero(mask) / mask.size for _, mask in positives]
    assert min(covers) < 0.03 and max(covers) > 0.2  # from tiny patches to large areas


# --------------------------------------------------------------------------- generate_corrosion_dataset


def test_layout_and_counts_match_manifest(small_dataset):
    manifest = json.loads((small_dataset / "dataset.json").read_text())
    assert manifest["generator_version"] == GENERATOR_VERSION
    assert manifest["params"] == {**SMALL, "positive_fraction": 0.5, "split": [0.7, 0.15, 0.15]}
    # 20 images per class, each split 14/3/3: stratified, every image used once.
    assert manifest["counts"] == {
        split: {"corrosion": n, "no_corrosion": n} for split, n in zip(SPLITS, (14, 3, 3))
    }
    seen: set[str] = set()
    for split in SPLITS:
        classified = {c: _stems(small_dataset / "classification" / split / c) for c in CLASSES}
        for class_name in CLASSES:
            assert len(classified[class_name]) == manifest["counts"][split][class_name]
        images = _stems(small_dataset / "segmentation" / split / "images")
        assert images == classified["corrosion"] | classified["no_corrosion"]
        assert _stems(small_dataset / "segmentation" / split / "masks") == images
        assert not images & seen
        seen |= images
    assert seen == {f"img_{i:05d}" for i in range(SMALL["num_images"])}


def test_classification_images_are_the_segmentation_images(small_dataset):
    covers = []
    for split in SPLITS:
        segmentation = small_dataset / "segmentation" / split
        for class_name in CLASSES:
            for path in (small_dataset / "classification" / split / class_name).glob("*.png"):
                assert path.read_bytes() == (segmentation / "images" / path.name).read_bytes()
                with Image.open(segmentation / "masks" / path.name) as mask_image:
                    assert mask_image.mode == "L"
                    mask = np.asarray(mask_image)
                assert set(np.unique(mask)) <= {0, 255}
                assert mask.any() == (class_name == "corrosion")
                if mask.any():
                    covers.append(np.count_nonzero(mask) / mask.size)
    manifest = json.loads((small_dataset / "dataset.json").read_text())
    assert manifest["mean_mask_cover_positive"] == pytest.approx(np.mean(covers))


def test_dataset_images_are_render_sample_and_independent_of_count(small_dataset, tmp_path):
    fewer = generate_corrosion_dataset(tmp_path / "fewer", **{**SMALL, "num_images": 12})
    matched = 0
    for path in sorted(fewer.glob("classification/*/*/*.png")):
        index, positive = int(path.stem[4:]), path.parent.name == "corrosion"
        expected, _ = render_sample(index, seed=SMALL["seed"], image_size=SMALL["image_size"], positive=positive)
        assert np.array_equal(_pixels(path), expected)
        same = list(small_dataset.glob(f"classification/*/{path.parent.name}/{path.name}"))
        if same:
            assert same[0].read_bytes() == path.read_bytes()
            matched += 1
    assert matched > 0


def test_generation_is_byte_identical(tmp_path):
    params = {"num_images": 10, "image_size": 16, "seed": 9}
    first = _files(generate_corrosion_dataset(tmp_path / "a", **params))
    assert first == _files(generate_corrosion_dataset(tmp_path / "b", **params))
    other = _files(generate_corrosion_dataset(tmp_path / "c", **{**params, "seed": 10}))
    assert first != other


def test_positive_fraction_is_exact(tmp_path):
    root = generate_corrosion_dataset(tmp_path / "ds", num_images=30, image_size=16, positive_fraction=0.3)
    counts = json.loads((root / "dataset.json").read_text())["counts"]
    assert sum(c["corrosion"] for c in counts.values()) == 9
    assert sum(c["no_corrosion"] for c in counts.values()) == 21
    assert all(c["corrosion"] > 0 and c["no_corrosion"] > 0 for c in counts.values())


# --------------------------------------------------------------------------- ensure_corrosion_dataset


def test_ensure_generates_once_then_reuses(tmp_path, monkeypatch):
    path = ensure_corrosion_dataset(tmp_path, **SMALL)
    assert path.parent == tmp_path
    assert path.name == f"corrosion-v{GENERATOR_VERSION}-n40-s32-seed5-p0.5-split0.7_0.15_0.15"
    stamp = (path / "dataset.json").stat().st_mtime_ns

    def fail(*args, **kwargs):
        raise AssertionError("regenerated a cached dataset")

    monkeypatch.setattr(synthetic, "generate_corrosion_dataset", fail)
    assert ensure_corrosion_dataset(tmp_path, **SMALL) == path
    assert (path / "dataset.json").stat().st_mtime_ns == stamp
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no staging leftovers


def test_ensure_distinguishes_params(tmp_path):
    base = ensure_corrosion_dataset(tmp_path, num_images=10, image_size=16)
    other = ensure_corrosion_dataset(tmp_path, num_images=10, image_size=16, split=(0.6, 0.2, 0.2))
    assert base != other and (other / "dataset.json").is_file()


def test_ensure_default_cache_dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("CORROTUNE_CACHE_DIR", str(tmp_path / "env"))
    assert ensure_corrosion_dataset(num_images=10, image_size=16).parent == tmp_path / "env" / "synthetic"
    monkeypatch.delenv("CORROTUNE_CACHE_DIR")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    expected = tmp_path / "home" / ".cache" / "corrotune" / "synthetic"
    assert ensure_corrosion_dataset(num_images=10, image_size=16).parent == expected


def test_ensure_replaces_a_half_written_dir(tmp_path):
    name = ensure_corrosion_dataset(tmp_path / "probe", num_images=10, image_size=16).name
    stale = tmp_path / "cache" / name
    (stale / "classification").mkdir(parents=True)
    (stale / "junk.txt").write_text("interrupted")
    path = ensure_corrosion_dataset(tmp_path / "cache", num_images=10, image_size=16)
    assert path == stale and (path / "dataset.json").is_file()
    assert not (path / "junk.txt").exists()
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [name]


def test_ensure_is_safe_when_called_concurrently(tmp_path):
    with ThreadPoolExecutor(4) as pool:
        paths = list(pool.map(lambda _: ensure_corrosion_dataset(tmp_path, num_images=20, image_size=16), range(4)))
    assert len(set(paths)) == 1 and (paths[0] / "dataset.json").is_file()
    assert [p.name for p in tmp_path.iterdir()] == [paths[0].name]
    counts = json.loads((paths[0] / "dataset.json").read_text())["counts"]
    assert sum(len(list(paths[0].glob(f"segmentation/{s}/images/*.png"))) for s in SPLITS) == 20
    assert sum(sum(c.values()) for c in counts.values()) == 20


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"num_images": 9}, "num_images must be >= 10"),
        ({"num_images": 12.0}, "num_images must be an integer"),
        ({"image_size": 15}, "image_size must be >= 16"),
        ({"seed": -1}, "seed must be >= 0"),
        ({"positive_fraction": 0.0}, "positive_fraction"),
        ({"positive_fraction": 1.0}, "positive_fraction"),
        ({"split": (0.7, 0.2, 0.2)}, "sum"),
        ({"split": (0.8, 0.2, 0.0)}, "ratios > 0"),
        ({"split": (0.8, 0.2)}, "three ratios"),
        ({"num_images": 10, "split": (0.9, 0.05, 0.05)}, "leaves a split without"),
        ({"num_images": 20, "positive_fraction": 0.1}, "without corrosion images"),
    ],
)
def test_invalid_params_raise_clear_errors(tmp_path, params, message):
    with pytest.raises(ValueError, match=message):
        ensure_corrosion_dataset(tmp_path / "cache", **params)
    with pytest.raises(ValueError, match=message):
        generate_corrosion_dataset(tmp_path / "root", **params)
    assert not list(tmp_path.iterdir())  # nothing written


def test_unknown_param_is_a_type_error(tmp_path):
    with pytest.raises(TypeError, match="num_imgs"):
        ensure_corrosion_dataset(tmp_path, num_imgs=10)
