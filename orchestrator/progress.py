"""Live progress of a study, as a Ray Tune callback.

On a terminal one ``rich`` status line, redrawn in place (at most twice a second), shows the
trials done / running / errored, the time so far, the ETA and the best trial of each ablation
cell; a trial that fails or errors gets a line of its own above it::

    Study  12/24 done · 3 running · 0 errored · 2m05s · ETA 4m10s · best val/accuracy: attention=eca 0.9120 (a1b2_00003) | ...

Elsewhere (CI, a redirected console) it prints one line per event and, every few finished
trials or every half minute, a summary line. With a ``log_path`` (the runner's
``<study>/corrotune.log``) every event and summary line also goes there, plain and
timestamped, on a terminal too. The ETA is the study's epoch budget at the pace so far, capped
by its time budget::

    12/24 done, 3 running, 0 errored, ETA 4m10s; best val/accuracy per cell: attention=eca 0.912 (a1b2_00003), ...

Everything here runs on Ray Tune's driver loop, so it stays cheap: the status line is rebuilt
only when it is redrawn, and the log file is appended to, never rewritten.
"""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from pathlib import Path
from typing import IO, Any

from ray import tune
from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.text import Text

from orchestrator.trials_table import TrialsTable, best_rows_by_cell, best_value

__all__ = ["LOG_FILE", "ProgressPrinter"]

LOG_FILE = "corrotune.log"
"""The study folder's log: the progress lines, plain and timestamped (the runner passes ``<study>/corrotune.log``)."""

logger = logging.getLogger(__name__)

SUMMARY_SHARE = 0.01
"""Most of the driver's time that summaries after ``summary_every`` ended trials may take (each reads every trial)."""


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) else "-"


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{seconds:02d}s" if hours else f"{minutes}m{seconds:02d}s"


