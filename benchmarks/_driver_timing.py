"""Times the work Ray Tune's driver loop does per result, per callback and hook (for trial_overhead.py).

While :func:`driver_timing` is active, every ``TuneController._process_trial_result`` (what Ray's
``process_trial_result`` warning times: scheduler, searcher, callbacks, checkpoint bookkeeping),
the searcher's and scheduler's ``on_trial_result``, every hook of every callback
(``CallbackList``), and the experiment-state snapshots (``TuneController.checkpoint``) are timed
with ``time.perf_counter``. :meth:`DriverTiming.summary` gives p50/p99/max in milliseconds.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections import defaultdict
from typing import Any, Callable, Iterator

import numpy as np

__all__ = ["DriverTiming", "driver_timing"]

HOOKS = ("on_step_begin", "on_step_end", "on_trial_start", "on_trial_restore", "on_trial_save", "on_trial_result",
         "on_trial_complete", "on_trial_recover", "on_trial_error", "on_checkpoint", "setup", "on_experiment_end")


def _stats(samples: list[float]) -> dict[str, float]:
    ms = np.asarray(samples) * 1000.0
    return {"n": int(ms.size), "p50_ms": round(float(np.percentile(ms, 50)), 3), "p99_ms": round(float(np.percentile(ms, 99)), 3),
            "max_ms": round(float(ms.max()), 3), "total_s": round(float(ms.sum()) / 1000.0, 3)}


class DriverTiming:
    """Samples (seconds) by name: ``process_trial_result``, ``callbacks.on_trial_result`` (all callbacks of one
    result together), ``<Callback>.<hook>``, ``search_alg.on_trial_result``, ``scheduler.on_trial_result``,
    ``experiment_checkpoint``."""

    def __init__(self) -> None:
        self.samples: dict[str, list[float]] = defaultdict(list)

    def timed(self, name: str, call: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(call)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return call(*args, **kwargs)
            finally:
                self.samples[name].append(time.perf_counter() - started)

        return wrapper

    def summary(self) -> dict[str, Any]:
        """``{"per_result": stats of process_trial_result, "callbacks_per_result": ..., "by_name": {...}}``."""
        by_name = {name: _stats(samples) for name, samples in sorted(self.samples.items()) if samples}
        return {
            "per_result": by_name.get("process_trial_result"),
            "callbacks_per_result": by_name.get("callbacks.on_trial_result"),
            "by_name": by_name,
        }


@contextlib.contextmanager
def driver_timing() -> Iterator[DriverTiming]:
    """Patches Ray Tune's driver classes for the duration; yields the collected :class:`DriverTiming`."""
    from ray.tune.callback import CallbackList
    from ray.tune.execution.tune_controller import TuneController

    timing = DriverTiming()
    originals: list[tuple[Any, str, Any]] = []

    def patch(owner: Any, name: str, replacement: Any) -> None:
        originals.append((owner, name, owner.__dict__[name]))
        setattr(owner, name, replacement)

    def hook_over_callbacks(hook: str) -> Callable[..., Any]:
        def call_each(self: CallbackList, **info: Any) -> None:
            started = time.perf_counter()
            for callback in self._callbacks:
                timing.timed(f"{type(callback).__name__}.{hook}", getattr(callback, hook))(**info)
            timing.samples[f"callbacks.{hook}"].append(time.perf_counter() - started)

        return call_each

    for hook in HOOKS:
        if hook in CallbackList.__dict__:
            patch(CallbackList, hook, hook_over_callbacks(hook))

    process = TuneController.__dict__["_process_trial_result"]

    def process_trial_result(self: TuneController, trial: Any, result: dict) -> Any:
        for attr, name in (("_search_alg", "search_alg.on_trial_result"), ("_scheduler_alg", "scheduler.on_trial_result")):
            algorithm = getattr(self, attr)
            if not getattr(algorithm.on_trial_result, "_timed", False):
                wrapped = timing.timed(name, algorithm.on_trial_result)
                wrapped._timed = True  # type: ignore[attr-defined]
                algorithm.on_trial_result = wrapped
        return timing.timed("process_trial_result", process)(self, trial, result)

    patch(TuneController, "_process_trial_result", process_trial_result)
    patch(TuneController, "checkpoint", timing.timed("experiment_checkpoint", TuneController.__dict__["checkpoint"]))
    try:
        yield timing
    finally:
        for owner, name, original in reversed(originals):
            setattr(owner, name, original)
