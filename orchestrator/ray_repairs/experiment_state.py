"""Reads Ray's experiment state (``experiment_state-<timestamp>.json``) from the study folder alone.

Ray has no public reader for its own snapshot: ``ExperimentAnalysis`` needs the trials' result
files and a matching Ray, and ``Tuner.restore`` restores the whole experiment. corrotune reads the
snapshot without Ray to tell which trials Ray recorded (``corrotune status``, ``trials.csv``, the
resume repairs, ``corrotune export``).

Ray behaviour repaired: Ray writes the snapshot in place and a driver killed meanwhile leaves it
cut short; :func:`newest_experiment_state` falls back to the snapshot before. Ray lists the
trials in set order, not creation order (:func:`recorded_trials` restores it). A trial whose
config Ray stores only under its name-mangled private attribute ``_Trial__unresolved_config``
(``Trial.__unresolved_config``) would show no config without :func:`recorded_config`.

Private Ray names used: ``Trial.__unresolved_config`` (as the JSON key
``_Trial__unresolved_config``); the JSON layout ``trial_data: [[trial_json, run_metadata_json]]``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping

__all__ = ["UNRESOLVED_CONFIG_KEY", "newest_experiment_state", "recorded_config", "recorded_trials"]

UNRESOLVED_CONFIG_KEY = "_Trial__unresolved_config"
"""Where Ray's ``Trial.get_json_state`` keeps a trial's config (``Trial.__unresolved_config``, name-mangled)."""


def newest_experiment_state(study_dir: Path) -> dict[str, Any] | None:
    """Ray's newest ``experiment_state-<timestamp>.json`` (its last snapshot), if any."""
    for path in sorted(study_dir.glob("experiment_state-*.json"), reverse=True):
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # a snapshot being replaced; an older one still tells something
    return None


def recorded_trials(trial_data: list) -> list[tuple[dict, dict]]:
    """Ray's ``(trial, run metadata)`` entries, decoded, in the order Ray created the trials.

    Ray lists them in the order they were first snapshotted (it collects them in a set), so the
    order comes from each ``experiment_tag``, which starts with the trial's creation counter.
    Entries that cannot be read are left out; a tag without a counter sorts last.
    """
    entries = []
    for entry in trial_data:
        try:
            trial, meta = (json.loads(part) if isinstance(part, str) else part for part in entry)
        except (TypeError, ValueError):
            continue
        entries.append((trial, meta))

    def counter(entry: tuple[dict, dict]) -> float:
        head = str(entry[0].get("experiment_tag") or "").split("_", 1)[0]
        return int(head) if head.isdigit() else math.inf

    return sorted(entries, key=counter)


def recorded_config(trial: Mapping[str, Any]) -> dict[str, Any]:
    """A recorded trial's config: ``config`` when Ray stored one, else its unresolved config ({} if neither)."""
    return trial.get("config") or trial.get(UNRESOLVED_CONFIG_KEY) or {}
