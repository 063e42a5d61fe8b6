"""Driver files a SIGKILL cut short mid-sync are put back or set aside before a resume."""

from __future__ import annotations

import json
import pickle

import pytest

from orchestrator.ray_repairs.atomic_fs import TMP_SUFFIX
from orchestrator.ray_repairs.driver_files import BACKUP_DIR, UNREADABLE_DIR, StateLostError, back_up_tuner, repair_driver_files

OLD, NEW = "2026-01-01_10-00-00", "2026-01-01_11-00-00"


def _session(study, session: str) -> None:
    (study / f"experiment_state-{session}.json").write_text(json.dumps({"trial_data": [], "session": session}))
    (study / f"search_gen_state-{session}.json").write_bytes(pickle.dumps({"counter": 3}))  # Ray pickles it
    (study / f"searcher-state-{session}.pkl").write_bytes(pickle.dumps({"studies": session}))


@pytest.fixture()
def study(tmp_path):
    folder = tmp_path / "abl"
    folder.mkdir()
    (folder / "tuner.pkl").write_bytes(pickle.dumps({"trainable": "noop"}))
    _session(folder, OLD)
    _session(folder, NEW)
    return folder


def test_intact_files_are_left_as_they_are_and_the_tuner_is_backed_up(study):
    lines = []
    assert repair_driver_files(study, lines.append)
    assert lines == [] and not (study / UNREADABLE_DIR).exists()
    assert (study / BACKUP_DIR / "tuner.pkl").read_bytes() == (study / "tuner.pkl").read_bytes()


def test_a_cut_short_tuner_is_put_back_from_its_copy(study):
    back_up_tuner(study)
    (study / "tuner.pkl").write_bytes(b"")  # truncated by a kill mid-copy
    lines = []
    assert repair_driver_files(study, lines.append)
    assert pickle.loads((study / "tuner.pkl").read_bytes()) == {"trainable": "noop"}
    assert "put back" in lines[0]


def test_a_cut_short_tuner_without_a_copy_is_a_clear_error(study):
    (study / "tuner.pkl").write_bytes(pickle.dumps({"trainable": "noop"})[:10])
    with pytest.raises(ValueError, match="tuner.pkl is unreadable"):
        repair_driver_files(study, print)


@pytest.mark.parametrize("cut", ["experiment_state-{}.json", "searcher-state-{}.pkl", "search_gen_state-{}.json"])
def test_a_cut_short_newest_session_is_set_aside_whole_and_the_one_before_is_used(study, cut):
    path = study / cut.format(NEW)
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    lines = []
    assert repair_driver_files(study, lines.append)
    assert sorted(p.name for p in (study / UNREADABLE_DIR).iterdir()) == sorted(
        n.format(NEW) for n in ("experiment_state-{}.json", "search_gen_state-{}.json", "searcher-state-{}.pkl"))
    assert sorted(p.name for p in study.glob("experiment_state-*.json")) == [f"experiment_state-{OLD}.json"]
    assert NEW in lines[0]


def test_an_older_cut_short_session_does_not_matter(study):
    (study / f"experiment_state-{OLD}.json").write_bytes(b"")  # Ray re-uploads old sessions' files too
    assert repair_driver_files(study, print)
    assert not (study / UNREADABLE_DIR).exists()


def test_no_readable_state_left_is_reported(study):
    for session in (OLD, NEW):
        (study / f"experiment_state-{session}.json").write_bytes(b"")
    assert not repair_driver_files(study, print)
    assert not list(study.glob("experiment_state-*.json"))


def test_temporary_files_a_killed_writer_left_are_deleted(study):
    (study / "trial_1").mkdir()
    (study / "trial_1" / "result.json").write_text('{"epoch": 1}\n')
    (study / "trial_1" / f".result.json.0a1b2c3d{TMP_SUFFIX}").write_text('{"epo')
    (study / f".tuner.pkl.99aa88bb{TMP_SUFFIX}").write_bytes(b"\x80")
    lines = []
    assert repair_driver_files(study, lines.append)
    assert lines == ["deleted 2 partly written file(s) the killed driver left"]
    assert not list(study.rglob(f"*{TMP_SUFFIX}")) and (study / "trial_1" / "result.json").read_text() == '{"epoch": 1}\n'


@pytest.mark.parametrize("missing", ["experiment_state-{}.json", "searcher-state-{}.pkl", "search_gen_state-{}.json"])
def test_a_newest_session_missing_a_file_is_set_aside_and_the_one_before_is_used(study, missing):
    (study / missing.format(NEW)).unlink()  # the kill came before the first copy of that file
    lines = []
    assert repair_driver_files(study, lines.append)
    assert not list(study.glob(f"*{NEW}*")) and len(list((study / UNREADABLE_DIR).iterdir())) == 2
    assert sorted(p.name for p in study.glob(f"*{OLD}*")) == sorted(
        n.format(OLD) for n in ("experiment_state-{}.json", "search_gen_state-{}.json", "searcher-state-{}.pkl"))
    assert NEW in lines[0] and "left incomplete" in lines[0]


