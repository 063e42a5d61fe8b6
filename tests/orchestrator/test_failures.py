"""Ray's retries stop for a trial that fails again before it reported anything."""

from __future__ import annotations

from pathlib import Path

import pytest
from ray import cloudpickle
from ray.exceptions import ActorDiedError, RayTaskError

from orchestrator._failures import StopRepeatedFailures
from orchestrator._spec_models import MAX_RETRIES
from orchestrator.spec import StudyError, validate_study


class _Trial:
    """What the callback reads of Ray's Trial; ``fail`` does what Ray's handle_error does."""

    def __init__(self, folder: Path, max_failures: int):
        self.trial_id, self.max_failures, self.num_failures = "t1", max_failures, 0
        self.pickled_error_file, self.error_file = str(folder / "error.pkl"), str(folder / "error.txt")

    def fail(self, error: Exception) -> bool:
        """Records a failure; returns whether Ray would retry (Trial.should_recover)."""
        self.num_failures += 1
        Path(self.pickled_error_file).write_bytes(cloudpickle.dumps(error))
        return self.num_failures <= self.max_failures or self.max_failures < 0


def _user_error(message: str) -> RayTaskError:
    return RayTaskError("train", f'  File "/p/trainables/noop.py", line 63, in train\nValueError: {message}', ValueError(message)).as_instanceof_cause()


def _drive(callback, trial, events) -> list[str]:
    """Plays ``("fail", error)`` / ``("report",)`` events through the callback as Ray would; returns the outcome."""
    outcome = []
    callback.on_trial_start(0, [], trial)
    for event in events:
        if event[0] == "report":
            callback.on_trial_result(0, [], trial, {})
            continue
        if trial.fail(event[1]):
            callback.on_trial_recover(0, [], trial)
            callback.on_trial_start(0, [], trial)
            outcome.append("retried")
        else:
            callback.on_trial_error(0, [], trial)
            outcome.append("ERROR")
            break
    return outcome


def test_a_trial_failing_twice_before_reporting_is_not_retried_again(tmp_path):
    lines = []
    trial = _Trial(tmp_path, max_failures=5)
    bad = _user_error("Expected more than 1 value per channel")
    assert _drive(StopRepeatedFailures(5, lines.append), trial, [("fail", bad), ("fail", bad), ("fail", bad)]) == ["retried", "ERROR"]
    assert trial.num_failures == 2 and "failed again before reporting anything (the same error as before)" in lines[0]


def test_a_different_second_error_is_said_to_be_different(tmp_path):
    lines = []
    trial = _Trial(tmp_path, max_failures=5)
    events = [("fail", _user_error("one")), ("fail", _user_error("two"))]
    assert _drive(StopRepeatedFailures(5, lines.append), trial, events) == ["retried", "ERROR"]
    assert "(a different error than before)" in lines[0]


def test_a_trial_that_reports_between_failures_keeps_every_retry(tmp_path):
    trial = _Trial(tmp_path, max_failures=3)
    bad = _user_error("diverged")
    events = [("report",), ("fail", bad), ("report",), ("fail", bad), ("report",), ("fail", bad), ("report",), ("fail", bad)]
    assert _drive(StopRepeatedFailures(3), trial, events) == ["retried", "retried", "retried", "ERROR"]
    assert trial.num_failures == 4  # Ray's own limit: 3 retries


def test_a_progress_after_a_failure_gives_back_the_full_limit(tmp_path):
    trial = _Trial(tmp_path, max_failures=5)
    bad = _user_error("x")
    events = [("fail", bad), ("report",), ("fail", bad), ("fail", bad), ("fail", bad), ("fail", bad)]
    # after the report: a failure (progress since the last one), a first one before a report, then the end
    assert _drive(StopRepeatedFailures(5), trial, events) == ["retried", "retried", "retried", "ERROR"]
    assert trial.num_failures == 4


def test_a_lost_worker_is_retried_as_ray_always_does(tmp_path):
    trial = _Trial(tmp_path, max_failures=3)
    died = ActorDiedError()
    assert _drive(StopRepeatedFailures(3), trial, [("fail", died)] * 4) == ["retried", "retried", "retried", "ERROR"]


def test_a_lowered_limit_does_not_outlive_the_session(tmp_path):
    trial = _Trial(tmp_path, max_failures=5)
    callback = StopRepeatedFailures(5, print)
    _drive(callback, trial, [("fail", _user_error("x"))])
    assert trial.max_failures == 1
    restored = cloudpickle.loads(cloudpickle.dumps(callback))  # tuner.pkl, read by `corrotune resume`
    restored.on_trial_start(0, [], trial)
    assert trial.max_failures == 5 and restored.log is not None


@pytest.mark.parametrize("value", [-1, -5, MAX_RETRIES + 1])
def test_max_failures_is_bounded(value):
    study = {"name": "s", "trainable": "noop", "data": {"path": "synthetic:corrosion"}, "failure": {"max_failures": value}}
    with pytest.raises(StudyError, match="failure.max_failures") as raised:
        validate_study(study, "s.yaml")
    if value == -1:
        assert "retry forever" in str(raised.value) and f"0 to {MAX_RETRIES}" in str(raised.value)
