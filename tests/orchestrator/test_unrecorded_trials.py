"""Trial folders the saved experiment state does not know are set aside before a resume."""

from __future__ import annotations

import io
import json

from rich.console import Console

from orchestrator.ray_repairs.unrecorded_trials import UNRECORDED_DIR
from orchestrator.runner import _set_aside_unrecorded_trials
from orchestrator.storage import StudyPlace


def _place(tmp_path, *trials: str) -> StudyPlace:
    place = StudyPlace.create(tmp_path / "results", "abl")
    for name in trials:
        (place.local_dir / name).mkdir(parents=True)
        (place.local_dir / name / "result.json").write_text("{}\n")
    (place.local_dir / "data").mkdir(parents=True, exist_ok=True)
    return place


def _state(place: StudyPlace, *recorded: str) -> None:
    data = [[json.dumps({"relative_logdir": name}), "{}"] for name in recorded]
    (place.local_dir / "experiment_state-2026-01-01_00-00-00.json").write_text(json.dumps({"trial_data": data}))


def test_folders_started_after_the_last_snapshot_are_moved_and_kept(tmp_path):
    place = _place(tmp_path, "noop_a", "noop_b")
    _state(place, "noop_a")
    out = io.StringIO()
    _set_aside_unrecorded_trials(place, "noop", Console(file=out, width=200))
    assert sorted(p.name for p in place.local_dir.glob("noop_*")) == ["noop_a"]
    assert (place.local_dir / UNRECORDED_DIR / "noop_b" / "result.json").is_file()
    assert "noop_b" in out.getvalue() and (place.local_dir / "data").is_dir()


def test_without_a_readable_state_every_trial_folder_is_set_aside(tmp_path):
    place = _place(tmp_path, "noop_a", "noop_b")
    _set_aside_unrecorded_trials(place, "noop", Console(file=io.StringIO()))
    assert not list(place.local_dir.glob("noop_*"))
    assert sorted(p.name for p in (place.local_dir / UNRECORDED_DIR).iterdir()) == ["noop_a", "noop_b"]
