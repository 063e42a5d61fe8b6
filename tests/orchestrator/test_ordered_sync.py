"""Ray's driver sync stores the experiment state only after the trial files it describes."""

from __future__ import annotations

import threading

import pyarrow.fs
import pytest

from orchestrator._atomic_fs import AtomicLocalHandler
from orchestrator._ordered_sync import STATE_FILE, upload_state_last

SESSION = "2026-01-01_10-00-00"
STATE = [f"searcher-state-{SESSION}.pkl", f"search_gen_state-{SESSION}.json", "tuner.pkl", f"experiment_state-{SESSION}.json"]
TRIAL = ["noop_1/result.json", "noop_1/progress.csv", "noop_1/params.json", "noop_2/result.json", "basic-variant-state.json"]


class _Recording(AtomicLocalHandler):
    """corrotune's storage filesystem, recording the order in which files are written; with
    ``hold``, the first write waits until the event is set."""

    def __init__(self, order: list[str], hold: threading.Event | None = None) -> None:
        super().__init__()
        self.order, self.hold = order, hold

    def open_output_stream(self, path, metadata):
        if self.hold is not None:
            assert self.hold.wait(30)
        self.order.append(path)
        return super().open_output_stream(path, metadata)


def _syncer(order: list[str], hold: threading.Event | None = None):
    from ray.train._internal.storage import _FilesystemSyncer

    upload_state_last()
    return _FilesystemSyncer(storage_filesystem=pyarrow.fs.PyFileSystem(_Recording(order, hold)), sync_period=0, sync_timeout=60)


@pytest.fixture()
def staging(tmp_path):
    folder = tmp_path / "staging"
    for name in STATE + TRIAL + ["noop_1/checkpoint_000000/state.pt"]:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(name)
    return folder


def test_the_drivers_syncer_writes_trial_files_first_and_the_experiment_state_last(staging, tmp_path):
    from ray.train._internal.storage import _FilesystemSyncer

    order: list[str] = []
    syncer = _syncer(order)
    upload_state_last()  # idempotent: wraps once
    assert not hasattr(_FilesystemSyncer._sync_up_command.__wrapped__, "__wrapped__")
    study = tmp_path / "study"
    syncer.sync_up(local_dir=str(staging), remote_dir=str(study), exclude=["*/checkpoint_*"])
    syncer.wait()

    written = [p[len(str(study)) + 1:] for p in order]
    assert sorted(written) == sorted(STATE + TRIAL)  # the exclude still applies, nothing twice
    assert set(written[-len(STATE):]) == set(STATE) and written[-1] == f"experiment_state-{SESSION}.json"
    assert all((study / name).read_text() == name for name in STATE + TRIAL)


def test_state_file_names():
    assert all(STATE_FILE.match(n) for n in STATE + [f"callback-states-{SESSION}.pkl"])
    assert not any(STATE_FILE.match(n) for n in ["result.json", "params.pkl", "basic-variant-state.json", "tuner.pkl.bak"])


def test_state_files_are_stored_as_they_were_when_the_sync_started(staging, tmp_path):
    """Ray's next snapshot may rewrite the staging files while a sync is still copying them."""
    order: list[str] = []
    hold = threading.Event()
    syncer = _syncer(order, hold)
    study = tmp_path / "study"
    syncer.sync_up(local_dir=str(staging), remote_dir=str(study), exclude=["*/checkpoint_*"])
    (staging / f"experiment_state-{SESSION}.json").write_text("the next snapshot")  # newer than the trial files
    (staging / "noop_1" / "result.json").write_text("the next snapshot")
    hold.set()
    syncer.wait()

    assert (study / f"experiment_state-{SESSION}.json").read_text() == f"experiment_state-{SESSION}.json"
    assert (study / "noop_1" / "result.json").read_text() == "the next snapshot"  # a trial file may be newer
