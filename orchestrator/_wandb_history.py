"""Reads what W&B offline runs hold: their ``.wandb`` transaction logs, and Ray's ``result.json``.

The installed wandb (0.31) writes its transaction log from the Go ``wandb-core`` service and
ships no Python reader, so this module reads the format itself. It is LevelDB's log format
behind a 7-byte ``:W&B`` header: 32 KiB blocks of chunks, each ``crc32 (4, little-endian),
length (2), type (1)`` + data, a record split into FIRST/MIDDLE/LAST chunks where it crosses a
block. Each record is a ``wandb_internal_pb2.Record``; logged rows are ``history`` records.

Reading stops at the first chunk that is cut short or fails its checksum: a process killed
while writing leaves a truncated tail, never a corrupt middle, so everything before it is
exactly what ``wandb sync`` uploads.
"""

from __future__ import annotations

import json
import logging
import re
import struct
import zlib
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Union

__all__ = ["OfflineRun", "Root", "last_logged_step", "logged_steps", "offline_run_dirs", "read_offline_run", "read_records", "results_by_step"]

logger = logging.getLogger(__name__)

_FILE_HEADER = struct.pack("<4sHB", b":W&B", 0xBEE1, 0)
_CHUNK_HEADER = struct.Struct("<IHB")  # crc32, data length, chunk type
_BLOCK = 32768
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4
_TYPE_CRC = {t: zlib.crc32(bytes([t])) for t in (_FULL, _FIRST, _MIDDLE, _LAST)}
_FOLDER = re.compile(r"^offline-run-(?P<timespec>\d{8}_\d{6})-(?P<rest>.+)$")


def _payloads(data: bytes) -> Iterator[bytes]:
    """Whole records of a transaction log, up to the first damaged or missing byte."""
    if not data.startswith(_FILE_HEADER):
        return
    pos, pending = len(_FILE_HEADER), None
    while True:
        left_in_block = _BLOCK - pos % _BLOCK
        if left_in_block < _CHUNK_HEADER.size:  # zero padding at a block's end
            pos += left_in_block
        if pos + _CHUNK_HEADER.size > len(data):
            return
        crc, length, kind = _CHUNK_HEADER.unpack_from(data, pos)
        start, end = pos + _CHUNK_HEADER.size, pos + _CHUNK_HEADER.size + length
        if kind not in _TYPE_CRC or end > len(data) or (pos % _BLOCK) + _CHUNK_HEADER.size + length > _BLOCK:
            return
        chunk = data[start:end]
        if zlib.crc32(chunk, _TYPE_CRC[kind]) & 0xFFFFFFFF != crc:
            return
        pos = end
        if kind == _FULL and pending is None:
            yield chunk
        elif kind == _FIRST and pending is None:
            pending = [chunk]
        elif kind == _MIDDLE and pending is not None:
            pending.append(chunk)
        elif kind == _LAST and pending is not None:
            yield b"".join([*pending, chunk])
            pending = None
        else:
            return


def _records(data: bytes) -> Iterator[Any]:
    from google.protobuf.message import DecodeError
    from wandb.proto import wandb_internal_pb2

    for payload in _payloads(data):
        record = wandb_internal_pb2.Record()
        try:
            record.ParseFromString(payload)
        except DecodeError:
            return
        yield record


def read_records(path: str | Path) -> Iterator[Any]:
    """The ``wandb_internal_pb2.Record`` messages of a ``.wandb`` file, in order.

    A truncated or damaged tail ends the iteration instead of raising.
    """
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        logger.warning("cannot read %s: %s", path, err)
        return
    yield from _records(data)


def _item_value(item: Any) -> Any:
    """The value of a history/config/summary item, whichever encoding wandb used."""
    if item.value_json:
        try:
            return json.loads(item.value_json)
        except ValueError:
            return item.value_json
    kind = item.WhichOneof("value") if "value" in item.DESCRIPTOR.oneofs_by_name else None
    return getattr(item, kind) if kind else None


