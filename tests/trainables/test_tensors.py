"""load_split_tensors (split index → uint8 tensors via the decode cache) and normalize."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import shared_dataset
from trainables.data.folder import read_classification_folder
from trainables.data.index import Sample, SampleIndex
from trainables.data.scan import content_hash
from trainables.data.tensors import IMAGENET_MEAN, IMAGENET_STD, load_split_tensors, normalize

SIZE = 32

# The decode cache of a test session is shared ($CORROTUNE_CACHE_DIR); files are written with the
# same content wherever the same relative name is used, so tests cannot see each other's pixels.


def _save(path: Path, image: Image.Image) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


def _index(samples: list[tuple[Path, int, str]], classes=("a", "b")) -> SampleIndex:
    return SampleIndex(
        root=str(Path(samples[0][0]).parent),
        task="classification",
        layout="imagefolder",
        classes=classes,
        samples=tuple(Sample(path=str(p), label=y, split=s) for p, y, s in samples),
    )


def _decode_one(path: Path, size: int = SIZE) -> torch.Tensor:
    return load_split_tensors(_index([(path, 0, "train")]), size)["train"].images[0]


# name → (image, the uniform RGB colour it must decode to)
MODES = {
    "rgb_odd.jpg": (Image.new("RGB", (50, 21), (255, 255, 255)), (255, 255, 255)),
    "grey.png": (Image.new("L", (64, 64), 100), (100, 100, 100)),
    "rgba_opaque.png": (Image.new("RGBA", (17, 33), (10, 200, 30, 255)), (10, 200, 30)),
    "grey_alpha_opaque.png": (Image.new("LA", (8, 8), (77, 255)), (77, 77, 77)),
    "bilevel.png": (Image.new("1", (9, 9), 1), (255, 255, 255)),
    "rgb.bmp": (Image.new("RGB", (32, 32), (1, 2, 3)), (1, 2, 3)),
}


def _palette_image() -> Image.Image:
    image = Image.new("P", (40, 24))
    image.putpalette([200, 30, 10] + [0, 0, 0] * 255)  # index 0 = rust red
    return image


MODES["palette.png"] = (_palette_image(), (200, 30, 10))


@pytest.fixture
def mode_images(tmp_path) -> dict[str, Path]:
    return {name: _save(tmp_path / "modes" / name, image) for name, (image, _) in MODES.items()}


def test_shapes_dtypes_and_labels_per_split(mode_images):
    names = list(mode_images)
    splits = ["train", "val", "train", "test", "val", "train", "test"]
    labels = [0, 1, 1, 0, 0, 1, 1]
    index = _index([(mode_images[n], y, s) for n, y, s in zip(names, labels, splits)])
    out = load_split_tensors(index, SIZE)
    assert set(out) == {"train", "val", "test"}
    for split in ("train", "val", "test"):
        expected = [(n, y) for n, y, s in zip(names, labels, splits) if s == split]
        tensors = out[split]
        assert tensors.images.shape == (len(expected), 3, SIZE, SIZE)
        assert tensors.images.dtype == torch.uint8 and tensors.images.is_contiguous()
        assert tensors.labels.dtype == torch.int64
        assert tensors.labels.tolist() == [y for _, y in expected]
        assert len(tensors) == len(expected)
        # each row is the image of its own sample (rows are looked up through a path-sorted cache)
        for row, (name, _) in enumerate(expected):
            colour = torch.tensor(MODES[name][1], dtype=torch.int16).view(3, 1)
            assert (tensors.images[row].reshape(3, -1).to(torch.int16) - colour).abs().max() <= 3, name


def test_splits_without_images_are_left_out(mode_images):
    paths = list(mode_images.values())
    out = load_split_tensors(_index([(paths[0], 0, "train"), (paths[1], 1, "val")]), SIZE)
    assert set(out) == {"train", "val"}


@pytest.mark.parametrize("name", list(MODES))
def test_every_mode_and_odd_size_becomes_three_channels_at_the_target_size(mode_images, name):
    image = _decode_one(mode_images[name])
    assert image.shape == (3, SIZE, SIZE) and image.dtype == torch.uint8
    expected = torch.tensor(MODES[name][1], dtype=torch.int16).view(3, 1)
    tolerance = 3 if name.endswith(".jpg") else 0  # JPEG is lossy
    assert (image.reshape(3, -1).to(torch.int16) - expected).abs().max() <= tolerance


def test_content_keeps_its_orientation_after_resize(tmp_path):
    array = np.zeros((40, 60, 3), dtype=np.uint8)
    array[:, :30] = (255, 0, 0)  # left half red, right half blue
    array[:, 30:] = (0, 0, 255)
    image = _decode_one(_save(tmp_path / "halves_40x60.png", Image.fromarray(array)))
    left, right = image[:, :, : SIZE // 2 - 1], image[:, :, SIZE // 2 + 1 :]
    assert left[0].min() == 255 and left[2].max() == 0
    assert right[2].min() == 255 and right[0].max() == 0


def test_an_image_at_the_target_size_is_decoded_exactly(tmp_path):
    array = np.random.default_rng(0).integers(0, 256, size=(SIZE, SIZE, 3), dtype=np.uint8)
    image = _decode_one(_save(tmp_path / "noise_seed0.png", Image.fromarray(array)))
    assert torch.equal(image, torch.from_numpy(array).permute(2, 0, 1))


def test_sixteen_bit_greyscale_keeps_its_contrast(tmp_path):
    ramp = np.linspace(0, 65535, SIZE * SIZE).reshape(SIZE, SIZE).astype(np.uint16)
    path = tmp_path / "scan16.png"
    Image.fromarray(ramp).save(path)
    with Image.open(path) as im:
        assert im.mode.startswith("I")
    image = _decode_one(path)[0].float()
    expected = torch.from_numpy(ramp.astype(np.float32) / 257.0)
    assert (image - expected).abs().max() <= 1.0


def test_a_second_load_is_served_from_the_cache(tmp_path, mode_images):
    index = _index([(p, i % 2, "train" if i < 4 else "val") for i, p in enumerate(mode_images.values())])
    # as in a study's manifest: content hashes key the cache, no file needs to be read again
    index = index.with_samples(dataclasses.replace(s, hash=content_hash(s.path)) for s in index.samples)
    first = load_split_tensors(index, SIZE)
    shutil.rmtree(tmp_path / "modes")  # the files are gone: only a cache can answer now
    second = load_split_tensors(index, SIZE)
    for split in first:
        assert torch.equal(first[split].images, second[split].images)
        assert torch.equal(first[split].labels, second[split].labels)
    with pytest.raises(Exception) as info:  # another size is another key: it must decode
        load_split_tensors(index, SIZE + 8)
    assert "modes" in str(info.value)


def test_one_cache_serves_any_split_of_the_same_samples(mode_images):
    paths = sorted(mode_images.values())
    a = load_split_tensors(_index([(p, 0, "train" if i % 2 else "val") for i, p in enumerate(paths)]), SIZE)
    b = load_split_tensors(_index([(p, 0, "val" if i % 2 else "train") for i, p in enumerate(paths)]), SIZE)
    assert torch.equal(a["train"].images, b["val"].images)
    assert torch.equal(a["val"].images, b["train"].images)


def test_returned_tensors_are_private_copies(mode_images):
    index = _index([(p, 0, "train") for p in mode_images.values()])
    first = load_split_tensors(index, SIZE)["train"].images
    original = first.clone()
    first.zero_()  # a trial writing into its batch must not poison the shared cache
    again = load_split_tensors(index, SIZE)["train"].images
    assert torch.equal(again, original)


def test_two_datasets_with_the_same_layout_do_not_share_pixels(tmp_path):
    decoded = []
    for version, colour in (("v1", (255, 0, 0)), ("v2", (0, 0, 255))):
        samples = [
            (_save(tmp_path / version / cls / "same_name_collision.png", Image.new("RGB", (8, 8), colour)), label, "train")
            for label, cls in enumerate(("a", "b"))
        ]
        decoded.append(load_split_tensors(_index(samples), 8)["train"].images[:, :, 0, 0].tolist())
    assert decoded[0] == [[255, 0, 0]] * 2
    assert decoded[1] == [[0, 0, 255]] * 2


def test_real_images_decode_at_the_target_size():
    root = shared_dataset("xsdd")
    dataset = read_classification_folder(root)
    # one .png and one .jpg of each of two classes, whatever their native size
    picked = []
    for label in (0, 1):
        for suffix in (".png", ".jpg"):
            picked += [s for s in dataset.samples if s.label == label and Path(s.path).suffix.lower() == suffix][:1]
    assert len(picked) >= 3
    small = dataset.with_samples(Sample(path=s.path, label=s.label, split="train") for s in picked)
    tensors = load_split_tensors(small, 48)["train"]
    assert tensors.images.shape == (len(picked), 3, 48, 48)
    assert tensors.labels.tolist() == [s.label for s in picked]
    assert tensors.images.float().std() > 1.0  # real content, not a blank
    with Image.open(picked[0].path) as im:
        direct = np.array(im.convert("RGB").resize((48, 48), Image.BILINEAR))
    assert torch.equal(tensors.images[0], torch.from_numpy(direct).permute(2, 0, 1))


def test_normalize_white_and_black_pixels():
    images = torch.zeros((2, 3, 2, 2), dtype=torch.uint8)
    images[0] = 255
    out = normalize(images)
    assert out.dtype == torch.float32 and out.shape == images.shape
    for c in range(3):
        white = (1.0 - IMAGENET_MEAN[c]) / IMAGENET_STD[c]
        black = -IMAGENET_MEAN[c] / IMAGENET_STD[c]
        assert torch.allclose(out[0, c], torch.full((2, 2), white), atol=1e-6)
        assert torch.allclose(out[1, c], torch.full((2, 2), black), atol=1e-6)
    # the known ImageNet values, spelled out for the red channel
    assert out[0, 0, 0, 0].item() == pytest.approx(2.2489, abs=1e-4)
    assert out[1, 0, 0, 0].item() == pytest.approx(-2.1179, abs=1e-4)
    assert images[0].max() == 255  # input untouched


def test_normalize_with_custom_mean_and_std():
    images = torch.full((1, 3, 1, 1), 51, dtype=torch.uint8)  # 0.2
    out = normalize(images, mean=(0.0, 0.2, 0.4), std=(1.0, 0.5, 0.1))
    assert out.flatten().tolist() == pytest.approx([0.2, 0.0, -2.0], abs=1e-6)
