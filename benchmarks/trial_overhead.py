"""Per-trial overhead of corrotune over bare Ray Tune: N no-op trials through each, in one run.

(a) corrotune: ``validate_study`` + ``run_study`` on the ``noop`` trainable (``search_spaces/noop.py``,
random sampler, FIFO, W&B disabled, quiet console) in a temporary storage directory; (b) bare Ray
Tune: a ``tune.Tuner`` on an equivalent function trainable (same seeding, score draws and
checkpoint) with ``OptunaSearch`` over the same space and sampler, FIFO, ``reuse_actors=True``, the
same resources and checkpoint settings, ``verbose=0``. Each runs in a driver process of its own
(as a user's ``corrotune run`` does), both connected to one Ray instance started here; a driver's
peak memory is its kernel-kept high-water mark (``VmHWM``), with the peak of its anonymous
memory (``RssAnon``, sampled) beside it: the rest is shared libraries mapped from disk.

Per-trial time (``per_trial_ms``) is steady-state wall time per trial: from the moment every worker
process has reported once to the last trial's report (Unix times the trainables report), divided
by the trials reported in between. A study that ran in fewer worker processes than ``--cpus``
(Ray's actor reuse can drop a worker that is still starting: see :func:`_in_own_driver`) is run
again, up to three times; the JSON lists such runs. One-off costs are left out: before the trials (Ray start, the
study's data preparation in the driver, the workers' imports) and after them (result loading, the
leaderboard). Also printed: first trial start to last report over N (includes the second worker's
start), the median time inside a trial (worker side), and end-to-end wall times with every
one-off. A short bare run first warms the disk cache and Ray up. With no-op trials the driver's
event loop is the bottleneck, so its per-trial work (callbacks, searcher) sets the ratio; the
machine's other load moves both numbers. Prints one JSON object; the goal is corrotune / bare <= 1.3.

``--memory corrotune|bare`` runs one study of that kind under ``tracemalloc`` instead and prints the
Python allocations still alive at Ray's last experiment snapshot, by file and by traceback (what
grows per trial in the driver; native memory, e.g. Ray's core worker, is not seen).

    python benchmarks/trial_overhead.py [--trials 1000] [--cpus 2] [--profile corrotune.prof]
    python benchmarks/trial_overhead.py --trials 1000 --memory corrotune
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
import threading
import time
from pathlib import Path
from typing import Any, Callable

GOAL = 1.3
END_TO_END_GOAL = 1.15
RSS_GOAL_MB = 1536.0
CALLBACK_P99_GOAL_MS = 50.0
DATA = {"path": "synthetic:corrosion", "synthetic": {"num_images": 20, "image_size": 16}}
FIXED = {"epochs": 1, "seed": 0, "sleep_s": 0.0}
CHECKPOINT_KEEP = 2
WORKER_ATTEMPTS = 3
"""Runs of a study until every worker process took trials (see :func:`_in_own_driver`)."""


def _study(trials: int, name: str = "trial-overhead", params: dict[str, Any] | None = None,
           wandb_mode: str = "disabled") -> dict[str, Any]:
    return {
        "name": name,
        "trainable": "noop",
        "data": DATA,
        "params": {**FIXED, **(params or {})},
        "search": {"space": "noop", "sampler": "random", "num_samples": trials, "seed": 0},
        "objective": {"metric": "score", "mode": "max"},
        "scheduler": {"name": "fifo"},
        "resources": {"cpu": 1, "gpu": 0},
        "checkpoints": {"num_to_keep": CHECKPOINT_KEEP},
        "tracking": {"wandb": {"mode": wandb_mode}},
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


@contextlib.contextmanager
def _growth(report: dict[str, Any], top: int = 25):
    """tracemalloc over a run: the allocations still alive at Ray's last experiment snapshot (trials all
    done, the driver's state whole), grouped by file and line, largest first, into ``report``."""
    import tracemalloc

    from ray.tune.execution.tune_controller import TuneController

    checkpoint = TuneController.__dict__["checkpoint"]
    snapshots: list[Any] = []

    def snapshotting(self: TuneController, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("force"):
            snapshots[:] = [tracemalloc.take_snapshot()]
        return checkpoint(self, *args, **kwargs)

    tracemalloc.start(8)
    before = tracemalloc.take_snapshot()
    TuneController.checkpoint = snapshotting
    try:
        yield
    finally:
        TuneController.checkpoint = checkpoint
        last = snapshots[0] if snapshots else tracemalloc.take_snapshot()
        tracemalloc.stop()
        keep = [tracemalloc.Filter(False, tracemalloc.__file__)]
        stats = last.filter_traces(keep).compare_to(before.filter_traces(keep), "traceback")
        report["alive_at_end_mb"] = round(sum(s.size_diff for s in stats) / 2**20, 1)
        report["largest"] = [{"mb": round(s.size_diff / 2**20, 2), "count": s.count_diff,
                              "where": [f"{f.filename.split('site-packages/')[-1]}:{f.lineno}" for f in s.traceback][:6]}
                             for s in stats[:top]]
        by_file = last.filter_traces(keep).compare_to(before.filter_traces(keep), "filename")
        report["by_file_mb"] = {s.traceback[0].filename.split("site-packages/")[-1]: round(s.size_diff / 2**20, 2)
                                for s in by_file[:top]}


def run_corrotune(trials: int, storage: str, profile: str | None, **study: Any) -> Path:
    from rich.console import Console

    from orchestrator.runner import run_study
    from orchestrator.spec import validate_study

    study = validate_study(_study(trials, **study))
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


def _status_mb(*keys: str) -> dict[str, float]:
    """Fields of ``/proc/self/status`` (``VmRSS``, ``VmHWM``, ``RssAnon``, ...) in MB."""
    with open("/proc/self/status") as handle:
        fields = dict(line.split(":", 1) for line in handle if ":" in line)
    return {key: int(fields[key].split()[0]) / 1024 for key in keys}


class PeakRss:
    """The driver process's peak resident memory while active (``/proc/self/statm``, sampled every 0.2 s),
    and the peak of its anonymous part (``RssAnon``)."""

    def __init__(self) -> None:
        self.peak_bytes = self.start_bytes = 0
        self.peak_anon_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _rss(self) -> int:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _sample(self) -> None:
        while True:
            self.peak_bytes = max(self.peak_bytes, self._rss())
            self.peak_anon_mb = max(self.peak_anon_mb, _status_mb("RssAnon")["RssAnon"])
            if self._stop.wait(0.2):
                return

    def __enter__(self) -> PeakRss:
        self.start_bytes = self._rss()
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_bytes = max(self.peak_bytes, self._rss())


def _with_rss(run) -> Callable[[], Path]:
    """``run`` that keeps the driver's peak RSS (MB) while it ran in its ``peak_mb``."""

    def measured() -> Path:
        with PeakRss() as rss:
            path = run()
        measured.peak_mb = round(rss.peak_bytes / 2**20, 1)
        measured.start_mb = round(rss.start_bytes / 2**20, 1)
        measured.peak_anon_mb = round(rss.peak_anon_mb, 1)
        return path

    return measured


def _end_to_end(run, trials: int) -> dict[str, Any]:
    measured = _with_rss(run)
    figures = _measure(measured, trials)
    # a driver process of its own (_child): its high-water mark is the run's peak, imports included
    return {**figures, "driver_peak_rss_mb": round(_status_mb("VmHWM")["VmHWM"], 1),
            "driver_peak_anon_mb": measured.peak_anon_mb, "driver_rss_at_start_mb": measured.start_mb,
            "driver_rss_growth_mb": round(measured.peak_mb - measured.start_mb, 1)}


def _in_own_driver(kind: str, args: argparse.Namespace, storage: str, address: str) -> dict[str, Any]:
    """Runs one study (``bare`` or ``corrotune``) in a new driver process connected to ``address``; its figures."""
    import subprocess

    short: list[dict[str, Any]] = []
    for attempt in range(1, WORKER_ATTEMPTS + 1):
        folder = os.path.join(storage, f"{kind}-{attempt}")  # each attempt a study of its own
        command = [sys.executable, __file__, "--_child", kind, "--_address", address, "--_storage", folder,
                   "--trials", str(args.trials), *(["--profile", args.profile] if args.profile and kind == "corrotune" else [])]
        done = subprocess.run(command, stdout=subprocess.PIPE, text=True)
        if done.returncode:
            raise RuntimeError(f"the {kind} driver exited with {done.returncode} (its output is above)")
        figures = json.loads(done.stdout.strip().splitlines()[-1])
        all_workers = figures["worker_processes"] >= args.cpus
        if all_workers:
            break
        # Ray hands a freed cached actor to the trial whose own actor is still starting and removes
        # that one (TuneController._maybe_reuse_cached_actor): with trials of milliseconds it can
        # happen to every new actor, and the whole study runs in one worker process, at half the
        # rate. Such a run measures Ray's race, not the driver: it is kept aside and run again.
        short.append({"worker_processes": figures["worker_processes"], "end_to_end_s": figures["end_to_end_s"]})
    return {**figures, "attempts": attempt, "runs_with_fewer_workers": short,
            "all_workers_took_trials": all_workers}


def _child(args: argparse.Namespace) -> None:
    """The ``--_child`` driver: connects to the benchmark's Ray instance, runs one study, prints its figures."""
    import ray

    ray.init(address=args._address, log_to_driver=False)
    with contextlib.redirect_stdout(sys.stderr):
        if args._child == "bare":
            figures = _end_to_end(lambda: run_bare(args.trials, args._storage), args.trials)
        else:
            figures = _end_to_end(lambda: run_corrotune(args.trials, args._storage, args.profile), args.trials)
    print(json.dumps(figures))


def _driver_callbacks(args: argparse.Namespace, storage: str) -> dict[str, Any]:
    """W&B offline, artifacts on: the driver's time per result, in total and per callback."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # run as a script: the helper beside it
    from _driver_timing import driver_timing

    params = {"epochs": args.callback_epochs, "artifacts": args.callback_artifacts}
    with driver_timing() as timing:
        run_corrotune(args.callback_trials, storage, None, name="driver-callbacks", params=params, wandb_mode="offline")
    summary = timing.summary()
    per_result = summary["callbacks_per_result"]
    per_callback = {name.split(".")[0]: stats for name, stats in summary["by_name"].items() if name.endswith(".on_trial_result")
                    and not name.startswith(("callbacks.", "search_alg.", "scheduler."))}
    return {
        "trials": args.callback_trials, "epochs": args.callback_epochs, "artifacts_per_trial": args.callback_artifacts,
        "wandb_mode": "offline",
        "callbacks_per_result_ms": per_result,
        "process_trial_result_ms": summary["per_result"],
        "on_trial_result_by_callback_ms": per_callback,
        "every_hook_ms": summary["by_name"],
        "goal_p99_ms": CALLBACK_P99_GOAL_MS,
        "goal_met": per_result is not None and per_result["p99_ms"] <= CALLBACK_P99_GOAL_MS,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--cpus", type=int, default=2, help="CPUs given to Ray (one per trial)")
    parser.add_argument("--profile", help="write a cProfile of the corrotune run's driver to this file")
    parser.add_argument("--callback-trials", type=int, default=24, help="trials of the driver-callback run (0: skip it)")
    parser.add_argument("--callback-epochs", type=int, default=3)
    parser.add_argument("--callback-artifacts", type=int, default=2, help="PNGs each trial of that run logs to W&B")
    parser.add_argument("--skip-overhead", action="store_true", help="only the driver-callback run")
    parser.add_argument("--memory", choices=("corrotune", "bare"),
                        help="instead of timing: one run of that kind under tracemalloc; what the driver still holds at its end")
    parser.add_argument("--_child", choices=("bare", "corrotune"), help=argparse.SUPPRESS)
    parser.add_argument("--_address", help=argparse.SUPPRESS)
    parser.add_argument("--_storage", help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("WANDB_MODE", "disabled")
    # num_to_keep forces experiment-state snapshots (in both runs); no warning about it, as the runner does
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    if args._child:
        _child(args)
        return
    started = time.perf_counter()
    import ray

    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
    report: dict[str, Any] = {"trials": args.trials, "cpus": args.cpus, "concurrent_trials": args.cpus}
    try:
        with tempfile.TemporaryDirectory(prefix="trial-overhead-") as storage, contextlib.redirect_stdout(sys.stderr):
            if args.memory:
                memory: dict[str, Any] = {}
                run = (lambda: run_corrotune(args.trials, storage, None)) if args.memory == "corrotune" else (lambda: run_bare(args.trials, storage))
                with _growth(memory):
                    report[args.memory] = _end_to_end(run, args.trials)
                report["memory"] = memory
            elif not args.skip_overhead:
                run_bare(min(args.trials, 20), storage, name="warm-up")
                address = ray.get_runtime_context().gcs_address
                bare = _in_own_driver("bare", args, storage, address)
                corrotune = _in_own_driver("corrotune", args, storage, address)
                if not bare["per_trial_ms"]:  # too few trials: one worker's first report was the last
                    raise SystemExit(f"--trials {args.trials}: too few trials for a steady state; use a few hundred")
                ratio = corrotune["per_trial_ms"] / bare["per_trial_ms"]
                end_to_end = corrotune["end_to_end_s"] / bare["end_to_end_s"]
                report.update({
                    "corrotune": corrotune, "bare_ray_tune": bare,
                    "ratio_corrotune_over_bare": round(ratio, 3), "goal": GOAL, "goal_met": ratio <= GOAL,
                    "end_to_end_ratio": round(end_to_end, 3), "end_to_end_goal": END_TO_END_GOAL,
                    "end_to_end_goal_met": end_to_end <= END_TO_END_GOAL,
                    "driver_peak_rss_mb": corrotune["driver_peak_rss_mb"], "bare_driver_peak_rss_mb": bare["driver_peak_rss_mb"],
                    "rss_goal_mb": RSS_GOAL_MB,
                    "rss_goal_met": corrotune["driver_peak_rss_mb"] <= RSS_GOAL_MB,
                })
            if args.callback_trials and not args.memory:
                report["driver_callbacks"] = _driver_callbacks(args, storage)
    finally:
        ray.shutdown()
    report.update({
        "total_s": round(time.perf_counter() - started, 1),
        "note": "per_trial_ms: steady state, all worker processes up, to the last report; one-offs excluded. "
                "end_to_end: the study's whole run (data preparation, start-up, trials, results), each in a driver "
                "process of its own on the same Ray instance; driver_peak_rss_mb: that process's VmHWM (imports "
                "included), driver_peak_anon_mb its anonymous memory (the rest: shared libraries mapped from disk)",
    })
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
