"""The decode-once cache: keys, reuse, row order, resize policies, modes, concurrency, failures."""

from __future__ import annotations

import errno
import hashlib
import json
import multiprocessing
import os
import shutil
import threading
import time
from collections import namedtuple
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from tests.conftest import shared_dataset
from trainables.data import cache
from trainables.data.cache import (
    RESIZE_POLICIES,
    CacheKey,
    ImageDecodeError,
    cache_root,
    clear_cache,
    open_decoded,
    resize_image,
    to_rgb,
)

SIZE = 32


def _hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def _entries(paths) -> list[tuple[str, str]]:
    return [(str(p), _hash(p)) for p in paths]


def _save(path: Path, image: Image.Image) -> Path:
    image.save(path)
    return path


def _noise(path: Path, width: int, height: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    return _save(path, Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)))


@pytest.fixture
def images(tmp_path) -> list[Path]:
    """Four lossless images of different sizes and aspect ratios."""
    folder = tmp_path / "images"
    folder.mkdir()
    sizes = [(40, 40), (64, 32), (21, 50), (32, 32)]
    return [_noise(folder / f"img{i}.png", w, h, seed=i) for i, (w, h) in enumerate(sizes)]


@pytest.fixture
def builds(monkeypatch) -> list[int]:
    """Counts cache builds in this process."""
    calls: list[int] = []
    real_build = cache._build

    def counting_build(*args, **kwargs):
        calls.append(1)
        return real_build(*args, **kwargs)

    monkeypatch.setattr(cache, "_build", counting_build)
    return calls


def _key_dir(cache_dir: Path, entries, size=SIZE, policy="stretch", kind="image") -> Path:
    return cache_dir / CacheKey.from_entries(entries, size, policy, kind).dirname


