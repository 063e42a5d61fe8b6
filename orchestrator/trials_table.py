"""``trials.csv``: one row per trial (cell, seed, phase, status, config, best and last metrics).

A study directory holds ``trials.csv``, kept current while the study runs by
:class:`TrialsTableCallback` and rebuilt from Ray's files by :func:`write_trials_csv`. The same
callback keeps the driver heartbeat (:mod:`orchestrator.heartbeat`) that ``corrotune status``
reads to tell a running study from a crashed one.

Example:
    >>> callback = TrialsTableCallback(study_dir, [("val/accuracy", "max")])
    >>> tune.RunConfig(callbacks=[callback], ...)
    >>> write_trials_csv(study_dir, [("val/accuracy", "max")])  # from the files alone
"""

from __future__ import annotations

import csv
import functools
import json
import logging
import math
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

from ray import tune

from corrotune.files import atomic_open
from orchestrator._background import Background
from orchestrator.heartbeat import write_heartbeat
from orchestrator.ray_repairs.experiment_state import newest_experiment_state, recorded_config, recorded_trials

__all__ = [
    "FINAL_STATUSES",
    "TRIALS_FILE",
    "TrialsTable",
    "TrialsTableCallback",
    "best_rows_by_cell",
    "best_value",
    "load_trials_table",
    "normalize_objectives",
    "rank_rows",
    "write_trials_csv",
]

TRIALS_FILE = "trials.csv"
RESULT_FILE = "result.json"
FINAL_STATUSES = frozenset({"TERMINATED", "ERROR"})
ID_COLUMNS = ("trial_id", "cell", "seed", "phase", "repeat", "status")
Objective = tuple[str, str]

log = logging.getLogger(__name__)


