"""The foundation space for the ``classifier`` trainable: learning rate, dropout, dense units.

Keys mirror ``ClassifierConfig`` fields, so a suggestion is a config override.
"""

from __future__ import annotations

from search_spaces._registry import register_space


@register_space("classifier_basic")
def space(trial) -> None:
    trial.suggest_float("lr", 1e-4, 3e-2, log=True)
    trial.suggest_float("dropout", 0.0, 0.6)
    trial.suggest_categorical("dense_units", [64, 128, 256])
