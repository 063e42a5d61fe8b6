"""Ray's W&B callback, extended to upload each trial's end-of-trial images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from ray.air.integrations.wandb import WandbLoggerCallback, _clean_log, _QueueItem

__all__ = ["ArtifactWandbLoggerCallback"]


class ArtifactWandbLoggerCallback(WandbLoggerCallback):
    """Logs ``<trial>/artifacts/*.png`` (plots, Grad-CAM) as W&B images at the trial's last step."""

    def log_trial_end(self, trial, failed: bool = False) -> None:
        # the study directory holds the synced artifacts; the driver's staging folder may not
        folder = next((f for f in (Path(trial.path) / "artifacts", Path(trial.local_path) / "artifacts") if f.is_dir()), None)
        step = (trial.last_result or {}).get("training_iteration")
        if trial in self._trial_queues and folder is not None and step is not None:
            images = {f"artifacts/{p.stem}": np.asarray(Image.open(p).convert("RGB")) for p in sorted(folder.glob("*.png"))}
            if images:
                self._trial_queues[trial].put((_QueueItem.RESULT, _clean_log({**images, "training_iteration": step})))
        super().log_trial_end(trial, failed=failed)