def _size(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        return image.size


def _mode(path: Path) -> str:
    with Image.open(path) as image:
        return image.mode


def _load(path: Path) -> Image.Image:
    with Image.open(path) as image:
        image.load()
        return image


def _direct(path: Path, size: int, policy: str) -> np.ndarray:
    """The reference: plain PIL decode and resize, outside the cache."""
    with Image.open(path) as image:
        rgb = image.convert("RGB")
    method = Image.Resampling.BILINEAR
    if policy == "stretch":
        out = rgb.resize((size, size), method)
    elif policy == "letterbox":
        out = ImageOps.pad(rgb, (size, size), method=method, color=(0, 0, 0))
    else:
        out = ImageOps.fit(rgb, (size, size), method=method)
    return np.asarray(out)


# --------------------------------------------------------------------------- reuse and keys


def test_same_entries_reuse_the_array_without_rebuilding(images, tmp_path, builds):
    entries = _entries(images)
    first = open_decoded(entries, SIZE, cache_dir=tmp_path / "c", progress=False)
    directory = _key_dir(tmp_path / "c", entries)
    meta = directory / "meta.json"
    stamp, inode = meta.stat().st_mtime_ns, (directory / "data.u8").stat().st_ino

    again = open_decoded(list(entries), SIZE, cache_dir=tmp_path / "c", progress=False)
    assert len(builds) == 1
    assert meta.stat().st_mtime_ns == stamp and (directory / "data.u8").stat().st_ino == inode
    assert isinstance(again, np.memmap) and not again.flags.writeable
    assert again.shape == (len(images), SIZE, SIZE, 3) and again.dtype == np.uint8
    assert np.array_equal(first, again)
    recorded = json.loads(meta.read_text())
    assert recorded["shape"] == [len(images), SIZE, SIZE, 3] and recorded["policy"] == "stretch"
    assert [e[0] for e in recorded["entries"]] == [p.name for p in images]


def test_changed_hash_size_policy_kind_or_order_gives_a_new_key(images):
    entries = _entries(images)
    base = CacheKey.from_entries(entries, SIZE, "stretch", "image")
    assert CacheKey.from_entries(list(entries), SIZE, "stretch", "image") == base
    changed_hash = [(entries[0][0], "0" * 16)] + entries[1:]
    variants = [
        CacheKey.from_entries(changed_hash, SIZE, "stretch", "image"),
        CacheKey.from_entries(entries, SIZE + 1, "stretch", "image"),
        CacheKey.from_entries(entries, SIZE, "letterbox", "image"),
        CacheKey.from_entries(entries, SIZE, "stretch", "mask"),
        CacheKey.from_entries(entries[::-1], SIZE, "stretch", "image"),  # row order is stored
        CacheKey.from_entries(entries[:-1], SIZE, "stretch", "image"),
    ]
    digests = {base.digest} | {v.digest for v in variants}
    assert len(digests) == len(variants) + 1


def test_changed_content_rebuilds_with_the_new_pixels(images, tmp_path, builds):
    entries = _entries(images)
    before = np.array(open_decoded(entries, SIZE, cache_dir=tmp_path / "c", progress=False))
    _noise(images[0], 40, 40, seed=99)  # same name, new content, new hash
    after = open_decoded(_entries(images), SIZE, cache_dir=tmp_path / "c", progress=False)
    assert len(builds) == 2
    assert not np.array_equal(before[0], after[0]) and np.array_equal(before[1:], after[1:])


def test_a_moved_dataset_keeps_its_key(images, tmp_path, builds):
    moved = tmp_path / "elsewhere" / "images"
    shutil.copytree(images[0].parent, moved)
    a = open_decoded(_entries(images), SIZE, cache_dir=tmp_path / "c", progress=False)
    b = open_decoded(_entries(moved / p.name for p in images), SIZE, cache_dir=tmp_path / "c", progress=False)
    assert len(builds) == 1 and np.array_equal(a, b)


def test_cache_root_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("CORROTUNE_CACHE_DIR", str(tmp_path / "env"))
    assert cache_root() == tmp_path / "env" / "decoded"
    monkeypatch.delenv("CORROTUNE_CACHE_DIR")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_root() == tmp_path / "home" / ".cache" / "corrotune" / "decoded"


def test_default_cache_dir_is_the_cache_root(images, monkeypatch, tmp_path):
    monkeypatch.setenv("CORROTUNE_CACHE_DIR", str(tmp_path / "env"))
    entries = _entries(images[:1])
    open_decoded(entries, SIZE, progress=False)
    assert (_key_dir(tmp_path / "env" / "decoded", entries) / "meta.json").is_file()


def test_no_entries_give_an_empty_read_only_array(tmp_path):
    empty = open_decoded([], SIZE, cache_dir=tmp_path / "c", progress=False)
    assert empty.shape == (0, SIZE, SIZE, 3) and not empty.flags.writeable
    assert open_decoded([], SIZE, kind="mask", cache_dir=tmp_path / "c", progress=False).shape == (0, SIZE, SIZE)
    assert not (tmp_path / "c").exists()


def test_bad_arguments_name_the_valid_choices(images, tmp_path):
    with pytest.raises(ValueError, match="letterbox"):
        open_decoded(_entries(images), SIZE, "squash", cache_dir=tmp_path)
    with pytest.raises(ValueError, match="mask"):
        open_decoded(_entries(images), SIZE, kind="depth", cache_dir=tmp_path)
    with pytest.raises(ValueError, match="positive"):
        open_decoded(_entries(images), 0, cache_dir=tmp_path)


# --------------------------------------------------------------------------- rows and policies


@pytest.mark.parametrize("policy", RESIZE_POLICIES)
def test_rows_follow_entry_order_and_equal_a_direct_pil_decode(images, tmp_path, policy):
    order = [2, 0, 3, 1]
    entries = _entries(images[i] for i in order)
    rows = open_decoded(entries, SIZE, policy, cache_dir=tmp_path / "c", progress=False)
    for row, i in zip(rows, order):
        assert np.array_equal(row, _direct(images[i], SIZE, policy)), (policy, images[i].name)


@pytest.mark.parametrize("policy", RESIZE_POLICIES)
def test_real_images_of_odd_sizes_equal_a_direct_pil_decode(tmp_path, policy):
    root = shared_dataset("xsdd")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in (".jpg", ".png"))
    odd = [p for p in files if _size(p) != (128, 128)]
    picked = odd + [p for p in files if p.suffix == ".png"][:2] + [p for p in files if p.suffix == ".jpg"][:2]
    assert len(odd) >= 1 and len(picked) >= 5
    rows = open_decoded(_entries(picked), 48, policy, cache_dir=tmp_path / "c", progress=False, workers=2)
    for row, path in zip(rows, picked):
        assert np.array_equal(row, _direct(path, 48, policy)), path.name
    assert rows.std() > 1.0  # real content