def _key(item: Any) -> str:
    return item.key or "/".join(item.nested_key)


@dataclass
class OfflineRun:
    """What one offline run folder holds.

    Attributes:
        path: The ``offline-run-<time>-<id>[-<n>]`` folder.
        run_id: The W&B run id (the Ray trial id for corrotune's runs).
        steps: The ``_step`` of each history row, in logging order.
        rows: Each history row as ``{key: value}`` (``_step``, metrics, ...).
        name, group, job_type, tags: From the run record (empty if the file holds none).
        config: The run's config: the run record's, updated by later config records.
        exit_code: From the exit record; ``None`` when the run was not finished.
    """

    path: Path
    run_id: str
    steps: list[int] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)
    name: str = ""
    group: str = ""
    job_type: str = ""
    tags: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    exit_code: int | None = None


Root = Union[str, Path, tuple[Any, str]]
"""Where offline run folders are looked for: a local folder, or ``(pyarrow filesystem, path)``."""


@dataclass(frozen=True)
class _RunFile:
    """A ``<root>/**/offline-run-<time>-<id>[-<n>]/run-<id>.wandb`` file and how to read it."""

    folder: str
    name: str  # the folder's name
    run_id: str
    read: Callable[[], bytes]

    @property
    def start_key(self) -> tuple[str, int, str]:
        """Start order: wandb names folders by start second, then suffixes ``-1``, ``-2``."""
        match = _FOLDER.match(self.name)
        rest = match["rest"] if match else ""
        suffix = rest[len(self.run_id) + 1 :] if rest.startswith(self.run_id + "-") else ""
        return (match["timespec"] if match else "", int(suffix) if suffix.isdigit() else 0, self.name)


def _run_file(folder: str, name: str, file_name: str, read: Callable[[], bytes]) -> _RunFile | None:
    if not _FOLDER.match(name) or not (file_name.startswith("run-") and file_name.endswith(".wandb")):
        return None
    return _RunFile(folder, name, file_name[len("run-") : -len(".wandb")], read)


def _run_files(root: Root) -> list[_RunFile]:
    """The offline runs' transaction logs under ``root`` (any depth), oldest first."""
    found: list[_RunFile | None] = []
    if isinstance(root, tuple):
        import pyarrow.fs

        filesystem, path = root
        selector = pyarrow.fs.FileSelector(str(path), allow_not_found=True, recursive=True)
        for info in filesystem.get_file_info(selector):
            if info.type == pyarrow.fs.FileType.File and "/" in info.path:
                folder, file_name = info.path.rsplit("/", 1)
                name = folder.rsplit("/", 1)[-1]
                found.append(_run_file(folder, name, file_name, partial(_read_stored, filesystem, info.path)))
    elif Path(root).is_dir():
        for file in Path(root).glob("**/offline-run-*/run-*.wandb"):
            if file.is_file() and not file.parent.is_symlink():
                found.append(_run_file(str(file.parent), file.parent.name, file.name, file.read_bytes))
    return sorted((f for f in found if f is not None), key=lambda f: f.start_key)


def _read_stored(filesystem: Any, path: str) -> bytes:
    with filesystem.open_input_stream(path) as stream:
        return stream.readall()


def _read_run(file: _RunFile) -> OfflineRun:
    try:
        data = file.read()
    except OSError as err:
        logger.warning("cannot read %s: %s", file.folder, err)
        data = b""
    return _parse_run(Path(file.folder), file.run_id, data)


def offline_run_dirs(root: str | Path, run_id: str | None = None) -> list[Path]:
    """Offline run folders under ``root`` (any depth), oldest first; only ``run_id``'s if given."""
    return [Path(f.folder) for f in _run_files(Path(root)) if run_id is None or f.run_id == run_id]


