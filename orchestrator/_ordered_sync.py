"""Ray's driver uploads the experiment state after the trial files it describes, not among them.

With each snapshot Ray's driver copies its staging folder to the study directory in one
``pyarrow.fs.copy_files`` call, files in parallel and in no set order. A driver killed in the
middle can leave the new ``experiment_state-*.json`` stored next to a trial's old
``result.json``: the resume then continues the trial after a checkpoint whose epochs
``result.json`` never got, and those rows are lost for good.

:func:`upload_state_last` makes the driver's folder upload two steps: everything but the state
files first, then the state files (``experiment_state-*`` last). A stored state is then never
ahead of the stored trial files (a stored ``result.json`` ahead of the state is fine: a resumed
trial's repeated rows are dropped, see ``_trial_files``). It wraps Ray's
``ray.train._internal.storage._upload_to_fs_path``, which the driver's syncer calls; tests check
that Ray still calls it that way.
"""

from __future__ import annotations

import fnmatch
import functools
import os
import re
from typing import Any, Callable

__all__ = ["STATE_FILE", "upload_state_last"]

STATE_FILE = re.compile(r"^(?:(?:experiment_state|search_gen_state|searcher-state|callback-states)-.+\.(?:json|pkl)|tuner\.pkl)$")
"""The driver's files that describe the experiment (as opposed to the trials' own files)."""


def _state_files(folder: str, exclude: list[str]) -> list[str]:
    names = [n for n in os.listdir(folder) if STATE_FILE.match(n) and os.path.isfile(os.path.join(folder, n))]
    names = [n for n in names if not any(fnmatch.fnmatch(n, pattern) for pattern in exclude)]
    return sorted(names, key=lambda n: (n.startswith("experiment_state-"), n))  # the trial table last


def _state_last(upload: Callable[..., None]) -> Callable[..., None]:
    @functools.wraps(upload)
    def upload_in_order(local_path: str, fs: Any, fs_path: str, exclude: list[str] | None = None) -> None:
        if not os.path.isdir(local_path):
            return upload(local_path, fs, fs_path, exclude)
        state = _state_files(local_path, exclude or [])
        upload(local_path, fs, fs_path, exclude=[*(exclude or []), *state] or None)
        for name in state:
            upload(os.path.join(local_path, name), fs, f"{fs_path.rstrip('/')}/{name}")
    return upload_in_order


def upload_state_last() -> None:
    """Makes Ray's driver upload its state files after the rest of each snapshot (idempotent)."""
    from ray.train._internal import storage

    if not hasattr(storage._upload_to_fs_path, "__wrapped__"):
        storage._upload_to_fs_path = _state_last(storage._upload_to_fs_path)
