"""The search-efficiency benchmark's baseline: a full grid run through corrotune, kept as a lookup table.

The grid runs as an ordinary corrotune study (``sampler: grid``, FIFO: every configuration for
the full epoch budget); every trial's per-epoch objective is read back from its ``result.json``
and written to a table file, so reruns of the benchmark skip the training.
"""

from __future__ import annotations

import contextlib
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

TABLE_VERSION = 2  # 2: one curve per training seed
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")


def subset_plan(source: Path, images: int, seed: int) -> dict[str, list[str]]:
    """A seeded, stratified subset of an ImageFolder: class -> file names, each class in its share.

    Every class keeps at least one image; a class's share is rounded to the nearest image.
    ``images`` 0 (or at least the folder's count): every image.

    Raises:
        SystemExit: ``source`` has no class folders with images.
    """
    classes = {d.name: sorted(f.name for f in d.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
               for d in sorted(source.iterdir()) if d.is_dir() and not d.name.startswith(".")}
    classes = {name: files for name, files in classes.items() if files}
    total = sum(len(files) for files in classes.values())
    if not total:
        raise SystemExit(f"--data {source}: no <class>/<image> folders found (an ImageFolder layout is needed)")
    if images <= 0 or images >= total:
        return dict(classes)
    rng = random.Random(seed)
    return {name: sorted(rng.sample(files, min(len(files), max(1, round(images * len(files) / total)))))
            for name, files in classes.items()}


def link_subset(source: Path, plan: dict[str, list[str]], dest: Path) -> Path:
    """``dest/<class>/<file>`` symlinks to the planned files (the data is never copied)."""
    for name, files in plan.items():
        (dest / name).mkdir(parents=True, exist_ok=True)
        for file in files:
            link = dest / name / file
            if not link.exists():
                link.symlink_to(source / name / file)
    return dest


def grid_study(data: str, grid: dict[str, list[Any]], params: dict[str, Any], metric: str,
               split: list[float], name: str = "grid", concurrency: int = 2) -> dict[str, Any]:
    """The baseline study: every grid point for ``params["epochs"]`` epochs, ``concurrency`` trials
    at a time sharing two CPUs (the grid only records accuracies; its timing does not matter)."""
    return {
        "name": name,
        "trainable": "classifier",
        "data": {"path": data, "split": split},
        "params": params,
        "search": {"sampler": "grid", "grid": grid, "seed": 0},
        "objective": {"metric": metric, "mode": "max"},
        "scheduler": {"name": "fifo"},
        "resources": {"cpu": 2 / concurrency, "gpu": 0},
        "max_concurrent_trials": concurrency,
        "checkpoints": {"num_to_keep": 1},
        "tracking": {"wandb": {"mode": "disabled"}},
    }


def _results(trial_dir: Path) -> list[dict[str, Any]]:
    lines = (trial_dir / "result.json").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def read_table(study_dir: Path, grid: dict[str, list[Any]], metric: str, epochs: int) -> list[dict[str, Any]]:
    """One entry per grid point: its params and the objective (in %) at epochs 1..``epochs``.

    Raises:
        RuntimeError: a grid point is missing, repeated, or has fewer epochs than the budget.
    """
    configs: dict[tuple, dict[str, Any]] = {}
    for trial_dir in sorted(p.parent for p in study_dir.glob("*/result.json")):
        records = [r for r in _results(trial_dir) if metric in r]
        if not records:
            continue
        params = {key: records[-1]["config"][key] for key in grid}
        key = tuple(params[k] for k in grid)
        if key in configs:
            raise RuntimeError(f"{trial_dir}: grid point {params} ran twice")
        by_epoch = {int(r["training_iteration"]): r for r in records}
        if sorted(by_epoch) != list(range(1, epochs + 1)):
            raise RuntimeError(f"{trial_dir}: epochs {sorted(by_epoch)} reported, expected 1..{epochs}")
        configs[key] = {
            "params": params,
            "curve": [round(100.0 * float(by_epoch[e][metric]), 4) for e in range(1, epochs + 1)],
            "trial_time_s": round(float(records[-1]["time_total_s"]), 1),
        }
    expected = 1
    for values in grid.values():
        expected *= len(values)
    if len(configs) != expected:
        raise RuntimeError(f"{study_dir}: {len(configs)} of {expected} grid points finished; see the trials' error.txt")
    return [configs[k] for k in sorted(configs, key=str)]


def merge_seeds(per_seed: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """The tables of one grid per training seed as one: per configuration, ``curves[i]`` is seed i's.

    Raises:
        RuntimeError: the grids do not hold the same configurations.
    """
    merged = []
    for entries in zip(*per_seed, strict=True):
        params = entries[0]["params"]
        if any(e["params"] != params for e in entries):
            raise RuntimeError(f"the training seeds' grids differ: {[e['params'] for e in entries]}")
        merged.append({"params": params, "curves": [e["curve"] for e in entries],
                       "trial_time_s": [e["trial_time_s"] for e in entries]})
    return merged


def run_grid(study: dict[str, Any], storage: Path) -> tuple[Path, float]:
    """Runs the grid study under ``storage``; returns its folder and wall time (s)."""
    from rich.console import Console

    from orchestrator.runner import run_study
    from orchestrator.spec import validate_study

    validated = validate_study(study, source="search_efficiency grid")
    started = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):  # Tune's banner: stdout stays JSON
        outcome = run_study(validated, storage, Console(stderr=True))
    wall = time.perf_counter() - started
    if outcome.num_errors:
        raise RuntimeError(f"{outcome.num_errors} grid trials errored; see {outcome.study_dir}")
    return outcome.study_dir, wall


def write_table(path: Path, table: dict[str, Any]) -> None:
    """Writes the table atomically (a killed run leaves no half table)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(path.suffix + ".partial")
    partial.write_text(json.dumps(table, indent=1))
    partial.replace(path)


def _portable(setup: dict[str, Any]) -> dict[str, Any]:
    """``setup`` with its data folder by name: a table measured in another checkout (another
    absolute path to the same dataset, the same images per class: ``subset``) is still this setup."""
    return {**setup, "data": Path(setup["data"]).name} if isinstance(setup.get("data"), str) else setup


def load_table(path: Path, expected_setup: dict[str, Any]) -> dict[str, Any]:
    """A table written by an earlier run with the same setup.

    Raises:
        SystemExit: the file is not a table of this benchmark, or was measured with another setup.
    """
    try:
        table = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise SystemExit(f"--table {path}: cannot read it ({err}); delete it to measure the grid again") from None
    if not isinstance(table, dict) or table.get("version") != TABLE_VERSION or "configs" not in table:
        raise SystemExit(f"--table {path}: not a search_efficiency table (version {TABLE_VERSION}); delete it to measure again")
    measured, expected = _portable(table.get("setup") or {}), _portable(expected_setup)
    if measured != expected:
        changed = sorted(k for k in {*expected, *measured} if expected.get(k) != measured.get(k))
        raise SystemExit(f"--table {path}: measured with another setup (differs in {', '.join(changed)}); "
                         "delete it or pass another --table to measure this one")
    return table
