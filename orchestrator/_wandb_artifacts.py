"""A trial's end-of-trial images (plots, Grad-CAM overlays) for its W&B run."""

from __future__ import annotations

import io
import logging
import time
from functools import partial
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image

__all__ = ["ARTIFACT_COUNT_KEY", "artifact_images"]

logger = logging.getLogger(__name__)


ARTIFACT_COUNT_KEY = "artifacts/files"
"""Result key in which a trial reports how many artifact files it wrote."""

SYNC_WAIT_S = 30.0
"""How long to wait for a trial's artifacts to reach the study directory (Ray syncs them
asynchronously after the last report)."""


def _artifact_pngs(trial: Any) -> dict[str, Callable[[], bytes]]:
    """``{stem: read}`` of the PNGs in the trial's ``artifacts/`` folder that holds the most.

    The folder is looked for in the study (on the storage filesystem, remote or not) and in
    the driver's staging copy.
    """
    import pyarrow.fs

    filesystem = trial.storage.storage_filesystem
    selector = pyarrow.fs.FileSelector(f"{trial.path}/artifacts", allow_not_found=True)
    stored = {
        info.base_name[: -len(".png")]: partial(_read, filesystem, info.path)
        for info in filesystem.get_file_info(selector)
        if info.type == pyarrow.fs.FileType.File and info.base_name.endswith(".png")
    }
    staged = {p.stem: p.read_bytes for p in sorted(Path(trial.local_path, "artifacts").glob("*.png"))}
    return max(stored, staged, key=len)


def _read(filesystem: Any, path: str) -> bytes:
    with filesystem.open_input_stream(path) as stream:
        return stream.readall()


def artifact_images(trial: Any, wait_s: float = SYNC_WAIT_S) -> dict[str, np.ndarray]:
    """``{"artifacts/<stem>": (H, W, 3) uint8}`` for ``<trial>/artifacts/*.png``; empty if none were reported.

    Args:
        trial: A ``ray.tune.experiment.Trial`` whose last result carries :data:`ARTIFACT_COUNT_KEY`.
        wait_s: How long to wait for all reported files to reach the study directory.
    """
    expected = (trial.last_result or {}).get(ARTIFACT_COUNT_KEY)
    if not expected:
        return {}
    deadline = time.monotonic() + wait_s
    while len(pngs := _artifact_pngs(trial)) < expected and time.monotonic() < deadline:
        time.sleep(0.2)
    if len(pngs) < expected:
        logger.warning("trial %s: %d of %d artifacts reached %s in time; logging those", trial, len(pngs), expected, trial.path)
    images = {}
    for stem, read in sorted(pngs.items()):
        try:
            images[f"artifacts/{stem}"] = np.asarray(Image.open(io.BytesIO(read())).convert("RGB"))
        except (OSError, ValueError) as err:  # a file still being written
            logger.warning("trial %s: artifact %s.png not readable: %s", trial, stem, err)
    return images
