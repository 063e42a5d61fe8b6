"""`corrotune status`: finished, running, crashed and never-started studies, read from their files."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from rich.console import Console

from orchestrator.heartbeat import DRIVER_FILE, driver_state, write_heartbeat
from orchestrator.status import EXIT_NOT_A_STUDY, show_status
from orchestrator.trials_table import TRIALS_FILE, TrialsTableCallback

STUDY = {
    "name": "rust",
    "trainable": "noop",
    "data": {"path": "synthetic:corrosion"},
    "params": {"epochs": 3},
    "objective": {"metric": "val/accuracy", "mode": "max"},
}
# (trial id, cell, status, val/accuracy per epoch)
TRIALS = [
    ("t0", "attention=eca", "TERMINATED", [0.6, 0.8, 0.7]),
    ("t1", "attention=eca", "TERMINATED", [0.5, 0.55, 0.6]),
    ("t2", "attention=none", "RUNNING", [0.65]),
    ("t3", "attention=none", "ERROR", []),
]


def _make_study(root: Path, trials=TRIALS, study: dict = STUDY) -> Path:
    """A study directory in Ray Tune's layout, as a driver leaves it."""
    study_dir = root / study["name"]
    study_dir.mkdir(parents=True)
    (study_dir / "corrotune_study.yaml").write_text(yaml.safe_dump(study))
    entries = []
    for trial_id, cell, status, accuracies in trials:
        config = {"x": 0.5, "seed": 0, "corrotune": {"cell": cell, "phase": "search", "repeat": None}}
        folder = study_dir / f"noop_{trial_id}"
        folder.mkdir()
        (folder / "params.json").write_text(json.dumps(config))
        results = [
            {"trial_id": trial_id, "training_iteration": e, "epoch": e, "val/accuracy": a, "done": False}
            for e, a in enumerate(accuracies, start=1)
        ]
        (folder / "result.json").write_text("".join(json.dumps(r) + "\n" for r in results))
        trial = {"trial_id": trial_id, "status": status, "relative_logdir": folder.name, "config": config}
        meta = {"last_result": results[-1] if results else {}, "num_failures": int(status == "ERROR")}
        entries.append([json.dumps(trial), json.dumps(meta)])
    if trials:
        state = {"trial_data": entries, "runner_data": {}, "stats": {"start_time": time.time()}}
        (study_dir / "experiment_state-2026-01-01_00-00-00.json").write_text(json.dumps(state))
    return study_dir


def _status(study_dir: Path) -> tuple[int, str]:
    console = Console(file=io.StringIO(), width=200)
    code = show_status(study_dir, console)
    return code, console.file.getvalue()


def _beat(study_dir: Path, state: str = "running", age_s: float = 0.0, pid: int | None = None) -> None:
    beat = write_heartbeat(study_dir, state)
    beat["updated"] -= age_s
    if pid is not None:
        beat["pid"] = pid
    (study_dir / DRIVER_FILE).write_text(json.dumps(beat))


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_folder_that_is_no_study_exits_2(tmp_path):
    code, out = _status(tmp_path)
    assert code == EXIT_NOT_A_STUDY and "not a corrotune study directory" in out


def test_running_study_shows_states_best_per_cell_and_top_trials(tmp_path):
    study_dir = _make_study(tmp_path)
    _beat(study_dir)  # fresh, from this live process
    assert driver_state(study_dir).state == "running"
    code, out = _status(study_dir)
    assert code == 0
    assert "Study rust" in out and "State: running" in out and "corrotune resume" not in out
    assert "Trials: 4" in out and "RUNNING 1, TERMINATED 2, ERROR 1" in out
    cells = {line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:-1]] for line in out.splitlines()
             if line.startswith("│ attention=")}
    # done/total, running, errored, best, its trial, its epoch
    assert cells["attention=eca"] == ["2/2", "0", "0", "0.8", "t0", "2"]
    assert cells["attention=none"] == ["0/2", "1", "1", "0.65", "t2", "1"]
    top = out[out.index("Top 4 trials") :]
    assert top.index("t0") < top.index("t2") < top.index("t1") < top.index("t3")  # t3 never reported


