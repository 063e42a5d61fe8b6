"""Images of a folder as a model sees them, with every file it cannot use accounted for.

The rules are the data scan's (:mod:`trainables.data.checks`): junk and non-image files are
skipped unread, every other file is fully decoded with truncation refused, and a failure is
reported with the scan's kind (``truncated``, ``unreadable``, ``zero_byte``) and sentence.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from trainables.data.cache import to_rgb
from trainables.data.checks import decode_file, skip_reason, walk_files
from trainables.inference import Preprocessing

__all__ = ["Skipped", "decode_image", "list_images"]


@dataclass(frozen=True)
class Skipped:
    """A file left out, and why (``kind`` as the data scan names it)."""

    path: str
    kind: str
    detail: str


def list_images(folder: Path) -> tuple[list[tuple[str, Path]], list[Skipped]]:
    """Files under ``folder`` (recursively) worth decoding, and those skipped unread.

    Returns:
        ``([(relative POSIX path, path), ...], [Skipped, ...])``, both sorted by path.
    """
    candidates, skipped = [], []
    for rel, path, hidden in walk_files(folder):
        if isinstance(path, OSError):
            skipped.append(Skipped(rel, "unreadable", f"cannot list the folder: {path}"))
            continue
        reason = skip_reason(path, hidden)
        if reason:
            skipped.append(Skipped(rel, *reason))
        else:
            candidates.append((rel, path))
    return candidates, skipped


def decode_image(
    path: Path, preprocessing: Preprocessing, keep_original: bool = False
) -> tuple[Any, tuple[str, str] | None]:
    """One file → ``((S, S, 3) uint8, None)``, or ``(None, (kind, detail))`` when it is unusable.

    With ``keep_original`` the value is ``((S, S, 3) uint8, the image as 8-bit RGB)`` (for
    outputs drawn on the image itself). Call it inside
    :func:`trainables.data.checks.strict_truncation`, or truncated files decode.
    """

    def use(image: Image.Image) -> Any:
        prepared = preprocessing.load(image)
        return (prepared, to_rgb(image).copy()) if keep_original else prepared

    decoded = decode_file(path, use)
    return decoded.value, decoded.error
