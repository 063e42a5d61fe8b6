"""The space of the ``noop`` trainable: one uniform value ``x`` in [0, 1] (its ``score`` approaches it)."""

from __future__ import annotations

from search_spaces._registry import register_space


@register_space("noop")
def space(trial) -> None:
    trial.suggest_float("x", 0.0, 1.0)
