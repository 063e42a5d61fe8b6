"""Decode-once image cache: decoded, resized uint8 arrays on local disk, memory-mapped by every trial.

Each image (or mask) is decoded and resized once per (file list + content hashes, size, resize
policy, kind) into ``<cache_root>/<key>/data.u8``, a raw ``(N, S, S, 3)`` (masks ``(N, S, S)``)
uint8 array. ``meta.json`` is written last, so a directory without it is an unfinished build
and is rebuilt. Trials on a node (separate processes) map the same file read-only and share its
pages through the OS page cache; an ``fcntl.flock`` per key makes one process build while the
others wait, and files appear only whole (temp file + ``os.replace``).

The cache must live on a local disk (``$CORROTUNE_CACHE_DIR``): ``flock`` and ``mmap`` over NFS
are slow or unreliable.

Example::

    entries = [(str(path), sha256_of(path)) for path in paths]   # hashes come from the scan
    images = open_decoded(entries, 128, "letterbox")              # (N, 128, 128, 3) uint8, read-only
    batch = torch.from_numpy(images[index]).permute(0, 3, 1, 2)   # (B, 3, 128, 128), a copy
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import PIL
from PIL import Image, ImageOps

from corrotune.files import fsync_file, write_text
from corrotune.paths import cache_dir

__all__ = [
    "CACHE_VERSION",
    "RESIZE_POLICIES",
    "CacheKey",
    "ImageDecodeError",
    "cache_root",
    "clear_cache",
    "open_decoded",
    "resize_image",
    "to_rgb",
]

CACHE_VERSION = 1
"""Bump when decoding or resizing changes output pixels: every key changes, old dirs go stale."""

RESIZE_POLICIES = ("stretch", "letterbox", "center_crop")
KINDS = ("image", "mask")

_DATA, _META, _LOCK = "data.u8", "meta.json", ".lock"
_DIR_PATTERN = re.compile(r"^(image|mask)\d+-(stretch|letterbox|center_crop)-[0-9a-f]{24}$")
_ALPHA_MODES = frozenset({"LA", "La", "PA", "RGBA", "RGBa"})
_SIXTEEN_BIT = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})


class ImageDecodeError(ValueError):
    """A file could not be decoded (or its mode converted) while building the cache."""

    def __init__(self, path: str, cause: BaseException):
        super().__init__(f"cannot decode {path}: {type(cause).__name__}: {cause}")
        self.path = path


# --------------------------------------------------------------------------- decoding


def to_rgb(image: Image.Image) -> Image.Image:
    """Converts any PIL mode to 8-bit RGB.

    * ``L``/``1``/``P``/``CMYK``/``YCbCr``: Pillow's conversion (``1`` → 0/255, ``P`` → palette
      colours; CMYK without an ICC profile, as Pillow does).
    * Alpha (``LA``/``PA``/``RGBA``/``RGBa``, ``P`` with a transparent index): composited on
      black, so a fully transparent pixel is 0 like letterbox padding, whatever colour it stored.
    * 16-bit (``I;16*``): scaled by the type's maximum, ``round(v * 255 / 65535)``; a 16-bit white
      (65535) is 255 and the relative brightness of images is kept (no per-image stretch, so
      12-bit data in a 16-bit container comes out dark). ``I`` (how Pillow hands over some
      16-bit PNG/TIFF) is clipped to 0..65535 and scaled the same way.
    * ``F``: Pillow's own convention for ``F`` → ``L`` (values in 8-bit units, clipped to 0..255).

    Args:
        image: Any PIL image.

    Returns:
        An ``RGB`` image (``image`` itself when it already is one).
    """
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in _SIXTEEN_BIT or mode == "I":
        values = np.clip(np.asarray(image, dtype=np.int64), 0, 65535)
        grey = ((values * 255 + 32767) // 65535).astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    if mode == "F":
        grey = np.clip(np.rint(np.asarray(image, dtype=np.float32)), 0, 255).astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    if mode in _ALPHA_MODES or (mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        black = Image.new("RGB", rgba.size, (0, 0, 0))
        black.paste(rgba.convert("RGB"), mask=rgba.getchannel("A"))
        return black
    return image.convert("RGB")


def _to_mask(image: Image.Image) -> Image.Image:
    """A mask as an ``L`` image of label values (0/255 or class ids), never rescaled."""
    mode = image.mode
    if mode in ("L", "P"):  # P: the palette indices are the labels
        return image if mode == "L" else Image.fromarray(np.asarray(image), "L")
    if mode == "1":
        return image.convert("L")
    if mode in ("LA", "PA"):
        return Image.fromarray(np.asarray(image.getchannel(0)), "L")
    if mode in _SIXTEEN_BIT or mode in ("I", "F"):
        values = np.asarray(image)
        if values.size and (values.min() < 0 or values.max() > 255 or not np.all(values == np.rint(values))):
            raise ValueError(f"mask mode {mode} holds values outside the integers 0..255")
        return Image.fromarray(values.astype(np.uint8), "L")
    rgb = np.asarray(image.convert("RGB"))
    if not (np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2])):
        raise ValueError(f"colour mask (mode {mode}) is not supported: save labels as an L or P image")
    return Image.fromarray(np.ascontiguousarray(rgb[..., 0]), "L")


def resize_image(image: Image.Image, size: int, policy: str, *, is_mask: bool = False) -> np.ndarray:
    """Converts and resizes one image (or mask) to ``size``×``size``.

    Images use ``BILINEAR``: Pillow widens its filters when downscaling, so it is antialiased at
    any ratio (640 → 128 averages each 5×5 area, unlike an unfiltered bilinear), and it is what
    ``trainables.data.tensors`` uses, so ``stretch`` rows of opaque 8-bit files equal today's
    in-process decode (which keeps the colour under alpha instead of compositing on black).
    Masks use ``NEAREST`` so labels stay labels.

    Policies:
        * ``stretch``: resize to size×size, aspect ratio not kept.
        * ``letterbox``: longer side to ``size`` keeping aspect, centred, padded with 0 (black;
          background for masks) — ``PIL.ImageOps.pad``.
        * ``center_crop``: shorter side to ``size``, central square kept — ``PIL.ImageOps.fit``
          (resampled straight from the central source box, no double rounding).

    Args:
        image: A PIL image in any mode (see :func:`to_rgb`; masks: L, P, 1, LA, I, grey RGB).
        size: Output side in pixels.
        policy: One of :data:`RESIZE_POLICIES`.
        is_mask: Treat ``image`` as a label mask.

    Returns:
        ``(size, size, 3)`` uint8 for images, ``(size, size)`` uint8 for masks.
    """
    if policy not in RESIZE_POLICIES:
        raise ValueError(f"unknown resize policy {policy!r}, expected one of {list(RESIZE_POLICIES)}")
    converted = _to_mask(image) if is_mask else to_rgb(image)
    method = Image.Resampling.NEAREST if is_mask else Image.Resampling.BILINEAR
    target = (size, size)
    if policy == "stretch":
        out = converted if converted.size == target else converted.resize(target, method)
    elif policy == "letterbox":
        out = ImageOps.pad(converted, target, method=method, color=0)
    else:
        out = ImageOps.fit(converted, target, method=method)
    return np.asarray(out, dtype=np.uint8)


def _decode_file(path: str, size: int, policy: str, is_mask: bool) -> np.ndarray:
    try:
        with Image.open(path) as image:
            return resize_image(image, size, policy, is_mask=is_mask)
    except Exception as exc:  # noqa: BLE001 — any failure is reported with the file's name
        raise ImageDecodeError(path, exc) from exc


# --------------------------------------------------------------------------- keys


@dataclass(frozen=True)
class CacheKey:
    """What a cached array depends on; equal keys share one directory.

    Attributes:
        kind: ``"image"`` or ``"mask"``.
        size: Output side in pixels.
        policy: One of :data:`RESIZE_POLICIES`.
        entries: ``(relative path, content hash)`` per row, in row order. Paths are relative to
            the files' common folder, so a dataset synced to another mount keeps its key.
        version: :data:`CACHE_VERSION`.
    """

    kind: str
    size: int
    policy: str
    entries: tuple[tuple[str, str], ...]
    version: int = CACHE_VERSION

    @classmethod
    def from_entries(cls, entries: Sequence[tuple[str, str]], size: int, policy: str, kind: str) -> CacheKey:
        """Builds the key for ``(absolute path, content hash)`` entries (row order kept)."""
        if policy not in RESIZE_POLICIES:
            raise ValueError(f"unknown resize policy {policy!r}, expected one of {list(RESIZE_POLICIES)}")
        if kind not in KINDS:
            raise ValueError(f"unknown kind {kind!r}, expected one of {list(KINDS)}")
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"size must be a positive int, got {size!r}")
        paths = [os.path.abspath(os.fspath(path)) for path, _ in entries]
        root = os.path.commonpath([os.path.dirname(p) for p in paths]) if paths else ""
        relative = tuple(
            (Path(os.path.relpath(p, root)).as_posix(), str(digest)) for p, (_, digest) in zip(paths, entries)
        )
        return cls(kind=kind, size=size, policy=policy, entries=relative)

    @property
    def digest(self) -> str:
        payload = json.dumps([self.version, self.kind, self.size, self.policy, self.entries], separators=(",", ":"))
        return hashlib.sha256(payload.encode()).hexdigest()[:24]

    @property
    def dirname(self) -> str:
        return f"{self.kind}{self.size}-{self.policy}-{self.digest}"

    @property
    def shape(self) -> tuple[int, ...]:
        n, s = len(self.entries), self.size
        return (n, s, s, 3) if self.kind == "image" else (n, s, s)


def cache_root() -> Path:
    """``$CORROTUNE_CACHE_DIR/decoded``, else ``~/.cache/corrotune/decoded``."""
    return cache_dir("decoded")


# --------------------------------------------------------------------------- open / build


def open_decoded(
    entries: Sequence[tuple[str, str]],
    size: int,
    policy: str = "stretch",
    *,
    kind: str = "image",
    cache_dir: str | os.PathLike | None = None,
    progress: bool | Callable[[int, int], None] = True,
    workers: int | None = None,
) -> np.ndarray:
    """Returns the decoded, resized files as a read-only memory map, building it once per node.

    The row order is part of the key (the map is returned as stored, no copy): pass a stable
    order — e.g. a dataset's whole listing sorted by path — and index rows per split, so that
    every split and split seed shares one cache.

    Args:
        entries: ``(absolute path, content hash)`` per row, in the order wanted.
        size: Output side in pixels.
        policy: One of :data:`RESIZE_POLICIES`.
        kind: ``"image"`` (RGB rows) or ``"mask"`` (label rows, nearest-neighbour).
        cache_dir: Cache root; default :func:`cache_root`.
        progress: ``True`` shows a bar on a terminal (one line at start and end otherwise),
            ``False`` is silent, a callable is called as ``progress(done, total)``.
        workers: Decoding threads; default: the usable cores (at most 4) for images of 256² px
            or more, else 1 (see the measurements in ``_default_workers``).

    Returns:
        ``np.memmap`` (read-only) of shape ``(N, size, size, 3)`` (images) or ``(N, size, size)``
        (masks), uint8. No entries give an empty read-only array (no cache directory).

    Raises:
        ImageDecodeError: A file failed to decode; the message names it.
        OSError: The cache disk lacks the space the array needs (``errno.ENOSPC``).

    Example::

        images = open_decoded([("/data/a.jpg", "3f2c…"), ("/data/b.png", "9d1e…")], 128)
        images.shape  # (2, 128, 128, 3)
    """
    key = CacheKey.from_entries(entries, size, policy, kind)
    if not key.entries:
        empty = np.empty(key.shape, dtype=np.uint8)
        empty.flags.writeable = False
        return empty
    directory = Path(cache_dir if cache_dir is not None else cache_root()) / key.dirname
    opened = _open_complete(directory, key)
    if opened is None:
        with _locked(directory, progress):
            opened = _open_complete(directory, key)  # built by whoever held the lock
            if opened is None:
                paths = [os.path.abspath(os.fspath(path)) for path, _ in entries]
                _build(directory, key, paths, progress, workers)
                opened = _open_complete(directory, key)
        if opened is None:
            raise RuntimeError(f"decode cache {directory}: build finished but the array does not open")
    try:
        os.utime(directory)  # last use, for clear_cache(older_than_days=...)
    except OSError:
        pass
    return opened


def _open_complete(directory: Path, key: CacheKey) -> np.memmap | None:
    """The finished array, or None when the directory is missing, unfinished or not this key's."""
    try:
        meta = json.loads((directory / _META).read_text())
        data = directory / _DATA
        if meta.get("key") != key.digest or tuple(meta.get("shape", ())) != key.shape:
            return None
        if data.stat().st_size != int(np.prod(key.shape)):
            return None
        return np.memmap(data, dtype=np.uint8, mode="r", shape=key.shape)
    except (OSError, ValueError):  # missing, being cleared, or a torn meta.json
        return None


