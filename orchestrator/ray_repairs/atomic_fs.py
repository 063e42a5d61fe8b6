"""A local filesystem for Ray whose file writes are all-or-nothing.

Ray's driver keeps an experiment's files in a staging folder and copies that whole folder to the
study directory with each snapshot, rewriting every file in place: each trial's ``result.json``,
``progress.csv`` and ``params.json``, ``tuner.pkl`` and every session's state files. A driver
killed mid-copy (SIGKILL, a preempted node) leaves whichever file it was writing empty or cut
short, and a resume then restores the truncated file into its own staging folder and keeps it:
a trial's whole result history can be lost that way.

:func:`atomic_local_filesystem` is ``pyarrow``'s local filesystem except that a file opened for
writing is written under a temporary name beside its target (``.<name>.<random>.corrotune-tmp``)
and renamed over it on close, so a reader (or a resume) sees either the old or the new file,
never part of one. Renaming within a folder is atomic on local filesystems and NFS. Object
stores (``s3://``, ``gs://``) publish an upload whole already and keep Ray's own filesystem.

The same copy makes each snapshot cost O(trials): a trial that ended long ago has its files
rewritten with every snapshot, unchanged (at 3,000 no-op trials, 72,000 file writes through this
Python handler, most of the driver's time; ``benchmarks/trial_overhead.py``). :func:`settle`
marks an ended trial's result files final: the next snapshot writes each once more, whole; the
one after drops its write and deletes the staged copy (unchanged since: same size and
modification time), so no later snapshot lists it. A staged file written again after it was
settled is copied as before.

Example:
    >>> tune.RunConfig(storage_path="/data/studies", storage_filesystem=atomic_local_filesystem())

Private Ray names used: none (``pyarrow.fs.FileSystemHandler`` is public; Ray takes it as
``RunConfig(storage_filesystem=...)``). Upstream: a cut-short ``tuner.pkl`` fails ``Tuner.restore``
with "Ran out of input" (ray-project/ray#58179).
"""

from __future__ import annotations

import functools
import logging
import os
import secrets
from pathlib import Path
from typing import Any, Callable

import pyarrow
import pyarrow.fs

__all__ = [
    "SETTLED_NAMES", "TMP_SUFFIX", "AtomicLocalHandler", "atomic_local_filesystem", "forget_settled", "is_local",
    "remove_leftovers", "settle", "trial_is_local", "upload",
]

logger = logging.getLogger(__name__)

TMP_SUFFIX = ".corrotune-tmp"
"""Suffix of a file being written; one left behind was cut short by a kill and is never read."""


SETTLED_NAMES = ("result.json", "progress.csv", "params.json", "params.pkl")
"""The files of a trial's staging folder that Ray's loggers write, and that :func:`settle` marks final."""


class _Settled:
    """A stored file whose staged copy is final: the staged file, its size and mtime then, and
    whether the stored file has been written whole since."""

    __slots__ = ("staged", "size", "mtime_ns", "written")

    def __init__(self, staged: str, size: int, mtime_ns: int) -> None:
        self.staged, self.size, self.mtime_ns, self.written = staged, size, mtime_ns, False


_settled: dict[str, _Settled] = {}
"""Stored file of an ended trial -> its :class:`_Settled`. One per driver process (Ray hands
each trial its own copy of the storage filesystem, so the handler cannot hold it)."""


def settle(staged: Path, stored: str) -> int:
    """Marks the result files (:data:`SETTLED_NAMES`) in ``staged`` final; returns how many.

    Call it for an ended trial, once its staged files are written for the last time, with its
    folder in local storage. The next write of each file through :class:`AtomicLocalHandler`
    that starts after this call is made in full (it reads the final bytes); the one after that
    is dropped and deletes the staged copy, provided it kept its size and mtime, so Ray's
    snapshots stop copying it.
    """
    count = 0
    for name in SETTLED_NAMES:
        try:
            stat = (staged / name).stat()
        except OSError:
            continue
        _settled[os.path.normpath(f"{stored}/{name}")] = _Settled(str(staged / name), stat.st_size, stat.st_mtime_ns)
        count += 1
    return count


def forget_settled() -> None:
    """Forgets every settled file (a new experiment in this process starts with none)."""
    _settled.clear()


def _settled_entry(path: str) -> tuple[str, _Settled | None]:
    """``path``'s key and its settled entry, ``None`` unless its staged copy is as it was when settled."""
    key = os.path.normpath(path)
    entry = _settled.get(key)
    if entry is None:
        return key, None
    try:
        stat = os.stat(entry.staged)
    except OSError:
        stat = None
    if stat is not None and (stat.st_size, stat.st_mtime_ns) == (entry.size, entry.mtime_ns):
        return key, entry
    _settled.pop(key, None)  # written again (a restarted trial): it is live once more
    return key, None


def _drop_staged(key: str, entry: _Settled) -> None:
    """Deletes a settled file's staged copy: later snapshots do not list it.

    Only called from a snapshot's copy of that very file, which has opened it for reading
    already (pyarrow opens a copy's source before its destination), so the copy still reads it.
    The trial's staged folder stays: its W&B logging actor may start after the trial ended and
    makes that folder its working directory (Ray's ``_WandbLoggingActor`` calls ``os.chdir``).
    """
    _settled.pop(key, None)
    try:
        os.unlink(entry.staged)
    except OSError:
        pass  # gone already


def _temporary_name(path: str) -> str:
    directory, name = os.path.split(path)
    return os.path.join(directory, f".{name}.{secrets.token_hex(4)}{TMP_SUFFIX}")


