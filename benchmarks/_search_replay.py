"""Replays a search against a grid's lookup table with corrotune's own searcher and scheduler.

No training happens: a trial's objective at epoch e is the table's value for its configuration at
epoch e. What decides the next configuration and when a trial stops is corrotune's code —
:class:`orchestrator.ablation.AblationSearcher` (the Optuna sampler of ``search.sampler``,
seeded) and :func:`orchestrator.schedulers.build_scheduler` (ASHA per cell) — driven the way
Ray Tune's controller drives them (``TuneController._process_trial_result`` / ``stop_trial``):
each result goes to the scheduler; on CONTINUE the searcher sees it, on STOP (ASHA, or the
epoch budget) the scheduler and the searcher are told the trial completed. ``concurrency``
trials run side by side in lock step (one epoch each per step, every epoch costs the same).
Where the table holds several training seeds per configuration, each replay first draws a
**world**: one training seed per configuration (:func:`draw_world`, from the search seed, the
same whatever the sampler). In it a configuration has one curve, as in a real study with its
fixed ``seed``: a repeated configuration replays the same curve, and the grid's best in that
world (:func:`world_best`) is what the full grid would have found there: the search is scored
against the grid on the same curves, and over the seeds on many draws of the training noise.

Example:
    >>> run = replay_search(curves, grid, epochs=8, sampler="tpe", seed=0, target=84.3, budget=192)
    >>> run.epochs_to_target
"""

from __future__ import annotations

import math
import random
import statistics
from dataclasses import dataclass, field
from typing import Any, Optional

__all__ = ["ReplayRun", "replay_search", "report"]

METHODS = {"tpe_asha": "tpe", "random_asha": "random"}
"""Benchmark method name -> corrotune ``search.sampler``."""


@dataclass
class ReplayRun:
    """One replayed search.

    Attributes:
        epochs_to_target: Epochs consumed when the best value seen so far first came within
            reach of the target (``None``: not within the budget).
        epochs_used: Epochs consumed when the replay ended (target reached or budget spent).
        best: Best objective value seen (any trial, any epoch) when the replay ended.
        trials: Trials started.
        distinct_configs: Distinct configurations among them.
        trials_run: Each trial's configuration (its values in the grid's key order) and the
            epochs it ran, in start order.
        best_trace: The best value seen after each epoch consumed (``best_trace[i]``: after i + 1).
        training_seeds: The training seed (index into the table's curves) of each trial's
            configuration in the replay's world, in start order.
    """

    epochs_to_target: Optional[int]
    epochs_used: int
    best: float
    trials: int
    distinct_configs: int
    trials_run: list[tuple[tuple, int]] = field(default_factory=list)
    best_trace: list[float] = field(default_factory=list)
    training_seeds: list[int] = field(default_factory=list)

    def epochs_to(self, value: float) -> Optional[int]:
        """Epochs consumed when the best seen first reached ``value`` (``None``: not in this run)."""
        return next((i + 1 for i, best in enumerate(self.best_trace) if best >= value), None)


class _ReplayTrial:
    """The parts of ``ray.tune.experiment.Trial`` that corrotune's schedulers read."""

    def __init__(self, trial_id: str, config: dict[str, Any]) -> None:
        self.trial_id = trial_id
        self.config = config
        self.last_result: dict[str, Any] = {}
        self.status = "RUNNING"
        self.epoch = 0
        self.training_seed = 0
        self.curve: list[float] = []  # the training seed's curve this trial follows


def draw_world(curves: dict[tuple, list[list[float]]], seed: int) -> dict[tuple, int]:
    """One training seed per configuration, drawn from ``seed`` (in the configurations' sorted order)."""
    draws = random.Random(f"training-seed/{seed}")
    return {config: draws.randrange(len(curves[config])) for config in sorted(curves, key=str)}


def world_best(curves: dict[tuple, list[list[float]]], world: dict[tuple, int]) -> float:
    """The full grid's best in ``world``: the best value of any configuration at any epoch."""
    return max(max(curves[config][index]) for config, index in world.items())


def per_seed_curves(curves: dict[tuple, Any]) -> dict[tuple, list[list[float]]]:
    """``curves`` with one curve per training seed for every configuration (a single curve: one seed)."""
    return {config: [list(c)] if c and isinstance(c[0], (int, float)) else [list(s) for s in c]
            for config, c in curves.items()}