class _PlainLog:
    """Appends timestamped plain lines to a file; a failing disk costs one warning, never the study."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._handle: IO[str] | None = None
        self._failed = False

    def write(self, line: str) -> None:
        if self._failed:
            return
        try:
            if self._handle is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._handle = self.path.open("a", encoding="utf-8", buffering=1)  # line-buffered: a crash keeps every line
            self._handle.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}\n")
        except OSError as err:
            self._failed = True
            logger.warning("corrotune could not write its log %s: %s", self.path, err)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


class ProgressPrinter(tune.Callback):
    """Shows a study's progress: a live status line on a terminal, event and summary lines elsewhere.

    Args:
        objectives: ``(metric, mode)`` pairs (or ``ObjectiveSpec``s); the first ranks trials.
        console: Where to print (stderr keeps stdout clean for scripts).
        live: Live status line (``True``) or lines (``False``); by default live on a terminal.
        summary_every: A summary line (console without the live line; log file always) after
            this many trials end...
        summary_interval_s: ...or after this many seconds, whichever comes first. Summaries
            after ended trials are spaced out so that they take at most ``SUMMARY_SHARE`` of
            the time (a summary costs in proportion to the trials).
        events_shown: Recent events kept (``events``), the last one shown on the status line.
        epochs_per_trial: Epochs a trial runs at most (the study's ``params.epochs``): the ETA
            counts epochs, not just ended trials, when given.
        time_budget_s: The study's ``stop.time_budget_s``: the ETA never passes its end.
        log_path: Also append every event and summary line here, plain and timestamped.
        refresh_interval_s: Least time between two redraws of the status line.
        table: Read this table, fed by another callback that runs before this one (the
            study's :class:`~orchestrator.trials_table.TrialsTableCallback`), instead of
            keeping one of its own: one copy of every trial's rows, and their full syncs once
            a second, not two.

    The earlier form ``ProgressPrinter(metric, mode, console)`` still works.
    """

    def __init__(
        self,
        objectives: Any,
        console: Console | str | None = None,
        _legacy_console: Console | None = None,
        *,
        live: bool | None = None,
        summary_every: int = 5,
        summary_interval_s: float = 30.0,
        events_shown: int = 6,
        epochs_per_trial: int | None = None,
        time_budget_s: float | None = None,
        log_path: str | os.PathLike | None = None,
        refresh_interval_s: float = 0.5,
        table: TrialsTable | None = None,
    ) -> None:
        if isinstance(console, str):  # the earlier ProgressPrinter(metric, mode, console) call
            objectives, console = [(objectives, console)], _legacy_console
        self._feeds = table is None  # keeps its own table up to date; else reads one fed before it
        self.table = TrialsTable(objectives) if table is None else table
        self.objectives = self.table.objectives
        self.console = console or Console(stderr=True)
        self.prefer_live = live
        self.summary_every = summary_every
        self.summary_interval_s = summary_interval_s
        self.events: deque[str] = deque(maxlen=events_shown)
        self.epochs_per_trial = epochs_per_trial if epochs_per_trial and epochs_per_trial > 0 else None
        self.time_budget_s = time_budget_s
        self.log_path = Path(log_path) if log_path is not None else None
        self.refresh_interval_s = refresh_interval_s
        self.best: float | None = None
        self.total = 0
        self._reset_clocks()

    def _reset_clocks(self) -> None:
        self.started = self._last_summary = self._last_refresh = time.monotonic()
        self._last_sync = float("-inf")
        self._summary_cost_s = 0.0  # how long the last summary took
        self._ended_since_summary = 0
        self._last_summary_text = ""
        self._live: Live | None = None
        self._log: _PlainLog | None = None

    def __getstate__(self) -> dict[str, Any]:  # the Tuner pickles its callbacks
        state = self.__dict__.copy()
        state["console"] = state["_live"] = state["_log"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        if "table" not in state:  # pickled (in a study's tuner.pkl) by the earlier one-line printer
            self.__init__([(state["metric"], state["mode"])])
            self.best = state.get("best")
            return
        # pickled before the ETA, or before the status line and its log file
        self.__dict__.update({"epochs_per_trial": None, "time_budget_s": None, "log_path": None, "refresh_interval_s": 0.5,
                              "_feeds": True, **state})
        self.console = Console(stderr=True)
        self._reset_clocks()

    @property
    def _is_live(self) -> bool:
        return self.console.is_terminal if self.prefer_live is None else self.prefer_live

    # ---- what is shown

    def counts(self) -> dict[str, int]:
        """Trials by state: ``total`` (planned where known), ``done``, ``running``, ``pending``, ``errored``."""
        statuses = self.table.status_counts()
        return {
            "total": max(self.total, len(self.table)),
            "done": statuses["TERMINATED"],
            "running": statuses["RUNNING"],
            "pending": statuses["PENDING"] + statuses["PAUSED"],
            "errored": statuses["ERROR"],
        }

    def eta_s(self) -> float | None:
        """Seconds until the study's budget is spent at the pace so far (None: nothing to go by yet).

        The budget is every planned trial's epochs (a trial that ended, early stopped or errored,
        counts whole), or the planned trials when the epochs are unknown; the study's time budget
        caps it.
        """
        elapsed = time.monotonic() - self.started
        left_in_budget = None if self.time_budget_s is None else max(self.time_budget_s - elapsed, 0.0)
        total = self.counts()["total"]
        per_trial = self.epochs_per_trial or 1
        done = 0.0
        for row in self.table.rows():
            if row["status"] in ("TERMINATED", "ERROR"):
                done += per_trial
            elif self.epochs_per_trial and row.get(f"best/{self.objectives[0][0]}") is not None:
                # a running trial's epochs once it reported its objective (Ray's placeholder
                # result of a trial that just started counts as an epoch in the table)
                done += min(row.get("epochs") or 0, per_trial)
        if not total or done <= 0:
            return left_in_budget
        estimate = elapsed * max(total * per_trial - done, 0.0) / done
        return estimate if left_in_budget is None else min(estimate, left_in_budget)

    def _eta_text(self) -> str:
        c = self.counts()
        if c["done"] + c["errored"] >= c["total"]:
            return ""  # nothing left to wait for
        eta = self.eta_s()
        return "" if eta is None else f", ETA {_duration(eta)}"

    def summary(self) -> str:
        """One line: trials by state and the best trial of each cell so far."""
        c = self.counts()
        objective = self.objectives[0]
        cells = best_rows_by_cell(self.table.rows(), objective)
        best = ", ".join(
            f"{cell} {_fmt(best_value(row, objective))} ({row['trial_id']})" if row else f"{cell} -"
            for cell, row in cells.items()
        )
        return (
            f"{c['done']}/{c['total']} done, {c['running']} running, {c['errored']} errored{self._eta_text()}"
            + (f"; best {objective[0]} per cell: {best}" if best else "")
        )

    def render(self) -> Text:
        """The live status line: trials by state, time so far, ETA, the best trial of each cell."""
        c = self.counts()
        metric, mode = self.objectives[0]
        line = Text.assemble(
            ("Study  ", "bold"),
            f"{c['done']}/{c['total']} done · {c['running']} running · ",
            (f"{c['errored']} errored", "red" if c["errored"] else ""),
            f" · {_duration(time.monotonic() - self.started)}",
            self._eta_text().replace(", ", " · ", 1),
            no_wrap=True,
            overflow="ellipsis",
        )
        cells = best_rows_by_cell(self.table.rows(), (metric, mode))
        best = " | ".join(
            f"{cell} {_fmt(best_value(row, (metric, mode)))} ({row['trial_id']})" if row else f"{cell} -"
            for cell, row in cells.items()
        )
        if best:
            line.append(f" · best {metric}: {best}")
        return line

    # ---- output

    def _to_log(self, plain: str) -> None:
        if self.log_path is None:
            return
        if self._log is None:
            self._log = _PlainLog(self.log_path)
        self._log.write(plain)

    def _event(self, line: str, notable: bool = False, plain: str | None = None) -> None:
        """An event line: the log file always; on a terminal only a ``notable`` one (failures,
        errors) gets its own line above the status line, elsewhere every one is printed.

        ``plain``: the line without its markup, where the caller has it (two events per trial:
        parsing the markup back cost more than the rest of the hook).
        """
        plain = Text.from_markup(line).plain if plain is None else plain
        self.events.append(plain)
        self._to_log(plain)
        if not self._is_live:
            if not self.console.quiet:  # rich renders a line even for a quiet console, then drops it
                self.console.print(line, highlight=False, soft_wrap=True)
            return
        if notable:
            self.console.print(line, highlight=False, soft_wrap=True)  # above the live line
        self._refresh(force=notable)

    def _refresh(self, force: bool) -> None:
        if self._live is None or (not force and time.monotonic() - self._last_refresh < self.refresh_interval_s):
            return
        self._last_refresh = time.monotonic()
        self._live.update(self.render(), refresh=True)

    def _maybe_summary(self) -> None:
        since = time.monotonic() - self._last_summary
        due = since >= self.summary_interval_s
        if (self._is_live and self.log_path is None) or not (due or self._ended_since_summary >= self.summary_every):
            return
        if not due and since < self._summary_cost_s * (1.0 / SUMMARY_SHARE - 1.0):
            return  # a summary reads every trial: at thousands of trials ending each second, fewer of them
        self._print_summary()

    def _print_summary(self) -> None:
        started = time.monotonic()
        self._ended_since_summary = 0
        self._last_summary_text = self.summary()
        self._last_summary = time.monotonic()
        self._summary_cost_s = self._last_summary - started
        self._to_log(self._last_summary_text)
        if not self._is_live:
            self.console.print(self._last_summary_text, markup=False, highlight=False, soft_wrap=True)

    def close(self) -> None:
        """Stops the live line (leaving its last view) and closes the log file; safe to call twice."""
        if self._live is not None:
            self._live.update(self.render(), refresh=True)
            self._live.stop()
            self._live = None
        if self._log is not None:
            self._log.close()
            self._log = None

    # ---- Ray Tune hooks

    def setup(self, total_num_samples: int | None = None, **info: Any) -> None:
        self.total = max(total_num_samples or 0, 0)
        self.started = self._last_summary = time.monotonic()
        if self._is_live and self._live is None:
            # no auto-refresh thread: the view is redrawn from the hooks below
            self._live = Live(self.render(), console=self.console, auto_refresh=False)
            self._live.start()

    def _catch_up(self, trials: list) -> None:
        """Adds Ray's new trials to the table; syncs every status at most once a second
        (Tune steps several times per trial; syncing every step is quadratic in the trials)."""
        if not self._feeds:
            return
        if time.monotonic() - self._last_sync >= 1.0:
            self._last_sync = time.monotonic()
            self.table.sync(trials)
        self.table.sync_new(trials)

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        self._catch_up(trials)
        if self._is_live and time.monotonic() - self._last_refresh >= 1.0:
            self._refresh(force=True)  # the clock on the line moves on
        self._maybe_summary()

    def _plain_label(self, trial: Any) -> str:
        row_cell = ((trial.config or {}).get("corrotune") or {}).get("cell")
        return f"trial {trial.trial_id}" + (f" [{row_cell}]" if row_cell and row_cell != "base" else "")

    def _label(self, trial: Any) -> str:
        return escape(self._plain_label(trial))

    def _observe(self, trial: Any, **seen: Any) -> None:
        if self._feeds:
            self.table.observe(trial.trial_id, **seen)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        if self._feeds:
            self.table.sync([trial])
        self._observe(trial, config=trial.config, status="RUNNING", result=result)
        primary, mode = self.objectives[0]
        value = result.get(primary)
        new_best = isinstance(value, (int, float)) and (
            self.best is None or (value > self.best if mode == "max" else value < self.best)
        )
        if new_best:
            self.best = float(value)
        shown = " ".join(f"{m}={_fmt(result.get(m))}" for m, _ in self.objectives)
        if "train/loss" in result and "train/loss" not in dict(self.objectives):
            shown += f" train/loss={_fmt(result['train/loss'])}"
        epoch = result.get("epoch", result.get("training_iteration"))
        elapsed, label = time.monotonic() - self.started, self._plain_label(trial)
        self._event(f"[dim]{elapsed:7.1f}s[/dim] {escape(label)} epoch {epoch}: {escape(shown)}" + ("  [green]new best[/green]" if new_best else ""),
                    plain=f"{elapsed:7.1f}s {label} epoch {epoch}: {shown}" + ("  new best" if new_best else ""))

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._catch_up(trials)
        self._observe(trial, status="TERMINATED")  # Ray sets it after the callbacks
        self._ended_since_summary += 1
        c = self.counts()
        line = f"{self._plain_label(trial)} finished ({c['done']}/{c['total']} trials done)"
        self._event(escape(line), plain=line)
        self._maybe_summary()

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        # one line per retry; the error itself is shown once, when the study ends
        self._event(f"[yellow]{self._label(trial)} failed[/yellow] (failure {trial.num_failures}); Ray retries it", notable=True)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._catch_up(trials)
        self._observe(trial, status="ERROR")
        self._ended_since_summary += 1
        failures = f" after {trial.num_failures} failures" if trial.num_failures > 1 else ""
        # the error itself is summarised once when the study ends
        self._event(f"[red]{self._label(trial)} errored[/red]{failures}; full log: {escape(str(trial.path))}/error.txt", notable=True)
        self._maybe_summary()

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        if self._feeds:
            self.table.sync(trials, statuses=False)
        if self.summary() != self._last_summary_text and (self.log_path is not None or not self._is_live):
            self._print_summary()
        self.close()
