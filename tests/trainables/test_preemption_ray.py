"""SIGTERM to a trial's worker mid-epoch under Ray Tune: Ray's retry continues at that batch and
ends with the metrics of an identical trial that was never interrupted."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from tests.ray_session import local_ray

pytestmark = pytest.mark.slow

BATCHES_PER_EPOCH = 4  # the train split of the 40 synthetic images, batch 8
CONFIG = {
    "data": {"path": "synthetic:corrosion", "synthetic": {"num_images": 40, "image_size": 32}},
    "backbone": "resnet10t", "image_size": 32, "batch_size": 8, "epochs": 2, "dropout": 0.3,
    "dense_units": 16, "augmentation": "p002", "seed": 5, "artifacts": False, "profile": False,
}
KILL_AT_BATCH = BATCHES_PER_EPOCH + 2  # the victim gets SIGTERM while it trains epoch 2's second batch


@pytest.fixture(scope="module", autouse=True)
def _ray():
    with local_ray(__name__):
        yield


def _trial(config: dict) -> None:
    """The classifier, with each batch start logged (and, for the victim, slowed) to time the SIGTERM."""
    import torch

    import trainables.classifier as classifier

    torch.set_num_threads(1)
    config = dict(config)
    victim = config.pop("victim")
    progress = Path(config.pop("progress")) / ("victim.jsonl" if victim else "twin.jsonl")
    train_batch = classifier.ClassifierTask.train_batch

    def logged(self, index, generator):
        with progress.open("a") as log:
            log.write(json.dumps({"pid": os.getpid()}) + "\n")
        if victim:
            time.sleep(0.4)
        return train_batch(self, index, generator)

    classifier.ClassifierTask.train_batch = logged
    try:
        classifier.train_classifier(config)
    finally:
        classifier.ClassifierTask.train_batch = train_batch


def _batch_pids(path: Path) -> list[int]:
    return [json.loads(line)["pid"] for line in path.read_text().splitlines()] if path.exists() else []


def _kill_when_mid_epoch(path: Path, killed: list[int], done: threading.Event) -> None:
    while not done.is_set():  # a loaded machine may take minutes to get there
        pids = _batch_pids(path)
        if len(pids) >= KILL_AT_BATCH:
            os.kill(pids[-1], signal.SIGTERM)
            killed.append(pids[-1])
            return
        time.sleep(0.05)


def _comparable(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if ("/" in k or k in ("epoch", "best_epoch")) and not k.startswith(("time/", "model/"))}


def test_sigterm_mid_epoch_resumes_at_that_batch_with_the_metrics_of_an_uninterrupted_trial(tmp_path):
    from ray import tune

    from orchestrator.ray_repairs.trial_files import DropRepeatedResults, UploadBeforeRetry

    progress = tmp_path / "progress"
    progress.mkdir()
    victim_log = progress / "victim.jsonl"
    killed: list[int] = []
    done = threading.Event()
    killer = threading.Thread(target=_kill_when_mid_epoch, args=(victim_log, killed, done), daemon=True)
    killer.start()
    space = {**CONFIG, "progress": str(progress), "victim": tune.grid_search([True, False])}
    grid = tune.Tuner(
        tune.with_resources(_trial, {"cpu": 1}), param_space=space,
        run_config=tune.RunConfig(storage_path=str(tmp_path / "results"), name="preempt",
                                  failure_config=tune.FailureConfig(max_failures=1), verbose=0,
                                  # as corrotune's runner does: without them a retry that starts before
                                  # Ray's next snapshot copies the stored result.json over the staged one
                                  # and the epochs reported since vanish (ray#5263)
                                  callbacks=[UploadBeforeRetry(), DropRepeatedResults()]),
    ).fit()
    done.set()
    killer.join(timeout=5)

    assert killed, "the victim never reached epoch 2's second batch"
    by_role = {r.config["victim"]: r for r in grid}
    assert all(r.error is None for r in grid), [r.error for r in grid]
    pids = _batch_pids(victim_log)
    first = pids.count(killed[0])
    assert first == KILL_AT_BATCH  # the batch in flight finished, then the worker stopped
    assert len(pids) == 2 * BATCHES_PER_EPOCH and len(set(pids)) == 2  # the retry trained only the batches left
    rows = [json.loads(line) for line in Path(by_role[True].path, "result.json").read_text().splitlines()]
    assert [(r["epoch"], r["training_iteration"]) for r in rows] == [(1, 1), (2, 2)]  # no mid-epoch row
    assert rows[-1]["resumed_from_epoch"] == 1
    assert _comparable(by_role[True].metrics) == pytest.approx(_comparable(by_role[False].metrics), nan_ok=True)