def test_letterbox_keeps_aspect_with_zero_bands(tmp_path):
    path = _save(tmp_path / "wide.png", Image.new("RGB", (64, 32), (255, 255, 255)))  # 2:1
    row = open_decoded(_entries([path]), SIZE, "letterbox", cache_dir=tmp_path / "c", progress=False)[0]
    assert row[:8].max() == 0 and row[24:].max() == 0  # bands of SIZE/4 rows above and below
    assert row[8:24].min() == 255  # the image, 16 rows high, full width
    tall = resize_image(Image.new("RGB", (16, 32), (255, 255, 255)), SIZE, "letterbox")
    assert tall[:, :8].max() == 0 and tall[:, 24:].max() == 0 and tall[:, 8:24].min() == 255


def test_center_crop_keeps_the_centre(tmp_path):
    array = np.zeros((32, 64, 3), dtype=np.uint8)
    array[:, :16], array[:, 16:48], array[:, 48:] = (255, 0, 0), (0, 255, 0), (0, 0, 255)
    path = _save(tmp_path / "wide.png", Image.fromarray(array))  # 2:1, green centre square
    exact = open_decoded(_entries([path]), SIZE, "center_crop", cache_dir=tmp_path / "c", progress=False)[0]
    assert np.array_equal(exact, array[:, 16:48])
    smaller = resize_image(_load(path), 16, "center_crop")
    assert np.all(smaller[:, 1:-1] == (0, 255, 0))  # inner columns; the edge ones may bleed a little
    assert smaller[..., 1].min() > 200


def test_masks_use_nearest_and_keep_their_labels(tmp_path):
    rng = np.random.default_rng(0)
    blocks = (rng.random((10, 13)) > 0.5).astype(np.uint8) * 255
    mask = np.kron(blocks, np.ones((7, 5), dtype=np.uint8))  # 70×65, 0/255
    path = _save(tmp_path / "mask.png", Image.fromarray(mask))
    for policy in RESIZE_POLICIES:
        rows = open_decoded(_entries([path]), SIZE, policy, kind="mask", cache_dir=tmp_path / "c", progress=False)
        assert rows.shape == (1, SIZE, SIZE) and rows.dtype == np.uint8
        assert set(np.unique(rows)) <= {0, 255} and rows.max() == 255, policy
    smooth = resize_image(_load(path), SIZE, "stretch")  # as an image: bilinear blends
    assert len(np.unique(smooth)) > 2
    palette = Image.fromarray(np.kron(np.array([[0, 3], [7, 1]], dtype=np.uint8), np.ones((9, 9), np.uint8)), "P")
    palette.putpalette(list(range(256)) * 3)
    assert set(np.unique(resize_image(palette, 8, "stretch", is_mask=True))) == {0, 1, 3, 7}  # class ids kept


def test_real_masks_stay_binary_and_align_with_their_images(tmp_path):
    root = shared_dataset("corrosion_seg")
    masks = sorted((root / "masks").glob("*.png"))[:3]
    images = [root / "images" / f"{m.stem}.jpg" for m in masks]
    assert all(p.is_file() for p in images)
    rows = open_decoded(_entries(masks), 64, "letterbox", kind="mask", cache_dir=tmp_path / "c", progress=False)
    pixels = open_decoded(_entries(images), 64, "letterbox", cache_dir=tmp_path / "c", progress=False)
    assert rows.shape == (3, 64, 64) and pixels.shape == (3, 64, 64, 3)
    assert set(np.unique(rows)) == {0, 255}
    for row, mask in zip(rows, masks):
        cover = (np.asarray(_load(mask)) > 0).mean()
        assert abs((row > 0).mean() - cover) < 0.05  # nearest keeps the covered fraction


