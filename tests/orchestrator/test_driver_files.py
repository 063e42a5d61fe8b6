"""Driver files a SIGKILL cut short mid-sync are put back or set aside before a resume."""

from __future__ import annotations

import json
import pickle

import pytest

from orchestrator._atomic_fs import TMP_SUFFIX
from orchestrator._driver_files import BACKUP_DIR, UNREADABLE_DIR, back_up_tuner, repair_driver_files

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