def _trial_folder(study, name: str, epochs: int, finished: bool = True):
    folder = study / name
    folder.mkdir()
    (folder / "params.json").write_text('{"x": 0.5}')
    (folder / "result.json").write_text("".join(json.dumps({"epoch": e, "done": finished and e == epochs}) + "\n" for e in range(1, epochs + 1)))
    (folder / f"checkpoint_{epochs - 1:06d}").mkdir()
    (folder / f"checkpoint_{epochs - 1:06d}" / "state.pkl").write_bytes(b"\x80ckpt")


def _record(study, session: str, *folders: str) -> None:
    trials = [[json.dumps({"trial_id": f[-1], "relative_logdir": f}), "{}"] for f in folders]
    (study / f"experiment_state-{session}.json").write_text(json.dumps({"trial_data": trials}))


def _snapshot(study) -> dict[str, bytes]:
    return {str(p.relative_to(study)): p.read_bytes() for p in sorted(study.rglob("*")) if p.is_file()}


def _cut(path) -> None:
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])  # a disk-full crash


@pytest.mark.parametrize("older_session", [True, False])
def test_a_cut_short_state_that_alone_records_trials_with_results_stops_and_changes_nothing(study, tmp_path, older_session):
    _trial_folder(study, "noop_a", epochs=3)  # finished
    _trial_folder(study, "noop_b", epochs=1, finished=False)  # reported, then the crash
    (study / "noop_c").mkdir()
    (study / "noop_c" / "params.json").write_text("{}")  # started, nothing reported: may be re-run
    _record(study, NEW, "noop_a", "noop_b", "noop_c")
    _cut(study / f"experiment_state-{NEW}.json")
    if not older_session:
        for name in ("experiment_state-{}.json", "search_gen_state-{}.json", "searcher-state-{}.pkl"):
            (study / name.format(OLD)).unlink()
    back_up_tuner(study)
    before = _snapshot(study)
    with pytest.raises(StateLostError) as raised:
        repair_driver_files(study, print, trial_prefix="noop_", ray_tmpdir=tmp_path / "no-ray")
    message = str(raised.value)
    assert f"experiment_state-{NEW}.json (cut short" in message
    assert "noop_a: finished, 3 epoch(s) reported, checkpoint_000002" in message and "noop_b: 1 epoch(s)" in message
    assert "noop_c" not in message and "nothing was changed" in message and "corrotune resume" in message
    assert (f"session {OLD}" in message) == older_session and ("from scratch" in message) != older_session
    assert _snapshot(study) == before


def test_a_cut_short_state_is_put_back_from_rays_staging_copy(study, tmp_path):
    _trial_folder(study, "noop_a", epochs=3)
    _record(study, NEW, "noop_a")
    back_up_tuner(study)
    whole = _snapshot(study)
    staged = tmp_path / "ray-tmp" / "ray" / "session_2026-01-01_11-00-00_1_1" / "artifacts" / NEW / study.name / "driver_artifacts"
    staged.mkdir(parents=True)
    for name in ("experiment_state-{}.json", "search_gen_state-{}.json", "searcher-state-{}.pkl"):
        (staged / name.format(NEW)).write_bytes((study / name.format(NEW)).read_bytes())
    _cut(study / f"experiment_state-{NEW}.json")
    cut = (study / f"experiment_state-{NEW}.json").read_bytes()
    lines = []
    assert repair_driver_files(study, lines.append, trial_prefix="noop_", ray_tmpdir=tmp_path / "ray-tmp")
    assert "put back whole from Ray's staging copy" in lines[0]
    after = _snapshot(study)
    assert {k: v for k, v in after.items() if not k.startswith(UNREADABLE_DIR)} == whole  # the trial untouched
    assert after[f"{UNREADABLE_DIR}/experiment_state-{NEW}.json"] == cut  # the cut-short copy is kept


def test_a_session_that_never_finished_its_first_snapshot_is_set_aside_as_before(study, tmp_path):
    _trial_folder(study, "noop_new", epochs=1, finished=False)  # started after the last whole snapshot
    (study / f"searcher-state-{NEW}.pkl").unlink()  # the kill came before that session's first copy of it
    assert repair_driver_files(study, print, trial_prefix="noop_", ray_tmpdir=tmp_path / "no-ray")
    assert not list(study.glob(f"*{NEW}*")) and (study / "noop_new" / "result.json").is_file()
