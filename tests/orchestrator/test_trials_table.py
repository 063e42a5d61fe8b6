"""trials.csv: one row per trial, kept current by a Ray callback and rebuildable from the files."""

from __future__ import annotations

import csv
import json
import pickle
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from orchestrator.heartbeat import DRIVER_FILE, read_heartbeat
from orchestrator.trials_table import (
    TRIALS_FILE,
    TrialsTable,
    TrialsTableCallback,
    load_trials_table,
    normalize_objectives,
    write_trials_csv,
)
from tests.ray_session import local_ray

OBJECTIVES = [("val/accuracy", "max"), ("val/loss", "min")]


def _config(lr: float, cell: str = "attention=eca", phase: str = "search", seed: int = 0) -> dict:
    attention = cell.split("=")[1] if "=" in cell else None
    return {
        "lr": lr,
        "seed": seed,
        "attention": attention,
        "optimizer": {"name": "adamw", "betas": [0.9, 0.99]},
        "data": {"path": "/data/rust", "manifest": {"huge": list(range(50))}},
        "corrotune": {"cell": cell, "factors": {"attention": attention}, "phase": phase, "repeat": None, "study": "s"},
    }


def _result(epoch: int, accuracy: float, loss: float, **extra) -> dict:
    return {
        "training_iteration": epoch, "epoch": epoch, "val/accuracy": accuracy, "val/loss": loss,
        "train/loss": loss + 0.1, "time/epoch_s": 1.5, "pid": 7, "done": False, **extra,
    }


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_objectives_accept_pairs_and_objective_specs():
    spec = SimpleNamespace(metric="val/f1", mode="max")
    assert normalize_objectives(("val/loss", "min")) == [("val/loss", "min")]
    assert normalize_objectives([spec, ("val/loss", "min")]) == [("val/f1", "max"), ("val/loss", "min")]
    with pytest.raises(ValueError, match="mode"):
        normalize_objectives([("val/loss", "lowest")])


def test_row_holds_identity_flat_config_and_best_and_last_metrics():
    table = TrialsTable(OBJECTIVES)
    table.observe("t1", config=_config(0.1, seed=3), status="RUNNING")
    for result in (_result(1, 0.6, 0.9), _result(2, 0.8, 0.7), _result(3, 0.7, 0.5, **{"test/accuracy": 0.75})):
        table.observe("t1", result=result)
    (row,) = table.rows()
    assert (row["trial_id"], row["cell"], row["seed"], row["phase"], row["status"]) == ("t1", "attention=eca", 3, "search", "RUNNING")
    assert row["config/lr"] == 0.1 and row["config/attention"] == "eca" and row["config/seed"] == 3
    assert row["config/optimizer.name"] == "adamw" and json.loads(row["config/optimizer.betas"]) == [0.9, 0.99]
    assert row["config/data.path"] == "/data/rust"
    assert not any(k.startswith(("config/corrotune", "config/data.manifest")) for k in row)
    assert row["epochs"] == 3
    # each objective in its own direction, with the epoch it was reached at
    assert (row["best/val/accuracy"], row["best_epoch/val/accuracy"]) == (0.8, 2)
    assert (row["best/val/loss"], row["best_epoch/val/loss"]) == (0.5, 3)
    assert row["last/val/accuracy"] == 0.7 and row["last/test/accuracy"] == 0.75 and row["last/train/loss"] == 0.6
    assert "last/time/epoch_s" not in row and "last/pid" not in row


def test_a_trial_without_metadata_is_the_base_cell():
    table = TrialsTable(("score", "max"))
    table.observe("t1", config={"x": 0.5}, status="TERMINATED", result={"training_iteration": 1, "score": 0.4})
    (row,) = table.rows()
    assert row["cell"] == "base" and row["phase"] is None and row["best/score"] == 0.4 and row["last/score"] == 0.4


def test_results_replayed_after_a_restore_replace_the_lost_epochs():
    table = TrialsTable(OBJECTIVES)
    for epoch, accuracy in [(1, 0.5), (2, 0.6), (3, 0.9)]:
        table.observe("t1", result=_result(epoch, accuracy, 1 - accuracy))
    # the driver died after epoch 3 but the checkpoint was epoch 1: epochs 2-3 are trained again
    for epoch, accuracy in [(2, 0.55), (3, 0.65)]:
        table.observe("t1", result=_result(epoch, accuracy, 1 - accuracy))
    (row,) = table.rows()
    assert row["best/val/accuracy"] == 0.65 and row["best_epoch/val/accuracy"] == 3 and row["epochs"] == 3


