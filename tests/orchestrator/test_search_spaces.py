"""Contract over every registered search space (Optuna trials, the trainable's config)."""

import time

import optuna
import pytest

from search_spaces import SPACES, get_space, parameter_names
from trainables import get_trainable

SPACE_TRAINABLE = {
    "classifier_basic": "classifier", "classifier_full": "classifier", "classifier_p002": "classifier",
    "esg_convnext": "esg_convnext", "noop": "noop", "segmenter_basic": "segmenter",
}


def test_every_space_is_mapped_to_a_trainable():
    assert set(SPACES.names()) == set(SPACE_TRAINABLE)


@pytest.mark.parametrize("name", SPACES.names())
def test_space_suggestions_are_valid_trainable_configs(name):
    config_model = get_trainable(SPACE_TRAINABLE[name]).config_model
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    space = get_space(name)
    for _ in range(60):
        trial = study.ask()
        started = time.perf_counter()
        constants = space(trial) or {}
        assert time.perf_counter() - started < 0.05, "a search space must not compute"
        config = {**trial.params, **constants, "data": {"path": "synthetic:corrosion"}}
        config_model.model_validate(config)  # every suggested key and value is a valid config
        study.tell(trial, 0.5)
    assert set(parameter_names(space)) <= set(config_model.model_fields)


def test_classifier_basic_samples_lr_on_a_log_scale():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    values = []
    for _ in range(200):
        trial = study.ask()
        get_space("classifier_basic")(trial)
        values.append(trial.params["lr"])
        study.tell(trial, 0.0)
    below_1e3 = sum(v < 1e-3 for v in values) / len(values)
    # log-uniform over [1e-4, 3e-2]: P(lr < 1e-3) = log(10)/log(300) ≈ 0.40 (uniform would give 0.03)
    assert 0.3 < below_1e3 < 0.5


def test_classifier_full_is_conditional():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    seen = []
    for _ in range(80):
        trial = study.ask()
        get_space("classifier_full")(trial)
        params = trial.params
        assert ("focal_gamma" in params) == (params["loss"] != "auto")
        assert ("attention" in params) == (params["attention_placement"] != "none")
        seen.append(params)
        study.tell(trial, 0.5)
    assert {p["attention_placement"] for p in seen} == {"none", "last_stage", "penultimate_stage", "head"}


def test_segmenter_basic_suggests_dice_weight_only_for_dice_bce():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    losses = set()
    for _ in range(60):
        trial = study.ask()
        get_space("segmenter_basic")(trial)
        assert ("dice_weight" in trial.params) == (trial.params["loss"] == "dice+bce")
        losses.add(trial.params["loss"])
        study.tell(trial, 0.5)
    assert {"dice", "dice+bce"} <= losses
