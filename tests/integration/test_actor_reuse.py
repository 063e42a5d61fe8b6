"""Actor reuse: trials that share a worker process do not depend on the trials before them.

The runner starts Ray Tune with ``reuse_actors=True``; each trial then runs in a new thread of
the same worker process, which keeps whatever earlier trials changed process-wide. A trainable
starts with ``begin_trial(seed)``, which undoes it; the decoded dataset cache survives.
"""

from __future__ import annotations

import json
import os
import random
import threading
from pathlib import Path
from typing import Any, Callable

import pytest
import torch
from rich.console import Console

from tests.ray_session import local_ray
from trainables import _runtime
from trainables._runtime import begin_trial
from trainables.noop import epoch_score

DATA = {"path": "synthetic:corrosion", "synthetic": {"num_images": 48, "image_size": 32}}


# The helpers below also run in Ray workers, shipped by value (see ``one_worker_ray``): they import
# torch locally, as cloudpickle cannot ship references to torch's submodule objects.


def _settings() -> dict[str, Any]:
    import torch

    return {
        "threads": torch.get_num_threads(),
        "dtype": str(torch.get_default_dtype()),
        "matmul": torch.get_float32_matmul_precision(),
        "deterministic": torch.are_deterministic_algorithms_enabled(),
        "anomaly": torch.is_anomaly_enabled(),
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "cudnn_deterministic": torch.backends.cudnn.deterministic,
    }


def _draws() -> list[float]:
    import numpy as np
    import torch

    return [random.random(), float(np.random.random()), float(torch.rand(()))]


def _pollute() -> None:
    """Leaves behind what a careless trainable could: changed torch settings, an open W&B run,
    advanced RNGs."""
    import torch
    import wandb

    torch.set_num_threads(torch.get_num_threads() + 1)
    torch.set_default_dtype(torch.float64)
    torch.set_float32_matmul_precision("medium")
    torch.use_deterministic_algorithms(True)
    torch.autograd.set_detect_anomaly(True)
    torch.backends.cudnn.benchmark = True
    torch.backends.cudnn.deterministic = True
    wandb.init(mode="disabled")
    _draws()


def _in_new_thread(fn: Callable[[], Any]) -> Any:
    """Runs ``fn`` as Ray runs a trial in a reused actor: in a new thread of this process."""
    out: list[Any] = []
    thread = threading.Thread(target=lambda: out.append(fn()))
    thread.start()
    thread.join()
    return out[0]


def test_begin_trial_undoes_what_an_earlier_trial_in_the_process_changed(monkeypatch):
    import wandb

    monkeypatch.setattr(_runtime, "_baseline", None)  # this test's first trial sets the baseline
    before = _settings()

    def first_trial():
        begin_trial(3)
        draws = _draws()
        _pollute()
        return draws

    def second_trial():
        begin_trial(3)
        return _settings(), wandb.run, _draws()

    try:
        first = _in_new_thread(first_trial)
        assert _in_new_thread(_settings) != before  # the leak is real
        settings, run, draws = _in_new_thread(second_trial)
        assert settings == before
        assert run is None
        assert draws == first
    finally:
        _in_new_thread(lambda: begin_trial(0))  # leave the test process as it was
        wandb.finish()
    assert _in_new_thread(_settings) == before


def test_begin_trial_keeps_the_decoded_dataset_cache():
    from trainables.data.config import DataConfig
    from trainables.data.prepare import load_index
    from trainables.data.tensors import _decoded, load_split_tensors

    index = load_index(DataConfig(**DATA), "classification")
    first = load_split_tensors(index, 32)
    begin_trial(0)
    hits = _decoded.cache_info().hits
    again = load_split_tensors(index, 32)
    assert _decoded.cache_info().hits == hits + 1  # the next trial reads the same decoded arrays
    assert torch.equal(first["train"].images, again["train"].images)


def test_begin_trial_frees_the_cuda_cache_of_earlier_trials(monkeypatch, caplog):
    calls = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: calls.append("empty_cache"))
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda: calls.append("reset_peak"))
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda: 3 * 2**20)
    monkeypatch.setattr(torch, "manual_seed", lambda seed: None)  # no CUDA to seed here
    with caplog.at_level("WARNING", logger="trainables._runtime"):
        begin_trial(0)
    assert calls == ["empty_cache", "reset_peak"]
    assert "3.0 MiB of CUDA tensors from earlier trials" in caplog.text


def test_begin_trial_without_cuda_skips_the_garbage_collection(monkeypatch):
    import gc

    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)
    monkeypatch.setattr(gc, "collect", lambda *a: pytest.fail("gc.collect costs ~0.1 s per trial"))
    begin_trial(0)


# --- through Ray Tune, on one worker process ------------------------------------------------------


@pytest.fixture(scope="module")
def one_worker_ray():
    with local_ray(__name__, num_cpus=1):
        yield


def _fit(trainable, param_space: dict, storage: Path, name: str) -> list[dict[str, Any]]:
    """Runs one trial per grid value, one at a time, reusing the worker; returns each trial's
    results in trial order."""
    from ray import tune

    tuner = tune.Tuner(
        tune.with_resources(trainable, {"cpu": 1}),
        param_space=param_space,
        tune_config=tune.TuneConfig(reuse_actors=True, max_concurrent_trials=1),
        run_config=tune.RunConfig(name=name, storage_path=str(storage), verbose=0),
    )
    results = tuner.fit()
    assert not results.errors, results.errors
    return [r.metrics_dataframe.to_dict("records") for r in sorted(results, key=lambda r: r.path)]


