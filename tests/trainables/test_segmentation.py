"""Segmentation readers: folder pairs by stem, and COCO polygons/RLE rasterised to masks."""

import json

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from tests.conftest import shared_dataset
from trainables.data.segmentation import load_mask, rasterize_coco, read_coco, read_segmentation_folder


def _write_pair(root, stem, mask, split=None, mask_suffix=".png"):
    base = root / split if split else root
    (base / "images").mkdir(parents=True, exist_ok=True)
    (base / "masks").mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full(mask.shape + (3,), 128, np.uint8)).save(base / "images" / f"{stem}.jpg")
    Image.fromarray(mask).save(base / "masks" / f"{stem}{mask_suffix}")


def test_real_corrosion_seg_pairs_by_stem():
    index = read_segmentation_folder(shared_dataset("corrosion_seg"))
    assert index.layout == "segmentation" and len(index.samples) == 205
    for sample in index.samples[:20]:
        assert sample.path.rsplit("/", 1)[1].rsplit(".", 1)[0] == sample.mask.rsplit("/", 1)[1].rsplit(".", 1)[0]
    mask = load_mask(index.samples[0].mask)
    assert mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 1}


def test_presplit_pairs_and_unmatched_files(tmp_path):
    square = np.zeros((16, 16), np.uint8)
    square[4:8, 4:8] = 255
    for split in ("train", "val"):
        _write_pair(tmp_path, f"{split}_a", square, split)
    assert [s.split for s in read_segmentation_folder(tmp_path).samples] == ["train", "val"]
    (tmp_path / "train" / "images" / "orphan.jpg").write_bytes((tmp_path / "train" / "images" / "train_a.jpg").read_bytes())
    with pytest.raises(ValueError, match=r"1 image\(s\) without a mask \(e.g. \['orphan'\]\)"):
        read_segmentation_folder(tmp_path)
    assert len(read_segmentation_folder(tmp_path, strict=False).samples) == 2


def test_layout_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_segmentation_folder(tmp_path / "none")
    (tmp_path / "images").mkdir()
    with pytest.raises(ValueError, match="images/ and masks/"):
        read_segmentation_folder(tmp_path)


def test_mask_formats(tmp_path):
    binary = np.zeros((8, 8), np.uint8)
    binary[:4] = 255
    Image.fromarray(binary).save(tmp_path / "b.png")
    assert load_mask(tmp_path / "b.png").tolist() == (binary // 255).tolist()
    classes = np.array([[0, 1], [2, 3]], np.uint8)
    Image.fromarray(classes).save(tmp_path / "c.png")
    assert load_mask(tmp_path / "c.png").tolist() == classes.tolist()
    Image.fromarray(np.repeat(np.repeat(binary, 4, 0), 4, 1)).save(tmp_path / "j.jpg", quality=60)
    assert set(np.unique(load_mask(tmp_path / "j.jpg"))) <= {0, 1}  # JPEG masks are thresholded


def _coco(tmp_path, annotations, categories=({"id": 1, "name": "rust"},)):
    (tmp_path / "images").mkdir(exist_ok=True)
    Image.new("RGB", (20, 10)).save(tmp_path / "images" / "a.jpg")
    path = tmp_path / "annotations.json"
    path.write_text(json.dumps({"images": [{"id": 7, "file_name": "a.jpg", "width": 20, "height": 10}],
                                "annotations": annotations, "categories": list(categories)}))
    return path


def test_coco_polygon_and_rle_rasterise_to_the_same_region(tmp_path):
    expected = np.zeros((10, 20), np.uint8)
    expected[2:6, 3:9] = 1
    rle = mask_utils.encode(np.asfortranarray(expected))
    rle["counts"] = rle["counts"].decode()
    uncompressed = {"size": [10, 20], "counts": [int(c) for c in _runs(expected)]}
    path = _coco(tmp_path, [
        {"id": 1, "image_id": 7, "category_id": 1, "iscrowd": 0, "segmentation": [[12, 1, 18, 1, 18, 8, 12, 8]]},
        {"id": 2, "image_id": 7, "category_id": 1, "iscrowd": 1, "segmentation": rle},
    ])
    mask = np.asarray(Image.open(rasterize_coco(path, tmp_path / "out")["a.jpg"]))
    assert set(np.unique(mask)) == {0, 255}
    assert (mask[2:6, 3:9] == 255).all()  # the compressed RLE region
    assert mask[4, 15] == 255 and mask[0, 0] == 0  # inside the polygon, and background
    path = _coco(tmp_path, [{"id": 3, "image_id": 7, "category_id": 1, "iscrowd": 1, "segmentation": uncompressed}])
    mask = np.asarray(Image.open(rasterize_coco(path, tmp_path / "out2")["a.jpg"]))
    assert ((mask == 255) == expected.astype(bool)).all()


def _runs(mask):
    """Uncompressed COCO RLE counts (column-major, starting with a run of zeros)."""
    flat = mask.flatten(order="F")
    counts, current, run = [], 0, 0
    for value in flat:
        if value != current:
            counts.append(run)
            current, run = value, 0
        run += 1
    return counts + [run]


def test_several_categories_give_class_index_masks(tmp_path):
    path = _coco(tmp_path, [
        {"id": 1, "image_id": 7, "category_id": 5, "iscrowd": 0, "segmentation": [[0, 0, 5, 0, 5, 5, 0, 5]]},
        {"id": 2, "image_id": 7, "category_id": 9, "iscrowd": 0, "segmentation": [[10, 0, 15, 0, 15, 5, 10, 5]]},
    ], categories=({"id": 5, "name": "rust"}, {"id": 9, "name": "paint"}))
    index = read_coco(path, cache_dir=tmp_path / "cache")
    assert index.classes == ("background", "rust", "paint")
    mask = load_mask(index.samples[0].mask)
    assert mask[2, 2] == 1 and mask[2, 12] == 2 and mask[8, 18] == 0


def test_coco_with_a_missing_image_names_it(tmp_path):
    path = _coco(tmp_path, [])
    (tmp_path / "images" / "a.jpg").unlink()
    with pytest.raises(ValueError, match=r"missing .*a\.jpg"):
        read_coco(path, cache_dir=tmp_path / "cache")


def test_real_coco_matches_the_png_masks():
    root = shared_dataset("corrosion_seg")
    coco = read_coco(root / "annotations.coco.json")
    pairs = {s.path: s.mask for s in read_segmentation_folder(root).samples}
    assert len(coco.samples) == 205
    ious = []
    for sample in coco.samples[:40]:
        a, b = load_mask(sample.mask).astype(bool), load_mask(pairs[sample.path]).astype(bool)
        ious.append((a & b).sum() / max((a | b).sum(), 1))
    assert np.mean(ious) > 0.9  # same polygons, rasterised by two libraries
