"""The one registry of trainables.

Each entry pairs a pydantic config model (cheap to import: the CLI validates studies with it
before Ray or torch are loaded) with the import path of the Ray Tune function trainable.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from pydantic import BaseModel

from corrotune.registry import Registry

__all__ = ["ARTIFACT_COUNT_KEY", "TRAINABLES", "TRIAL_META_KEY", "TrainableEntry", "get_trainable", "register_trainable", "split_trial_meta"]

TRIAL_META_KEY = "corrotune"
"""Trial config key under which the orchestrator records a trial's place in the study
(``cell``, ``factors``, ``phase``, ``repeat``); the trainable itself never sees it."""

ARTIFACT_COUNT_KEY = "artifacts/files"
"""Result key in which a trial reports how many images (``artifacts/*.png``) it wrote: the W&B
logger waits for that many (``orchestrator/_wandb_artifacts.py`` reads the same key)."""


def split_trial_meta(config: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(trainable config, study metadata)`` of a trial config."""
    config = dict(config)
    return config, config.pop(TRIAL_META_KEY, None) or {}


@dataclass(frozen=True)
class TrainableEntry:
    """A registered trainable.

    Attributes:
        name: Registry key used in study files (``trainable: classifier``).
        config_model: Pydantic model of the trial config (unknown keys are rejected).
        entrypoint: ``"module:function"`` of the Ray Tune function trainable.
        task: ``classification`` or ``segmentation``: how its dataset is read.
        epochs_key: Config key holding the epoch budget (the schedulers' ``max_t``).
        test_columns: Final test metrics the leaderboard shows for its trials.
        artifact_files: Files its ``artifacts/`` folder always holds after a finished trial.
        tiny_config: A config that runs in seconds on a CPU (two epochs or more): the contract
            test (``tests/trainables/test_contract.py``) runs every registered trainable with it.
        metrics: The metric names its results carry, ``fnmatch`` patterns allowed
            (``val/f1/*``); a study's objectives must name one. Empty: not declared, not checked.
    """

    name: str
    config_model: type[BaseModel]
    entrypoint: str
    task: str = "classification"
    epochs_key: str = "epochs"
    test_columns: tuple[str, ...] = ()
    artifact_files: tuple[str, ...] = ()
    tiny_config: Mapping[str, Any] = field(default_factory=dict)
    metrics: tuple[str, ...] = ()

    def reports(self, metric: str) -> bool:
        """Whether ``metric`` is one this trainable reports (always True when none are declared)."""
        import fnmatch

        return not self.metrics or any(fnmatch.fnmatchcase(metric, pattern) for pattern in self.metrics)

    def load(self) -> Callable[[dict[str, Any]], None]:
        """Imports and returns the trainable function (imports torch)."""
        module_name, function_name = self.entrypoint.split(":")
        return getattr(importlib.import_module(module_name), function_name)

    def as_trainable(self) -> Callable[[dict[str, Any]], None]:
        """A function trainable named after the entry that imports the real one when called.

        The driver hands it to Ray without importing torch; each worker imports on first use.
        The orchestrator's metadata (:data:`TRIAL_META_KEY`) is removed from the config first.
        """
        entrypoint = self.entrypoint

        def trainable(config: dict[str, Any]) -> None:
            module_name, function_name = entrypoint.split(":")
            getattr(importlib.import_module(module_name), function_name)(split_trial_meta(config)[0])

        trainable.__name__ = trainable.__qualname__ = self.name
        return trainable


TRAINABLES: Registry[TrainableEntry] = Registry("trainable")


def register_trainable(
    name: str,
    config_model: type[BaseModel],
    entrypoint: str,
    task: str,
    *,
    test_columns: tuple[str, ...] = (),
    artifact_files: tuple[str, ...] = (),
    tiny_config: Mapping[str, Any] | None = None,
    metrics: tuple[str, ...] = (),
) -> TrainableEntry:
    """Registers a trainable; returns its entry (see :class:`TrainableEntry` for the arguments)."""
    entry = TrainableEntry(
        name=name, config_model=config_model, entrypoint=entrypoint, task=task,
        test_columns=tuple(test_columns), artifact_files=tuple(artifact_files), tiny_config=dict(tiny_config or {}),
        metrics=tuple(metrics),
    )
    TRAINABLES.register(name)(entry)
    return entry


def get_trainable(name: str) -> TrainableEntry:
    """Returns the trainable ``name``; unknown names list the valid ones."""
    return TRAINABLES.get(name)