def test_csv_columns_start_with_identity_then_config_then_metrics(tmp_path):
    table = TrialsTable(OBJECTIVES)
    table.observe("a", config=_config(0.1), status="TERMINATED", result=_result(1, 0.6, 0.9))
    table.observe("b", config={**_config(0.2, cell="attention=none"), "extra": 1}, status="PENDING")
    path = table.write_csv(tmp_path / TRIALS_FILE)
    header = path.read_text().splitlines()[0].split(",")
    assert header[:6] == ["trial_id", "cell", "seed", "phase", "repeat", "status"]
    config = [c for c in header if c.startswith("config/")]
    assert config == sorted(config) and "config/extra" in config and header.index(config[-1]) < header.index("epochs")
    assert {"best/val/accuracy", "best_epoch/val/accuracy", "best/val/loss", "last/val/accuracy"} <= set(header)
    rows = _read_csv(path)
    assert rows[1]["status"] == "PENDING" and rows[1]["best/val/accuracy"] == "" and rows[0]["config/extra"] == ""
    assert not list(tmp_path.glob(".*tmp"))  # written through a temporary file, then renamed


def _trial(trial_id: str, status: str = "RUNNING", config: dict | None = None, **extra) -> SimpleNamespace:
    """A stand-in for Ray's ``Trial`` with the attributes the callbacks read."""
    fields = {"last_result": {}, "path": None, **extra}
    return SimpleNamespace(trial_id=trial_id, status=status, config=config or _config(0.1), **fields)


def test_callback_throttles_every_rewrite_and_catches_up_on_the_next_step(tmp_path):
    callback = TrialsTableCallback(tmp_path, OBJECTIVES, min_interval_s=0.3)
    callback.setup(total_num_samples=2)
    a, b = _trial("a"), _trial("b", config=_config(0.2, cell="attention=none"))
    callback.on_trial_result(0, [a, b], a, _result(1, 0.5, 0.9))
    assert callback.wait_written(timeout_s=10)  # written off the driver's loop
    first = _read_csv(tmp_path / TRIALS_FILE)
    # b is listed too, in the order Ray created the trials, though it has not reported yet
    assert [r["trial_id"] for r in first] == ["a", "b"] and first[0]["best/val/accuracy"] == "0.5"
    callback.on_trial_result(1, [a, b], a, _result(2, 0.7, 0.8))
    callback.on_step_end(2, [a, b])
    callback.on_trial_complete(3, [a, b], a)  # Ray marks it TERMINATED after the callbacks
    callback.wait_written(timeout_s=10)
    assert _read_csv(tmp_path / TRIALS_FILE) == first  # within min_interval_s: not rewritten
    time.sleep(0.35)
    callback.on_step_end(4, [a, b])
    callback.wait_written(timeout_s=10)
    rows = {r["trial_id"]: r for r in _read_csv(tmp_path / TRIALS_FILE)}
    assert rows["a"]["status"] == "TERMINATED" and rows["a"]["best/val/accuracy"] == "0.7"
    assert rows["b"]["status"] == "RUNNING" and rows["b"]["cell"] == "attention=none"
    b.status = "ERROR"
    callback.on_trial_error(5, [a, b], b)
    callback.on_experiment_end([a, b])  # the end always writes
    assert {r["trial_id"]: r["status"] for r in _read_csv(tmp_path / TRIALS_FILE)} == {"a": "TERMINATED", "b": "ERROR"}


def test_callback_rewrites_once_the_interval_has_passed(tmp_path):
    callback = TrialsTableCallback(tmp_path, OBJECTIVES, min_interval_s=0.2)
    a = _trial("a")
    callback.on_trial_result(0, [a], a, _result(1, 0.5, 0.9))
    callback.wait_written(timeout_s=10)
    callback.on_trial_result(1, [a], a, _result(2, 0.7, 0.8))
    callback.wait_written(timeout_s=10)
    assert _read_csv(tmp_path / TRIALS_FILE)[0]["epochs"] == "1"
    time.sleep(0.25)
    callback.on_step_end(2, [a])  # no new result needed: the pending rows go out on the next step
    callback.wait_written(timeout_s=10)
    assert _read_csv(tmp_path / TRIALS_FILE)[0]["epochs"] == "2"


