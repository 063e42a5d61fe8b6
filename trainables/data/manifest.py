"""The split manifest: written once per study, read by every trial and every resume."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

from corrotune.files import write_text
from trainables.data.index import Sample, SampleIndex

__all__ = ["MANIFEST_VERSION", "read_manifest", "write_manifest"]

MANIFEST_VERSION = 1


def write_manifest(index: SampleIndex, path: str | os.PathLike) -> Path:
    """Writes ``index`` (with splits and content hashes) as JSON, atomically."""
    path = Path(path)
    payload = {
        "version": MANIFEST_VERSION,
        "root": index.root,
        "task": index.task,
        "layout": index.layout,
        "classes": list(index.classes),
        "counts": index.counts(),
        "samples": [asdict(s) for s in index.samples],
    }
    write_text(path, json.dumps(payload, indent=1))
    return path


def _read_text(path: str) -> str:
    if "://" in path:
        import pyarrow.fs

        filesystem, fs_path = pyarrow.fs.FileSystem.from_uri(path)
        try:
            with filesystem.open_input_stream(fs_path) as stream:
                return stream.read().decode()
        except (FileNotFoundError, OSError) as err:
            raise FileNotFoundError(f"split manifest {path!r} cannot be read: {err}") from None
    if not Path(path).is_file():
        raise FileNotFoundError(f"split manifest {path!r} does not exist")
    return Path(path).read_text()


def read_manifest(path: str | os.PathLike) -> SampleIndex:
    """Reads a manifest written by :func:`write_manifest`.

    ``path`` may be a URI (``s3://…``, ``gs://…``, ``file://…``): a study on a cluster with
    cloud storage keeps its manifest there, where trials on every node read it.

    Raises:
        FileNotFoundError: no manifest at ``path``.
        ValueError: a manifest of another version, or one whose samples lack splits.
    """
    payload = json.loads(_read_text(str(path)))
    if payload.get("version") != MANIFEST_VERSION:
        raise ValueError(f"{path}: manifest version {payload.get('version')} is not {MANIFEST_VERSION}")
    samples = tuple(Sample(**s) for s in payload["samples"])
    if any(s.split is None for s in samples):
        raise ValueError(f"{path}: every sample of a manifest must have a split")
    return SampleIndex(
        root=payload["root"], task=payload["task"], layout=payload["layout"],
        classes=tuple(payload["classes"]), samples=samples,
    )
