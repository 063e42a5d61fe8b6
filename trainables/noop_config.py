"""Typed config of the ``noop`` trainable (cheap to import: no torch, no Ray)."""

from __future__ import annotations

from typing import Optional

from pydantic import BaseModel, ConfigDict, Field

from trainables.data.config import DataConfig

__all__ = ["NoopConfig"]


class NoopConfig(BaseModel):
    """One ``noop`` trial: no data is read and no model is built.

    Attributes:
        data: The study's data section; accepted (a study must have one) but never read.
        epochs: Number of reports (the schedulers' ``max_t``).
        seed: Seeds Python, NumPy and torch; the score's noise comes from those global RNGs.
        sleep_s: Seconds slept per epoch, to stand in for work.
        x: The searched value (``search_spaces/noop.py`` suggests it in [0, 1]).
        fail_at_epoch: Raise :class:`~trainables.noop.NoopTrialError` every time the trial
            reaches this epoch (retries resume from the checkpoint before it and fail again).
        artifacts: PNG files (8x8 px) written into the trial's ``artifacts/`` folder at its last
            epoch and counted in ``artifacts/files``, as the real trainables' end-of-trial plots
            are: a stand-in for timing how the driver logs them to W&B.
    """

    model_config = ConfigDict(extra="forbid")

    data: DataConfig
    epochs: int = Field(1, ge=1)
    seed: int = 0
    sleep_s: float = Field(0.0, ge=0.0)
    x: float = 0.0
    fail_at_epoch: Optional[int] = Field(None, ge=1)
    artifacts: int = Field(0, ge=0)
