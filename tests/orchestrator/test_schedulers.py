"""Per-cell early stopping, confirm runs never stopped, scheduler state rebuilt on resume, stop rules."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pyarrow.fs
from ray.tune.schedulers import TrialScheduler

from orchestrator.schedulers import CellScheduler, _NoImprovement, _TargetReached, build_scheduler, build_stopper
from orchestrator.spec import validate_study
from tests.orchestrator.test_spec import _raw

STOP, CONTINUE = TrialScheduler.STOP, TrialScheduler.CONTINUE


def _trial(trial_id: str, cell: str = "base", phase: str = "search", path: str = "/nonexistent", last_result=None, status="RUNNING"):
    return SimpleNamespace(
        trial_id=trial_id, config={"corrotune": {"cell": cell, "phase": phase}}, last_result=last_result or {},
        status=status, path=path, storage=SimpleNamespace(storage_filesystem=pyarrow.fs.LocalFileSystem()),
    )


def _asha(**scheduler) -> CellScheduler:
    raw = _raw()
    raw["scheduler"] = {"name": "asha", "grace_period": 1, "reduction_factor": 2, **scheduler}
    raw["params"]["epochs"] = 4
    return build_scheduler(validate_study(raw))


def _report(scheduler, trial, epoch: int, value: float) -> str:
    return scheduler.on_trial_result(None, trial, {"training_iteration": epoch, "val/accuracy": value})


def test_asha_compares_a_trial_only_with_its_own_cell():
    scheduler = _asha()
    strong, weak_a, weak_b = _trial("s", cell="a"), _trial("w1", cell="b"), _trial("w2", cell="b")
    for trial in (strong, weak_a, weak_b):
        scheduler.on_trial_add(None, trial)
    assert _report(scheduler, strong, 1, 0.9) == CONTINUE
    # cell b's first trial is compared with nobody in b, though it is far below cell a
    assert _report(scheduler, weak_a, 1, 0.2) == CONTINUE
    assert _report(scheduler, weak_b, 1, 0.1) == STOP  # below the other trial of its own cell


def test_confirm_runs_are_never_stopped_early():
    scheduler = _asha()
    trials = [_trial(f"c{i}", phase="confirm") for i in range(4)]
    for i, trial in enumerate(trials):
        scheduler.on_trial_add(None, trial)
        assert _report(scheduler, trial, 1, 0.9 - 0.3 * i) == CONTINUE


def test_restored_trials_rebuild_the_rungs_from_their_results(tmp_path):
    finished = tmp_path / "finished"
    finished.mkdir()
    (finished / "result.json").write_text(
        "\n".join(json.dumps({"training_iteration": e, "val/accuracy": v}) for e, v in [(1, 0.8), (2, 0.85)]) + "\n{\"cut off"
    )
    scheduler = _asha()
    restored = _trial("f", path=str(finished), last_result={"training_iteration": 2}, status="TERMINATED")
    scheduler.on_trial_add(None, restored)
    newcomer = _trial("n")
    scheduler.on_trial_add(None, newcomer)
    # without the replay the newcomer would be alone in the first rung and continue
    assert _report(scheduler, newcomer, 1, 0.5) == STOP


def test_a_fresh_scheduler_without_replay_would_have_let_it_continue():
    scheduler = _asha()
    newcomer = _trial("n")
    scheduler.on_trial_add(None, newcomer)
    assert _report(scheduler, newcomer, 1, 0.5) == CONTINUE


def test_stop_rules():
    target = _TargetReached("val/loss", "min", 0.2)
    assert not target("t", {"val/loss": 0.3}) and target("t", {"val/loss": 0.2})
    patience = _NoImprovement("val/accuracy", "max", 2)
    values = [0.5, 0.6, 0.6, 0.55]
    stops = [patience("t", {"val/accuracy": v, "training_iteration": i + 1}) for i, v in enumerate(values)]
    assert stops == [False, False, False, True]
    assert not patience("other", {"val/accuracy": 0.1, "training_iteration": 1})  # per trial
    raw = _raw()
    raw["stop"] = {"target": 0.99, "trial_time_s": 60, "patience": 3}
    assert build_stopper(validate_study(raw)) is not None
    assert build_stopper(validate_study(_raw())) is None
