"""The one registry of search spaces, and a probe that lists a space's parameter names."""

from __future__ import annotations

from typing import Any, Callable, Optional

from corrotune.registry import Registry

__all__ = ["SPACES", "SpaceFn", "get_space", "parameter_names", "register_space"]

SpaceFn = Callable[[Any], Optional[dict]]
"""A define-by-run function ``space(trial) -> dict | None`` (Optuna's trial API)."""

SPACES: Registry[SpaceFn] = Registry("search space")


def register_space(name: str) -> Callable[[SpaceFn], SpaceFn]:
    """Registers a define-by-run search space under ``name``."""
    return SPACES.register(name)


def get_space(name: str) -> SpaceFn:
    """Returns the search space ``name``; unknown names list the valid ones."""
    return SPACES.get(name)


class _Probe:
    """Stands in for an Optuna trial: records every suggested name, returns a valid value.

    Walking every branch of a conditional space is not possible without Optuna, so the probe
    takes the first categorical choice and the low end of ranges; names only suggested in
    other branches are checked when Optuna first suggests them (the trainable rejects them).
    """

    def __init__(self) -> None:
        self.names: list[str] = []

    def _record(self, name: str, value: Any) -> Any:
        self.names.append(name)
        return value

    def suggest_float(self, name: str, low: float, high: float, **_: Any) -> float:
        return self._record(name, low)

    def suggest_int(self, name: str, low: int, high: int, **_: Any) -> int:
        return self._record(name, low)

    def suggest_categorical(self, name: str, choices: Any) -> Any:
        return self._record(name, list(choices)[0])

    def set_user_attr(self, key: str, value: Any) -> None:
        """Spaces may annotate trials; the probe ignores it."""


def parameter_names(space: SpaceFn) -> list[str]:
    """Returns the names a space suggests (first branch) plus the constants it returns."""
    probe = _Probe()
    constants = space(probe) or {}
    return probe.names + list(constants)