# --------------------------------------------------------------------------- modes


def test_every_mode_becomes_three_channel_uint8(tmp_path):
    palette = Image.new("P", (20, 10), 0)
    palette.putpalette([200, 30, 10] + [0, 0, 0] * 255)
    transparent = Image.new("RGBA", (8, 8), (10, 200, 30, 0))
    transparent.paste((10, 200, 30, 255), (0, 0, 4, 8))  # left half opaque, right half clear
    cases = {
        "L.png": (Image.new("L", (30, 20), 100), (100, 100, 100)),
        "LA.png": (Image.new("LA", (8, 8), (77, 255)), (77, 77, 77)),
        "RGBA.png": (Image.new("RGBA", (17, 33), (10, 200, 30, 255)), (10, 200, 30)),
        "RGBA_half.png": (Image.new("RGBA", (8, 8), (200, 100, 50, 128)), (100, 50, 25)),  # × 128/255, on black
        "P.png": (palette, (200, 30, 10)),
        "CMYK.tif": (Image.new("CMYK", (12, 12), (0, 255, 255, 0)), (255, 0, 0)),
        "CMYK_white.jpg": (Image.new("CMYK", (16, 16), (0, 0, 0, 0)), (255, 255, 255)),
        "I16_white.png": (Image.fromarray(np.full((9, 9), 65535, np.uint16)), (255, 255, 255)),
        "I16_mid.png": (Image.fromarray(np.full((9, 9), 32896, np.uint16)), (128, 128, 128)),
        "bilevel.png": (Image.new("1", (9, 9), 1), (255, 255, 255)),
    }
    paths = [_save(tmp_path / name, image) for name, (image, _) in cases.items()]
    assert _mode(tmp_path / "I16_white.png").startswith("I")
    assert _mode(tmp_path / "CMYK.tif") == "CMYK"
    rows = open_decoded(_entries(paths), SIZE, "letterbox", cache_dir=tmp_path / "c", progress=False)
    assert rows.shape == (len(cases), SIZE, SIZE, 3) and rows.dtype == np.uint8
    for row, (name, (image, colour)) in zip(rows, cases.items()):
        centre = row[SIZE // 2, SIZE // 2].astype(int)
        tolerance = 3 if name.endswith(".jpg") else 1
        assert np.abs(centre - colour).max() <= tolerance, (name, centre)
    clear = resize_image(transparent, 8, "stretch")
    assert np.array_equal(clear[:, :4], np.broadcast_to((10, 200, 30), (8, 4, 3)))
    assert clear[:, 4:].max() == 0  # fully transparent → black, whatever colour it stored


def test_sixteen_bit_keeps_its_contrast_and_other_modes_convert():
    ramp = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)
    grey = np.asarray(to_rgb(Image.fromarray(ramp)))[..., 0].astype(float)
    assert grey.shape == (64, 64) and grey[0, 0] == 0 and grey[-1, -1] == 255
    assert np.abs(grey - ramp / 257.0).max() <= 0.5
    as_int = np.asarray(to_rgb(Image.fromarray(ramp.astype(np.int32), "I")))[..., 0]
    assert np.array_equal(as_int, grey.astype(np.uint8))
    floats = to_rgb(Image.fromarray(np.array([[-5.0, 0.4, 127.6, 300.0]], np.float32), "F"))
    assert np.asarray(floats)[0, :, 0].tolist() == [0, 0, 128, 255]
    assert to_rgb(Image.new("PA", (2, 2), (0, 255))).mode == "RGB"
    rgb = Image.new("RGB", (2, 2))
    assert to_rgb(rgb) is rgb


def test_colour_masks_are_refused_with_a_clear_error():
    with pytest.raises(ValueError, match="colour mask"):
        resize_image(Image.new("RGB", (4, 4), (255, 0, 0)), 4, "stretch", is_mask=True)
    with pytest.raises(ValueError, match="outside"):
        resize_image(Image.fromarray(np.full((4, 4), 300, np.uint16)), 4, "stretch", is_mask=True)
    grey_rgb = resize_image(Image.new("RGB", (4, 4), (255, 255, 255)), 4, "stretch", is_mask=True)
    assert grey_rgb.shape == (4, 4) and grey_rgb.min() == 255


