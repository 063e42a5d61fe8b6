"""What ``predict`` writes, per task, each file whole or not at all.

Every file is written under a temporary name beside its target and renamed over it when
complete (``os.replace``), so an interrupted predict leaves the previous file, never half a one.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import IO, Any, Sequence

from corrotune.files import atomic_open
from orchestrator.deploy._images import Skipped
from orchestrator.deploy.trials import DeployError
from trainables.inference import ClassPredictions

__all__ = ["AtomicText", "ClassificationCsv", "output_path", "write_skipped"]


class AtomicText:
    """A text file that appears at ``path`` only when the block finishes without error
    (:func:`corrotune.files.atomic_open`; its folder is created on entering)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._replace: Any = None

    def __enter__(self) -> IO[str]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._replace = atomic_open(self.path, "w", newline="")
        return self._replace.__enter__()

    def __exit__(self, kind, error, traceback) -> None:
        self._replace.__exit__(kind, error, traceback)


def output_path(out: Path | None, task: str) -> Path:
    """Where predictions go.

    Classification: the CSV ``out`` (a folder gets ``predictions.csv`` inside), default
    ``./predictions.csv``. Segmentation: the folder ``out``, default ``./predictions/``.
    """
    if task == "segmentation":
        out = Path(out if out is not None else "predictions").expanduser().resolve()
        if out.suffix.lower() == ".csv" or out.is_file():
            raise DeployError(f"--out {out}: a segmentation model writes a folder (masks/, overlays/, predictions.csv)")
        return out
    if out is None:
        return Path("predictions.csv").resolve()
    out = Path(out).expanduser().resolve()
    return out / "predictions.csv" if out.is_dir() else out


class ClassificationCsv:
    """``path, predicted_class, prob_<class>...``: one row per image, streamed to a temporary file.

    Args:
        path: The CSV to write.
        classes: Class names in label order.
    """

    def __init__(self, path: Path, classes: Sequence[str]) -> None:
        self.classes = list(classes)
        self.path = path
        self._file = AtomicText(path)
        self._writer: Any = None
        self.rows = 0

    def __enter__(self) -> "ClassificationCsv":
        self._writer = csv.writer(self._file.__enter__())
        self._writer.writerow(["path", "predicted_class", *(f"prob_{c}" for c in self.classes)])
        return self

    def __exit__(self, kind, error, traceback) -> None:
        self._file.__exit__(kind, error, traceback)

    def add(self, paths: Sequence[str], predictions: ClassPredictions, originals: Any = None) -> None:
        for path, predicted, probabilities in zip(paths, predictions.predicted, predictions.probabilities):
            self._writer.writerow([path, self.classes[int(predicted)], *(f"{float(p):.8g}" for p in probabilities)])
        self.rows += len(paths)


def write_skipped(path: Path, skipped: Sequence[Skipped]) -> Path:
    """``path, kind, reason`` of every file left out (a header alone when none was)."""
    with AtomicText(path) as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "kind", "reason"])
        writer.writerows([s.path, s.kind, s.detail] for s in skipped)
    return path
