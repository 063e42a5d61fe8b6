"""A trial's error in one line (type, message, where, full log) and the exit status of a study."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from ray.exceptions import RayActorError, RayTaskError
from rich.console import Console

from orchestrator._trial_errors import PROJECT_ROOT, TrialError, group_errors, print_errors, summarize_error
from orchestrator.exit_status import EXIT_ALL_ERRORED, EXIT_OK, EXIT_SOME_ERRORED, study_exit_status
from orchestrator.runner import StudyOutcome

SITE = "/venv/lib/python3.11/site-packages"
TRACEBACK = f'''ray::ImplicitFunc.train() (pid=1, ip=1.2.3.4, repr=classifier)
  File "{SITE}/ray/tune/trainable/function_trainable.py", line 249, in _trainable_func
    output = fn()
  File "{PROJECT_ROOT}/trainables/classifier.py", line 120, in train_classifier
    loss = step(batch)
  File "{PROJECT_ROOT}/trainables/loop.py", line 57, in step
    logits = model(images)
  File "{SITE}/torch/nn/modules/batchnorm.py", line 193, in forward
    return F.batch_norm(
  File "{SITE}/torch/nn/functional.py", line 2810, in _verify_batch_size
    raise ValueError(f"Expected more than 1 value per channel when training, got input size {{size}}")
ValueError: Expected more than 1 value per channel when training, got input size torch.Size([1, 64])
'''


def _task_error(cause: Exception, traceback_text: str = TRACEBACK) -> RayTaskError:
    return RayTaskError("train", traceback_text, cause).as_instanceof_cause()


def test_the_innermost_project_frame_names_where_it_failed():
    cause = ValueError("Expected more than 1 value per channel when training, got input size torch.Size([1, 64])")
    summary = summarize_error(_task_error(cause), "/s/classifier_1/error.txt")
    assert summary == TrialError(
        kind="ValueError",
        message="Expected more than 1 value per channel when training, got input size torch.Size([1, 64])",
        where="trainables/loop.py:57",  # not torch's functional.py, not Ray's wrapper
        log="/s/classifier_1/error.txt",
    )
    assert summary.line() == f"ValueError: {cause} (at trainables/loop.py:57)"


def test_user_code_outside_the_project_is_named_by_its_full_path():
    text = TRACEBACK.replace(f"{PROJECT_ROOT}/trainables/loop.py", "/home/me/my_trainable.py")
    assert summarize_error(_task_error(KeyError("lr"), text), "e.txt").where == "/home/me/my_trainable.py:57"


def test_errors_ray_could_not_unpickle_and_dead_workers_are_summarised_too():
    from_text = summarize_error(None, "e.txt", text=TRACEBACK)
    assert (from_text.kind, from_text.where) == ("ValueError", "trainables/loop.py:57")
    assert from_text.message.startswith("Expected more than 1 value per channel")
    died = summarize_error(RayActorError(error_msg="The actor died unexpectedly (OOM killer)"), "e.txt")
    assert died.kind == "RayActorError" and "OOM" in died.message and died.where is None
    long = summarize_error(_task_error(RuntimeError("x" * 1000 + "\nsecond line")), "e.txt")
    assert len(long.message) <= 300 and "second line" not in long.message


def test_identical_errors_are_shown_once_with_their_trials_and_log(tmp_path):
    same = summarize_error(_task_error(ValueError("bad batch")), "/s/a/error.txt")
    other = summarize_error(_task_error(KeyError("lr")), "/s/c/error.txt")
    groups = group_errors([("a", same), ("b", summarize_error(_task_error(ValueError("bad batch")), "/s/b/error.txt")), ("c", other)])
    assert [(e.kind, ids) for e, ids in groups] == [("ValueError", ["a", "b"]), ("KeyError", ["c"])]
    console = Console(file=io.StringIO(), width=300)
    print_errors(groups, console)
    out = console.file.getvalue()
    assert out.count("bad batch") == 1 and "2 trials (a, b) errored: ValueError: bad batch (at trainables/loop.py:57)" in out
    assert "full log: /s/a/error.txt" in out and "trial c errored: KeyError: 'lr'" in out


def test_a_path_with_brackets_is_printed_verbatim():
    error = summarize_error(_task_error(OSError("cannot read [red]x[/red].png")), "/data/[run 1]/t/error.txt")
    console = Console(file=io.StringIO(), width=300)
    print_errors([(error, ["t"])], console)
    assert "[red]x[/red].png" in console.file.getvalue() and "/data/[run 1]/t/error.txt" in console.file.getvalue()


@pytest.mark.parametrize(
    ("statuses", "code", "last_line"),
    [
        (["TERMINATED", "TERMINATED"], EXIT_OK, "Study finished: 2 trials finished, none errored."),
        (["ERROR", "TERMINATED"], EXIT_SOME_ERRORED, "Study finished with errors: 1 of 2 trials errored, 1 finished"),
        (["ERROR", "ERROR"], EXIT_ALL_ERRORED, "Study finished with errors: all 2 trials errored (errors above; exit status 1)."),
    ],
)
def test_exit_status_and_last_line(statuses, code, last_line):
    outcome = StudyOutcome(study_dir=Path("."), rows=[{"status": s} for s in statuses], num_errors=statuses.count("ERROR"))
    assert outcome.exit_status == code == study_exit_status(len(statuses), statuses.count("ERROR"))
    assert outcome.last_line().startswith(last_line)
    assert len({EXIT_OK, EXIT_ALL_ERRORED, EXIT_SOME_ERRORED, 2}) == 4  # distinct from "cannot run"


def test_rays_own_error_printing_is_turned_off_through_its_switches(monkeypatch, caplog):
    import logging

    from orchestrator._trial_errors import quiet_ray_trial_errors

    monkeypatch.delenv("TUNE_PRINT_ALL_TRIAL_ERRORS", raising=False)
    quiet_ray_trial_errors()
    quiet_ray_trial_errors()  # idempotent
    assert os.environ["TUNE_PRINT_ALL_TRIAL_ERRORS"] == "0"
    tune_logger = logging.getLogger("ray.tune.tune")
    with caplog.at_level(logging.INFO, logger="ray.tune.tune"):
        tune_logger.error("Trials did not complete: %s", ["noop_1"])
        tune_logger.info("Total run time: 3 s")
    assert [r.getMessage() for r in caplog.records] == ["Total run time: 3 s"]