def test_crashed_study_by_stale_heartbeat_or_dead_pid_says_how_to_resume(tmp_path):
    study_dir = _make_study(tmp_path)
    _beat(study_dir, age_s=600)  # the pid is alive (it is us) but the heartbeat stopped long ago
    code, out = _status(study_dir)
    assert code == 0 and "State: crashed" in out and "silent since 10 min ago" in out
    assert f"corrotune resume {study_dir}" in out
    _beat(study_dir, pid=_dead_pid())  # fresh, but its process is gone
    state = driver_state(study_dir)
    assert state.state == "crashed" and "is gone" in state.detail and state.resumable


def test_a_heartbeat_from_another_host_is_judged_by_its_age(tmp_path):
    study_dir = _make_study(tmp_path)
    _beat(study_dir, pid=_dead_pid())
    beat = json.loads((study_dir / DRIVER_FILE).read_text())
    (study_dir / DRIVER_FILE).write_text(json.dumps({**beat, "hostname": "elsewhere"}))
    assert driver_state(study_dir).state == "running"  # cannot see its pid from here
    assert driver_state(study_dir, now=beat["updated"] + 31).state == "crashed"


def test_finished_and_interrupted_studies(tmp_path):
    trials = [(i, c, "TERMINATED" if s == "RUNNING" else s, a) for i, c, s, a in TRIALS]
    study_dir = _make_study(tmp_path, trials)
    _beat(study_dir, "finished", age_s=3600)
    code, out = _status(study_dir)
    assert "State: finished with 1 error (finished 60 min ago)" in out and "corrotune resume" not in out
    _beat(study_dir, "interrupted")
    code, out = _status(study_dir)
    assert "State: interrupted" in out and "corrotune resume" in out


def test_errors_are_counted_and_never_rank_above_finished_trials(tmp_path):
    trials = [
        ("ok1", "base", "TERMINATED", [0.5, 0.6]),
        ("bad", "base", "ERROR", [0.99]),  # reported a great epoch, then failed
        ("ok2", "base", "TERMINATED", [0.7]),
        ("bad2", "base", "ERROR", []),
    ]
    study_dir = _make_study(tmp_path, trials)
    _beat(study_dir, "finished")
    code, out = _status(study_dir)
    assert code == 0 and "State: finished with 2 errors" in out
    ranked = [line.split()[1] for line in out.splitlines() if line.startswith("│")][-4:]
    assert ranked == ["ok2", "ok1", "bad", "bad2"], out
    assert "│ base " in out and " ok2 " in out.split("Best val/accuracy")[1].split("Top")[0]  # the cell's best finished
    only_finished = _make_study(tmp_path / "b", [("ok", "base", "TERMINATED", [0.5])])
    _beat(only_finished, "finished")
    assert "State: finished (" in _status(only_finished)[1]


def test_without_a_heartbeat_the_files_decide(tmp_path):
    trials = [(i, c, "TERMINATED" if s == "RUNNING" else s, a) for i, c, s, a in TRIALS]
    finished = _make_study(tmp_path / "a", trials)
    (finished / "leaderboard.csv").write_text("rank\n")
    assert "State: finished" in _status(finished)[1]
    unfinished = _make_study(tmp_path / "b")
    code, out = _status(unfinished)
    assert "State: unknown (crashed or interrupted" in out and "corrotune resume" in out


def test_a_study_killed_before_ray_wrote_state(tmp_path):
    study_dir = _make_study(tmp_path, trials=[])
    code, out = _status(study_dir)
    assert code == 0 and "No trial state" in out and "corrotune resume" in out
    assert not (study_dir / TRIALS_FILE).exists()
    _beat(study_dir)  # a live driver still preparing its data
    assert "State: running" in _status(study_dir)[1] and "preparing" in _status(study_dir)[1]


