"""Ray's retries, stopped for a trial that fails again before it reports anything.

Ray's ``FailureConfig(max_failures=N)`` retries a failed trial from its last checkpoint up to N
times: right for a preempted or lost node, wasted on a configuration or data error, which fails
the same way on every try. :class:`StopRepeatedFailures` is a Tune callback that keeps Ray's
retry loop (we write none) and narrows its limit for one trial: after a failure that came
before the attempt reported anything, the trial's ``max_failures`` is lowered to its failure
count, so Ray's own check at the next failure ends it if that failure, too, comes before a
report. A result in between gives the trial back the study's limit. Only the trial's own
exceptions count: a worker or node that died (out of memory, lost, preempted) is retried as
Ray always does.

Ray decides on a retry inside the failure handling, with no callback before it, so the second
failure cannot be compared with the first before Ray's decision; the callback says afterwards
whether it was the same (type and message) or not.

Example:
    >>> tune.RunConfig(callbacks=[StopRepeatedFailures(max_failures=3, log=print)], ...)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from ray import cloudpickle, tune

from orchestrator._trial_errors import summarize_error

__all__ = ["StopRepeatedFailures"]


def _last_failure(trial: Any) -> tuple[bool, tuple[str, str] | None]:
    """Whether the trial's last failure was its own exception, and its ``(type, message)``.

    Read from the files Ray has just written beside the trial (``error.pkl``, else ``error.txt``).
    A worker or node that died, ran out of memory or lost its objects is not the trial's own.
    """
    from ray.exceptions import RayError, RayTaskError

    error = None
    try:
        with open(trial.pickled_error_file, "rb") as handle:
            error = cloudpickle.load(handle)
    except Exception:  # noqa: BLE001 - missing, or a class the driver cannot import: read the text
        pass
    text = None
    if error is None:
        try:
            text = Path(trial.error_file).read_text(errors="replace").rsplit("Failure # ", 1)[-1]
        except (OSError, TypeError):
            return False, None
    own = error is None or (isinstance(error, RayTaskError) and not isinstance(getattr(error, "cause", None), RayError))
    summary = summarize_error(error, "", text=text)
    return own, (summary.kind, summary.message)


class StopRepeatedFailures(tune.Callback):
    """Ends a trial at its second failure in a row that came before any report.

    Args:
        max_failures: The study's ``failure.max_failures`` (given back to a trial that reports).
        log: Where to say that a trial is not retried again.
    """

    def __init__(self, max_failures: int, log: Callable[[str], None] | None = None) -> None:
        self.max_failures = max_failures
        self.log = log
        self._reported: set[str] = set()  # trials that reported since they last failed
        self._first: dict[str, tuple[str, str] | None] = {}  # trials on their last try: the failure before it

    def __getstate__(self) -> dict[str, Any]:  # the Tuner pickles its callbacks; no session state
        return {**self.__dict__, "log": None, "_reported": set(), "_first": {}}

    def __setstate__(self, state: dict[str, Any]) -> None:  # restored by `corrotune resume`
        from rich.console import Console

        self.__dict__.update(state)
        console = Console(stderr=True)
        self.log = lambda line: console.print(line, markup=False, highlight=False, soft_wrap=True)

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        if trial.trial_id not in self._first:  # a limit lowered in an earlier session does not carry over
            trial.max_failures = self.max_failures

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        self._reported.add(trial.trial_id)
        if trial.trial_id in self._first:  # it made progress: the full number of retries again
            del self._first[trial.trial_id]
            trial.max_failures = self.max_failures

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        reported = trial.trial_id in self._reported
        self._reported.discard(trial.trial_id)
        if reported or self.max_failures == 0:
            return
        own, signature = _last_failure(trial)
        if not own:  # a lost worker or node: Ray retries it as always
            return
        self._first[trial.trial_id] = signature
        trial.max_failures = min(trial.num_failures, self.max_failures)  # Ray's check: failures <= max_failures

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._reported.discard(trial.trial_id)
        if trial.trial_id not in self._first:
            return
        first = self._first.pop(trial.trial_id)
        trial.max_failures = self.max_failures
        if self.log is not None and trial.num_failures <= self.max_failures:
            same = first is not None and first == _last_failure(trial)[1]
            how = "the same error as before" if same else "a different error than before"
            self.log(f"trial {trial.trial_id} failed again before reporting anything ({how}): not retried further "
                     f"(a configuration or data error, not a preemption; `corrotune resume` tries errored trials again)")
