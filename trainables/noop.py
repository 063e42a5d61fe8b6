"""The ``noop`` trainable: no data, no model; a deterministic stand-in for testing and timing the
orchestration (per-trial overhead, actor reuse, retries, resume, multi-node placement).

Every epoch it reports ``epoch``, ``score``, ``resumed_from_epoch``, where it ran (``node_id``,
``pid``) and when (``time/trial_start``, ``time/report``: Unix seconds), with a checkpoint of a few
KiB (epoch, RNG state, and the ``history`` of its numeric metrics as the shared loop keeps it).
``score`` approaches ``x`` over the epochs plus a little noise drawn from the global Python,
NumPy and torch RNGs, so it depends only on ``(x, seed, epoch)`` when
those are seeded per trial and restored on resume, as :func:`~trainables._runtime.begin_trial`
and the checkpoint do. A restarted trial continues after its checkpoint's epoch.

Example (inside Ray Tune)::

    tuner = tune.Tuner(get_trainable("noop").as_trainable(),
                       param_space={"data": {"path": "synthetic:corrosion"}, "epochs": 3, "x": 0.5})
"""

from __future__ import annotations

import os
import random
import time
from typing import Any

import numpy as np
import torch

from trainables._registry import ARTIFACT_COUNT_KEY
from trainables._runtime import begin_trial, load_trial_checkpoint, report_with_checkpoint, rng_state, set_rng_state, trial_dir
from trainables.noop_config import NoopConfig

__all__ = ["NoopTrialError", "epoch_score", "train_noop"]


class NoopTrialError(RuntimeError):
    """Raised on purpose at ``fail_at_epoch``."""


def epoch_score(x: float, epoch: int) -> float:
    """``x · (1 − 2^−epoch)`` plus noise in [0, 0.01) from the global RNGs (advances each once)."""
    noise = (random.random() + float(np.random.random()) + float(torch.rand(()))) / 3.0
    return x * (1.0 - 0.5**epoch) + 0.01 * noise


def _node_id() -> str | None:
    import ray

    return ray.get_runtime_context().get_node_id() if ray.is_initialized() else None


def _write_artifacts(count: int, epoch: int) -> int:
    """Writes ``count`` small PNGs into the trial's ``artifacts/`` folder; how many it wrote."""
    from PIL import Image

    folder = trial_dir()
    if folder is None:  # not under Ray Tune
        return 0
    (folder / "artifacts").mkdir(parents=True, exist_ok=True)
    for index in range(count):
        pixels = np.full((8, 8, 3), (index * 37 + epoch) % 256, dtype=np.uint8)
        Image.fromarray(pixels).save(folder / "artifacts" / f"noop_{index}.png")
    return count


def train_noop(config: dict[str, Any]) -> None:
    """Ray Tune function trainable; ``config`` validates as :class:`~trainables.noop_config.NoopConfig`."""
    trial_start = time.time()
    cfg = NoopConfig.model_validate(config)
    begin_trial(cfg.seed)
    state = load_trial_checkpoint()
    start_epoch = state["epoch"] + 1 if state else 1
    if state:
        set_rng_state(state["rng"])
    where = {"node_id": _node_id(), "pid": os.getpid()}
    history = list(state.get("history") or []) if state else []
    for epoch in range(start_epoch, cfg.epochs + 1):
        if cfg.sleep_s:
            time.sleep(cfg.sleep_s)
        if epoch == cfg.fail_at_epoch:
            raise NoopTrialError(
                f"noop trial failed at epoch {epoch} on purpose (fail_at_epoch={cfg.fail_at_epoch}; "
                f"this run resumed from epoch {start_epoch - 1})"
            )
        metrics = {
            "epoch": epoch, "score": epoch_score(cfg.x, epoch), "resumed_from_epoch": start_epoch - 1,
            **where, "time/trial_start": trial_start, "time/report": time.time(),
        }
        if epoch == cfg.epochs and cfg.artifacts:
            metrics[ARTIFACT_COUNT_KEY] = _write_artifacts(cfg.artifacts, epoch)
        history.append({k: v for k, v in metrics.items() if isinstance(v, (int, float))})  # as the shared loop keeps it
        state = {"epoch": epoch, "rng": rng_state(), "history": history, "config": cfg.model_dump(mode="json")}
        report_with_checkpoint(metrics, state)
