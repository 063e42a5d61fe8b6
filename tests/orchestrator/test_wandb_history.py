"""The offline-run reader against files the installed wandb really writes (offline, no Ray)."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow.fs
import pytest

from orchestrator.ray_repairs.wandb_actor import redact_secrets
from orchestrator.ray_repairs.wandb_callback import TrialWandbLoggerCallback, run_tags
from orchestrator._wandb_history import last_logged_step, offline_run_dirs, read_offline_run, read_records, results_by_step
from orchestrator.tracking import logged_steps

BIG = 70_000  # one history row larger than two 32 KiB blocks: FIRST, MIDDLE and LAST chunks


def _write_runs(root: Path, run_id: str, sessions: list[list[int]], big_at: int | None = None) -> list[Path]:
    """One finished offline run (same id) per session, each logging its steps; returns the folders."""
    script = textwrap.dedent(
        f"""
        import wandb
        for steps in {sessions!r}:
            run = wandb.init(project="p", id={run_id!r}, dir={str(root)!r}, mode="offline", group="study",
                             job_type="confirm", tags=["demo", "attention=eca"], name="t (attention=eca)",
                             config={{"lr": 0.1, "corrotune": {{"cell": "attention=eca"}}}}, reinit="finish_previous")
            for step in steps:
                row = {{"val/acc": step / 10, "training_iteration": step}}
                if step == {big_at!r}:
                    row["note"] = "x" * {BIG}
                run.log(row, step=step)
            run.finish()
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
    return offline_run_dirs(root, run_id)


@pytest.fixture(scope="module")
def one_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("wandb-one")
    (folder,) = _write_runs(root, "trial_00000", [[1, 2, 3, 4]], big_at=2)
    return folder


def test_reads_steps_rows_and_run_metadata(one_run):
    run = read_offline_run(one_run)
    assert run.run_id == "trial_00000"
    assert run.steps == [1, 2, 3, 4]
    assert [row["training_iteration"] for row in run.rows] == run.steps
    assert len(run.rows[1]["note"]) == BIG  # a record split over three blocks is reassembled
    assert (run.group, run.job_type, run.name) == ("study", "confirm", "t (attention=eca)")
    assert run.tags == ["demo", "attention=eca"]
    assert run.config["lr"] == 0.1 and run.config["corrotune"] == {"cell": "attention=eca"}
    assert run.exit_code == 0


