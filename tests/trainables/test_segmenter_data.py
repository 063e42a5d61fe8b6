"""Segmenter data: masks to class indices (binary, K classes, JPEG snapping) and bad masks."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tests.conftest import shared_dataset
from trainables.data.config import DataConfig
from trainables.data.prepare import load_index
from trainables.data.segmentation import MaskError, classes_to_indices, load_segmentation_tensors, read_segmentation_folder
from trainables.data.splits import split_index


def _folder(root, masks: dict[str, np.ndarray], suffix: str = ".png", image_size=None):
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for stem, mask in masks.items():
        h, w = image_size or mask.shape
        Image.fromarray(np.full((h, w, 3), 100, np.uint8)).save(root / "images" / f"{stem}.png")
        Image.fromarray(mask).save(root / "masks" / f"{stem}{suffix}", **({"quality": 50} if suffix == ".jpg" else {}))
    return read_segmentation_folder(root)


def _split(index):
    return split_index(index, (0.5, 0.25, 0.25), 0)


def _squares(n: int, value: int, size: int = 16) -> dict[str, np.ndarray]:
    out = {}
    for i in range(n):
        mask = np.zeros((size, size), np.uint8)
        mask[2 + i % 4 : 9 + i % 4, 3:11] = value
        out[f"m{i}"] = mask
    return out


@pytest.mark.parametrize("value", [255, 1])
def test_binary_masks_become_zero_one_with_two_classes(tmp_path, value):
    data = load_segmentation_tensors(_split(_folder(tmp_path, _squares(8, value))), 16)
    assert data.num_classes == 2 and data.classes == ("background", "foreground")
    masks = np.concatenate([m.numpy() for m in data.masks.values()])
    assert set(np.unique(masks).tolist()) == {0, 1} and masks.sum() == 8 * 7 * 8


def test_class_index_masks_are_detected_and_kept(tmp_path):
    masks = _squares(8, 1)
    for i, mask in enumerate(masks.values()):
        mask[12:, :] = 2 + i % 2  # classes 2 and 3 as well
    data = load_segmentation_tensors(_split(_folder(tmp_path, masks)), 16)
    assert data.num_classes == 4 and len(data.classes) == 4
    assert set(np.unique(np.concatenate([m.numpy() for m in data.masks.values()])).tolist()) == {0, 1, 2, 3}


def test_jpeg_masks_snap_to_valid_classes_and_never_create_one(tmp_path):
    squares = {k: np.kron(v, np.ones((4, 4), np.uint8)) for k, v in _squares(8, 255).items()}  # 64 px
    index = _split(_folder(tmp_path, squares, suffix=".jpg"))
    raw = np.asarray(Image.open(index.samples[0].mask))
    assert len(np.unique(raw)) > 2  # compression noise is there
    data = load_segmentation_tensors(index, 64)
    assert data.num_classes == 2 and data.jpeg_masks == 8
    masks = np.concatenate([m.numpy() for m in data.masks.values()])
    assert set(np.unique(masks).tolist()) <= {0, 1}
    true = np.stack([(squares[p.rsplit("/", 1)[1][:-4]] > 0) for split in data.paths for p in data.paths[split]])
    assert (masks == true).mean() > 0.98
    # class indices: noise above the last class snaps to it
    assert classes_to_indices(np.array([[0, 1], [2, 7]], np.uint8), 3, jpeg=True).tolist() == [[0, 1], [2, 2]]


def test_values_outside_the_declared_classes_name_the_file_and_the_fix(tmp_path):
    masks = _squares(8, 1)
    masks["m3"][0, 0] = 5
    index = _split(_folder(tmp_path, masks))
    with pytest.raises(MaskError, match=r"outside the 3 declared classes .*m3\.png .*set num_classes: 6"):
        load_segmentation_tensors(index, 16, num_classes=3)


def test_num_classes_that_disagrees_with_binary_masks(tmp_path):
    index = _split(_folder(tmp_path, _squares(8, 255)))
    with pytest.raises(MaskError, match=r"outside the 4 declared classes \(class indices 0..3\)"):
        load_segmentation_tensors(index, 16, num_classes=4)


def test_a_mask_of_another_size_than_its_image_is_named(tmp_path):
    root = tmp_path / "ds"
    _folder(root, _squares(8, 255))
    Image.fromarray(np.zeros((10, 12), np.uint8)).save(root / "masks" / "m2.png")
    with pytest.raises(MaskError, match=r"m2\.png is 12x10, its image .*m2\.png 16x16"):
        load_segmentation_tensors(_split(read_segmentation_folder(root)), 16)


def test_train_and_test_only_segmentation_folder_gets_val_from_train(tmp_path):
    for split, n in (("train", 8), ("test", 2)):
        _folder(tmp_path / split, {f"{split}{k}": v for k, v in _squares(n, 255).items()})
    index = load_index(DataConfig(path=str(tmp_path), split=(0.6, 0.2, 0.2)), "segmentation")
    counts = index.counts()
    assert counts == {"train": {"images": 6}, "val": {"images": 2}, "test": {"images": 2}}


def test_real_corrosion_seg_png_masks_and_coco_agree():
    root = shared_dataset("corrosion_seg")
    png = load_index(DataConfig(path=str(root)), "segmentation")
    coco = load_index(DataConfig(path=str(root), format="coco"), "segmentation")
    a, b = (load_segmentation_tensors(index, 64) for index in (png, coco))
    assert a.num_classes == b.num_classes == 2 and len(png.samples) == len(coco.samples) == 205
    agreement = np.mean([(a.masks[s] == b.masks[s]).float().mean().item() for s in a.masks])
    assert agreement > 0.97  # the PNG masks were rasterised from the same polygons