# --------------------------------------------------------------------------- concurrency


def _open_in_child(entries, cache_dir, marker, barrier, results) -> None:
    """Spawned: opens the key at the same moment as a sibling, recording each build in ``marker``."""
    from trainables.data import cache as child_cache

    real_build = child_cache._build

    def marking_build(*args, **kwargs):
        with open(marker, "a") as handle:
            handle.write(f"{os.getpid()}\n")
        time.sleep(0.5)  # hold the lock long enough for the sibling to arrive
        return real_build(*args, **kwargs)

    child_cache._build = marking_build
    barrier.wait(timeout=60)
    rows = child_cache.open_decoded(entries, SIZE, cache_dir=cache_dir, progress=False)
    results.put((os.getpid(), hashlib.sha256(np.ascontiguousarray(rows).tobytes()).hexdigest()))


@pytest.mark.slow
def test_two_processes_opening_one_key_build_it_once(images, tmp_path):
    entries = _entries(images)
    marker = tmp_path / "builds.txt"
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(2), context.Queue()
    children = [
        context.Process(target=_open_in_child, args=(entries, str(tmp_path / "c"), str(marker), barrier, results))
        for _ in range(2)
    ]
    for child in children:
        child.start()
    for child in children:
        child.join(timeout=120)
        assert child.exitcode == 0
    digests = [results.get(timeout=10) for _ in children]
    assert len(marker.read_text().split()) == 1  # one build
    assert digests[0][1] == digests[1][1]  # identical arrays
    here = open_decoded(entries, SIZE, cache_dir=tmp_path / "c", progress=False)
    assert hashlib.sha256(np.ascontiguousarray(here).tobytes()).hexdigest() == digests[0][1]


def test_a_waiter_whose_lock_file_was_replaced_waits_on_the_current_one(tmp_path):
    directory = tmp_path / "c" / f"image{SIZE}-stretch-{'0' * 24}"
    held_current: list[bool] = []

    def wait_then_hold() -> None:
        with cache._locked(directory, progress=False):
            with cache._locked(directory, blocking=False) as other:
                held_current.append(other is False)  # nobody else can take the current lock file

    first = cache._acquire(directory, False, blocking=True)
    waiter = threading.Thread(target=wait_then_hold)
    waiter.start()
    time.sleep(0.2)  # the waiter blocks on this lock file ...
    shutil.rmtree(directory)  # ... which clear_cache removes, and another process locks a new one
    second = cache._acquire(directory, False, blocking=False)
    assert second is not None
    os.close(first)  # the waiter wakes holding the unlinked file: it must wait for the new one
    time.sleep(0.2)
    assert waiter.is_alive()
    os.close(second)
    waiter.join(timeout=10)
    assert held_current == [True]


# --------------------------------------------------------------------------- failures


def test_an_unfinished_directory_is_rebuilt(images, tmp_path, builds):
    entries = _entries(images)
    directory = _key_dir(tmp_path / "c", entries)
    directory.mkdir(parents=True)
    (directory / "data.u8").write_bytes(b"\x07" * 100)  # a crashed build: data, no meta.json
    (directory / "data.u8.tmp123").write_bytes(b"\x07")
    rows = open_decoded(entries, SIZE, cache_dir=tmp_path / "c", progress=False)
    assert len(builds) == 1
    assert np.array_equal(rows[0], _direct(images[0], SIZE, "stretch"))
    assert sorted(p.name for p in directory.iterdir()) == [".lock", "data.u8", "meta.json"]


def test_a_torn_meta_or_short_data_file_is_rebuilt(images, tmp_path, builds):
    entries = _entries(images)
    open_decoded(entries, SIZE, cache_dir=tmp_path / "c", progress=False)
    directory = _key_dir(tmp_path / "c", entries)
    (directory / "meta.json").write_text('{"key": ')
    open_decoded(entries, SIZE, cache_dir=tmp_path / "c", progress=False)
    with open(directory / "data.u8", "r+b") as handle:
        handle.truncate(10)
    rows = open_decoded(entries, SIZE, cache_dir=tmp_path / "c", progress=False)
    assert len(builds) == 3 and np.array_equal(rows[-1], _direct(images[-1], SIZE, "stretch"))