def test_rewrites_take_at_most_their_share_of_the_driver_loop_however_many_trials(tmp_path, monkeypatch):
    clock = SimpleNamespace(now=100.0)
    monkeypatch.setattr("orchestrator.trials_table.time.monotonic", lambda: clock.now)
    callback = TrialsTableCallback(tmp_path, OBJECTIVES, min_interval_s=1.0, max_write_share=0.05)
    writes = []

    def slow_write(rows, path):  # a table so large that a rewrite takes 2 s
        writes.append(clock.now)
        clock.now += 2.0

    monkeypatch.setattr("orchestrator.trials_table._write_rows_csv", slow_write)
    callback.setup()
    trial = _trial("a")
    for epoch in range(1, 400):  # a result every 0.5 s for 200 s
        clock.now += 0.5
        callback.on_trial_result(epoch, [trial], trial, _result(epoch, 0.5, 0.5))
        assert callback.wait_written(timeout_s=10)  # the lane's rewrite, as if the loop ran on meanwhile
    assert len(writes) >= 3  # the first change at once, then as often as the share allows
    assert 2.0 * (len(writes) - 1) / (writes[-1] - writes[0]) <= 0.05 + 1e-9  # whole write cycles
    assert callback.write_interval_s() == 2.0 * 19  # 2 s of writing per 40 s
    written = len(writes)
    callback.on_experiment_end([trial])  # the end always writes
    assert len(writes) == written + 1


def test_sync_new_adds_only_the_trials_ray_appended_since_the_last_call():
    table = TrialsTable(OBJECTIVES)
    trials = [_trial("a"), _trial("b")]
    table.sync_new(trials)
    trials[0].status = "TERMINATED"
    trials.append(_trial("c", status="PENDING"))
    table.sync_new(trials)  # per result or trial: the new one only, not every known trial again
    assert [r["trial_id"] for r in table.rows()] == ["a", "b", "c"] and table.status("a") == "RUNNING"
    table.sync(trials)  # the once-a-second full sync takes the statuses
    assert table.status("a") == "TERMINATED" and table.status("c") == "PENDING"
    restored = pickle.loads(pickle.dumps(table))
    restored.sync_new([_trial("z"), *trials])  # a restored session's list is a new one
    assert "z" in restored


def test_heartbeat_says_running_then_finished_or_interrupted(tmp_path):
    callback = TrialsTableCallback(tmp_path, OBJECTIVES)
    callback.setup()
    beat = read_heartbeat(tmp_path)
    assert beat["state"] == "running" and beat["pid"] > 0 and beat["hostname"]
    a, b = _trial("a"), _trial("b")
    callback.on_step_end(0, [a, b])
    callback.on_trial_complete(1, [a, b], a)
    b.status = "TERMINATED"  # what Ray's cleanup does to a trial it interrupts, with no callback
    callback.on_experiment_end([a, b])
    assert read_heartbeat(tmp_path)["state"] == "interrupted"
    assert {r["trial_id"]: r["status"] for r in _read_csv(tmp_path / TRIALS_FILE)} == {"a": "TERMINATED", "b": "RUNNING"}
    callback.on_trial_complete(2, [a, b], b)
    callback.on_experiment_end([a, b])
    finished = read_heartbeat(tmp_path)
    assert finished["state"] == "finished" and finished["started"] == beat["started"]


def test_callback_survives_pickling_and_seeds_restored_trials_from_their_results(tmp_path):
    callback = TrialsTableCallback(tmp_path, OBJECTIVES)
    a = _trial("a")
    callback.on_trial_result(0, [a], a, _result(1, 0.5, 0.9))
    restored = pickle.loads(pickle.dumps(callback))
    assert restored.table.rows() == callback.table.rows()
    # a fresh callback after Tuner.restore: a trial that already ran comes with its result.json
    folder = tmp_path / "train_b"
    folder.mkdir()
    folder.joinpath("result.json").write_text("\n".join(json.dumps(_result(e, 0.1 * e, 1.0)) for e in (1, 2, 3)) + "\n")
    b = _trial("b", status="TERMINATED", last_result=_result(3, 0.3, 1.0), path=str(folder))
    fresh = pickle.loads(pickle.dumps(TrialsTableCallback(tmp_path, OBJECTIVES)))
    fresh.on_step_end(0, [b])
    fresh.on_experiment_end([b])
    (row,) = _read_csv(tmp_path / TRIALS_FILE)
    assert row["status"] == "TERMINATED" and row["epochs"] == "3" and float(row["best/val/accuracy"]) == pytest.approx(0.3)


