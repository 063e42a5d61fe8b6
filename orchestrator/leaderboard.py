"""The end-of-study leaderboard: every trial ranked by its best value of the objective."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any, Iterable

from rich.console import Console
from rich.table import Table
from rich.text import Text

__all__ = ["build_leaderboard", "cell_summary", "pareto_flags", "print_cell_summary", "print_leaderboard", "write_leaderboard"]

META_KEY = "corrotune"  # trainables.TRIAL_META_KEY (not imported: keeps this module free of torch-side imports)


def _test_keys(results: list[Any]) -> list[str]:
    """The registered trainables' leaderboard test columns (``TrainableEntry.test_columns``)
    that some trial reported."""
    from trainables import TRAINABLES  # cheap: the registry, no torch

    reported = {key for result in results for key in (result.metrics or {})}
    columns = dict.fromkeys(key for name in TRAINABLES for key in TRAINABLES.get(name).test_columns)
    return [key for key in columns if key in reported]


def _varying_keys(configs: list[dict[str, Any]]) -> list[str]:
    """Config keys whose values differ between trials (the searched ones), ``data`` excluded."""
    keys = sorted({k for c in configs for k in c if k not in ("data", META_KEY)})
    return [k for k in keys if len({json.dumps(c.get(k), sort_keys=True, default=str) for c in configs}) > 1]


def build_leaderboard(
    results: Iterable[Any], metric: str, mode: str, objectives: list[tuple[str, str]] | None = None
) -> list[dict[str, Any]]:
    """Ranks Ray Tune results (a ``ResultGrid``) by each trial's best ``metric``.

    Args:
        objectives: With several objectives, each row also gets every objective's value at
            the trial's best epoch (``at_best/<metric>``) and ``pareto`` (not dominated).

    Returns:
        One row per trial, best first: ``rank, trial_id, cell, phase, seed, status, epochs,
        best, best_epoch, last``, the test metrics when the trial finished its budget, and
        ``config/<key>`` for every key that varies between trials. Errored trials rank
        after every finished one; within each, trials that never reported rank last.
    """
    results = list(results)
    configs = [dict(r.config or {}) for r in results]
    varying = _varying_keys(configs)
    test_keys = _test_keys(results)
    rows = []
    for result, config in zip(results, configs):
        frame = result.metrics_dataframe
        history = frame[metric].dropna() if frame is not None and metric in frame else None
        meta = config.get(META_KEY) or {}
        row: dict[str, Any] = {
            "trial_id": (result.metrics or {}).get("trial_id") or Path(result.path).name,
            "cell": meta.get("cell", "base"),
            "phase": meta.get("phase", "search"),
            "seed": config.get("seed"),
            "status": "ERROR" if result.error else "TERMINATED",
            "epochs": int(frame["training_iteration"].max()) if history is not None and len(frame) else 0,
            "best": None,
            "best_epoch": None,
            "last": None,
        }
        if history is not None and len(history):
            best_index = history.idxmax() if mode == "max" else history.idxmin()
            row["best"] = float(history[best_index])
            row["best_epoch"] = int(frame.loc[best_index, "training_iteration"])
            row["last"] = float(history.iloc[-1])
            for name, _ in (objectives or [])[1:]:
                value = frame.loc[best_index, name] if name in frame else None
                row[f"at_best/{name}"] = float(value) if value is not None and not math.isnan(value) else None
        for key in test_keys:
            value = (result.metrics or {}).get(key)
            row[key] = float(value) if value is not None else None
        row.update({f"config/{k}": config.get(k) for k in varying})
        rows.append(row)
    if objectives and len(objectives) > 1:
        for row, flag in zip(rows, pareto_flags(rows, objectives)):
            row["pareto"] = flag
    sign = -1.0 if mode == "max" else 1.0
    # an errored trial never ranks above a finished one, whatever it reported before failing
    rows.sort(key=lambda r: (r["status"] == "ERROR", r["best"] is None, sign * r["best"] if r["best"] is not None else 0.0))
    for rank, row in enumerate(rows, start=1):
        row["rank"] = rank
    return [{"rank": r.pop("rank"), **r} for r in rows]


def _objective_vector(row: dict[str, Any], objectives: list[tuple[str, str]]) -> list[float] | None:
    """Objective values of a row, each signed so that larger is better (None: incomplete)."""
    values = [row["best"]] + [row.get(f"at_best/{name}") for name, _ in objectives[1:]]
    if any(v is None for v in values):
        return None
    return [v if mode == "max" else -v for v, (_, mode) in zip(values, objectives)]


def pareto_flags(rows: list[dict[str, Any]], objectives: list[tuple[str, str]]) -> list[bool]:
    """Whether each row is on the Pareto front (no other row is at least as good everywhere and better somewhere)."""
    vectors = [_objective_vector(r, objectives) for r in rows]

    def dominated(a: list[float]) -> bool:
        return any(b is not None and b != a and all(x >= y for x, y in zip(b, a)) for b in vectors)

    return [v is not None and not dominated(v) for v in vectors]


def cell_summary(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per ablation cell: the best value's mean and std over the confirm runs (search runs when
    the study has no confirm phase), with the number of runs; errored runs are left out."""
    phase = "confirm" if any(r["phase"] == "confirm" for r in rows) else "search"
    cells: dict[str, list[float]] = {}
    for row in rows:
        if row["phase"] == phase and row["best"] is not None and row["status"] != "ERROR":
            cells.setdefault(row["cell"], []).append(row["best"])
    summary = []
    for cell, values in cells.items():
        mean = sum(values) / len(values)
        std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
        summary.append({"cell": cell, "phase": phase, "runs": len(values), "mean": mean, "std": std, "max": max(values)})
    return summary