def normalize_objectives(objectives: Any) -> list[Objective]:
    """``[(metric, mode), ...]`` from pairs, ``ObjectiveSpec``-like objects or one of either.

    Raises:
        ValueError: no objective, or a mode other than ``max``/``min``.
    """
    if isinstance(objectives, tuple) and len(objectives) == 2 and all(isinstance(x, str) for x in objectives):
        objectives = [objectives]
    elif hasattr(objectives, "metric"):
        objectives = [objectives]
    pairs = [(o.metric, o.mode) if hasattr(o, "metric") else (str(o[0]), str(o[1])) for o in objectives]
    if not pairs:
        raise ValueError("at least one (metric, mode) objective is needed")
    for metric, mode in pairs:
        if mode not in ("max", "min"):
            raise ValueError(f"objective {metric!r}: mode must be 'max' or 'min', not {mode!r}")
    return pairs


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _flatten(config: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """``config/<dotted key>`` items; ``corrotune`` metadata skipped, of ``data`` only the path."""
    for key, value in config.items():
        name = f"{prefix}{key}"
        if not prefix and key == "corrotune":
            continue
        if not prefix and key == "data":
            if isinstance(value, Mapping) and "path" in value:
                yield "config/data.path", value["path"]
            continue
        if isinstance(value, Mapping) and value.get("_type") == "CLOUDPICKLE_FALLBACK":
            yield f"config/{name}", "<object>"  # Ray's JSON stand-in for an unserialisable value
        elif isinstance(value, Mapping) and value:
            yield from _flatten(value, f"{name}.")
        elif isinstance(value, (list, tuple, Mapping)):
            yield f"config/{name}", json.dumps(value, default=str)
        else:
            yield f"config/{name}", value


def _is_metric(key: str, objective_metrics: Sequence[str]) -> bool:
    """Namespaced metrics (``val/...``, ``test/...``, ``train/loss``) and the objectives; not timings."""
    return key in objective_metrics or ("/" in key and not key.startswith(("config/", "time/")))


@dataclass
class _TrialRecord:
    """What the table keeps of one trial; results are replayed in the order Ray reported them."""

    trial_id: str
    config: dict[str, Any] = field(default_factory=dict)
    status: str = "PENDING"
    history: list[tuple[int, float, dict[str, float]]] = field(default_factory=list)
    last: dict[str, float] = field(default_factory=dict)
    cached_row: dict[str, Any] | None = field(default=None, repr=False)  # until the record changes

    def add(self, result: Mapping[str, Any], objective_metrics: Sequence[str]) -> None:
        iteration = int(result.get("training_iteration") or len(self.history) + 1)
        if self.history and iteration <= self.history[-1][0]:
            # restored from an earlier checkpoint: the epochs after it are reported again
            self.history = [h for h in self.history if h[0] < iteration]
            self.last = {}
        epoch = _number(result.get("epoch"))
        values = {m: v for m in objective_metrics if (v := _number(result.get(m))) is not None}
        self.history.append((iteration, epoch if epoch is not None else float(iteration), values))
        for key, value in result.items():
            if _is_metric(key, objective_metrics) and (number := _number(value)) is not None:
                self.last[key] = number

    def row(self, objectives: Sequence[Objective]) -> dict[str, Any]:
        if self.cached_row is None:
            self.cached_row = self._build_row(objectives)
        return self.cached_row

    def _build_row(self, objectives: Sequence[Objective]) -> dict[str, Any]:
        meta = self.config.get("corrotune") or {}
        row: dict[str, Any] = {
            "trial_id": self.trial_id,
            "cell": meta.get("cell") or "base",
            "seed": self.config.get("seed"),
            "phase": meta.get("phase"),
            "repeat": meta.get("repeat"),
            "status": self.status,
        }
        row.update(_flatten(self.config))
        row["epochs"] = int(self.history[-1][1]) if self.history else 0
        for metric, mode in objectives:
            scored = [(values[metric], epoch) for _, epoch, values in self.history if metric in values]
            best = (max if mode == "max" else min)(scored, key=lambda pair: pair[0]) if scored else (None, None)
            row[f"best/{metric}"] = best[0]
            row[f"best_epoch/{metric}"] = int(best[1]) if best[1] is not None else None
        row.update({f"last/{k}": v for k, v in sorted(self.last.items())})
        return row


def _read_results(path: Path) -> list[dict[str, Any]]:
    """The results in a trial's ``result.json`` (a line being written is skipped)."""
    results = []
    try:
        with path.open() as handle:
            for line in handle:
                try:
                    result = json.loads(line)
                except ValueError:
                    continue
                if isinstance(result, dict):
                    results.append(result)
    except OSError:
        pass
    return results


class TrialsTable:
    """Trials of a study as rows: ``trial_id, cell, seed, phase, repeat, status``, then
    ``config/<key>`` per config key (nested keys dotted; of ``data`` only ``data.path``; the
    ``corrotune`` metadata gives the first columns instead), ``epochs`` (the last epoch
    reached), ``best/<metric>`` and ``best_epoch/<metric>`` per objective, and
    ``last/<metric>``: the latest value of each objective and namespaced metric (``val/...``,
    ``test/...``, ``train/loss``; ``time/...`` left out).

    Args:
        objectives: ``(metric, mode)`` pairs; the first one is the primary objective.
    """

    def __init__(self, objectives: Any) -> None:
        self.objectives = normalize_objectives(objectives)
        self._trials: dict[str, _TrialRecord] = {}
        self._listed = 0  # how much of Ray's trial list sync_new has seen
        self._counts: Counter[str] = Counter()  # trials per status, kept as statuses change

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_listed": 0}  # a restored session's list is a new one

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._counts = Counter(record.status for record in self._trials.values())  # pickled before it existed

    def _record(self, trial_id: str) -> _TrialRecord:
        record = self._trials.get(trial_id)
        if record is None:
            record = self._trials[trial_id] = _TrialRecord(trial_id)
            self._counts[record.status] += 1
        return record

    def _set_status(self, record: _TrialRecord, status: str) -> None:
        if status != record.status:
            self._counts[record.status] -= 1
            self._counts[status] += 1
            record.status = status

    def __len__(self) -> int:
        return len(self._trials)

    def __contains__(self, trial_id: str) -> bool:
        return trial_id in self._trials

    def observe(
        self,
        trial_id: str,
        *,
        config: Mapping[str, Any] | None = None,
        status: str | None = None,
        result: Mapping[str, Any] | None = None,
    ) -> None:
        """Records what is known of a trial: its config, status and/or a new result."""
        record = self._record(trial_id)
        record.cached_row = None
        if config is not None:
            record.config = dict(config)
        if status is not None:
            self._set_status(record, status)
        if result is not None:
            record.add(result, [m for m, _ in self.objectives])

    def status(self, trial_id: str) -> str | None:
        record = self._trials.get(trial_id)
        return record.status if record else None

    def status_counts(self) -> Counter[str]:
        """How many trials are in each Ray status (``PENDING``, ``RUNNING``, ...)."""
        return +self._counts  # kept as statuses change: the status line asks per trial, O(1) not O(trials)

    def sync(self, trials: Iterable[Any], *, statuses: bool = True) -> None:
        """Catches up with Ray's ``Trial`` objects.

        A trial seen for the first time that already reported (a restored study) is seeded
        from its ``result.json`` in the study directory, else from its last result.

        Args:
            trials: Ray's trials.
            statuses: Also take the status of trials already known. Off at experiment end,
                where Ray has marked interrupted trials ``TERMINATED`` without finishing them.
        """
        for trial in trials:
            known = trial.trial_id in self._trials
            if known and not statuses:
                continue
            if known:
                record = self._trials[trial.trial_id]
                if record.status != trial.status and (record.status not in FINAL_STATUSES or trial.status in FINAL_STATUSES):
                    self._set_status(record, trial.status)  # an ended trial stays ended within one run
                    record.cached_row = None
                continue
            self.observe(trial.trial_id, config=trial.config, status=trial.status)
            if trial.last_result:
                history = _read_results(Path(trial.path) / RESULT_FILE) if trial.path else []
                for result in history or [trial.last_result]:
                    self.observe(trial.trial_id, result=result)

    def sync_new(self, trials: Sequence[Any]) -> None:
        """:meth:`sync` for the trials appended to Ray's trial list since the last call.

        Ray only appends to it, so a hook that runs per result or per trial stays O(1) where a
        full sync is O(trials) (O(n²) over a study); statuses of known trials need :meth:`sync`.
        """
        start = getattr(self, "_listed", 0)
        self.sync(trials[start:] if start <= len(trials) else trials)
        self._listed = len(trials)

    def rows(self) -> list[dict[str, Any]]:
        """One row per trial, in the order Ray created them."""
        return [record.row(self.objectives) for record in self._trials.values()]

    def write_csv(self, path: str | os.PathLike) -> Path:
        """Writes the rows to ``path`` atomically (a reader never sees half a file)."""
        return _write_rows_csv(self.rows(), Path(path))


def best_value(row: Mapping[str, Any], objective: Objective) -> float | None:
    """A row's best value of ``objective``; ``None`` while the trial has not reported it."""
    value = row.get(f"best/{objective[0]}")
    return value if isinstance(value, (int, float)) and not math.isnan(value) else None


def _rank_key(row: Mapping[str, Any], objective: Objective) -> tuple[bool, bool, float]:
    """Sorts rows best first: errored trials after all others, within each group those without a value last."""
    value = best_value(row, objective)
    return row.get("status") == "ERROR", value is None, (-1.0 if objective[1] == "max" else 1.0) * (value or 0.0)


def rank_rows(rows: list[dict[str, Any]], objective: Objective) -> list[dict[str, Any]]:
    """Rows by their best value of ``objective``, best first; errored trials after all others,
    and within each group trials without a value last."""
    return sorted(rows, key=lambda row: _rank_key(row, objective))


def best_rows_by_cell(rows: list[dict[str, Any]], objective: Objective) -> dict[str, dict[str, Any] | None]:
    """The best row of each cell by ``objective`` (``None`` while no trial of it reported), ranked
    as :func:`rank_rows` ranks them; one pass, no sort (the live status line calls it often)."""
    cells: dict[str, tuple[tuple[bool, bool, float], dict[str, Any]] | None] = {}
    for row in rows:
        best = cells.setdefault(row["cell"], None)
        if best_value(row, objective) is not None:
            key = _rank_key(row, objective)
            if best is None or key < best[0]:  # ties: the earlier row, as the stable sort keeps it
                cells[row["cell"]] = (key, row)
    return {cell: best[1] if best else None for cell, best in cells.items()}


def _columns(rows: list[dict[str, Any]]) -> list[str]:
    keys = list(dict.fromkeys(k for row in rows for k in row))
    config = sorted(k for k in keys if k.startswith("config/"))
    metrics = [k for k in keys if k not in ID_COLUMNS and not k.startswith(("config/", "last/"))]
    last = sorted(k for k in keys if k.startswith("last/"))
    return [*ID_COLUMNS, *config, *metrics, *last]


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, (list, dict)):
        return json.dumps(value, default=str)
    return value


