"""The end-of-study leaderboard: every trial ranked by its best value of the objective."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any, Iterable

from rich.console import Console
from rich.table import Table

__all__ = ["build_leaderboard", "print_leaderboard", "write_leaderboard"]

_TEST_KEYS = ("test/accuracy", "test/f1")


def _varying_keys(configs: list[dict[str, Any]]) -> list[str]:
    """Config keys whose values differ between trials (the searched ones), ``data`` excluded."""
    keys = sorted({k for c in configs for k in c if k != "data"})
    return [k for k in keys if len({json.dumps(c.get(k), sort_keys=True, default=str) for c in configs}) > 1]


def build_leaderboard(results: Iterable[Any], metric: str, mode: str) -> list[dict[str, Any]]:
    """Ranks Ray Tune results (a ``ResultGrid``) by each trial's best ``metric``.

    Returns:
        One row per trial, best first: ``rank, trial_id, status, epochs, best, best_epoch,
        last``, the test metrics when the trial finished its budget, and ``config/<key>``
        for every key that varies between trials. Trials that never reported rank last.
    """
    results = list(results)
    configs = [dict(r.config or {}) for r in results]
    varying = _varying_keys(configs)
    rows = []
    for result, config in zip(results, configs):
        frame = result.metrics_dataframe
        history = frame[metric].dropna() if frame is not None and metric in frame else None
        row: dict[str, Any] = {
            "trial_id": (result.metrics or {}).get("trial_id") or Path(result.path).name,
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
        for key in _TEST_KEYS:
            value = (result.metrics or {}).get(key)
            row[key] = float(value) if value is not None else None
        row.update({f"config/{k}": config.get(k) for k in varying})
        rows.append(row)
    sign = -1.0 if mode == "max" else 1.0
    rows.sort(key=lambda r: (r["best"] is None, sign * r["best"] if r["best"] is not None else 0.0))
    for rank, row in enumerate(rows, start=1):
        row["rank"] = rank
    return [{"rank": r.pop("rank"), **r} for r in rows]


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
    config_keys = [k for k in rows[0] if k.startswith("config/")]
    columns = ["rank", "trial_id", "status", "epochs", "best", "best_epoch", *_TEST_KEYS, *config_keys]
    table = Table(title=f"Leaderboard by best {metric}", title_justify="left")
    for column in columns:
        table.add_column(column.removeprefix("config/"), justify="left" if column == "trial_id" else "right")
    for row in rows[:top]:
        table.add_row(*(_fmt(row.get(c)) for c in columns))
    console.print(table)