@contextmanager
def _locked(directory: Path, progress: bool | Callable | None = None, *, blocking: bool = True) -> Iterator[bool]:
    """Holds the key's flock while the block runs; yields False (unlocked) when not ``blocking`` and busy."""
    fd = _acquire(directory, progress, blocking)
    if fd is None:
        yield False
        return
    try:
        yield True
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _acquire(directory: Path, progress, blocking: bool) -> int | None:
    """Locks ``directory/.lock``; returns its descriptor, or None when not ``blocking`` and busy.

    :func:`clear_cache` may delete the lock file while a process waits on it; the waiter then
    holds a lock on an unlinked file, so it compares inodes and retries on the current file.
    """
    lock = directory / _LOCK
    while True:
        directory.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except FileNotFoundError:  # directory removed between mkdir and open
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if not blocking:
                    os.close(fd)
                    return None
                if progress is True:
                    _say(f"decode cache: waiting for another process building {directory}")
                fcntl.flock(fd, fcntl.LOCK_EX)
            held, current = os.fstat(fd), os.stat(lock)
            if (held.st_dev, held.st_ino) == (current.st_dev, current.st_ino):
                return fd
        except FileNotFoundError:
            pass
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)


_POOL_MIN_PIXELS = 256 * 256


def _default_workers(first_path: str) -> int:
    """Decoding threads: several for large images, one for small ones.

    Measured on 2 cores (cold builds, best of 4): 640×640 JPEGs → 224 px build 1.8× faster with 2
    threads and 640×640 PNG masks 1.5× (PIL releases the GIL in its long decode and resize
    calls), while 128×128 images build 0.9× as fast (per-file Python work holds the GIL).
    More than 2 threads is unmeasured; capped at 4.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    try:
        with Image.open(first_path) as image:
            width, height = image.size
    except Exception:  # noqa: BLE001 — the build reports the file
        return 1
    return max(1, min(cores, 4)) if width * height >= _POOL_MIN_PIXELS else 1


def _build(directory: Path, key: CacheKey, paths: list[str], progress, workers: int | None) -> None:
    """Decodes every row into a temp file, then moves data and (last) meta.json into place."""
    (directory / _META).unlink(missing_ok=True)  # a stale or foreign meta must not outlive its data
    (directory / _DATA).unlink(missing_ok=True)
    for stale in directory.glob(f"{_DATA}.tmp*"):
        stale.unlink(missing_ok=True)
    needed = int(np.prod(key.shape))
    free = shutil.disk_usage(directory).free
    if free < needed:
        raise _no_space(directory, key, needed, free)
    workers = workers or _default_workers(paths[0])
    label = f"decode cache: {len(paths)} {key.kind}s at {key.size} px ({key.policy})"
    report, finish = _progress_reporter(progress, len(paths), label, directory)
    temp = directory / f"{_DATA}.tmp{os.getpid()}"
    started = time.perf_counter()
    try:
        with open(temp, "wb") as handle:
            try:
                _allocate(handle.fileno(), needed)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                raise _no_space(directory, key, needed, shutil.disk_usage(directory).free) from exc
        rows = np.memmap(temp, dtype=np.uint8, mode="r+", shape=key.shape)
        is_mask = key.kind == "mask"

        def decode_row(i: int) -> None:
            rows[i] = _decode_file(paths[i], key.size, key.policy, is_mask)

        if workers == 1:
            for done, i in enumerate(range(len(paths)), 1):
                decode_row(i)
                report(done)
        else:
            with ThreadPoolExecutor(workers, thread_name_prefix="decode-cache") as pool:
                for done, _ in enumerate(pool.map(decode_row, range(len(paths))), 1):
                    report(done)
        rows.flush()
        del rows
        fsync_file(temp)
        os.replace(temp, directory / _DATA)
        seconds = time.perf_counter() - started
        meta = {
            "key": key.digest,
            "cache_version": key.version,
            "kind": key.kind,
            "size": key.size,
            "policy": key.policy,
            "shape": list(key.shape),
            "dtype": "uint8",
            "entries": [list(entry) for entry in key.entries],
            "source_root": os.path.commonpath([os.path.dirname(p) for p in paths]),
            "pillow": PIL.__version__,
            "workers": workers,
            "build_seconds": round(seconds, 3),
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        write_text(directory / _META, json.dumps(meta, indent=1))
    except BaseException:
        temp.unlink(missing_ok=True)
        finish(failed=True)
        raise
    finish(seconds=seconds)


def _no_space(directory: Path, key: CacheKey, needed: int, free: int) -> OSError:
    return OSError(
        errno.ENOSPC,
        f"decode cache needs {_mb(needed)} for {key.shape} but only {_mb(free)} are free in "
        f"{directory.parent}; set CORROTUNE_CACHE_DIR to a larger local disk or run clear_cache()",
        str(directory.parent),
    )


def _allocate(fd: int, nbytes: int) -> None:
    """Reserves the blocks now: writing a sparse map on a full disk would kill us with SIGBUS."""
    try:
        os.posix_fallocate(fd, 0, nbytes)
    except AttributeError:  # not POSIX
        os.ftruncate(fd, nbytes)
    except OSError as exc:
        if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
            raise
        os.ftruncate(fd, nbytes)  # file systems without fallocate


# --------------------------------------------------------------------------- progress


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _mb(nbytes: int) -> str:
    return f"{nbytes / 2**20:.1f} MiB"


def _progress_reporter(progress, total: int, label: str, where: Path):
    """Returns ``(report(done), finish(**outcome))`` for the chosen kind of progress."""
    if callable(progress):
        return (lambda done: progress(done, total)), (lambda **_: None)
    if not progress:
        return (lambda done: None), (lambda **_: None)
    bar = None

    def finish(seconds: float = 0.0, failed: bool = False) -> None:
        if bar is not None:
            bar.stop()
        outcome = "failed" if failed else f"done in {seconds:.1f} s ({total / max(seconds, 1e-9):.0f} img/s)"
        _say(f"{label} into {where}: {outcome}")

    if not sys.stderr.isatty():  # logs (Ray workers, CI): one line at the start, one at the end
        _say(f"{label} into {where}: started")
        return (lambda done: None), finish
    from rich.console import Console
    from rich.progress import Progress

    bar = Progress(console=Console(stderr=True), transient=True)
    bar.start()
    task = bar.add_task(label, total=total)
    return (lambda done: bar.update(task, completed=done)), finish


# --------------------------------------------------------------------------- housekeeping


def clear_cache(cache_dir: str | os.PathLike | None = None, older_than_days: float | None = None) -> list[Path]:
    """Deletes cached arrays (all, or those unused for ``older_than_days``); returns the dirs removed.

    Only directories named like cache entries are touched; one being built (lock held) is
    skipped. Processes that already mapped a removed array keep reading it (POSIX keeps the
    unlinked file alive until unmapped).

    Args:
        cache_dir: Cache root; default :func:`cache_root`.
        older_than_days: Keep entries opened or built within this many days.
    """
    root = Path(cache_dir) if cache_dir is not None else cache_root()
    if not root.is_dir():
        return []
    cutoff = None if older_than_days is None else time.time() - older_than_days * 86400
    removed = []
    for directory in sorted(root.iterdir()):
        if not _DIR_PATTERN.match(directory.name) or directory.is_symlink() or not directory.is_dir():
            continue
        if cutoff is not None and directory.stat().st_mtime >= cutoff:
            continue
        with _locked(directory, blocking=False) as acquired:
            if acquired:
                shutil.rmtree(directory, ignore_errors=True)
                removed.append(directory)
    return removed
