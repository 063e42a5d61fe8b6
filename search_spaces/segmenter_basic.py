"""The foundation space for the ``segmenter`` trainable: learning rate, loss, encoder fine-tune
fraction and batch size (P001 fixes the rest).

Keys mirror ``SegmenterConfig`` fields, so a suggestion is a config override; ``dice_weight``
is suggested only when the loss is ``dice+bce``.
"""

from __future__ import annotations

from search_spaces._registry import register_space


@register_space("segmenter_basic")
def space(trial) -> None:
    trial.suggest_float("lr", 1e-4, 1e-2, log=True)
    loss = trial.suggest_categorical("loss", ["dice", "dice+bce", "focal", "lovasz"])
    if loss == "dice+bce":
        trial.suggest_float("dice_weight", 0.2, 0.8)
    trial.suggest_categorical("fine_tune_fraction", [0.0, 0.5, 1.0])
    trial.suggest_categorical("batch_size", [4, 8, 16])
