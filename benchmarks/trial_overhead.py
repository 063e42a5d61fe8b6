"""Per-trial overhead of corrotune over bare Ray Tune: N no-op trials through each, in one run.

(a) corrotune: ``validate_study`` + ``run_study`` on the ``noop`` trainable (``search_spaces/noop.py``,
random sampler, FIFO, W&B disabled, quiet console) in a temporary storage directory; (b) bare Ray
Tune: a ``tune.Tuner`` on an equivalent function trainable (same seeding, score draws and
checkpoint) with ``OptunaSearch`` over the same space and sampler, FIFO, ``reuse_actors=True``, the
same resources and checkpoint settings, ``verbose=0``. Both share one Ray instance started here.

Per-trial time (``per_trial_ms``) is steady-state wall time per trial: from the moment every worker
process has reported once to the last trial's report (Unix times the trainables report), divided
by the trials reported in between. One-off costs are left out: before the trials (Ray start, the
study's data preparation in the driver, the workers' imports) and after them (result loading, the
leaderboard). Also printed: first trial start to last report over N (includes the second worker's
start), the median time inside a trial (worker side), and end-to-end wall times with every
one-off. A short bare run first warms the disk cache and Ray up. With no-op trials the driver's
event loop is the bottleneck, so its per-trial work (callbacks, searcher) sets the ratio; the
machine's other load moves both numbers. Prints one JSON object; the goal is corrotune / bare <= 1.3.

    python benchmarks/trial_overhead.py [--trials 1000] [--cpus 2] [--profile corrotune.prof]
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

GOAL = 1.3
DATA = {"path": "synthetic:corrosion", "synthetic": {"num_images": 20, "image_size": 16}}
FIXED = {"epochs": 1, "seed": 0, "sleep_s": 0.0}
CHECKPOINT_KEEP = 2


def _study(trials: int, name: str = "trial-overhead") -> dict[str, Any]:
    return {
        "name": name,
        "trainable": "noop",
        "data": DATA,
        "params": FIXED,
        "search": {"space": "noop", "sampler": "random", "num_samples": trials, "seed": 0},
        "objective": {"metric": "score", "mode": "max"},
        "scheduler": {"name": "fifo"},
        "resources": {"cpu": 1, "gpu": 0},
        "checkpoints": {"num_to_keep": CHECKPOINT_KEEP},
        "tracking": {"wandb": {"mode": "disabled"}},
    }


def bare_noop(config: dict[str, Any]) -> None:
    """``trainables.noop.train_noop`` written against Ray Tune alone (one epoch, no resume)."""
    import random
    import tempfile

    import numpy as np
    import ray
    import torch
    from ray import tune

    trial_start = time.time()  # after the imports, as in train_noop (its module imports them)
    random.seed(config["seed"])
    np.random.seed(config["seed"])
    torch.manual_seed(config["seed"])
    assert tune.get_checkpoint() is None
    noise = (random.random() + float(np.random.random()) + float(torch.rand(()))) / 3.0
    metrics = {
        "epoch": 1, "score": config["x"] * 0.5 + 0.01 * noise, "resumed_from_epoch": 0,
        "node_id": ray.get_runtime_context().get_node_id(), "pid": os.getpid(),
        "time/trial_start": trial_start, "time/report": time.time(),
    }
    state = {"epoch": 1, "rng": {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()},
             "config": config}
    with tempfile.TemporaryDirectory(prefix="bare-ckpt-") as directory:
        torch.save(state, Path(directory) / "state.pt")
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))


def run_bare(trials: int, storage: str, name: str = "bare") -> Path:
    import optuna
    from ray import tune
    from ray.tune.schedulers import FIFOScheduler
    from ray.tune.search.optuna import OptunaSearch

    from search_spaces import get_space

    if bare_noop.__module__ != "__main__":  # imported (e.g. to profile): workers cannot import this file
        from ray import cloudpickle

        cloudpickle.register_pickle_by_value(sys.modules[bare_noop.__module__])
    searcher = OptunaSearch(space=get_space("noop"), metric="score", mode="max",
                            sampler=optuna.samplers.RandomSampler(seed=0))
    tuner = tune.Tuner(
        tune.with_resources(bare_noop, {"cpu": 1, "gpu": 0}),
        param_space={**FIXED, "data": DATA},
        tune_config=tune.TuneConfig(metric="score", mode="max", search_alg=searcher, scheduler=FIFOScheduler(),
                                    num_samples=trials, reuse_actors=True),
        run_config=tune.RunConfig(
            name=name, storage_path=storage, verbose=0,
            checkpoint_config=tune.CheckpointConfig(num_to_keep=CHECKPOINT_KEEP, checkpoint_score_attribute="score",
                                                    checkpoint_score_order="max"),
        ),
    )
    tuner.fit()
    return Path(storage) / name


def run_corrotune(trials: int, storage: str, profile: str | None) -> Path:
    from rich.console import Console

    from orchestrator.runner import run_study
    from orchestrator.spec import validate_study

    study = validate_study(_study(trials))
    profiler = cProfile.Profile() if profile else None
    with profiler or contextlib.nullcontext():
        outcome = run_study(study, storage, Console(quiet=True))
    if profiler:
        profiler.dump_stats(profile)
    if outcome.num_errors:
        raise RuntimeError(f"{outcome.num_errors} corrotune trials errored; see {outcome.study_dir}")
    return outcome.study_dir


def _trial_results(experiment_dir: Path) -> list[dict[str, Any]]:
    results = []
    for path in experiment_dir.glob("*/result.json"):
        lines = [line for line in path.read_text().splitlines() if line.strip()]
        if lines:
            results.append(json.loads(lines[-1]))
    return results


def _measure(run, trials: int) -> dict[str, Any]:
    started = time.perf_counter()
    experiment_dir = run()
    wall = time.perf_counter() - started
    results = _trial_results(experiment_dir)
    if len(results) != trials:
        raise RuntimeError(f"{experiment_dir}: {len(results)} of {trials} trials reported")
    reports = sorted(r["time/report"] for r in results)
    # steady state: from the first report of the last worker process to start (the others'
    # imports are behind us) to the last report
    all_up = max(min(r["time/report"] for r in results if r["pid"] == pid) for pid in {r["pid"] for r in results})
    steady = [t for t in reports if t > all_up]
    span = reports[-1] - min(r["time/trial_start"] for r in results)
    return {
        "per_trial_ms": round(1000 * (reports[-1] - all_up) / max(len(steady), 1), 1),
        "steady_trials": len(steady),
        "first_start_to_last_report_ms_per_trial": round(1000 * span / trials, 1),
        # in the worker, from the trainable's start to its report (config, begin_trial, score)
        "median_trial_body_ms": round(1000 * statistics.median(r["time/report"] - r["time/trial_start"] for r in results), 2),
        "end_to_end_s": round(wall, 2),
        "worker_processes": len({r["pid"] for r in results}),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--cpus", type=int, default=2, help="CPUs given to Ray (one per trial)")
    parser.add_argument("--profile", help="write a cProfile of the corrotune run's driver to this file")
    args = parser.parse_args()
    os.environ.setdefault("WANDB_MODE", "disabled")
    # num_to_keep forces experiment-state snapshots (in both runs); no warning about it, as the runner does
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    started = time.perf_counter()
    import ray

    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
    try:
        with tempfile.TemporaryDirectory(prefix="trial-overhead-") as storage, contextlib.redirect_stdout(sys.stderr):
            run_bare(min(args.trials, 20), storage, name="warm-up")
            bare = _measure(lambda: run_bare(args.trials, storage), args.trials)
            corrotune = _measure(lambda: run_corrotune(args.trials, storage, args.profile), args.trials)
    finally:
        ray.shutdown()
    ratio = corrotune["per_trial_ms"] / bare["per_trial_ms"]
    print(json.dumps({
        "trials": args.trials, "cpus": args.cpus, "concurrent_trials": args.cpus,
        "corrotune": corrotune, "bare_ray_tune": bare,
        "ratio_corrotune_over_bare": round(ratio, 3), "goal": GOAL, "goal_met": ratio <= GOAL,
        "total_s": round(time.perf_counter() - started, 1),
        "note": "per_trial_ms: steady state, all worker processes up, to the last report; one-offs excluded",
    }, indent=2))


if __name__ == "__main__":
    main()
