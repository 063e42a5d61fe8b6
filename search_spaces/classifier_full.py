"""Every searchable part of the classifier, conditional where the papers' choices are.

Regularisation (dropout, spatial dropout, dense width), optimisation (lr, fine-tune fraction),
the head (pooling; attention type only when it has a placement) and the loss (focal α/γ only
for the focal losses). ``auto`` stands for BCE on two classes and CE otherwise, so the space
fits binary and multi-class datasets alike.
"""

from __future__ import annotations

from search_spaces._registry import register_space


@register_space("classifier_full")
def space(trial) -> None:
    trial.suggest_float("lr", 1e-5, 1e-2, log=True)
    trial.suggest_float("dropout", 0.0, 0.6)
    trial.suggest_float("spatial_dropout", 0.0, 0.5)
    trial.suggest_categorical("dense_units", [0, 128, 256, 512])
    trial.suggest_float("fine_tune_fraction", 0.0, 1.0)
    trial.suggest_categorical("pooling", ["gap", "gmp"])
    loss = trial.suggest_categorical("loss", ["auto", "focal", "modified_focal"])
    if loss != "auto":
        trial.suggest_float("focal_gamma", 0.0, 5.0)
        trial.suggest_float("focal_alpha", 0.1, 0.9)
    placement = trial.suggest_categorical("attention_placement", ["none", "last_stage", "penultimate_stage", "head"])
    if placement != "none":
        trial.suggest_categorical("attention", ["mhsa", "ela", "simam", "gam"])