def _write_trial_folder(study: Path, folder: str, config: dict, results: list[dict]) -> None:
    (study / folder).mkdir(parents=True)
    (study / folder / "params.json").write_text(json.dumps(config))
    lines = [json.dumps({**r, "trial_id": folder.split("_", 1)[1], "config": config}) for r in results]
    (study / folder / "result.json").write_text("\n".join(lines) + "\n" + '{"training_iteration": 9, "val/acc')


def test_rebuild_from_files_uses_the_newest_state_and_unlisted_trial_folders(tmp_path):
    config_a, config_b = _config(0.1), _config(0.2, cell="attention=none", phase="confirm", seed=5)
    _write_trial_folder(tmp_path, "train_a", config_a, [_result(1, 0.6, 0.9), _result(2, 0.8, 0.7)])
    _write_trial_folder(tmp_path, "train_b", config_b, [_result(1, 0.4, 0.9), _result(2, 0.5, 0.6, done=True)])

    def state(status_a: str) -> str:
        trial = {"trial_id": "a", "status": status_a, "relative_logdir": "train_a", "config": config_a}
        return json.dumps({"trial_data": [[json.dumps(trial), json.dumps({"last_result": {}, "num_failures": 0})]]})

    (tmp_path / "experiment_state-2026-01-01_00-00-00.json").write_text(state("PENDING"))
    (tmp_path / "experiment_state-2026-01-02_00-00-00.json").write_text(state("RUNNING"))
    rows = {r["trial_id"]: r for r in load_trials_table(tmp_path, OBJECTIVES).rows()}
    assert rows["a"]["status"] == "RUNNING" and rows["a"]["best/val/accuracy"] == 0.8  # half-written line skipped
    # b's folder appeared after the last snapshot: finished, since its last result says done
    assert rows["b"]["status"] == "TERMINATED" and rows["b"]["phase"] == "confirm" and rows["b"]["seed"] == 5
    assert rows["b"]["best/val/loss"] == 0.6 and rows["b"]["best_epoch/val/loss"] == 2
    path = write_trials_csv(tmp_path, OBJECTIVES)
    assert [r["trial_id"] for r in _read_csv(path)] == ["a", "b"]


def test_rebuild_lists_trials_in_the_order_ray_created_them(tmp_path):
    """Ray's state lists trials in the order it first snapshotted them (from a set)."""
    entries = []
    for trial_id, tag in (("c", "3_lr=0.3"), ("a", "1_lr=0.1"), ("x", "untagged"), ("b", "2_lr=0.2")):
        _write_trial_folder(tmp_path, f"train_{trial_id}", _config(0.1), [_result(1, 0.5, 0.9)])
        trial = {"trial_id": trial_id, "status": "RUNNING", "relative_logdir": f"train_{trial_id}", "experiment_tag": tag}
        entries.append([json.dumps(trial), json.dumps({"last_result": {}})])
    (tmp_path / "experiment_state-2026-01-01_00-00-00.json").write_text(json.dumps({"trial_data": entries}))
    assert [r["trial_id"] for r in load_trials_table(tmp_path, OBJECTIVES).rows()] == ["a", "b", "c", "x"]


# ---- a real Ray Tune experiment


def _tiny_trainable(config):
    from ray import tune

    for epoch in range(1, 4):
        accuracy = config["lr"] * (1 + (epoch == 2))  # the best epoch is the second
        metrics = {"epoch": epoch, "val/accuracy": accuracy, "val/loss": 1 - accuracy, "train/loss": 2 - accuracy}
        if epoch == 3:
            metrics["test/accuracy"] = accuracy / 2
        tune.report(metrics)


