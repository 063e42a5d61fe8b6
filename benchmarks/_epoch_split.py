"""Shared by the throughput benchmarks: a trainable as one Ray Tune trial, timed per epoch.

:func:`timed_trial` runs a corrotune trainable as one Tune trial with every CPU and returns, per
epoch, the wall time of everything the trial does between the end of one report and the end of
the next (train pass, validation and its metrics, best-weights copy, checkpoint serialisation,
reporting to Tune) and where it went. The timers wrap the loop's per-epoch steps inside the
worker (a handful of calls per epoch, so they cost microseconds); the code that runs is the
trainable's own.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

SPLIT_KEYS = ("train_pass_s", "val_forward_and_loss_s", "val_metrics_s", "best_copy_s",
              "checkpoint_serialise_s", "report_and_persist_s", "other_s")


def _instrumented(trainable: str, task_module: str, task_class: str, out_file: str):
    """A Tune function trainable: ``trainable`` with timers around the loop's per-epoch steps."""

    def run(config: dict) -> None:
        import importlib

        import torch

        import trainables.loop as loop
        from trainables import get_trainable

        task_cls = getattr(importlib.import_module(task_module), task_class)
        epochs: list[dict] = []
        current: dict = {}
        mark = [time.perf_counter(), time.process_time()]

        def timed(key, fn):
            def wrapper(*a, **k):
                started = time.perf_counter()
                try:
                    return fn(*a, **k)
                finally:
                    current[key] = current.get(key, 0.0) + time.perf_counter() - started
            return wrapper

        saved = (loop.train_one_epoch, loop.evaluate, loop.report_with_checkpoint, loop._Best.update,
                 task_cls.score, torch.save, task_cls.train_batch, loop.prepare_batch)
        evaluate_timed = timed("evaluate_s", saved[1])
        report_timed = timed("report_total_s", saved[2])

        def report(metrics, state):
            report_timed(metrics, state)
            now, cpu = time.perf_counter(), time.process_time()
            current["epoch_s"], current["epoch_cpu_s"] = now - mark[0], cpu - mark[1]
            current["torch_threads"], current["niceness"] = torch.get_num_threads(), os.nice(0)
            mark[:] = now, cpu
            epochs.append(dict(current))
            current.clear()

        loop.train_one_epoch = timed("train_pass_s", saved[0])
        loop.evaluate = lambda task, model, loss_fn, data, device, prefix: (
            evaluate_timed(task, model, loss_fn, data, device, prefix) if prefix == "val" else saved[1](task, model, loss_fn, data, device, prefix))
        loop.report_with_checkpoint = report
        loop._Best.update = timed("best_copy_s", saved[3])
        task_cls.score = timed("score_s", saved[4])
        torch.save = timed("checkpoint_serialise_s", saved[5])
        task_cls.train_batch = timed("batch_production_s", saved[6])  # indexing + augmentation
        loop.prepare_batch = timed("batch_production_s", saved[7])  # normalisation (val batches too)
        try:
            get_trainable(trainable).as_trainable()(config)
        finally:
            (loop.train_one_epoch, loop.evaluate, loop.report_with_checkpoint, loop._Best.update,
             task_cls.score, torch.save, task_cls.train_batch, loop.prepare_batch) = saved
            Path(out_file).write_text(json.dumps(epochs))

    return run


def split_of(epoch: dict) -> dict:
    """One epoch's timers as :data:`SPLIT_KEYS` (``other_s``: phase switch, generator, history...)."""
    score = epoch.get("score_s", 0.0)
    serialise = epoch.get("checkpoint_serialise_s", 0.0)
    split = {
        "train_pass_s": epoch.get("train_pass_s", 0.0),
        "val_forward_and_loss_s": epoch.get("evaluate_s", 0.0) - min(score, epoch.get("evaluate_s", 0.0)),
        "val_metrics_s": score,
        "best_copy_s": epoch.get("best_copy_s", 0.0),
        "checkpoint_serialise_s": serialise,
        "report_and_persist_s": epoch.get("report_total_s", 0.0) - serialise,
    }
    split["other_s"] = max(epoch["epoch_s"] - sum(split.values()), 0.0)
    return split


def timed_trial(trainable: str, task_module: str, task_class: str, config: dict, cpus: int) -> list[dict]:
    """Runs ``trainable`` as one Tune trial on ``cpus`` CPUs (Ray must be initialised);
    returns per epoch ``{"epoch_s", "epoch_cpu_s", "torch_threads", <split keys>}`` (CPU time:
    of every thread of the worker process)."""
    from ray import cloudpickle, tune

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # a script's helper: not importable in the worker
    with tempfile.TemporaryDirectory(prefix="corrotune-bench-") as storage:
        out_file = os.path.join(storage, "epochs.json")
        tuner = tune.Tuner(
            tune.with_resources(_instrumented(trainable, task_module, task_class, out_file), {"cpu": cpus}),
            param_space=config,
            run_config=tune.RunConfig(storage_path=storage, name=f"{trainable}_throughput", verbose=0),
        )
        with contextlib.redirect_stdout(sys.stderr):  # keep stdout for the JSON
            result = tuner.fit()[0]
        if result.error:
            raise RuntimeError(f"the {trainable} trial failed: {result.error}")
        epochs = json.loads(Path(out_file).read_text())
    return [{"epoch_s": e["epoch_s"], "epoch_cpu_s": e["epoch_cpu_s"], "torch_threads": e["torch_threads"], "niceness": e["niceness"],
             "batch_production_s": e.get("batch_production_s", 0.0), **split_of(e)} for e in epochs]


