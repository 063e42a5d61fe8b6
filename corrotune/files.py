"""A file replaced whole or not at all: written under a temporary name beside it, then renamed over it.

A reader (another process, a resume after a kill) sees either the old file or the new one, never
part of one: the content goes to ``.<name>.<pid>.<random>.tmp`` in the same folder, is flushed
and ``fsync``-ed, and :func:`os.replace` renames it over the target (atomic within a folder on
local file systems and NFS). A block that raises leaves the old file as it was and no temporary
file behind; a process killed mid-write leaves only a hidden ``*.tmp`` file.

Example:
    >>> write_json(study_dir / "driver.json", {"state": "running"})
    >>> with atomic_open(study_dir / "trials.csv", newline="") as handle:
    ...     csv.writer(handle).writerows(rows)
    >>> with atomic_path(out / "study.journal") as temporary:  # a library that wants a path
    ...     write_journal(str(temporary))
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from pathlib import Path
from typing import IO, Any, Iterator

__all__ = ["atomic_open", "atomic_path", "fsync_file", "temporary_name", "write_bytes", "write_json", "write_text"]


def temporary_name(path: str | os.PathLike) -> Path:
    """A fresh hidden name beside ``path`` (``.<name>.<pid>.<random>.tmp``), unique per writer."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def fsync_file(path: str | os.PathLike) -> None:
    """Flushes ``path``'s content to disk (``os.fsync``), whoever wrote it."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yields a temporary path beside ``path``; when the block ends, its file replaces ``path``.

    For writers that want a file name rather than a handle (``PIL.Image.save``, Optuna's journal).
    The block must leave the file closed. When it raises, ``path`` is left as it was.

    Raises:
        FileNotFoundError: the block wrote nothing at the temporary path.
    """
    target = Path(path)
    temporary = temporary_name(target)
    try:
        yield temporary
        fsync_file(temporary)
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", **open_kwargs: Any) -> Iterator[IO[Any]]:
    """``open(path, mode)`` for writing, replacing ``path`` whole when the block ends without error.

    Args:
        path: The file to replace (its folder must exist).
        mode: ``"w"`` or ``"wb"`` (``"x"``/``"a"`` make no sense for a replaced file).
        **open_kwargs: :func:`open` arguments (``encoding``, ``newline``).
    """
    if mode not in ("w", "wb", "wt"):
        raise ValueError(f"atomic_open writes a new file: mode 'w' or 'wb', not {mode!r}")
    with atomic_path(path) as temporary:
        with open(temporary, mode, **open_kwargs) as handle:
            yield handle
            handle.flush()


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Replaces ``path`` with ``data`` whole; returns ``path``."""
    with atomic_open(path, "wb") as handle:
        handle.write(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str, encoding: str | None = None, newline: str | None = None) -> Path:
    """Replaces ``path`` with ``text`` whole (``encoding``/``newline`` as :func:`open`); returns ``path``."""
    with atomic_open(path, "w", encoding=encoding, newline=newline) as handle:
        handle.write(text)
    return Path(path)


def write_json(path: str | os.PathLike, value: Any, **dumps_kwargs: Any) -> Path:
    """Replaces ``path`` with ``json.dumps(value, **dumps_kwargs)`` whole; returns ``path``."""
    return write_text(path, json.dumps(value, **dumps_kwargs))
