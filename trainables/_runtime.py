"""What every trainable needs around its loop: seeds, RNG state, device, checkpoints."""

from __future__ import annotations

import logging
import random
import tempfile
import warnings
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ray import tune

__all__ = [
    "autocast",
    "load_trial_checkpoint",
    "quiet_ray_logs",
    "report_with_checkpoint",
    "rng_state",
    "seed_everything",
    "select_device",
    "set_rng_state",
    "trial_dir",
]

_STATE_FILE = "state.pt"


def quiet_ray_logs() -> None:
    """Silences Ray's per-checkpoint INFO lines in the worker (errors still show)."""
    logging.getLogger("ray.train").setLevel(logging.WARNING)
    logging.getLogger("ray.tune").setLevel(logging.WARNING)


def seed_everything(seed: int) -> None:
    """Seeds Python, NumPy and torch (CPU and CUDA) in this process."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def select_device(preference: str) -> torch.device:
    """``auto`` → CUDA when available, else CPU; ``cuda`` without a GPU is an error."""
    if preference == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device: cuda was requested but no CUDA device is visible to this trial")
    if preference == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda")


def autocast(device: torch.device, enabled: bool):
    """Mixed-precision context on CUDA; a no-op elsewhere."""
    if enabled and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.float16)
    return nullcontext()


def load_trial_checkpoint() -> dict[str, Any] | None:
    """Returns the state saved by the last ``report_with_checkpoint`` of this trial, if any."""
    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as directory:
        return torch.load(Path(directory) / _STATE_FILE, map_location="cpu", weights_only=False)


def trial_dir() -> Path | None:
    """This trial's directory when running under Ray Tune, else None."""
    with warnings.catch_warnings():  # outside Tune, Ray warns and returns None
        warnings.simplefilter("ignore")
        directory = tune.get_context().get_trial_dir()
    return Path(directory) if directory else None


def report_with_checkpoint(metrics: dict[str, Any], state: dict[str, Any]) -> None:
    """Reports metrics to Tune together with a checkpoint holding ``state``."""
    with tempfile.TemporaryDirectory(prefix="corrotune-ckpt-") as directory:
        torch.save(state, Path(directory) / _STATE_FILE)
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))