class EpochClock:
    """Wall and CPU seconds per epoch of a hand-written loop: call :meth:`lap` at each epoch's end."""

    def __init__(self) -> None:
        self.mark, self.laps = (time.perf_counter(), time.process_time()), []

    def lap(self) -> list[tuple[float, float]]:
        now = (time.perf_counter(), time.process_time())
        self.laps.append((now[0] - self.mark[0], now[1] - self.mark[1]))
        self.mark = now
        return self.laps


def steady_median(values: list[float]) -> float:
    """Median over epochs 2..N (epoch 1 includes start-up and warms caches)."""
    return statistics.median(values[1:] if len(values) > 1 else values)


def median_of(runs: list[list[dict]], key: str) -> float:
    """Median over runs of each run's steady median of ``key``."""
    return statistics.median(steady_median([epoch[key] for epoch in epochs]) for epochs in runs)


def fastest(runs: list[list[dict]]) -> float:
    """The fastest steady epoch of any run: the least disturbed by the machine's other load."""
    return min(steady for epochs in runs for steady in ([e["epoch_s"] for e in epochs][1:] or [epochs[0]["epoch_s"]]))


def load() -> list[float]:
    """The 1-, 5- and 15-minute load averages (the machine is shared)."""
    return [round(v, 2) for v in os.getloadavg()]


def measure_with_ray(repeats: int, cpus: int, bare: Callable[[], list[tuple[float, float]]], trial: Callable[[], list[dict]]) -> dict:
    """:func:`interleaved` with ``cpus`` torch threads here and a local Ray of ``cpus`` CPUs for the
    trial (whose worker Ray gives ``cpus`` threads through ``OMP_NUM_THREADS``).

    Both loops run at this process's niceness: Ray starts workers 15 nice levels below their
    raylet (``RAY_worker_niceness``, so that the driver stays responsive), which on a shared
    machine would let this benchmark's own Ray processes preempt the trial but not the bare
    loop. On a node of its own, nothing else wants the CPU and the priority changes nothing.
    """
    import ray
    import torch

    torch.set_num_threads(cpus)
    os.environ.setdefault("RAY_worker_niceness", "0")  # read by the raylet ray.init starts
    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
    try:
        return {"bare_niceness": os.nice(0), **interleaved(repeats, bare, trial)}
    finally:
        ray.shutdown()


def interleaved(repeats: int, bare: Callable[[], list[tuple[float, float]]], trial: Callable[[], list[dict]]) -> dict:
    """Runs ``bare`` and ``trial`` alternately (A B, B A, ...) ``repeats`` times each and summarises.

    Args:
        bare: Runs the hand-written loop; returns each epoch's (wall, CPU) seconds.
        trial: Runs the corrotune trial (:func:`timed_trial`).

    Returns:
        The JSON fields shared by the throughput benchmarks (epoch times, ratios, split, runs).
    """
    bare_runs, trial_runs, runs = [], [], []
    for repeat in range(repeats):
        for name in (("bare", "corrotune") if repeat % 2 == 0 else ("corrotune", "bare")):
            before = load()
            if name == "bare":
                bare_runs.append([{"epoch_s": wall, "epoch_cpu_s": cpu} for wall, cpu in bare()])
            else:
                trial_runs.append(trial())
            epochs = (bare_runs if name == "bare" else trial_runs)[-1]
            runs.append({"run": name, "repeat": repeat, "epoch_s": [round(e["epoch_s"], 3) for e in epochs],
                         "load_before": before, "load_after": load()})
    bare_s, trial_s = median_of(bare_runs, "epoch_s"), median_of(trial_runs, "epoch_s")
    bare_cpu, trial_cpu = median_of(bare_runs, "epoch_cpu_s"), median_of(trial_runs, "epoch_cpu_s")
    return {
        "bare_epoch_s": round(bare_s, 3), "corrotune_epoch_s": round(trial_s, 3),
        "ratio_bare_over_corrotune": round(bare_s / trial_s, 3), "goal": ">= 0.97",
        "bare_epoch_cpu_s": round(bare_cpu, 3), "corrotune_epoch_cpu_s": round(trial_cpu, 3),
        "cpu_ratio_bare_over_corrotune": round(bare_cpu / trial_cpu, 3),
        "corrotune_extra_s_per_epoch": round(trial_s - bare_s, 3),
        "ratio_of_fastest_epochs": round(fastest(bare_runs) / fastest(trial_runs), 3),
        "corrotune_split_s": {k: round(median_of(trial_runs, k), 4) for k in SPLIT_KEYS},
        "corrotune_batch_production_s": round(median_of(trial_runs, "batch_production_s"), 4),
        "corrotune_torch_threads": trial_runs[0][-1]["torch_threads"], "corrotune_niceness": trial_runs[0][-1]["niceness"],
        "runs": runs,
        "note": "ratio = median bare epoch time / median corrotune epoch time (= corrotune's epoch throughput "
                "over the bare loop's); epoch time = end of one epoch's report to the end of the next (bare: "
                "to its validation score); median of epochs 2..N per run, then over runs; CPU = process time "
                "of all threads; fastest: the shortest steady epoch of any run, either side (the least disturbed by other load); "
                "batch production (indexing, augmentation, normalisation) is part of the "
                "train pass and validation; load = os.getloadavg() (1, 5, 15 min)",
    }