def _write_rows_csv(rows: list[dict[str, Any]], path: Path) -> Path:
    columns = _columns(rows)

    with atomic_open(path, newline="") as handle:  # a reader never sees half a table
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows({c: _cell(row.get(c)) for c in columns} for row in rows)
    return path


def load_trials_table(study_dir: str | os.PathLike, objectives: Any) -> TrialsTable:
    """Rebuilds the table from a study directory's files alone.

    Trials and their statuses come from Ray's newest experiment state; each trial's results
    from its ``result.json`` (its last result when that file is missing). Trial folders that
    the state does not list yet (created after its last snapshot) are added from their
    ``params.json``, finished when their last result says ``done``.
    """
    study_dir = Path(study_dir)
    table = TrialsTable(objectives)
    state = newest_experiment_state(study_dir) or {}
    listed: set[str] = set()
    for trial, meta in recorded_trials(state.get("trial_data", [])):
        trial_id = trial.get("trial_id")
        if not trial_id:
            continue
        folder = trial.get("relative_logdir") or ""
        listed.add(folder)
        config = recorded_config(trial)
        table.observe(trial_id, config=config, status=trial.get("status") or "PENDING")
        history = _read_results(study_dir / folder / RESULT_FILE) if folder else []
        last = (meta or {}).get("last_result") or {}
        for result in history or ([last] if "training_iteration" in last else []):
            table.observe(trial_id, result=result)
    for params in sorted(study_dir.glob("*/params.json")):
        if params.parent.name in listed:
            continue
        history = _read_results(params.parent / RESULT_FILE)
        trial_id = (history[-1].get("trial_id") if history else None) or params.parent.name
        try:
            config = json.loads(params.read_text())
        except (OSError, ValueError):
            config = {}
        status = "TERMINATED" if history and history[-1].get("done") else ("RUNNING" if history else "PENDING")
        table.observe(trial_id, config=config, status=status)
        for result in history:
            table.observe(trial_id, result=result)
    return table


