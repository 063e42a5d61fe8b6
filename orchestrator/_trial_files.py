"""Keeps a retried trial's result files whole.

Ray's loggers write ``result.json``/``progress.csv`` into the driver's staging folder and sync it
to storage with each experiment snapshot (every ~10 s). When a trial fails and is retried before
the next snapshot, the retry first copies the *stored* files back over the staging ones
(``LoggerCallback._restore_from_remote``), so the epochs reported since the last snapshot vanish.
:class:`UploadBeforeRetry` uploads the staging files as soon as Ray decides to retry.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ray import tune

__all__ = ["UploadBeforeRetry"]

logger = logging.getLogger(__name__)

RESULT_FILES = ("result.json", "progress.csv", "params.json")


class UploadBeforeRetry(tune.Callback):
    """On ``on_trial_recover`` copies the trial's staged result files to its storage folder."""

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        import pyarrow.fs

        local, remote = Path(trial.local_path), Path(trial.path)
        if local == remote:
            return
        filesystem = trial.storage.storage_filesystem
        for name in RESULT_FILES:
            if not (local / name).is_file():
                continue
            try:
                filesystem.create_dir(remote.as_posix(), recursive=True)
                pyarrow.fs.copy_files(str(local / name), (remote / name).as_posix(), destination_filesystem=filesystem)
            except OSError as err:  # storage hiccup: Ray's own sync may still catch up
                logger.warning("could not upload %s of trial %s before its retry: %s", name, trial.trial_id, err)
