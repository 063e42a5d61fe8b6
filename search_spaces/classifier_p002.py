"""P002's Bayesian search: spatial dropout, dense units, dropout and learning rate.

The paper reports only its best values (Table 6); the ranges are inferred from them
(papers.md): dense units in multiples of 64 up to 512, dropout [0.3, 0.6], spatial dropout
[0.2, 0.5], lr log-uniform [1e-5, 1e-4].
"""

from __future__ import annotations

from search_spaces._registry import register_space


@register_space("classifier_p002")
def space(trial) -> None:
    trial.suggest_float("spatial_dropout", 0.2, 0.5)
    trial.suggest_categorical("dense_units", [64, 128, 192, 256, 320, 384, 448, 512])
    trial.suggest_float("dropout", 0.3, 0.6)
    trial.suggest_float("lr", 1e-5, 1e-4, log=True)
