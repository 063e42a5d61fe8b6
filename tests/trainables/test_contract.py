"""The contract every registered trainable keeps (smp's ``BaseModelTester``, timm's ``test_models.py``).

Parametrised over ``trainables.TRAINABLES`` with each entry's own ``tiny_config``, so a
trainable registered later is covered without touching this file.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from tests.ray_session import local_ray
from trainables import ARTIFACT_COUNT_KEY, TRAINABLES, get_trainable

NAMES = list(TRAINABLES)

RAY_KEYS = {
    "timestamp", "checkpoint_dir_name", "done", "training_iteration", "trial_id", "date", "time_this_iter_s",
    "time_total_s", "pid", "hostname", "node_ip", "time_since_restore", "iterations_since_restore", "should_checkpoint",
    "config", "experiment_tag",
}
"""Keys Ray adds to every result."""

PLAIN_KEYS = {"epoch", "phase", "lr", "best_epoch", "resumed_from_epoch", "empty_mask_score", "score", "node_id"}
"""Bookkeeping keys a trainable may report without a namespace (``score``/``node_id``: noop's)."""


def _tiny(name: str) -> dict:
    config = dict(get_trainable(name).tiny_config)
    assert config, f"trainable {name!r} registers no tiny_config for the contract test"
    return config


@pytest.mark.parametrize("name", NAMES)
def test_tiny_config_is_valid_and_has_a_mid_run_checkpoint(name):
    entry = get_trainable(name)
    cfg = entry.config_model.model_validate(_tiny(name))
    assert getattr(cfg, entry.epochs_key) >= 2, "the resume check needs a checkpoint before the last epoch"


@pytest.mark.parametrize("name", NAMES)
def test_unknown_config_keys_are_rejected(name):
    entry = get_trainable(name)
    with pytest.raises(ValidationError, match="not_a_key"):
        entry.config_model.model_validate({**_tiny(name), "not_a_key": 1})


@pytest.mark.parametrize("name", NAMES)
def test_a_lone_last_training_sample_does_not_break_training(name, monkeypatch):
    """2k+1 style: the train split is one sample more than a multiple of the batch size."""
    import trainables.loop as loop
    from trainables.data.prepare import load_index

    entry = get_trainable(name)
    if "batch_size" not in entry.config_model.model_fields:
        pytest.skip(f"{name} has no training batches")
    config = {**_tiny(name), entry.epochs_key: 1, "artifacts": False}
    cfg = entry.config_model.model_validate(config)
    n_train = len(load_index(cfg.data, entry.task).split("train"))
    assert n_train >= 3
    config["batch_size"] = n_train - 1  # batches of n - 1 and 1
    reported: list[dict] = []
    monkeypatch.setattr(loop, "load_trial_checkpoint", lambda: None)
    monkeypatch.setattr(loop, "report_with_checkpoint", lambda metrics, state: reported.append(metrics))
    entry.load()(config)
    assert len(reported) == 1 and math.isfinite(reported[0]["train/loss"])


def _crash_once(name: str):
    """The trainable ``name``, failing once just before its second report (a Ray retry resumes it
    from the first epoch's checkpoint) when its config carries ``_crash_marker``."""

    def trainable(config: dict) -> None:
        import ray.tune

        config = dict(config)
        marker = config.pop("_crash_marker", None)
        real = ray.tune.report

        def report(metrics, *args, **kwargs):
            if marker and metrics.get("epoch") == 2 and not os.path.exists(marker):
                Path(marker).touch()
                raise RuntimeError("injected failure before epoch 2 was reported")
            return real(metrics, *args, **kwargs)

        ray.tune.report = report
        try:
            get_trainable(name).as_trainable()(config)
        finally:
            ray.tune.report = real

    trainable.__name__ = name
    return trainable


@pytest.fixture(scope="module")
def ray_session():
    with local_ray(__name__):
        yield


def _own(row: dict) -> dict:
    """What the trainable itself reported, without timings, model cost and the resume marker."""
    return {
        k: v for k, v in row.items()
        if k not in RAY_KEYS and not k.startswith(("config/", "time/", "model/")) and k != "resumed_from_epoch"
    }


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_through_ray_reports_namespaced_metrics_resumes_exactly_and_writes_artifacts(name, ray_session, tmp_path):
    from ray import tune

    from orchestrator.ray_repairs.trial_files import UploadBeforeRetry

    entry = get_trainable(name)
    marker = str(tmp_path / "crashed")
    tuner = tune.Tuner(
        tune.with_resources(_crash_once(name), {"cpu": 1}),
        param_space={**_tiny(name), "_crash_marker": tune.grid_search([None, marker])},
        tune_config=tune.TuneConfig(max_concurrent_trials=2),
        run_config=tune.RunConfig(
            name="contract", storage_path=str(tmp_path / "ray"), verbose=0,
            failure_config=tune.FailureConfig(max_failures=1),
            # as corrotune's runner does: without it Ray restores the retried trial's result.json
            # from a storage copy its periodic sync had not updated yet, and epoch 1's row is lost
            callbacks=[UploadBeforeRetry()],
        ),
    )
    results = tuner.fit()
    assert not results.errors, results.errors
    by_marker = {r.config["_crash_marker"]: r for r in results}
    whole, resumed = by_marker[None], by_marker[marker]
    assert os.path.exists(marker), "the injected failure never fired"
    rows = {k: [dict(row) for row in r.metrics_dataframe.to_dict("records")] for k, r in (("whole", whole), ("resumed", resumed))}
    epochs = getattr(entry.config_model.model_validate(_tiny(name)), entry.epochs_key)
    assert [row["epoch"] for row in rows["whole"]] == list(range(1, epochs + 1))
    assert [row["epoch"] for row in rows["resumed"]] == list(range(1, epochs + 1))
    assert rows["resumed"][1]["resumed_from_epoch"] == 1  # epoch 2 ran after the restart
    for a, b in zip(rows["whole"], rows["resumed"]):
        assert _own(b) == pytest.approx(_own(a), nan_ok=True)

    reported = {k for k in whole.metrics if k not in RAY_KEYS}
    plain = sorted(k for k in reported if "/" not in k and k not in PLAIN_KEYS)
    assert not plain, f"{name} reports metrics without a namespace: {plain}"
    select = getattr(entry.config_model.model_validate(_tiny(name)), "select_metric", None)
    if select is not None:
        assert all(select in row for row in rows["whole"])
        assert any(k.startswith("test/") for k in reported), f"{name} reports no test/* metrics at the end"
    assert set(entry.test_columns) <= reported

    if entry.artifact_files:
        folder = Path(whole.path) / "artifacts"
        missing = [f for f in entry.artifact_files if not (folder / f).is_file()]
        assert not missing, f"{name} did not write {missing} into {folder}"
        assert whole.metrics[ARTIFACT_COUNT_KEY] == len(list(folder.glob("*.png")))
