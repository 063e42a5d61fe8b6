"""The data scan's per-file rules, usable one file at a time: what is skipped, and why.

:func:`~trainables.data.scan.scan_path` judges a whole dataset with them; ``corrotune predict``
judges each file of a folder to score with the same ones, so a file that a training run would
skip is skipped, with the same reason, when a model is used.

* :func:`walk_files`: every regular file under a folder, sorted, and whether it lies in a hidden
  or ``__MACOSX`` folder;
* :func:`skip_reason`: why a file is not even read (``junk``: OS litter, hidden files; or
  ``non_image``: not an image suffix);
* :func:`decode_file`: reads a file once, hashes it and fully decodes it; on failure the reason
  is ``unreadable``, ``zero_byte`` or ``truncated`` with one human sentence.

PIL only refuses truncated files while :func:`strict_truncation` is active (the scan and
``predict`` wrap their loop in it).

Example:
    >>> with strict_truncation():  # doctest: +SKIP
    ...     decoded = decode_file(Path("a.jpg"), lambda im: im.size)
    >>> decoded.error or decoded.value  # doctest: +SKIP
    ('truncated', 'JPEG fails to decode: OSError: image file is truncated ...')
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from PIL import Image, ImageFile

from trainables.data.folder import IMAGE_SUFFIXES, is_junk

__all__ = ["MACOS_ZIP_DIR", "DecodedFile", "decode_file", "junk_reason", "skip_reason", "strict_truncation", "walk_files"]

MACOS_ZIP_DIR = "__MACOSX"
"""AppleDouble copies that macOS zips carry: junk like hidden folders."""

_TRUNCATED = re.compile(r"truncat|broken data stream|unexpected end", re.I)


@contextlib.contextmanager
def strict_truncation() -> Iterator[None]:
    """Makes PIL raise on truncated files inside the block, restoring the caller's setting after.

    Not thread-safe (a PIL global): do not decode images in other threads meanwhile.
    """
    before = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        yield
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = before


def walk_files(root: Path) -> list[tuple[str, Path | OSError, bool]]:
    """All regular files as (relative POSIX path, path, inside a hidden folder), sorted.

    Follows folder links once (as the folder reader does), never in a loop. A folder that cannot
    be listed comes as (``"folder/"``, the error, hidden).
    """
    out, seen = [], set()

    def visit(folder: Path, hidden: bool) -> None:
        real = folder.resolve()
        if real in seen:
            return
        seen.add(real)
        try:
            listing = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as e:
            out.append((folder.relative_to(root).as_posix() + "/", e, hidden))
            return
        for entry in listing:
            path = Path(entry.path)
            if entry.is_dir():
                visit(path, hidden or entry.name.startswith(".") or entry.name == MACOS_ZIP_DIR)
            elif entry.is_file():
                out.append((path.relative_to(root).as_posix(), path, hidden))

    visit(root, False)
    return sorted(out)


def junk_reason(path: Path) -> str | None:
    """Why the folder reader skips a file as litter (its ``is_junk``, plus hidden files), or None."""
    if path.name.startswith("._"):
        return "macOS AppleDouble resource fork (._*)"
    if is_junk(path):
        return {".ds_store": "macOS Finder metadata"}.get(path.name.lower(), "Windows folder metadata") + f" ({path.name})"
    if path.name.startswith("."):
        return "hidden file"
    return None


def skip_reason(path: Path, hidden: bool = False) -> tuple[str, str] | None:
    """``(kind, detail)`` when a file is skipped without being read, else None.

    Args:
        path: The file.
        hidden: It lies inside a hidden or ``__MACOSX`` folder (:func:`walk_files`).

    Returns:
        ``("junk", ...)`` for OS litter, hidden files and files in hidden folders,
        ``("non_image", ...)`` for a suffix that is not an image's, else None.
    """
    reason = "inside a hidden or __MACOSX folder" if hidden else junk_reason(path)
    if reason:
        return "junk", f"{reason}: skipped"
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        return "non_image", f"not an image ({path.suffix or 'no suffix'}): ignored"
    return None


@dataclass
class DecodedFile:
    """What reading one file gave.

    Attributes:
        sha: sha256 of the bytes read (None when the file could not be read).
        format: PIL's format name once opened (``JPEG``), else None.
        mode: PIL's mode once opened.
        size: ``(width, height)`` once opened.
        error: ``(kind, detail)`` when the file is unusable: ``unreadable``, ``zero_byte`` or
            ``truncated``.
        warnings: Messages PIL warned while decoding.
        value: What ``use`` returned for the decoded image.
    """

    sha: str | None = None
    format: str | None = None
    mode: str | None = None
    size: tuple[int, int] | None = None
    error: tuple[str, str] | None = None
    warnings: list[str] = field(default_factory=list)
    value: Any = None


def decode_file(path: Path, use: Callable[[Image.Image], Any] | None = None) -> DecodedFile:
    """Reads, hashes and fully decodes one file once.

    Args:
        path: The file.
        use: Called with the loaded image while it is open; its result is ``value``. An
            exception in it makes the file ``unreadable`` (a mode nothing can convert, say).

    Returns:
        A :class:`DecodedFile`; never raises for a bad file.
    """
    decoded = DecodedFile()
    try:
        data = path.read_bytes()
    except OSError as e:
        decoded.error = ("unreadable", f"cannot read the file: {e}")
        return decoded
    decoded.sha = hashlib.sha256(data).hexdigest()
    if not data:
        decoded.error = ("zero_byte", "empty file (0 bytes)")
        return decoded
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with Image.open(io.BytesIO(data)) as im:
                decoded.format, decoded.mode, decoded.size = im.format, im.mode, im.size
                im.load()
                decoded.value = use(im) if use is not None else None
        except Image.DecompressionBombError as e:
            decoded.error = ("unreadable", f"refused by PIL as a decompression bomb: {e}")
        except Image.UnidentifiedImageError:
            decoded.error = ("unreadable", f"not an image PIL can read (starts with {data[:8]!r})")
        except Exception as e:  # noqa: BLE001 - PIL plugins raise many types on bad data; none may stop the caller
            fmt = decoded.format
            truncated = fmt is not None and (isinstance(e, EOFError) or _TRUNCATED.search(str(e)))
            kind = "truncated" if truncated else "unreadable"
            decoded.error = (kind, f"{fmt or 'file'} fails to decode: {type(e).__name__}: {e}")
    decoded.warnings = sorted({str(w.message) for w in caught})
    return decoded