def _study(epochs: int, metric: str, scheduler: dict[str, Any]):
    """A study carrying the scheduler settings (its search is the replay's), validated as a study file would be."""
    from orchestrator.spec import validate_study

    return validate_study({
        "name": "replay", "trainable": "classifier", "data": {"path": "synthetic:corrosion"},
        "params": {"epochs": epochs},
        "objective": {"metric": metric, "mode": "max"}, "scheduler": scheduler,
    }, source="search_efficiency replay")


def replay_search(
    curves: dict[tuple, list[float]],
    grid: dict[str, list[Any]],
    epochs: int,
    sampler: str,
    seed: int,
    target: float,
    budget: int,
    scheduler: Optional[dict[str, Any]] = None,
    concurrency: int = 2,
    metric: str = "val/accuracy",
    max_trials: Optional[int] = None,
    stop_at_target: bool = True,
) -> ReplayRun:
    """Runs one search against the table ``curves`` until the target is reached or the budget is spent.

    Args:
        curves: Configuration (its values in ``grid``'s key order) -> objective at epochs 1..``epochs``
            (one curve, or a list of curves, one per training seed: see :func:`draw_world`).
        grid: Config key -> its values; the searcher suggests among them (categorical).
        sampler: corrotune's ``search.sampler`` (``tpe``, ``random``).
        seed: The search's seed (``search.seed``).
        target: The objective value that counts as found (higher is better).
        budget: Most epochs the search may consume.
        scheduler: corrotune's ``scheduler:`` section (default ``{"name": "asha"}``).
        concurrency: Trials running at once.
        max_trials: The searcher's trial budget (``search.num_samples``); default: no limit but ``budget``.
        stop_at_target: End when the target is reached (else run until a budget is spent).
    """
    import numpy as np
    from ray.tune.schedulers import TrialScheduler

    from orchestrator.ablation import AblationSearcher
    from orchestrator.schedulers import build_scheduler

    np.random.seed(seed)  # Ray's ASHA draws each trial's bracket from NumPy's global generator
    study = _study(epochs, metric, scheduler or {"name": "asha"})
    sched = build_scheduler(study)
    searcher = AblationSearcher(cells=study.cells, objectives=[(metric, "max")], sampler=sampler,
                                trials_per_cell=max_trials or budget, seed=seed, grid=grid, study_name="replay")
    keys = list(grid)
    curves = per_seed_curves(curves)
    world = draw_world(curves, seed)  # the same whatever the sampler
    running: list[_ReplayTrial] = []
    started: list[_ReplayTrial] = []
    consumed, best, reached = 0, -math.inf, None
    trace: list[float] = []

    def launch() -> None:
        while len(running) < concurrency:
            trial_id = f"replay_{len(started):05d}"
            config = searcher.suggest(trial_id)
            if not isinstance(config, dict):
                return  # the searcher's budget is spent
            trial = _ReplayTrial(trial_id, config)
            runs = curves[tuple(config[k] for k in keys)]
            trial.training_seed = world[tuple(config[k] for k in keys)]
            trial.curve = runs[trial.training_seed]
            sched.on_trial_add(None, trial)
            running.append(trial)
            started.append(trial)

    launch()
    while running and (reached is None or not stop_at_target) and consumed < budget:
        for trial in list(running):
            if consumed >= budget:
                break
            trial.epoch += 1
            consumed += 1
            value = trial.curve[trial.epoch - 1]
            best = max(best, value)
            trace.append(best)
            if reached is None and best >= target:
                reached = consumed
            result = {"training_iteration": trial.epoch, metric: value, "trial_id": trial.trial_id}
            decision = sched.on_trial_result(None, trial, result)
            trial.last_result = result
            if decision == TrialScheduler.STOP or trial.epoch >= epochs:
                trial.status = "TERMINATED"
                sched.on_trial_complete(None, trial, result)
                searcher.on_trial_complete(trial.trial_id, result=result)
                running.remove(trial)
            else:
                searcher.on_trial_result(trial.trial_id, result)
        if reached is None or not stop_at_target:
            launch()
    trials_run = [(tuple(t.config[k] for k in keys), t.epoch) for t in started]
    return ReplayRun(epochs_to_target=reached, epochs_used=consumed, best=best, trials=len(started),
                     distinct_configs=len({config for config, _ in trials_run}), trials_run=trials_run,
                     best_trace=trace, training_seeds=[t.training_seed for t in started])