@pytest.mark.parametrize("content", [b"not an image at all", "truncated"])
def test_a_corrupt_image_raises_an_error_naming_the_file(images, tmp_path, content):
    bad = tmp_path / "images" / "broken.jpg"
    if content == "truncated":
        whole = _noise(tmp_path / "whole.jpg", 64, 64, seed=5).read_bytes()
        content = whole[: len(whole) // 2]
    bad.write_bytes(content)
    entries = _entries([images[0], bad, images[1]])
    with pytest.raises(ImageDecodeError, match="broken.jpg") as error:
        open_decoded(entries, SIZE, cache_dir=tmp_path / "c", progress=False)
    assert error.value.path == str(bad)
    directory = _key_dir(tmp_path / "c", entries)
    assert not (directory / "meta.json").exists() and not list(directory.glob("data.u8*"))


def test_too_little_disk_space_raises_before_decoding(images, tmp_path, monkeypatch, builds):
    Usage = namedtuple("Usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: Usage(10**9, 10**9 - 1000, 1000))
    decoded = []
    monkeypatch.setattr(cache, "_decode_file", lambda *a: decoded.append(a))
    with pytest.raises(OSError, match="free") as error:
        open_decoded(_entries(images), SIZE, cache_dir=tmp_path / "c", progress=False)
    assert error.value.errno == errno.ENOSPC
    assert str(tmp_path / "c") in str(error.value)
    assert f"{len(images) * SIZE * SIZE * 3 / 2**20:.1f} MiB" in str(error.value)  # what it needs
    assert decoded == []


# --------------------------------------------------------------------------- progress and clearing


def test_progress_callback_counts_up_to_the_total(images, tmp_path):
    calls = []
    open_decoded(_entries(images), SIZE, cache_dir=tmp_path / "c", progress=lambda d, t: calls.append((d, t)))
    assert calls == [(i, len(images)) for i in range(1, len(images) + 1)]
    open_decoded(_entries(images), SIZE, cache_dir=tmp_path / "c", progress=lambda d, t: calls.append((d, t)))
    assert len(calls) == len(images)  # warm: nothing to report


def test_progress_off_a_terminal_prints_one_line_at_start_and_end(images, tmp_path, capsys):
    open_decoded(_entries(images * 10), SIZE, cache_dir=tmp_path / "c", progress=True)
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert captured.out == "" and len(lines) == 2
    assert "started" in lines[0] and "done" in lines[1] and "40 images" in lines[0]
    open_decoded(_entries(images), SIZE, cache_dir=tmp_path / "c", progress=False)
    assert capsys.readouterr().err == ""


def test_clear_cache_removes_entries_by_age_and_spares_other_folders(images, tmp_path):
    root = tmp_path / "c"
    open_decoded(_entries(images), SIZE, cache_dir=root, progress=False)
    open_decoded(_entries(images), SIZE + 8, cache_dir=root, progress=False)
    (root / "notes").mkdir()
    old = _key_dir(root, _entries(images), SIZE + 8)
    month_ago = time.time() - 30 * 86400
    os.utime(old, (month_ago, month_ago))
    assert clear_cache(root, older_than_days=7) == [old]
    assert sorted(p.name for p in root.iterdir()) == sorted([_key_dir(root, _entries(images)).name, "notes"])
    assert len(clear_cache(root)) == 1
    assert [p.name for p in root.iterdir()] == ["notes"]
    assert clear_cache(tmp_path / "missing") == []


def test_clear_cache_skips_a_build_in_progress_and_readers_keep_their_map(images, tmp_path):
    root = tmp_path / "c"
    rows = open_decoded(_entries(images), SIZE, cache_dir=root, progress=False)
    expected = np.array(rows)
    busy = _key_dir(root, _entries(images), SIZE + 8)
    with cache._locked(busy):
        assert clear_cache(root) == [_key_dir(root, _entries(images))]
    assert busy.is_dir()
    assert np.array_equal(rows, expected)  # the unlinked file stays mapped