def test_any_truncation_or_damage_reads_a_prefix_without_raising(one_run, tmp_path):
    source = next(one_run.glob("run-*.wandb")).read_bytes()
    full = read_offline_run(one_run).steps
    folder = tmp_path / one_run.name
    folder.mkdir()
    target = folder / "run-trial_00000.wandb"
    seen = set()
    cuts = sorted({*range(0, len(source), 211), *range(32760, 32780), *range(65530, 65550), len(source) - 1})
    for cut in cuts:
        target.write_bytes(source[:cut])
        steps = read_offline_run(folder).steps
        assert steps == full[: len(steps)], f"cut at {cut}"
        seen.add(len(steps))
    assert seen == set(range(len(full) + 1))  # every prefix length occurs, the empty one too
    damaged = bytearray(source)
    damaged[len(source) // 2] ^= 0xFF
    target.write_bytes(bytes(damaged))
    steps = read_offline_run(folder).steps
    assert steps == full[: len(steps)] and len(steps) < len(full)
    target.write_bytes(b"not a wandb file")
    assert list(read_records(target)) == [] and read_offline_run(folder).steps == []


def test_logged_steps_joins_a_runs_folders_in_start_order(tmp_path):
    study = tmp_path / "study"
    folders = _write_runs(study / "trial_a" / "wandb", "run_a", [[1, 2], [3], [4, 5]])
    _write_runs(study / "trial_b" / "wandb", "run_b", [[1, 2, 3]])
    assert len(folders) == 3
    assert logged_steps(study) == {"run_a": [1, 2, 3, 4, 5], "run_b": [1, 2, 3]}
    assert last_logged_step([study / "trial_a" / "wandb"], "run_a") == 5
    assert last_logged_step([study / "trial_a" / "wandb"], "run_a", exclude=[folders[-1]]) == 3
    assert last_logged_step([study / "trial_a" / "wandb"], "nobody") == 0
    # the same, read through a pyarrow filesystem (remote storage) and from a URI
    stored = (pyarrow.fs.SubTreeFileSystem(str(tmp_path), pyarrow.fs.LocalFileSystem()), "study/trial_a/wandb")
    assert last_logged_step([stored, tmp_path / "elsewhere"], "run_a") == 5
    assert logged_steps(f"file://{study}") == {"run_a": [1, 2, 3, 4, 5], "run_b": [1, 2, 3]}
    # wandb suffixes a folder started within the same second: -1, -2 come after the plain name
    timespec = folders[0].name.split("-")[2]
    for folder, suffix in zip(folders, ["", "-1", "-2"]):
        folder.rename(folder.with_name(f"offline-run-{timespec}-run_a{suffix}"))
    assert logged_steps(study)["run_a"] == [1, 2, 3, 4, 5]
    # a header-only file (a session killed before its first flush) adds nothing and breaks nothing
    empty = study / "trial_a" / "wandb" / "offline-run-29991231_235959-run_a"
    empty.mkdir()
    (empty / "run-run_a.wandb").write_bytes(b":W&B\xe1\xbe\x00")
    (study / "trial_a" / "wandb" / "offline-run-29991231_235959-stray").mkdir()  # no .wandb file at all
    assert logged_steps(study)["run_a"] == [1, 2, 3, 4, 5]


def test_results_by_step_prefers_later_lines_and_skips_broken_ones(tmp_path):
    staging, storage = tmp_path / "staging.json", tmp_path / "storage.json"
    storage.write_text("".join(json.dumps({"training_iteration": i, "v": "old"}) + "\n" for i in (1, 2)))
    staging.write_text(
        json.dumps({"training_iteration": 2, "v": "first"}) + "\n"
        + json.dumps({"training_iteration": 2, "v": "again"}) + "\n"
        + json.dumps({"training_iteration": 3, "v": "new"}) + "\n"
        + '{"training_iteration": 4, "v": "cut sho'
    )
    results = results_by_step([storage, staging, tmp_path / "missing.json"])
    assert {s: r["v"] for s, r in results.items()} == {1: "old", 2: "again", 3: "new"}
    stored = (pyarrow.fs.SubTreeFileSystem(str(tmp_path), pyarrow.fs.LocalFileSystem()), "storage.json")
    assert {s: r["v"] for s, r in results_by_step([stored, (stored[0], "missing.json")]).items()} == {1: "old", 2: "old"}


def test_secrets_never_reach_the_config():
    config = {
        "lr": 0.1,
        "WANDB_API_KEY": "k",
        "data": {"hf-token": "t", "path": "/d", "nested": [{"Password": "p", "ok": 1}]},
        "apiKey": "k",
        "corrotune": {"cell": "base"},
    }
    assert redact_secrets(config) == {"lr": 0.1, "data": {"path": "/d", "nested": [{"ok": 1}]}, "corrotune": {"cell": "base"}}


def test_run_tags_from_trial_metadata():
    meta = {"cell": "attention=eca,placement=head", "factors": {"attention": "eca", "placement": "head"}, "phase": "confirm"}
    assert run_tags(["demo", "confirm"], meta) == ["demo", "confirm", "attention=eca", "placement=head"]
    assert run_tags(["demo"], {}) == ["demo"]
    assert all(len(t) <= 64 for t in run_tags([], {"factors": {"f": "v" * 100}}))


def test_pickled_callback_carries_no_ray_handles_or_key(monkeypatch):
    callback = TrialWandbLoggerCallback(project="p", group="g", mode="offline", tags=["demo"], job_type="search")
    callback._remote_logger_class = {"runtime_env": {"env_vars": {"WANDB_API_KEY": "sekrit-123"}}}
    callback._ended.add("t1")
    blob = pickle.dumps(callback)
    assert b"sekrit-123" not in blob
    restored = pickle.loads(blob)
    assert restored._remote_logger_class is None and restored._ended == set() and restored.kwargs == callback.kwargs



def test_clean_up_at_interpreter_exit_is_quiet_when_ray_is_torn_down(monkeypatch):
    import ray.air.integrations.wandb as ray_wandb

    callback = TrialWandbLoggerCallback(project="p", mode="offline")
    callback._trial_logging_actors = {"trial": "actor"}  # one was still around
    monkeypatch.setattr(ray_wandb, "ray", None)  # as module globals are at interpreter exit
    with pytest.raises(AttributeError):
        ray_wandb.WandbLoggerCallback.__del__(callback)  # what printed "Exception ignored in ..."
    callback.__del__()  # no exception
    callback._trial_logging_actors = {}  # nothing left for the real clean-up later