def _summary(values: list[Optional[int]], grid_epochs: int) -> dict[str, Any]:
    """Mean/median/max epochs and their ratio to the grid's; over every seed only if every seed reached."""
    found = [v for v in values if v is not None]
    out: dict[str, Any] = {"per_seed": values, "reached": f"{len(found)} of {len(values)} seeds"}
    if found:
        stats: dict[str, Any] = {"mean": round(statistics.mean(found), 1), "median": statistics.median(found), "max": max(found)}
        stats["ratio_vs_grid"] = {k: round(stats[k] / grid_epochs, 3) for k in ("mean", "median", "max")}
        if len(found) == len(values):
            out.update(stats)
        else:  # the seeds that missed have no epoch count: these figures flatter the method
            out["of_seeds_that_reached"] = stats
    return out


def rung_rank_correlation(curves: dict[tuple, list[float]], rungs: list[int]) -> dict[str, Optional[float]]:
    """Spearman's rho over the configurations between the value at each rung epoch and the best
    over all epochs: how well an early stop at that rung ranks the configurations."""
    from scipy.stats import spearmanr

    finals = [max(c) for c in curves.values()]
    out: dict[str, Optional[float]] = {}
    for rung in rungs:
        rho = spearmanr([c[rung - 1] for c in curves.values()], finals).statistic
        out[f"epoch_{rung}"] = None if math.isnan(rho) else round(float(rho), 3)
    return out


def grid_targets(curves: dict[tuple, list[list[float]]], seeds: int) -> dict[str, Any]:
    """What "the grid's best" is, with one curve per configuration and training seed.

    ``per_world``: the full grid's best in each search seed's world (:func:`draw_world`): the
    target of that replay (minus the tolerance), measured as the search is scored (the best
    single value seen, any configuration, any epoch) on the same curves; ``best`` is their mean.
    ``per_training_seed``: each training seed's own complete grid's best. ``best_config_mean``:
    the configuration with the best mean over the seeds of its best epoch, and that mean (lower
    than a maximum over configurations of noisy curves); for context.
    """
    count = min(len(runs) for runs in curves.values())
    per_world = [world_best(curves, draw_world(curves, seed)) for seed in range(seeds)]
    means = {config: statistics.mean(max(run) for run in runs) for config, runs in curves.items()}
    best_config = max(means, key=means.get)
    return {"best": round(statistics.mean(per_world), 4), "per_world": per_world,
            "per_training_seed": [max(max(runs[s]) for runs in curves.values()) for s in range(count)],
            "best_config": best_config, "best_config_mean": round(means[best_config], 4)}


