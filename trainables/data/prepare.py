"""Driver-side data preparation: scan, skip or stop, split, and write the study's manifest.

Runs once per study before any trial starts; a resumed study reuses the manifest it wrote, so
every trial and every resume sees exactly the same samples in the same splits.

Files written to ``<study dir>/data/``:
    * ``scan.json`` / ``scan.txt`` — the integrity scan (JSON and the human summary);
    * ``skipped.txt`` — every file left out, with the reason (empty when none);
    * ``manifest.json`` — samples with split and content hash.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional

from corrotune.files import write_text
from corrotune.paths import cache_dir
from trainables.data.config import DataConfig
from trainables.data.folder import resolve_root, scan_classification_folder
from trainables.data.index import SampleIndex
from trainables.data.manifest import read_manifest, write_manifest
from trainables.data.segmentation import read_coco, read_segmentation_folder
from trainables.data.splits import split_index

if TYPE_CHECKING:
    from trainables.data.scan import ScanReport

__all__ = [
    "DataPreparationError", "DatasetPlan", "cached_scan", "find_coco_annotations", "load_index", "plan_dataset",
    "prepare_dataset", "read_index",
]

_GROUPING_KINDS = frozenset(
    {"duplicate", "conflicting_labels", "leakage", "near_duplicate", "near_conflicting_labels", "near_leakage"}
)


class DataPreparationError(ValueError):
    """The dataset cannot be used as configured; the message says why and how to proceed."""


def find_coco_annotations(root: Path) -> Optional[Path]:
    """The COCO annotation JSON directly in ``root``, if there is exactly one."""
    candidates = []
    for path in sorted(root.glob("*.json")):
        try:
            head = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(head, dict) and {"images", "annotations"} <= head.keys():
            candidates.append(path)
    return candidates[0] if len(candidates) == 1 else None


def read_index(data: DataConfig, task: str, *, strict: bool = True) -> SampleIndex:
    """Reads the dataset of ``data`` for ``task`` without splitting or scanning it."""
    root = resolve_root(data, task)
    if task == "classification":
        return scan_classification_folder(root)
    if data.format == "coco" or (data.format == "auto" and data.annotations):
        annotations = Path(data.annotations) if data.annotations else find_coco_annotations(root)
        if annotations is None:
            raise DataPreparationError(f"{root}: no COCO annotation JSON found; set data.annotations")
        return read_coco(annotations, images_dir=root / "images" if (root / "images").is_dir() else root)
    return read_segmentation_folder(root, strict=strict)


def _duplicate_groups(index: SampleIndex, root: Path, report) -> list[str]:
    """One group key per sample: samples linked by a (near-)duplicate finding share a key."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.get(x, x) != x:
            x = parent[x]
        return x

    for finding in report.findings:
        if finding.kind in _GROUPING_KINDS:
            anchors = [str((root / p).resolve()) for p in finding.paths]
            for other in anchors[1:]:
                parent[find(other)] = find(anchors[0])
    return [find(s.path) for s in index.samples]


SCAN_CACHE_VERSION = 1
_HASHED: dict[tuple, str] = {}
"""The last folder's file stats -> its scan cache key (this process only)."""


def cached_scan(root: Path, log: Callable[[str], None] = print):
    """The scan of ``root``, reused while no file under it changed (keyed by content hashes).

    Hashing every file costs a fraction of decoding them, so an unchanged dataset is scanned
    once per machine, whatever study uses it.
    """
    from trainables.data.scan import ScanReport, content_hash, scan_path

    files = sorted(p for p in root.rglob("*") if p.is_file())
    # `run` checks the data before it creates the study folder, then prepares it: within one
    # process, files whose size and modification time did not change are not hashed again
    stats = (str(root.resolve()), tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files))
    if stats not in _HASHED:
        digest = hashlib.sha256(f"scan-v{SCAN_CACHE_VERSION}|{root.resolve()}".encode())
        for path in files:
            digest.update(f"|{path.relative_to(root).as_posix()}:{content_hash(path)}".encode())
        _HASHED.clear()
        _HASHED[stats] = digest.hexdigest()[:32]
    cached = cache_dir("scans") / f"{_HASHED[stats]}.json"
    if cached.is_file():
        log(f"Data: scan of {root} reused (no file changed since {cached.name})")
        return ScanReport.from_json(json.loads(cached.read_text()))
    report = scan_path(root)
    cached.parent.mkdir(parents=True, exist_ok=True)
    write_text(cached, json.dumps(report.to_json()))
    return report


@dataclass(frozen=True)
class DatasetPlan:
    """What a study will train on, decided before anything is written.

    Attributes:
        root: The dataset folder.
        report: Its scan.
        index: The usable samples, split.
        skipped: Every unusable file (absolute path) with its reason.
    """

    root: Path
    report: "ScanReport"
    index: SampleIndex
    skipped: dict[str, str]