class _Spy:
    """Reads trials.csv after each event (callbacks run in list order, so after the writer's)."""

    def __init__(self, path: Path) -> None:
        self.path, self.seen = path, []

    def __call__(self, event: str) -> None:
        rows = _read_csv(self.path) if self.path.exists() else []
        self.seen.append((event, {r["trial_id"]: (r["status"], r["epochs"]) for r in rows}))


@pytest.fixture(scope="module")
def ray_session():
    with local_ray(__name__):
        yield


def _run(storage: Path, name: str, trainable, callbacks: list, **extra):
    from ray import tune

    cells = [f"attention={a}" for a in ("eca", "none")]
    space = {
        "lr": tune.grid_search([0.1, 0.2]),
        "seed": 0,
        "data": {"path": "synthetic:corrosion", "synthetic": {"num_images": 8}},
        "corrotune": tune.sample_from(lambda spec: {"cell": cells[int(spec.config.lr * 10) - 1], "phase": "search", "repeat": None}),
        **extra,
    }
    tuner = tune.Tuner(
        trainable,
        param_space=space,
        tune_config=tune.TuneConfig(trial_dirname_creator=lambda t: f"{t.trainable_name}_{t.trial_id}"),
        run_config=tune.RunConfig(
            name=name, storage_path=str(storage), callbacks=callbacks, verbose=0,
            failure_config=tune.FailureConfig(max_failures=0),
        ),
    )
    return tuner.fit()


@pytest.mark.slow
def test_a_real_study_keeps_trials_csv_current_and_matching_its_files(tmp_path, ray_session):
    from ray import tune

    study = tmp_path / "tiny"
    study.mkdir()
    spy = _Spy(study / TRIALS_FILE)

    class SpyCallback(tune.Callback):
        """Reads the file once the writer's rewrite on its background lane is done."""

        def __init__(self, writer: TrialsTableCallback) -> None:
            self.writer = writer  # Ray copies its callbacks together: this stays the writer it runs

        def on_step_end(self, iteration, trials, **info):
            assert self.writer.wait_written(timeout_s=10)  # no rewrite left running into the next hook

        def on_trial_result(self, iteration, trials, trial, result, **info):
            assert self.writer.wait_written(timeout_s=10)
            spy("result")

        def on_trial_complete(self, iteration, trials, trial, **info):
            assert self.writer.wait_written(timeout_s=10)
            spy("complete")

    writer = TrialsTableCallback(study, OBJECTIVES, min_interval_s=0.0, max_write_share=1.0)  # every change written
    _run(tmp_path, "tiny", _tiny_trainable, [writer, SpyCallback(writer)])

    rows = _read_csv(study / TRIALS_FILE)
    assert len(rows) == 2 and {r["status"] for r in rows} == {"TERMINATED"}
    assert {r["cell"] for r in rows} == {"attention=eca", "attention=none"} and {r["phase"] for r in rows} == {"search"}
    header = list(rows[0])
    assert header[:6] == ["trial_id", "cell", "seed", "phase", "repeat", "status"]
    assert {"config/lr", "config/seed", "config/data.path"} <= set(header)
    assert not any(c.startswith(("config/corrotune", "config/data.synthetic")) for c in header)
    for row in rows:
        results = [json.loads(line) for line in next(study.glob(f"*_{row['trial_id']}/result.json")).read_text().splitlines()]
        accuracies = [r["val/accuracy"] for r in results]
        assert float(row["best/val/accuracy"]) == max(accuracies) and row["best_epoch/val/accuracy"] == "2"
        assert float(row["best/val/loss"]) == min(r["val/loss"] for r in results)
        assert float(row["last/test/accuracy"]) == results[-1]["test/accuracy"] and row["epochs"] == "3"
        assert row["seed"] == "0" and row["config/lr"] in ("0.1", "0.2")
    # the file followed the trials: epochs grew while they ran, then each one ended as TERMINATED
    epochs_seen = {e for _, trials in spy.seen for status, e in trials.values() if status == "RUNNING"}
    assert {"1", "2", "3"} <= epochs_seen
    completes = [trials for event, trials in spy.seen if event == "complete"]
    assert [sum(s == "TERMINATED" for s, _ in t.values()) for t in completes] == [1, 2]
    assert read_heartbeat(study)["state"] == "finished"
    # the files alone give the same table
    (study / TRIALS_FILE).rename(study / "live.csv")
    assert _read_csv(write_trials_csv(study, OBJECTIVES)) == _read_csv(study / "live.csv")


