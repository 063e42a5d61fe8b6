"""Where a study lives: a local or NFS folder, or a URI (``s3://``, ``gs://``, ``file://``).

Ray Tune writes trials, checkpoints and its experiment state to the study's storage itself.
corrotune's own driver files (the resolved study, the data manifest and scan reports,
``trials.csv``, the leaderboard) are written to a local folder — the study folder itself
when the storage is a path — and, for remote storage, copied next to Ray's files, where
trials on every node and a later ``corrotune resume URI`` find them.

Example:
    >>> place = StudyPlace.create("s3://bucket/corrotune", "demo")
    >>> place.storage_path, place.uri
    ('s3://bucket/corrotune', 's3://bucket/corrotune/demo')
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["DEFAULT_STORAGE", "StudyPlace", "is_uri", "split_study_uri", "storage_problem"]

DEFAULT_STORAGE = "corrotune-results"
"""Results root when neither ``--storage`` nor the study's ``storage`` names one."""


_PROBE_TIMEOUT_S = 15.0
"""How long the check of remote storage waits for the bucket to answer."""


def is_uri(storage: str | os.PathLike) -> bool:
    return "://" in str(storage)


def split_study_uri(study: str) -> tuple[str, str]:
    """``(storage, name)`` of a study directory or URI."""
    if is_uri(study):
        storage, _, name = str(study).rstrip("/").rpartition("/")
        return storage, name
    path = Path(study).expanduser().resolve()
    return str(path.parent), path.name


def storage_problem(storage: str | os.PathLike, name: str) -> str | None:
    """Why a study called ``name`` cannot be written to ``storage``, or None.

    A path must be (or be creatable as) a folder this user can write, and ``name`` must fit the
    file system's limit on a file name; a URI must have a scheme Ray can write to and a bucket
    that answers within a few seconds (a missing one, or no network, fails here, not mid-run).
    """
    storage = str(storage)
    if storage.startswith("file://"):
        storage = storage[len("file://"):]
    if is_uri(storage):
        return _remote_problem(storage)
    path = Path(storage).expanduser().absolute()
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        what = "is a file" if existing == path else f"cannot be created: {existing} is a file"
        return f"--storage {storage}: {what}; give a folder (or a URI: s3://, gs://, file://)"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"--storage {storage}: cannot be written ({existing}: permission denied); choose a folder you can write"
    try:
        limit = os.pathconf(existing, "PC_NAME_MAX")
    except (OSError, ValueError):
        limit = 255
    if len(name.encode()) > limit:
        return f"name: {len(name.encode())} bytes is too long for a folder name on {existing} (at most {limit}); shorten the study name"
    return None


def _remote_problem(storage: str) -> str | None:
    from orchestrator.cluster import REMOTE_SCHEMES  # the schemes Ray's pyarrow file systems open

    scheme = storage.split("://", 1)[0].lower()
    if scheme not in REMOTE_SCHEMES:
        return (f"--storage {storage}: unsupported scheme {scheme}://; use a path, file:///path, or "
                f"{', '.join(f'{s}://' for s in sorted(REMOTE_SCHEMES))}")
    import threading

    outcome: list[str | None] = []

    def probe() -> None:
        try:
            import pyarrow.fs

            filesystem, path = pyarrow.fs.FileSystem.from_uri(storage)
            filesystem.get_file_info(path)
            outcome.append(None)
        except Exception as err:  # noqa: BLE001 - any failure means the bucket cannot be used
            outcome.append(f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}")

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(_PROBE_TIMEOUT_S)
    if not outcome:
        return f"--storage {storage}: no answer within {_PROBE_TIMEOUT_S:g} s; check the bucket name, the network and the credentials"
    if outcome[0] is not None:
        return f"--storage {storage}: cannot be reached ({outcome[0]}); check the bucket name, the network and the credentials"
    return None


@dataclass(frozen=True)
class StudyPlace:
    """A study's storage (given to Ray) and the local folder of corrotune's driver files.

    Attributes:
        storage_path: Ray's ``storage_path`` (an absolute path or a URI).
        name: The study name (Ray's experiment name).
        local_dir: Where the driver writes its files (the study folder for path storage).
    """

    storage_path: str
    name: str
    local_dir: Path

    @classmethod
    def create(cls, storage: str | os.PathLike, name: str) -> "StudyPlace":
        storage = str(storage)
        if storage.startswith("file://"):
            storage = storage[len("file://"):]  # a local path the user declared shared
        if not is_uri(storage):
            path = str(Path(storage).expanduser().resolve())
            return cls(storage_path=path, name=name, local_dir=Path(path) / name)
        from corrotune.paths import cache_dir

        digest = hashlib.sha256(f"{storage}/{name}".encode()).hexdigest()[:12]
        return cls(storage_path=storage.rstrip("/"), name=name, local_dir=cache_dir("studies") / f"{name}-{digest}")

    @classmethod
    def of_study(cls, study: str | os.PathLike) -> "StudyPlace":
        """The place of an existing study directory or URI (for ``resume`` and ``status``)."""
        storage, name = split_study_uri(str(study))
        return cls.create(storage, name)

    @property
    def remote(self) -> bool:
        return is_uri(self.storage_path)

    @property
    def storage_filesystem(self):
        """The ``pyarrow`` filesystem to give Ray: for a path, one whose writes replace files whole
        (a killed driver cuts no file short, see :mod:`orchestrator.ray_repairs.atomic_fs`); None (Ray's own) for a URI."""
        if self.remote:
            return None
        from orchestrator.ray_repairs.atomic_fs import atomic_local_filesystem

        return atomic_local_filesystem()

    @property
    def uri(self) -> str:
        """The study directory in storage, as Ray names it."""
        return f"{self.storage_path}/{self.name}" if self.remote else str(self.local_dir)

    def _filesystem(self):
        import pyarrow.fs

        return pyarrow.fs.FileSystem.from_uri(self.uri)

    def exists(self) -> bool:
        """Whether the study directory exists in storage."""
        if not self.remote:
            return self.local_dir.exists()
        import pyarrow.fs

        filesystem, path = self._filesystem()
        return filesystem.get_file_info(path).type != pyarrow.fs.FileType.NotFound

    def remote_path(self, relative: str) -> str:
        """``relative`` inside the study: a URI for remote storage, else a local path."""
        return f"{self.uri}/{relative}" if self.remote else str(self.local_dir / relative)

    def publish(self, relative: str) -> None:
        """Copies ``local_dir/relative`` (a file or folder) to the study in remote storage."""
        if not self.remote:
            return
        import pyarrow.fs

        filesystem, path = self._filesystem()
        source = self.local_dir / relative
        folder = relative if source.is_dir() else Path(relative).parent.as_posix()
        filesystem.create_dir(f"{path}/{folder}", recursive=True)
        pyarrow.fs.copy_files(str(source), f"{path}/{relative}", destination_filesystem=filesystem)

    def fetch(self, relative: str) -> bool:
        """Copies ``relative`` from remote storage into ``local_dir``; False when it is not there."""
        if not self.remote:
            return (self.local_dir / relative).exists()
        import pyarrow.fs

        filesystem, path = self._filesystem()
        if filesystem.get_file_info(f"{path}/{relative}").type == pyarrow.fs.FileType.NotFound:
            return False
        target = self.local_dir / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        pyarrow.fs.copy_files(f"{path}/{relative}", str(target), source_filesystem=filesystem)
        return True
