"""W&B runs of real Ray Tune trials (offline): metadata, explicit steps, continuity across a restore."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest

from orchestrator._wandb_artifacts import ARTIFACT_COUNT_KEY
from orchestrator.ray_repairs.wandb_callback import TrialWandbLoggerCallback
from orchestrator._wandb_history import offline_run_dirs, read_offline_run
from orchestrator.tracking import logged_steps
from tests.ray_session import local_ray

EPOCHS = 5
SECRET = "sekrit-0123456789"


def epochs_trainable(config):
    """Reports ``epochs`` results, checkpointing every ``ckpt_every``; fails once after ``fail_after``.

    At its last epoch it writes ``artifacts/plot.png`` and reports one artifact file.
    """
    from PIL import Image
    from ray import tune

    start = 0
    checkpoint = tune.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as folder:
            start = json.loads(Path(folder, "state.json").read_text())["epoch"]
    for epoch in range(start + 1, config["epochs"] + 1):
        marker = Path(config["markers"]) / config["corrotune"]["cell"]
        if epoch == config["fail_after"] + 1 and not marker.exists():
            marker.touch()
            raise RuntimeError("injected failure")
        metrics = {"val/accuracy": epoch / 10, "epoch": epoch}
        if epoch == config["epochs"]:
            Path("artifacts").mkdir(exist_ok=True)
            Image.new("RGB", (8, 8), (200, 30, 30)).save("artifacts/plot.png")
            metrics[ARTIFACT_COUNT_KEY] = 1
        if epoch % config["ckpt_every"]:
            tune.report(metrics)
            continue
        with tempfile.TemporaryDirectory() as folder:
            Path(folder, "state.json").write_text(json.dumps({"epoch": epoch}))
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))


@pytest.fixture(scope="module")
def ray_session():
    with local_ray(__name__):
        yield


def _callback() -> TrialWandbLoggerCallback:
    return TrialWandbLoggerCallback(
        project="corrotune", group="wb-study", job_type="search", tags=["demo"], mode="offline",
        excludes=["time_this_iter_s", "timestamp", "pid", "hostname", "node_ip", "time_since_restore"],
    )


def _space(tmp_path: Path, cells: list[str], **extra):
    from ray import tune

    markers = tmp_path / "markers"
    markers.mkdir(exist_ok=True)
    meta = [
        {"cell": f"attention={c}", "factors": {"attention": c}, "phase": "confirm", "repeat": 0, "study": "wb-study"}
        for c in cells
    ]
    return {
        "epochs": EPOCHS, "markers": str(markers), "fail_after": 3, "ckpt_every": 2,
        "wandb_api_key": SECRET, "data": {"hf_token": SECRET, "path": "/data"},
        "corrotune": tune.grid_search(meta), **extra,
    }


def _remote(tmp_path: Path):
    """A pyarrow filesystem that Ray treats as remote storage (it is not a LocalFileSystem)."""
    import pyarrow.fs

    return pyarrow.fs.SubTreeFileSystem(str(tmp_path), pyarrow.fs.LocalFileSystem())


def _tuner(tmp_path: Path, space: dict, max_failures: int, remote: bool = False):
    from ray import tune

    storage = dict(storage_path="results", storage_filesystem=_remote(tmp_path)) if remote else dict(storage_path=str(tmp_path / "results"))
    return tune.Tuner(
        epochs_trainable,
        param_space=space,
        tune_config=tune.TuneConfig(reuse_actors=True),
        run_config=tune.RunConfig(
            name="wb-study", **storage, callbacks=[_callback()], verbose=0,
            failure_config=tune.FailureConfig(max_failures=max_failures),
            sync_config=tune.SyncConfig(sync_artifacts=True),
        ),
    )


def _new_ray_session() -> None:
    import ray

    ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)


def _runs_by_cell(study_dir: Path) -> dict[str, list]:
    """Each trial's offline runs (oldest first), keyed by its cell."""
    runs: dict[str, list] = {}
    for trial_dir in sorted(p for p in study_dir.iterdir() if p.is_dir()):
        cell = json.loads((trial_dir / "params.json").read_text())["corrotune"]["cell"]
        runs[cell] = [read_offline_run(f) for f in offline_run_dirs(trial_dir / "wandb")]
    return runs