def read_offline_run(folder: str | Path) -> OfflineRun:
    """Reads an offline run folder (its ``run-<id>.wandb`` file); a damaged tail is ignored."""
    folder = Path(folder)
    run_files = sorted(folder.glob("run-*.wandb"))
    if not run_files:
        match = _FOLDER.match(folder.name)
        return OfflineRun(path=folder, run_id=match["rest"] if match else folder.name)
    return _read_run(_RunFile(str(folder), folder.name, run_files[0].name[len("run-") : -len(".wandb")], run_files[0].read_bytes))


def _parse_run(folder: Path, run_id: str, data: bytes) -> OfflineRun:
    run = OfflineRun(path=folder, run_id=run_id)
    for record in _records(data):
        kind = record.WhichOneof("record_type")
        if kind == "history":
            row = {_key(item): _item_value(item) for item in record.history.item}
            step = row.get("_step")
            run.steps.append(int(step) if isinstance(step, (int, float)) else int(record.history.step.num))
            run.rows.append(row)
        elif kind == "run":
            r = record.run
            run.name, run.group, run.job_type, run.tags = r.display_name, r.run_group, r.job_type, list(r.tags)
            run.config.update({_key(item): _item_value(item) for item in r.config.update})
        elif kind == "config":
            run.config.update({_key(item): _item_value(item) for item in record.config.update})
            for item in record.config.remove:
                run.config.pop(_key(item), None)
        elif kind == "exit":
            run.exit_code = int(record.exit.exit_code)
    return run


def logged_steps(study_dir: str | Path) -> dict[str, list[int]]:
    """Each W&B run's logged steps across all its offline folders under ``study_dir``, in order.

    For a run that was resumed, the folders are read oldest first, as ``wandb sync`` uploads
    them. Continuity means each list is ``1, 2, ..., n``: strictly increasing, no gaps.
    ``study_dir`` may be a URI (``s3://...``) that pyarrow can open.

    Example:
        >>> logged_steps("corrotune-results/demo")
        {'a1b2c3d4_00000': [1, 2, 3, 4, 5], ...}
    """
    root: Root = Path(study_dir)
    if "://" in str(study_dir):
        import pyarrow.fs

        root = pyarrow.fs.FileSystem.from_uri(str(study_dir))
    steps: dict[str, list[int]] = {}
    for file in _run_files(root):
        steps.setdefault(file.run_id, []).extend(_read_run(file).steps)
    return steps


def last_logged_step(roots: Iterable[Root], run_id: str, exclude: Iterable[str | Path] = ()) -> int:
    """The highest step any offline folder of ``run_id`` under ``roots`` holds (0 if none).

    Args:
        roots: Local folders, or ``(pyarrow filesystem, path)`` for a study in remote storage.
        run_id: The W&B run id.
        exclude: Folders to leave out (the running session's own), matched by name.
    """
    skip = {Path(p).name for p in exclude}
    files = [f for root in roots for f in _run_files(root) if f.run_id == run_id and f.name not in skip]
    return max((max(_read_run(f).steps, default=0) for f in files), default=0)


def results_by_step(paths: Iterable[Root], step_key: str = "training_iteration") -> dict[int, dict[str, Any]]:
    """Ray Tune results from ``result.json`` files (one JSON object a line), keyed by step.

    Args:
        paths: Local files, or ``(pyarrow filesystem, path)`` in remote storage. Later files
            and later lines win for the same step (a resumed trial appends to the file).
        step_key: The result key that is the W&B step.

    Missing files and unreadable lines (a line cut short by a crash) are skipped.
    """
    results: dict[int, dict[str, Any]] = {}
    for path in paths:
        try:
            text = (_read_stored(*path) if isinstance(path, tuple) else Path(path).read_bytes()).decode()
        except (OSError, UnicodeDecodeError):
            continue
        for line in text.splitlines():
            try:
                result = json.loads(line)
            except ValueError:
                continue
            if isinstance(result, dict) and isinstance(result.get(step_key), int):
                results[result[step_key]] = result
    return results