def _leaky_trial(config: dict[str, Any]) -> None:
    """Reports what it found after ``begin_trial``, then pollutes the process (see ``_pollute``)."""
    import wandb
    from ray import tune

    begin_trial(config["seed"])
    found = {"settings": json.dumps(_settings()), "wandb_open": wandb.run is not None,
             "draws": json.dumps(_draws()), "pid": os.getpid()}
    _pollute()
    tune.report(found)


@pytest.mark.slow
def test_reused_worker_starts_every_trial_clean(one_worker_ray, tmp_path):
    from ray import tune

    runs = _fit(_leaky_trial, {"seed": tune.grid_search([5, 6, 5, 5])}, tmp_path, "leaky")
    found = [run[-1] for run in runs]
    assert len({f["pid"] for f in found}) == 1, "the trials did not share one worker process"
    assert len({f["settings"] for f in found}) == 1
    assert not any(f["wandb_open"] for f in found)
    seeds = [5, 6, 5, 5]
    draws = {s: {f["draws"] for f, seed in zip(found, seeds) if seed == s} for s in set(seeds)}
    assert all(len(d) == 1 for d in draws.values()), draws  # the seed alone decides
    assert draws[5] != draws[6]


@pytest.mark.slow
def test_study_trials_share_a_worker_and_score_as_if_each_ran_first(one_worker_ray, tmp_path):
    from orchestrator.runner import run_study
    from orchestrator.spec import validate_study

    study = validate_study({
        "name": "reuse", "trainable": "noop", "data": DATA,
        "params": {"epochs": 2, "seed": 7},
        "search": {"space": "noop", "sampler": "random", "num_samples": 4, "seed": 0},
        "objective": {"metric": "score", "mode": "max"},
        "scheduler": {"name": "fifo"},
        "max_concurrent_trials": 1,
        "tracking": {"wandb": {"mode": "disabled"}},
    })
    run_study(study, tmp_path / "results", Console(quiet=True))
    trials = [
        [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        for path in sorted((tmp_path / "results").glob("**/result.json"))
    ]
    assert len(trials) == 4
    assert len({r["pid"] for trial in trials for r in trial}) == 1, "the runner did not reuse the worker"
    assert all(r["resumed_from_epoch"] == 0 for trial in trials for r in trial)  # no checkpoint handed on
    for trial in trials:
        x = trial[0]["config"]["x"]
        begin_trial(7)  # the trial's seed, in this (different) process
        assert [r["score"] for r in trial] == [epoch_score(x, epoch) for epoch in (1, 2)]


CLASSIFIER = {
    "data": DATA, "backbone": "resnet10t", "pretrained": False, "image_size": 32, "epochs": 1,
    "batch_size": 16, "artifacts": False, "profile": False,
}
TARGET = {**CLASSIFIER, "seed": 0, "lr": 1e-3}
OTHER = {**CLASSIFIER, "seed": 1, "lr": 1e-2, "dropout": 0.5}
COMPARED = ("train/loss", "val/loss", "val/accuracy", "test/loss", "test/accuracy")


def _classifier_trials(configs: dict[str, dict]):
    """A function trainable that runs the registered classifier on ``configs[config["which"]]``,
    or ``_leaky_trial`` for ``which: leaky``."""
    from trainables import get_trainable

    classifier = get_trainable("classifier").as_trainable()

    def run(config):
        if config["which"] == "leaky":
            _leaky_trial({"seed": 0})
        else:
            classifier(configs[config["which"]])

    return run


def _assert_target_as_if_alone(tmp_path, first: str) -> None:
    from ray import tune

    trainable = _classifier_trials({"other": OTHER, "target": TARGET})
    after = _fit(trainable, {"which": tune.grid_search([first, "target"])}, tmp_path, f"after-{first}")
    alone = _fit(trainable, {"which": "target"}, tmp_path, "alone")
    assert after[0][-1]["pid"] == after[1][-1]["pid"], "the two trials did not share one worker process"
    assert alone[0][-1]["pid"] != after[1][-1]["pid"]
    for key in COMPARED:
        assert after[1][-1][key] == alone[0][-1][key], key


@pytest.mark.slow
def test_classifier_scores_the_same_after_another_classifier_trial_in_the_worker(one_worker_ray, tmp_path):
    _assert_target_as_if_alone(tmp_path, "other")


@pytest.mark.slow
def test_classifier_scores_the_same_after_a_careless_trial_in_the_worker(one_worker_ray, tmp_path):
    """Needs ``begin_trial`` in ``train_classifier``: the careless trial leaves float64 as the
    default dtype, another thread count and cudnn flags behind."""
    _assert_target_as_if_alone(tmp_path, "leaky")


@pytest.mark.slow
def test_noop_retry_resumes_from_its_checkpoint_in_a_fresh_worker(one_worker_ray, tmp_path):
    """An errored trial's worker is not reused; Ray's retry restores the last checkpoint."""
    from ray import tune

    from trainables import get_trainable

    tuner = tune.Tuner(
        tune.with_resources(get_trainable("noop").as_trainable(), {"cpu": 1}),
        param_space={"data": DATA, "epochs": 3, "x": 0.5, "seed": 1, "fail_at_epoch": 3},
        tune_config=tune.TuneConfig(reuse_actors=True),
        run_config=tune.RunConfig(name="retry", storage_path=str(tmp_path), verbose=0,
                                  failure_config=tune.FailureConfig(max_failures=1)),
    )
    result = tuner.fit()[0]
    rows = result.metrics_dataframe.to_dict("records")
    assert [(r["epoch"], r["resumed_from_epoch"]) for r in rows] == [(1, 0), (2, 0)]
    # the retry (the last error) started from epoch 2's checkpoint and failed at epoch 3 again
    assert "fail_at_epoch=3; this run resumed from epoch 2" in str(result.error)