def test_runs_carry_trial_metadata_and_log_each_epoch_once_at_its_step(ray_session, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", SECRET)  # Ray hands it to its logging actors
    # each trial fails once after epoch 3 and is recovered from its epoch-2 checkpoint in the
    # same session: it reports epoch 3 again, which its run already holds
    results = _tuner(tmp_path, _space(tmp_path, ["eca", "none"]), max_failures=1).fit()
    assert not results.errors
    study_dir = tmp_path / "results" / "wb-study"
    runs = _runs_by_cell(study_dir)
    assert sorted(runs) == ["attention=eca", "attention=none"]
    for cell, (run, *more) in runs.items():
        assert not more, "one session, one run folder"
        factor = cell.split("=")[1]
        trial_dir = Path(run.path).parents[1]
        assert run.run_id in trial_dir.name  # the trial id
        assert run.steps == list(range(1, EPOCHS + 1))
        assert all(row["training_iteration"] == row["_step"] == row["epoch"] for row in run.rows)
        assert (run.group, run.job_type) == ("wb-study", "confirm")
        assert run.tags == ["demo", f"attention={factor}", "confirm"]
        assert run.name == f"{trial_dir.name} ({cell})"
        assert run.config["epochs"] == EPOCHS and run.config["corrotune"]["factors"] == {"attention": factor}
        assert "wandb_api_key" not in run.config and run.config["data"] == {"path": "/data"}
        assert run.exit_code == 0  # finished
        assert run.rows[-1]["artifacts/plot/_type"] == "image-file"  # joined the last row, no step of its own
    assert logged_steps(study_dir) == {r[0].run_id: list(range(1, EPOCHS + 1)) for r in runs.values()}
    for path in study_dir.glob("*/wandb/**/*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


def _truncate_to_steps(folder: Path, keep: int) -> None:
    """Cuts the run's .wandb file to the shortest prefix that still holds ``keep`` history rows."""
    target = next(folder.glob("run-*.wandb"))
    data = target.read_bytes()
    low, high = 0, len(data)
    while low < high:  # rows held grow with the prefix length
        mid = (low + high) // 2
        target.write_bytes(data[:mid])
        if len(read_offline_run(folder).steps) >= keep:
            high = mid
        else:
            low = mid + 1
    target.write_bytes(data[:low])
    assert read_offline_run(folder).steps == list(range(1, keep + 1))


@pytest.mark.slow
@pytest.mark.parametrize("remote", [False, True], ids=["local-storage", "remote-storage"])
def test_restore_makes_each_run_whole_whatever_the_crash_left(ray_session, tmp_path, remote):
    from ray import tune

    # session 1: trials log epochs 1-3 (checkpoint at 2), then error; "finished" runs all 5 epochs.
    # With remote storage W&B writes to Ray's staging folder and Ray syncs it to storage, where
    # the crash is simulated and where the restored session (a new staging folder) finds it.
    space = _space(tmp_path, ["intact", "missing", "truncated", "finished"])
    (tmp_path / "markers" / "attention=finished").touch()
    results = _tuner(tmp_path, space, max_failures=0, remote=remote).fit()
    assert len(results.errors) == 3
    study_dir = tmp_path / "results" / "wb-study"
    before = {cell: [r.steps for r in runs] for cell, runs in _runs_by_cell(study_dir).items()}
    assert before == {**{f"attention={c}": [[1, 2, 3]] for c in ("intact", "missing", "truncated")}, "attention=finished": [[1, 2, 3, 4, 5]]}

    # what a SIGKILLed driver leaves: W&B never wrote its buffered rows (all, or all but some)
    for folder in offline_run_dirs(study_dir):
        cell = json.loads((folder.parents[1] / "params.json").read_text())["corrotune"]["cell"]
        if cell == "attention=missing":
            for item in folder.iterdir():
                if item.is_file():
                    item.unlink()
            (folder / f"run-{read_offline_run(folder).run_id}.wandb").write_bytes(b":W&B\xe1\xbe\x00")
        elif cell == "attention=truncated":
            _truncate_to_steps(folder, keep=1)
        elif cell == "attention=finished":
            _truncate_to_steps(folder, keep=2)

    # a new driver session (the old one's staging folders are gone with it) restarts the errored
    # trials from their epoch-2 checkpoint (first result: epoch 3); the finished trial does not
    # run again, its run is completed from result.json
    _new_ray_session()
    where = dict(path="results/wb-study", storage_filesystem=_remote(tmp_path)) if remote else dict(path=str(study_dir))
    restored = tune.Tuner.restore(**where, trainable=epochs_trainable, resume_errored=True)
    assert not restored.fit().errors
    runs = _runs_by_cell(study_dir)
    expected = {
        "attention=intact": [[1, 2, 3], [4, 5]],
        "attention=missing": [[], [1, 2, 3, 4, 5]],
        "attention=truncated": [[1], [2, 3, 4, 5]],
        "attention=finished": [[1, 2], [3, 4, 5]],
    }
    assert {cell: [r.steps for r in folders] for cell, folders in runs.items()} == expected
    for cell, folders in runs.items():
        assert folders[-1].exit_code == 0
        assert folders[-1].rows[-1]["artifacts/plot/_type"] == "image-file", cell
        assert folders[-1].job_type == "confirm" and folders[-1].group == "wb-study"
        for run in folders:
            assert all(row["training_iteration"] == row["_step"] == row["epoch"] for row in run.rows)
            assert all(row["val/accuracy"] == pytest.approx(row["_step"] / 10) for row in run.rows)
    assert sorted(logged_steps(study_dir).values()) == [list(range(1, EPOCHS + 1))] * 4


def test_restore_with_nothing_to_run_completes_a_finished_trials_run(ray_session, tmp_path):
    from ray import tune

    (tmp_path / "markers").mkdir()
    (tmp_path / "markers" / "attention=eca").touch()  # never fails
    assert not _tuner(tmp_path, _space(tmp_path, ["eca"]), max_failures=0).fit().errors
    study_dir = tmp_path / "results" / "wb-study"
    (folder,) = offline_run_dirs(study_dir)
    _truncate_to_steps(folder, keep=3)  # the driver was killed while W&B was still writing
    assert not tune.Tuner.restore(str(study_dir), trainable=epochs_trainable).fit().errors
    (runs,) = _runs_by_cell(study_dir).values()
    assert [r.steps for r in runs] == [[1, 2, 3], [4, 5]] and runs[-1].exit_code == 0
    assert runs[-1].rows[-1]["artifacts/plot/_type"] == "image-file"