def plan_dataset(
    data: DataConfig,
    task: str,
    log: Callable[[str], None] = print,
    on_scan: Optional[Callable[["ScanReport"], None]] = None,
) -> DatasetPlan:
    """Scans, filters and splits the dataset in memory (only the scan cache is written).

    Args:
        data: The study's data section.
        task: ``classification`` or ``segmentation`` (from the trainable).
        log: Receives the scan's human summary.
        on_scan: Called with the scan report before any check can fail (to keep it on disk).

    Raises:
        DataPreparationError: a layout the task's reader does not take, unusable files with
            ``on_bad_files: stop``, or too few usable samples to train and validate on.
    """
    root = resolve_root(data, task)
    report = cached_scan(root, log)
    if on_scan is not None:
        on_scan(report)
    log(report.summary())
    segmentation_layout = report.layout.startswith("segmentation")
    if task == "classification" and segmentation_layout:
        raise DataPreparationError(
            f"{root}: a segmentation folder ({report.layout}: images/ + masks/), but this trainable classifies "
            "images and reads <class>/* or {train,val,test}/<class>/* folders; use a segmentation trainable"
        )
    if task == "segmentation" and report.layout in ("imagefolder", "presplit") and data.format != "coco":
        raise DataPreparationError(
            f"{root}: a classification folder ({report.layout}: <class>/*), but this trainable segments images "
            "and reads images/ + masks/ folders or COCO annotations (data.format: coco)"
        )
    unusable = {str((root / p).resolve()) for p in report.unusable()}
    reasons = {
        str((root / p).resolve()): f"{f.kind}: {f.detail}"
        for f in report.findings if f.severity == "error" for p in f.paths
    }
    if unusable and data.on_bad_files == "stop":
        raise DataPreparationError(
            f"{root}: {len(unusable)} unusable file(s) (listed in the scan report above); "
            "fix them, or set data.on_bad_files: skip to leave them out"
        )
    try:
        index = read_index(data, task, strict=False)
        kept = [s for s in index.samples if s.path not in unusable and (s.mask is None or s.mask not in unusable)]
        _check_enough(root, index, kept, len(unusable))
        hashes = {str((root / rel).resolve()): sha for rel, sha in report.hashes.items()}
        index = index.with_samples(replace(s, hash=hashes.get(s.path)) for s in kept)
        index = split_index(index, data.split, data.split_seed, _duplicate_groups(index, root, report))
    except (FileNotFoundError, ValueError) as err:
        if isinstance(err, DataPreparationError):
            raise
        raise DataPreparationError(str(err)) from err
    return DatasetPlan(root=root, report=report, index=index, skipped={p: reasons.get(p, "unusable") for p in sorted(unusable)})


def _check_enough(root: Path, index: SampleIndex, kept: list, num_unusable: int) -> None:
    """Refuses a dataset left with nothing to train on once the unusable files are out."""
    unusable = f" ({num_unusable} unusable file(s) left out, see the scan report above)" if num_unusable else ""
    if not kept:
        raise DataPreparationError(f"{root}: no usable {'image/mask pair' if index.task == 'segmentation' else 'image'}"
                                   f"{unusable}; nothing to train on")
    if index.task == "classification":
        present = sorted({index.classes[s.label] for s in kept})
        if len(present) < 2:
            raise DataPreparationError(
                f"{root}: classification needs usable images of at least two classes, found {present or 'none'} "
                f"among {list(index.classes)}{unusable}"
            )


def prepare_dataset(
    data: DataConfig,
    task: str,
    study_dir: str | os.PathLike,
    log: Callable[[str], None] = print,
) -> DataConfig:
    """Scans, filters and splits the dataset once; returns ``data`` pointing at the manifest.

    Args:
        data: The study's data section.
        task: ``classification`` or ``segmentation`` (from the trainable).
        study_dir: Where ``data/`` with the manifest and reports goes.
        log: Receives the human summary lines.

    Raises:
        DataPreparationError: see :func:`plan_dataset` (the scan report is written first).
    """
    out = Path(study_dir) / "data"
    manifest = out / "manifest.json"
    if manifest.is_file():
        log(f"Data: reusing the split manifest {manifest}")
        return data.model_copy(update={"manifest": str(manifest)})

    def write_scan(report) -> None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "scan.json").write_text(json.dumps(report.to_json(), indent=1))
        (out / "scan.txt").write_text(report.summary() + "\n")

    plan = plan_dataset(data, task, log, on_scan=write_scan)
    (out / "skipped.txt").write_text("".join(f"{p}\t{reason}\n" for p, reason in plan.skipped.items()))
    if plan.skipped:
        log(f"Data: skipping {len(plan.skipped)} unusable file(s), listed in {out / 'skipped.txt'}")
    write_manifest(plan.index, manifest)
    log(f"Data: {len(plan.index.samples)} samples, splits {plan.index.counts()} -> {manifest}")
    return data.model_copy(update={"manifest": str(manifest)})


def load_index(data: DataConfig, task: str) -> SampleIndex:
    """The index a trial trains on: the study's manifest, or (outside a study) read and split."""
    if data.manifest:
        return read_manifest(data.manifest)
    return split_index(read_index(data, task), data.split, data.split_seed)
