"""Ray's driver sync stores the experiment state only after the trial files it describes."""

from __future__ import annotations

import pyarrow.fs
import pytest

from orchestrator._atomic_fs import AtomicLocalHandler
from orchestrator._ordered_sync import STATE_FILE, upload_state_last

SESSION = "2026-01-01_10-00-00"
STATE = [f"searcher-state-{SESSION}.pkl", f"search_gen_state-{SESSION}.json", "tuner.pkl", f"experiment_state-{SESSION}.json"]
TRIAL = ["noop_1/result.json", "noop_1/progress.csv", "noop_1/params.json", "noop_2/result.json", "basic-variant-state.json"]


class _Recording(AtomicLocalHandler):
    """corrotune's storage filesystem, recording the order in which files are written."""

    def __init__(self, order: list[str]) -> None:
        super().__init__()
        self.order = order

    def open_output_stream(self, path, metadata):
        self.order.append(path)
        return super().open_output_stream(path, metadata)


@pytest.fixture()
def staging(tmp_path):
    folder = tmp_path / "staging"
    for name in STATE + TRIAL + ["noop_1/checkpoint_000000/state.pt"]:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(name)
    return folder


def test_the_drivers_syncer_writes_trial_files_first_and_the_experiment_state_last(staging, tmp_path):
    from ray.train._internal.storage import _FilesystemSyncer

    from ray.train._internal import storage

    upload_state_last()
    upload_state_last()  # idempotent: wraps once
    assert not hasattr(storage._upload_to_fs_path.__wrapped__, "__wrapped__")
    order: list[str] = []
    syncer = _FilesystemSyncer(storage_filesystem=pyarrow.fs.PyFileSystem(_Recording(order)), sync_period=0, sync_timeout=60)
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