def test_status_writes_a_missing_trials_csv_and_leaves_the_drivers_own(tmp_path):
    study_dir = _make_study(tmp_path)
    _beat(study_dir, age_s=600)
    _status(study_dir)
    with (study_dir / TRIALS_FILE).open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["trial_id"] for r in rows] == ["t0", "t1", "t2", "t3"] and rows[0]["best/val/accuracy"] == "0.8"
    (study_dir / TRIALS_FILE).write_text("the driver's newer copy\n")
    _status(study_dir)
    assert (study_dir / TRIALS_FILE).read_text() == "the driver's newer copy\n"


def test_a_saved_study_that_no_longer_validates_still_shows(tmp_path):
    study = {**STUDY, "trainable": "gone", "objective": {"metric": "val/loss", "mode": "min"}}
    study_dir = _make_study(tmp_path, study=study)
    code, out = _status(study_dir)
    assert code == 0 and "Study rust" in out and "Best val/loss (min) per cell" in out


def test_status_does_not_import_torch():
    code = "import sys, orchestrator.status; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


@pytest.mark.slow
def test_status_of_a_real_finished_study(tmp_path):
    import ray
    from ray import cloudpickle, tune

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        study_dir = tmp_path / "rust"
        study_dir.mkdir()
        (study_dir / "corrotune_study.yaml").write_text(yaml.safe_dump(STUDY))
        cells = {0.1: "attention=eca", 0.2: "attention=none"}
        tune.Tuner(
            _trainable,
            param_space={
                "x": tune.grid_search([0.1, 0.2]), "seed": 0,
                "corrotune": tune.sample_from(lambda spec: {"cell": cells[spec.config.x], "phase": "search"}),
            },
            run_config=tune.RunConfig(
                name="rust", storage_path=str(tmp_path), verbose=0,
                callbacks=[TrialsTableCallback(study_dir, [("val/accuracy", "max")])],
            ),
        ).fit()
    finally:
        if started:
            ray.shutdown()
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    code, out = _status(study_dir)
    assert code == 0 and "State: finished" in out and "TERMINATED 2" in out
    with (study_dir / TRIALS_FILE).open(newline="") as handle:
        rows = {r["cell"]: r for r in csv.DictReader(handle)}
    for cell, row in rows.items():
        line = next(line for line in out.splitlines() if line.startswith(f"│ {cell} "))
        assert row["trial_id"] in line and f"{float(row['best/val/accuracy']):.4g}" in line


def _trainable(config):
    from ray import tune

    for epoch in (1, 2):
        tune.report({"epoch": epoch, "val/accuracy": config["x"] * epoch})


def test_a_driver_stopped_by_a_signal_or_preempted_trials_read_preempted_not_crashed(tmp_path):
    from orchestrator.heartbeat import record_stop_signal
    from trainables.preemption import MID_EPOCH_DIR

    study_dir = _make_study(tmp_path)
    _beat(study_dir)
    record_stop_signal(study_dir, "SIGINT")  # the driver stopped cleanly on Ctrl-C
    code, out = _status(study_dir)
    assert "State: preempted" in out and "stopped on SIGINT" in out and f"corrotune resume {study_dir}" in out
    _beat(study_dir, pid=_dead_pid())  # then a driver that vanished without recording a stop: crashed ...
    assert "State: crashed" in _status(study_dir)[1]
    saved = study_dir / "noop_t2" / MID_EPOCH_DIR / "state.pt"  # ... unless its trials were preempted (SIGTERM)
    saved.parent.mkdir()
    saved.write_bytes(b"state")
    code, out = _status(study_dir)
    assert "State: preempted" in out and "1 trial stopped on SIGTERM" in out and "corrotune resume" in out