def report(table: dict[str, Any], seeds: int, scheduler: dict[str, Any], concurrency: int, within: float, goal: float,
           sweep: tuple[float, ...] = (2.0, 5.0, 10.0), variants: tuple[dict[str, Any], ...] = (),
           trials: Optional[int] = None) -> dict[str, Any]:
    """The benchmark's figures: each method replayed over search seeds ``0..seeds-1`` against ``table``.

    Each replay runs to the grid's epoch budget (or its ``trials``, the study's
    ``search.num_samples``; default: no limit but the budget); the epochs to within ``within``
    points of the grid's best in its world (:func:`grid_targets`; the headline) and to within each
    ``sweep`` tolerance are read off its best-so-far trace. ``variants`` are other ``scheduler:``
    sections replayed the same way, for context only.
    """
    setup = table["setup"]
    grid, epochs = setup["grid"], setup["params"]["epochs"]
    keys = list(grid)
    curves = per_seed_curves({tuple(c["params"][k] for k in grid): c.get("curves", c.get("curve")) for c in table["configs"]})
    grid_epochs = len(curves) * epochs
    targets = grid_targets(curves, seeds)
    aims = [best - within for best in targets["per_world"]]

    def methods_with(sched: dict[str, Any], aims: list[float]) -> dict[str, Any]:
        methods: dict[str, Any] = {}
        for name, sampler in METHODS.items():
            runs = [replay_search(curves, grid, epochs, sampler, seed, aims[seed], grid_epochs, sched, concurrency,
                                  setup["metric"], max_trials=trials, stop_at_target=False) for seed in range(seeds)]
            methods[name] = {
                "sampler": sampler,
                "epochs_to_within": _summary([r.epochs_to_target for r in runs], grid_epochs),
                "epochs_to_within_sweep": {
                    f"{tol:g}_points": _summary([r.epochs_to(aim + within - tol) for r, aim in zip(runs, aims)], grid_epochs)
                    for tol in sweep},
                "best_at_budget": [r.best for r in runs],
                "epochs_used": [r.epochs_used for r in runs],
                "trials_started": [r.trials for r in runs],
                "distinct_configs": [r.distinct_configs for r in runs],
            }
        return methods

    methods = methods_with(scheduler, aims)
    others = {}
    for variant in variants:
        replayed = methods_with(variant, aims)
        others[json_key(variant)] = {name: {"epochs_to_within": m["epochs_to_within"], "best_at_budget": m["best_at_budget"]}
                                     for name, m in replayed.items()}
    config_mean_target = targets["best_config_mean"] - within
    against_config_mean = {name: m["epochs_to_within"]
                           for name, m in methods_with(scheduler, [config_mean_target] * seeds).items()}
    tpe = methods["tpe_asha"]["epochs_to_within"]
    ratio = tpe.get("ratio_vs_grid", {}).get("mean")
    rungs = [r for r in (2 ** k for k in range(epochs.bit_length())) if r < epochs]  # ASHA's (grace 1, factor 2)
    mean_curves = {config: [statistics.mean(v) for v in zip(*runs)] for config, runs in curves.items()}
    named = {config: json_key(dict(zip(keys, config))) for config in curves}
    worlds = [draw_world(curves, seed) for seed in range(seeds)]
    return {
        "benchmark": "search_efficiency",
        "objective": f"{setup['metric']} (%) at the best epoch seen, max",
        "setup": {**setup, "configurations": len(curves), "concurrency": concurrency, "scheduler": scheduler,
                  "search_num_samples": trials, "search_seeds": list(range(seeds))},
        "grid": {
            "epochs": grid_epochs, "wall_s": table.get("grid_wall_s"), "best": targets["best"],
            "best_definition": ("per search seed, the full grid's best (any configuration, any epoch) in that seed's "
                                "world (one training seed drawn per configuration); 'best' is their mean"),
            "best_per_world": targets["per_world"], "target_per_world": [round(a, 4) for a in aims],
            "configs_within_target_per_world": [sum(max(curves[c][i]) >= aim for c, i in world.items())
                                                for world, aim in zip(worlds, aims)],
            "best_per_training_seed": targets["per_training_seed"],
            "best_config": dict(zip(keys, targets["best_config"])), "best_config_mean": targets["best_config_mean"],
            "best_per_config": {named[c]: [max(run) for run in runs] for c, runs in curves.items()},
            "mean_curve_per_config": {named[c]: [round(v, 2) for v in curve] for c, curve in mean_curves.items()},
            "rung_rank_correlation_with_best": rung_rank_correlation(mean_curves, rungs),
        },
        "methods": methods,
        "against_best_config_mean": {"target": round(config_mean_target, 4), **against_config_mean},
        "scheduler_variants": others,
        "goal": {"tpe_asha_mean_ratio_max": goal, "tpe_asha_mean_ratio": ratio,
                 "met": ratio is not None and ratio <= goal,
                 "reached": tpe["reached"]},
        "method_note": (
            "lookup table: the grid's per-epoch results (one curve per configuration and training seed; each replay "
            "draws one seed per configuration, its world) replayed through corrotune's AblationSearcher and asha scheduler; epochs counted = "
            f"results processed until the best seen is within {within} point(s) of the grid's best; the grid needs all its epochs"
        ),
    }


def json_key(params: dict[str, Any]) -> str:
    """``lr=0.001,dropout=0.5,dense_units=256``."""
    return ",".join(f"{k}={v}" for k, v in params.items())
