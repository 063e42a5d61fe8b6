"""Ray's W&B callback, extended to upload each trial's end-of-trial images."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
from PIL import Image
from ray.air.integrations.wandb import WandbLoggerCallback, _clean_log, _QueueItem

__all__ = ["ARTIFACT_COUNT_KEY", "ArtifactWandbLoggerCallback"]

logger = logging.getLogger(__name__)


ARTIFACT_COUNT_KEY = "artifacts/files"
"""Result key in which a trial reports how many artifact files it wrote."""

SYNC_WAIT_S = 30.0
"""How long to wait for a trial's artifacts to reach the study directory (Ray syncs them
asynchronously after the last report)."""


def _artifact_pngs(trial, expected: int) -> list[Path]:
    """The trial's artifact PNGs once all ``expected`` files are visible (or the wait ends)."""
    folders = [Path(trial.path) / "artifacts", Path(trial.local_path) / "artifacts"]
    deadline = time.monotonic() + SYNC_WAIT_S
    while True:
        found = [sorted(f.glob("*.png")) for f in folders if f.is_dir()]
        best = max(found, key=len, default=[])
        if len(best) >= expected or time.monotonic() > deadline:
            return best
        time.sleep(0.2)


class ArtifactWandbLoggerCallback(WandbLoggerCallback):
    """Logs ``<trial>/artifacts/*.png`` (plots, Grad-CAM) as W&B images at the trial's last step."""

    def log_trial_end(self, trial, failed: bool = False) -> None:
        result = trial.last_result or {}
        expected, step = result.get(ARTIFACT_COUNT_KEY), result.get("training_iteration")
        if trial in self._trial_queues and expected and step is not None:
            pngs = _artifact_pngs(trial, int(expected))
            if len(pngs) < expected:
                logger.warning("trial %s: %d of %d artifacts reached %s in time; logging those", trial, len(pngs), expected, trial.path)
            images = {f"artifacts/{p.stem}": np.asarray(Image.open(p).convert("RGB")) for p in pngs}
            if images:
                self._trial_queues[trial].put((_QueueItem.RESULT, _clean_log({**images, "training_iteration": step})))
        super().log_trial_end(trial, failed=failed)