class _ReplaceOnClose:
    """A binary file written under a temporary name and renamed over ``path`` when closed."""

    def __init__(self, path: str, on_replaced: Callable[[], None] | None = None) -> None:
        self._path, self._temporary = path, _temporary_name(path)
        self._on_replaced = on_replaced
        # 0o666 less the umask: the same mode the file would get if written in place
        self._file = os.fdopen(os.open(self._temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), "wb")

    def write(self, data: Any) -> int:
        return self._file.write(data)

    def flush(self) -> None:
        self._file.flush()

    def tell(self) -> int:
        return self._file.tell()

    @property
    def closed(self) -> bool:
        return self._file.closed

    def close(self) -> None:
        if self._file.closed:
            return
        self._file.close()
        os.replace(self._temporary, self._path)
        if self._on_replaced is not None:
            self._on_replaced()


class AtomicLocalHandler(pyarrow.fs.FileSystemHandler):
    """``pyarrow.fs.LocalFileSystem`` with writes that replace a file whole (see the module doc)."""

    def __init__(self) -> None:
        self._local = pyarrow.fs.LocalFileSystem()

    def __reduce__(self) -> tuple:  # Ray sends the storage filesystem to every trial's worker
        return (AtomicLocalHandler, ())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AtomicLocalHandler)

    def __hash__(self) -> int:
        return hash(AtomicLocalHandler)

    def get_type_name(self) -> str:
        return "corrotune-atomic-local"

    def normalize_path(self, path: str) -> str:
        return self._local.normalize_path(path)

    def get_file_info(self, paths: list[str]) -> list[pyarrow.fs.FileInfo]:
        return self._local.get_file_info(paths)

    def get_file_info_selector(self, selector: pyarrow.fs.FileSelector) -> list[pyarrow.fs.FileInfo]:
        return self._local.get_file_info(selector)

    def create_dir(self, path: str, recursive: bool) -> None:
        self._local.create_dir(path, recursive=recursive)

    def delete_dir(self, path: str) -> None:
        self._local.delete_dir(path)

    def delete_dir_contents(self, path: str, missing_dir_ok: bool = False) -> None:
        self._local.delete_dir_contents(path, missing_dir_ok=missing_dir_ok)

    def delete_root_dir_contents(self) -> None:
        raise pyarrow.ArrowInvalid("corrotune's storage filesystem does not empty the root folder")

    def delete_file(self, path: str) -> None:
        self._local.delete_file(path)

    def move(self, src: str, dest: str) -> None:
        self._local.move(src, dest)

    def copy_file(self, src: str, dest: str) -> None:
        temporary = _temporary_name(dest)
        self._local.copy_file(src, temporary)
        os.replace(temporary, dest)

    def open_input_stream(self, path: str) -> pyarrow.NativeFile:
        return self._local.open_input_stream(path)

    def open_input_file(self, path: str) -> pyarrow.NativeFile:
        return self._local.open_input_file(path)

    def open_output_stream(self, path: str, metadata: Any) -> pyarrow.NativeFile:
        key, entry = _settled_entry(path) if _settled else (path, None)
        if entry is not None and entry.written:
            _drop_staged(key, entry)
            return pyarrow.MockOutputStream()  # the stored file holds these bytes already (see settle)
        try:
            return pyarrow.PythonFile(_ReplaceOnClose(path, entry and functools.partial(setattr, entry, "written", True)), mode="w")
        except FileNotFoundError as err:  # the same error the local filesystem raises
            raise FileNotFoundError(f"Failed to open local file '{path}': {err.strerror}") from err

    def open_append_stream(self, path: str, metadata: Any) -> pyarrow.NativeFile:
        return self._local.open_append_stream(path)


def atomic_local_filesystem() -> pyarrow.fs.PyFileSystem:
    """A local filesystem whose output streams replace their file whole on close."""
    return pyarrow.fs.PyFileSystem(AtomicLocalHandler())


def is_local(filesystem: pyarrow.fs.FileSystem | None) -> bool:
    """Whether ``filesystem`` reads and writes this machine's folders (Ray's or ours)."""
    if isinstance(filesystem, pyarrow.fs.LocalFileSystem):
        return True
    return isinstance(filesystem, pyarrow.fs.PyFileSystem) and isinstance(filesystem.handler, AtomicLocalHandler)


def trial_is_local(trial: Any) -> bool:
    """Whether a Ray ``Trial``'s storage is a local path (its study folder is on this machine)."""
    return is_local(trial.storage.storage_filesystem)


def upload(filesystem: pyarrow.fs.FileSystem, source: Path, folder: str, name: str | None = None) -> bool:
    """Copies ``source`` (a file, or a folder with its content) to ``folder/<name>`` on ``filesystem``.

    For a driver's staged files that Ray's own sync would not copy in time. ``name`` defaults to
    ``source``'s; ``folder`` is created. A storage error is logged as a warning and returns False
    (Ray's next sync may still catch up).
    """
    target = f"{folder}/{name or source.name}"
    try:
        filesystem.create_dir(target if source.is_dir() else folder, recursive=True)
        pyarrow.fs.copy_files(str(source), target, destination_filesystem=filesystem)
    except OSError as err:
        logger.warning("could not copy %s to %s: %s", source, target, err)
        return False
    return True


def remove_leftovers(folder: Path) -> list[Path]:
    """Deletes the temporary files that a killed writer left under ``folder``; returns them.

    Only call it while nothing writes to ``folder`` (before a resume starts Ray).
    """
    leftovers = [p for p in folder.rglob(f".*{TMP_SUFFIX}") if p.is_file()]
    for path in leftovers:
        path.unlink(missing_ok=True)
    return leftovers