def write_trials_csv(study_dir: str | os.PathLike, objectives: Any) -> Path:
    """Rebuilds ``<study_dir>/trials.csv`` from the files on disk; returns its path."""
    return load_trials_table(study_dir, objectives).write_csv(Path(study_dir) / TRIALS_FILE)


class TrialsTableCallback(tune.Callback):
    """Keeps ``<study_dir>/trials.csv`` and the driver heartbeat current while a study runs.

    ``trials.csv`` is rewritten at most every ``min_interval_s`` (results, trials ending or
    erroring), and at experiment end; the first change after a quiet spell is written at once.
    A rewrite costs time in proportion to the trials, so the interval also grows with the last
    rewrite's cost: rewriting takes at most ``max_write_share`` of the time, whatever the
    study's size (a whole rewrite on every result would make a study of n trials cost O(n²)).
    The loop only takes the rows (cached per trial); the file is written on a background lane
    (at 10,000 trials a rewrite took 0.7-0.9 s, during which Ray processed no result), one
    rewrite at a time; the last one, at experiment end, waits for it. The heartbeat is rewritten every
    ``heartbeat_interval_s``; at experiment end it says ``finished`` or ``interrupted``.
    Writes go straight to the study directory (not Ray's staging copy), so the file is as
    fresh as the driver. Picklable: it holds no files, locks or clocks that matter across
    processes; after ``Tuner.restore`` it rebuilds its rows from the trials Ray restored.

    Args:
        study_dir: The study directory (local or mounted storage).
        objectives: ``(metric, mode)`` pairs, the primary first (or ``ObjectiveSpec``s).
        min_interval_s: Least time between two rewrites on results.
        heartbeat_interval_s: Time between two heartbeats.
        max_write_share: Largest share of the driver's time that rewriting ``trials.csv`` may take.
    """

    def __init__(
        self,
        study_dir: str | os.PathLike,
        objectives: Any,
        min_interval_s: float = 1.0,
        heartbeat_interval_s: float = 5.0,
        max_write_share: float = 0.05,
    ) -> None:
        self.study_dir = Path(study_dir)
        self.table = TrialsTable(objectives)
        self.min_interval_s = min_interval_s
        self.heartbeat_interval_s = heartbeat_interval_s
        self.max_write_share = max_write_share
        self._reset_clocks()

    def _reset_clocks(self) -> None:
        self._started: float | None = None
        self._last_write = self._last_beat = self._last_sync = float("-inf")
        self._write_cost_s = 0.0  # how long the last rewrite took
        self._dirty = False
        self._warned = False
        self._lane: Background | None = None  # writes trials.csv off the driver's loop
        self._writing = False  # a rewrite is queued or running on the lane

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_lane"}  # the Tuner pickles its callbacks: no thread

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update({"max_write_share": 0.05, **state})  # pickled before it existed
        self._reset_clocks()

    def _safely(self, action: Callable[..., Any], *args: Any) -> None:
        try:
            action(*args)
        except OSError as err:  # a full disk or an NFS hiccup must not stop the study
            if not self._warned:
                log.warning("corrotune could not update %s: %s", self.study_dir, err)
                self._warned = True

    def _beat(self, state: str) -> None:
        self._last_beat = time.monotonic()
        self._safely(write_heartbeat, self.study_dir, state, self._started)

    def wait_written(self, timeout_s: float | None = None) -> bool:
        """Waits for the rewrite of trials.csv on the background lane, if one is queued or running; False on timeout."""
        return self._lane is None or self._lane.drain(timeout_s)

    def _write(self) -> None:
        """Rewrites trials.csv now, on the caller's thread (after any rewrite still on the lane)."""
        self.wait_written()
        self._dirty = False
        self._write_rows(self.table.rows())

    def _write_in_background(self) -> None:
        if self._writing:
            return  # still dirty: the next hook after that rewrite writes again
        if self._lane is None:
            self._lane = Background("trials-table")
        self._dirty, self._writing = False, True
        self._lane.submit(functools.partial(self._write_rows, self.table.rows()))  # rows are rebuilt, never changed

    def _write_rows(self, rows: list[dict[str, Any]]) -> None:
        started = time.monotonic()
        try:
            self._safely(_write_rows_csv, rows, self.study_dir / TRIALS_FILE)
        finally:
            self._last_write = time.monotonic()
            self._write_cost_s = self._last_write - started
            self._writing = False

    def write_interval_s(self) -> float:
        """Least time from the end of one rewrite to the next: ``min_interval_s``, longer once a
        rewrite costs more than ``max_write_share`` of that."""
        return max(self.min_interval_s, self._write_cost_s * (1.0 / self.max_write_share - 1.0))

    def _maybe_write(self) -> None:
        if self._dirty and time.monotonic() - self._last_write >= self.write_interval_s():
            self._write_in_background()
        if time.monotonic() - self._last_beat >= self.heartbeat_interval_s:
            self._beat("running")

    def setup(self, **info: Any) -> None:
        self._started = time.time()
        self._beat("running")

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        # Tune steps many times per trial: catch up with new trials and statuses once a second
        if time.monotonic() - self._last_sync >= self.min_interval_s:
            self._last_sync = time.monotonic()
            before = self.table.status_counts(), len(self.table)
            self.table.sync(trials)
            self._dirty |= (self.table.status_counts(), len(self.table)) != before
        self._maybe_write()

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        # trials new to the table first, so rows keep the order Ray created the trials in
        self.table.sync_new(trials)
        self.table.sync([trial])
        # the config too: PBT changes it when a trial exploits another
        self.table.observe(trial.trial_id, config=trial.config, status="RUNNING", result=result)
        self._dirty = True
        self._maybe_write()

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.table.sync([trial])
        self.table.observe(trial.trial_id, status="TERMINATED")  # Ray sets it after the callbacks
        self._dirty = True
        self._maybe_write()

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.table.sync([trial])
        self.table.observe(trial.trial_id, status="ERROR")
        self._dirty = True
        self._maybe_write()

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self.table.sync(trials, statuses=False)
        self._write()
        finished = set(self.table.status_counts()) <= FINAL_STATUSES
        self._beat("finished" if finished else "interrupted")
