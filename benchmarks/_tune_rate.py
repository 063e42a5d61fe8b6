"""Shared by the throughput benchmarks: a trainable's steady training rate as one Ray Tune trial."""

from __future__ import annotations

import contextlib
import statistics
import sys
import tempfile


def steady(rates: list[float]) -> float:
    """Median over epochs 2..N (epoch 1 warms caches up)."""
    return statistics.median(rates[1:] if len(rates) > 1 else rates)


def tune_train_rate(trainable: str, config: dict, cpus: int) -> float:
    """``time/train_img_per_s`` (steady) of ``trainable`` run as one Ray Tune trial on ``cpus`` CPUs."""
    import ray
    from ray import tune

    from trainables import get_trainable

    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
    try:
        with tempfile.TemporaryDirectory() as storage:
            tuner = tune.Tuner(
                tune.with_resources(get_trainable(trainable).as_trainable(), {"cpu": cpus}), param_space=config,
                run_config=tune.RunConfig(storage_path=storage, name=f"{trainable}_throughput", verbose=0),
            )
            with contextlib.redirect_stdout(sys.stderr):  # keep stdout for the JSON
                frame = tuner.fit()[0].metrics_dataframe
        return steady(frame["time/train_img_per_s"].tolist())
    finally:
        ray.shutdown()
