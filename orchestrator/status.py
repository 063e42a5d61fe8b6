"""``corrotune status DIR``: where a study stands, whether it is finished, running or crashed.

Reads only the study directory: the saved study, Ray's newest experiment state, each trial's
``result.json`` and the driver heartbeat (:mod:`orchestrator.heartbeat`) that
:class:`~orchestrator.trials_table.TrialsTableCallback` writes. A running study's files lag
the driver by Ray's sync period (about 10 s).

Example:
    >>> show_status(Path("corrotune-results/demo"), Console())
    0
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from orchestrator.exit_status import EXIT_INVALID
from orchestrator.heartbeat import DriverState, driver_state
from orchestrator.runner import STUDY_FILE, load_saved_study
from orchestrator.spec import StudyError, read_yaml_mapping
from orchestrator.trials_table import (
    FINAL_STATUSES,
    TRIALS_FILE,
    Objective,
    best_rows_by_cell,
    best_value,
    load_trials_table,
    normalize_objectives,
    rank_rows,
)

__all__ = ["EXIT_NOT_A_STUDY", "show_status"]

EXIT_NOT_A_STUDY = EXIT_INVALID
STATUS_ORDER = ("RUNNING", "PENDING", "PAUSED", "TERMINATED", "ERROR")


def _study_facts(study_dir: Path) -> tuple[str, list[Objective], Any]:
    """Name, objectives and the validated study (``None`` when it no longer validates here)."""
    try:
        study = load_saved_study(study_dir)
    except StudyError:  # say the data folder moved: the saved file still names the objectives
        raw = read_yaml_mapping(study_dir / STUDY_FILE, f"saved study ({STUDY_FILE})")  # corrupt: StudyError
        objectives = raw.get("objectives") or [raw.get("objective") or {}]
        if not isinstance(objectives, list) or not all(isinstance(o, dict) for o in objectives):
            raise StudyError(str(study_dir / STUDY_FILE), ["the saved study is corrupt (objectives is not a list of "
                                                           "{metric, mode}); the trials' own folders are untouched"]) from None
        pairs = [(str(o.get("metric", "val/accuracy")), str(o.get("mode", "max"))) for o in objectives]
        return str(raw.get("name", study_dir.name)), normalize_objectives(pairs), None
    objectives = getattr(study, "objectives", None) or [study.objective]
    return study.name, normalize_objectives(objectives), study


def _fmt(value: Any) -> str:
    if value is None or value == "" or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _planned_per_cell(study: Any) -> int | None:
    per_cell = getattr(study, "trials_per_cell", None)
    repeats = getattr(study, "repeats", None)
    return per_cell + repeats if isinstance(per_cell, int) and isinstance(repeats, int) else None


def _cell_table(rows: list[dict[str, Any]], objective: Objective, planned: int | None) -> Table:
    metric = objective[0]
    table = Table(title=f"Best {metric} ({objective[1]}) per cell", title_justify="left")
    for column in ("cell", "done", "running", "errored", f"best {metric}", "trial", "epoch"):
        table.add_column(column, justify="left" if column in ("cell", "trial") else "right")
    best = best_rows_by_cell(rows, objective)
    for cell, top in best.items():
        statuses = Counter(r["status"] for r in rows if r["cell"] == cell)
        total = max(planned or 0, sum(statuses.values()))
        table.add_row(
            Text(cell), f"{statuses['TERMINATED']}/{total}", str(statuses["RUNNING"]), str(statuses["ERROR"]),
            _fmt(best_value(top, objective)) if top else "-", top["trial_id"] if top else "-",
            _fmt(top.get(f"best_epoch/{metric}")) if top else "-",
        )
    return table


def _top_table(rows: list[dict[str, Any]], objectives: list[Objective], top: int) -> Table:
    table = Table(title=f"Top {min(top, len(rows))} trials by best {objectives[0][0]}", title_justify="left")
    columns = ["trial_id", "cell", "phase", "seed", "status", "epochs", *(f"best/{m}" for m, _ in objectives)]
    for column in columns:
        left = column in ("trial_id", "cell", "phase", "status")
        table.add_column(column.removeprefix("best/"), justify="left" if left else "right")
    for row in rank_rows(rows, objectives[0])[:top]:
        table.add_row(*(Text(_fmt(row.get(c))) for c in columns))
    return table


def preempted_trials(study_dir: Path) -> list[str]:
    """Trial folders holding the mid-epoch state of a preemption not yet continued (``trainables.preemption``)."""
    from trainables.preemption import MID_EPOCH_DIR

    return sorted(path.parent.parent.name for path in study_dir.glob(f"*/{MID_EPOCH_DIR}/state.pt"))


def _judge(study_dir: Path, rows: list[dict[str, Any]], stale_after_s: float) -> DriverState:
    """The heartbeat's verdict; without one (an older study), the files decide.

    A driver gone without recording a stop whose trials were preempted (their workers got
    SIGTERM and saved their batch: a spot node reclaimed) is "preempted", not "crashed".
    """
    driver = driver_state(study_dir, stale_after_s)
    preempted = preempted_trials(study_dir) if driver.state in ("crashed", "unknown", "interrupted") else []
    if preempted:
        return DriverState("preempted", f"{driver.detail}; {len(preempted)} trial{'s' if len(preempted) != 1 else ''} "
                                        "stopped on SIGTERM with their current batch saved")
    if driver.state != "unknown" or not rows:
        return driver
    if all(r["status"] in FINAL_STATUSES for r in rows) and (study_dir / "leaderboard.csv").is_file():
        return DriverState("finished", "every trial ended and the leaderboard is written")
    return DriverState("unknown", "crashed or interrupted (no driver heartbeat)")


def show_status(study_dir: Path, console: Console, top: int = 5, stale_after_s: float = 30.0) -> int:
    """Prints a study's state, its trials by status, the best trial of each cell and the top trials.

    Works on a finished, running, interrupted or crashed study, and on one killed before Ray
    wrote any state. Writes ``trials.csv`` only where it is missing (the running driver keeps
    its own fresher copy).

    Args:
        study_dir: A study directory (``<storage>/<study name>/``).
        console: Where to print.
        top: How many trials the ranking shows.
        stale_after_s: A heartbeat older than this means the driver is gone.

    Returns:
        The exit status: 0, or 2 when ``study_dir`` is not a corrotune study directory.
    """
    study_dir = Path(study_dir).expanduser().resolve()
    if not (study_dir / STUDY_FILE).is_file():
        console.print(f"[red]error:[/red] {escape(str(study_dir))}: not a corrotune study directory ({STUDY_FILE} is missing)")
        return EXIT_NOT_A_STUDY
    name, objectives, study = _study_facts(study_dir)
    table = load_trials_table(study_dir, objectives)
    rows = table.rows()
    driver = _judge(study_dir, rows, stale_after_s)
    console.print(f"Study [bold]{escape(name)}[/bold]  {escape(str(study_dir))}", highlight=False)
    state, colour = driver.state, {"finished": "green", "running": "cyan"}.get(driver.state, "yellow")
    errored = sum(r["status"] == "ERROR" for r in rows)
    if state == "finished" and errored:
        state, colour = f"finished with {errored} error{'s' if errored != 1 else ''}", "red"
    console.print(f"State: [{colour}]{state}[/{colour}] ({escape(driver.detail)})", highlight=False)
    if not rows and driver.state == "running":
        console.print("No trial state yet (the driver is preparing data, or Ray has not written its first snapshot).")
    elif not rows:
        console.print("No trial state: the driver stopped before Ray wrote any; resuming starts the study afresh.")
    if driver.resumable:
        console.print(f"Resume with [bold]corrotune resume {escape(str(study_dir))}[/bold]", highlight=False)
    if not rows:
        return 0
    counts = Counter(r["status"] for r in rows)
    planned = getattr(study, "num_samples", None)
    of = f" of {planned} planned" if isinstance(planned, int) and planned >= len(rows) else ""
    order = (*STATUS_ORDER, *sorted(set(counts) - set(STATUS_ORDER)))
    states = ", ".join(f"{s} {counts[s]}" for s in order if counts[s])
    console.print(f"Trials: {len(rows)}{of}: {states}", highlight=False)
    console.print(_cell_table(rows, objectives[0], _planned_per_cell(study)))
    console.print(_top_table(rows, objectives, top))
    csv_path = study_dir / TRIALS_FILE
    if not csv_path.exists():
        try:
            table.write_csv(csv_path)
            console.print(f"Wrote {csv_path}", markup=False, highlight=False)
        except OSError:
            pass
    return 0
