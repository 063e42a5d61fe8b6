"""A one-line-per-event progress printer, as a Ray Tune callback."""

from __future__ import annotations

import time
from typing import Any

from ray import tune
from rich.console import Console

__all__ = ["ProgressPrinter"]


class ProgressPrinter(tune.Callback):
    """Prints each trial result (epoch, objective, best so far) and each trial's end.

    Args:
        metric: The study objective.
        mode: ``max`` or ``min``.
        console: Where to print (stderr keeps stdout clean for scripts).
    """

    def __init__(self, metric: str, mode: str, console: Console | None = None) -> None:
        self.metric = metric
        self.mode = mode
        self.console = console or Console(stderr=True)
        self.best: float | None = None
        self.started = time.monotonic()

    def __getstate__(self) -> dict[str, Any]:  # the Tuner pickles its callbacks
        state = self.__dict__.copy()
        state["console"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.console = Console(stderr=True)
        self.started = time.monotonic()

    def _is_better(self, value: float) -> bool:
        return self.best is None or (value > self.best if self.mode == "max" else value < self.best)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        value = result.get(self.metric)
        marker = ""
        if isinstance(value, (int, float)) and self._is_better(value):
            self.best, marker = float(value), "  [green]new best[/green]"
        shown = f"{value:.4f}" if isinstance(value, (int, float)) else "-"
        elapsed = time.monotonic() - self.started
        self.console.print(
            f"[dim]{elapsed:7.1f}s[/dim] trial {trial.trial_id} epoch {result.get('training_iteration')}: "
            f"{self.metric}={shown} train/loss={result.get('train/loss', float('nan')):.4f}{marker}"
        )

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        done = sum(t.status == "TERMINATED" for t in trials)
        self.console.print(f"trial {trial.trial_id} finished ({done}/{len(trials)} trials done)")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.console.print(f"[red]trial {trial.trial_id} errored[/red]: see {trial.path}/error.txt")