def print_cell_summary(summary: list[dict[str, Any]], metric: str, mode: str, console: Console) -> None:
    """Prints the per-cell table, best mean first."""
    if len(summary) < 2 and not any(s["runs"] > 1 for s in summary):
        return
    table = Table(title=f"Cells by mean best {metric} ({summary[0]['phase']} runs)", title_justify="left")
    for column in ("cell", "runs", "mean", "std", "max"):
        table.add_column(column, justify="left" if column == "cell" else "right")
    for row in sorted(summary, key=lambda s: -s["mean"] if mode == "max" else s["mean"]):
        table.add_row(Text(row["cell"]), str(row["runs"]), f"{row['mean']:.4f}", f"{row['std']:.4f}", f"{row['max']:.4f}")
    console.print(table)


def write_leaderboard(rows: list[dict[str, Any]], study_dir: str | Path, metric: str, mode: str) -> list[Path]:
    """Writes ``leaderboard.csv`` and ``leaderboard.json`` into the study directory."""
    study_dir = Path(study_dir)
    csv_path, json_path = study_dir / "leaderboard.csv", study_dir / "leaderboard.json"
    columns = list(dict.fromkeys(k for row in rows for k in row))
    with csv_path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    json_path.write_text(json.dumps({"metric": metric, "mode": mode, "trials": rows}, indent=2, default=str))
    return [csv_path, json_path]


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def print_leaderboard(rows: list[dict[str, Any]], metric: str, console: Console, top: int = 10) -> None:
    """Prints the ``top`` rows as a table."""
    if not rows:
        console.print("[yellow]No trials to rank.[/yellow]")
        return
    extra = [k for k in ("cell", "phase", "seed", "pareto") if any(r.get(k) not in (None, "base") for r in rows)]
    config_keys = [k for k in rows[0] if k.startswith("config/") and k.removeprefix("config/") not in extra]
    test_keys = [k for k in rows[0] if k.startswith("test/")]
    columns = ["rank", "trial_id", *extra, "status", "epochs", "best", "best_epoch", *test_keys, *config_keys]
    table = Table(title=f"Leaderboard by best {metric}", title_justify="left")
    for column in columns:
        table.add_column(column.removeprefix("config/"), justify="left" if column == "trial_id" else "right")
    for row in rows[:top]:
        table.add_row(*(Text(_fmt(row.get(c))) for c in columns))
    console.print(table)
