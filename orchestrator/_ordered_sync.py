"""Ray's driver stores each snapshot's experiment state after the trial files it describes.

With each snapshot Ray's driver writes its state files into a staging folder and copies the
folder to the study directory in a background thread, files in parallel and in no set order,
while the next snapshot may already be rewriting the staging files. A driver killed in the
middle can leave a new ``experiment_state-*.json`` stored next to a trial's old
``result.json``: the resume continues the trial after a checkpoint whose epochs ``result.json``
never got, and those rows are lost for good.

:func:`upload_state_last` changes the driver's folder sync: the state files are read when the
sync is launched, right after Ray wrote them (in the driver's main thread, so no later
snapshot can mix in), the rest of the folder is copied next (so it is at least as new), and
the state files captured are written last (``experiment_state-*`` after the search state).
A stored state is then never ahead of the stored trial files; a stored ``result.json`` ahead of
the state is fine (a resumed trial's repeated rows are dropped, see ``_trial_files``), and a
search state ahead of the experiment state is brought back in line on restore (see
``ablation.RecordedStateSearchGenerator``). It wraps Ray's
``_FilesystemSyncer._sync_up_command``; tests check that Ray's syncer still goes through it.
"""

from __future__ import annotations

import fnmatch
import functools
import os
import re
from pathlib import Path
from typing import Any, Callable

__all__ = ["STATE_FILE", "upload_state_last"]

STATE_FILE = re.compile(r"^(?:(?:experiment_state|search_gen_state|searcher-state|callback-states)-.+\.(?:json|pkl)|tuner\.pkl)$")
"""The driver's files that describe the experiment (as opposed to the trials' own files)."""


def _state_files(folder: str, exclude: list[str]) -> list[str]:
    names = [n for n in os.listdir(folder) if STATE_FILE.match(n) and os.path.isfile(os.path.join(folder, n))]
    names = [n for n in names if not any(fnmatch.fnmatch(n, pattern) for pattern in exclude)]
    return sorted(names, key=lambda n: (n.startswith("experiment_state-"), n))  # the trial table last


def _upload_then_write(upload: Callable[..., None], upload_kwargs: dict[str, Any], fs: Any, fs_path: str,
                       captured: list[tuple[str, bytes]]) -> None:
    upload(**upload_kwargs)
    for name, data in captured:
        with fs.open_output_stream(f"{fs_path.rstrip('/')}/{name}") as stream:
            stream.write(data)


def _state_last(sync_up_command: Callable[..., tuple]) -> Callable[..., tuple]:
    @functools.wraps(sync_up_command)
    def state_last(self, local_path: str, uri: str, exclude: list | None = None) -> tuple:
        upload, kwargs = sync_up_command(self, local_path, uri, exclude)
        if not os.path.isdir(local_path):
            return upload, kwargs
        names = _state_files(local_path, exclude or [])
        if not names:
            return upload, kwargs
        captured = [(name, Path(local_path, name).read_bytes()) for name in names]
        kwargs = {**kwargs, "exclude": [*(exclude or []), *names]}
        return _upload_then_write, dict(upload=upload, upload_kwargs=kwargs, fs=self.storage_filesystem,
                                        fs_path=uri, captured=captured)
    return state_last


def upload_state_last() -> None:
    """Makes Ray's driver store its state files after the rest of each snapshot (idempotent)."""
    from ray.train._internal.storage import _FilesystemSyncer

    if not hasattr(_FilesystemSyncer._sync_up_command, "__wrapped__"):
        _FilesystemSyncer._sync_up_command = _state_last(_FilesystemSyncer._sync_up_command)