def _flaky_trainable(config):
    from ray import tune

    marker = Path(config["marker_dir"]) / f"ran-{config['lr']}"
    first_run = not marker.exists()
    marker.touch()
    for epoch in range(1, 3):
        if config["lr"] == 0.2 and first_run and epoch == 2:
            raise RuntimeError("fails once on purpose")
        tune.report({"epoch": epoch, "val/accuracy": config["lr"] * epoch, "val/loss": 1.0})


@pytest.mark.slow
def test_trials_csv_survives_tuner_restore(tmp_path, ray_session):
    from ray import tune

    study = tmp_path / "flaky"
    study.mkdir()
    (tmp_path / "markers").mkdir()
    _run(tmp_path, "flaky", _flaky_trainable, [TrialsTableCallback(study, OBJECTIVES)], marker_dir=str(tmp_path / "markers"))
    before = {r["trial_id"]: r for r in _read_csv(study / TRIALS_FILE)}
    assert sorted(r["status"] for r in before.values()) == ["ERROR", "TERMINATED"]
    assert read_heartbeat(study)["state"] == "finished"  # errored trials are ended trials

    restored = tune.Tuner.restore(str(study), trainable=_flaky_trainable, resume_errored=True)
    restored.fit()  # the callback is the one unpickled from the study's tuner.pkl, with no rows
    after = {r["trial_id"]: r for r in _read_csv(study / TRIALS_FILE)}
    assert after.keys() == before.keys() and {r["status"] for r in after.values()} == {"TERMINATED"}
    done_before = next(i for i, r in before.items() if r["status"] == "TERMINATED")
    assert after[done_before]["best/val/accuracy"] == before[done_before]["best/val/accuracy"] == "0.2"
    assert read_heartbeat(study)["state"] == "finished"
    assert (study / DRIVER_FILE).exists()


def test_status_counts_follow_every_change_and_survive_pickling():
    from collections import Counter

    table = TrialsTable(OBJECTIVES)
    table.observe("a", status="RUNNING")
    table.observe("b")
    table.observe("a", status="TERMINATED")
    table.sync([SimpleNamespace(trial_id="b", status="ERROR", config={}, last_result={}, path=None),
                SimpleNamespace(trial_id="c", status="PENDING", config={}, last_result={}, path=None)])
    table.sync([SimpleNamespace(trial_id="a", status="RUNNING", config={}, last_result={}, path=None)])  # ended stays ended
    assert table.status_counts() == {"TERMINATED": 1, "ERROR": 1, "PENDING": 1}
    assert table.status_counts() == Counter(row["status"] for row in table.rows())
    restored = pickle.loads(pickle.dumps(table))
    restored.observe("d", status="RUNNING")
    assert restored.status_counts() == {"TERMINATED": 1, "ERROR": 1, "PENDING": 1, "RUNNING": 1}


def test_a_slow_rewrite_never_blocks_the_driver_loop_and_the_end_still_writes_the_last_rows(tmp_path, monkeypatch):
    import threading

    from orchestrator import trials_table

    release, written = threading.Event(), []
    real_write = trials_table._write_rows_csv

    def slow_write(rows, path):  # a 10,000-trial table: a rewrite took 0.7-0.9 s
        release.wait(timeout=10)
        written.append((threading.current_thread().name, [r["epochs"] for r in rows]))
        return real_write(rows, path)

    monkeypatch.setattr(trials_table, "_write_rows_csv", slow_write)
    callback = TrialsTableCallback(tmp_path, OBJECTIVES, min_interval_s=0.0)
    trial = _trial("a")
    started = time.monotonic()
    for epoch in (1, 2, 3):
        callback.on_trial_result(epoch, [trial], trial, _result(epoch, 0.5, 0.5))
    assert time.monotonic() - started < 5.0 and not written  # none of the hooks waited for the file
    release.set()
    callback.on_experiment_end([trial])
    assert written[0][0].startswith("corrotune-trials-table") and written[0][1] == [1]  # one rewrite at a time
    assert written[-1][1] == [3] and _read_csv(tmp_path / TRIALS_FILE)[0]["epochs"] == "3"
    restored = pickle.loads(pickle.dumps(callback))  # in tuner.pkl: no thread
    assert restored.wait_written(timeout_s=1)
