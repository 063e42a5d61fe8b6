"""``--live``: TPE + ASHA run for real through corrotune (search seed 0), beside its replay.

The live study searches the same grid points as categorical parameters (the space is registered
under :data:`SPACE_NAME` in this process, as a study's ``search.space``), with the same fixed
params, subset, split, scheduler and concurrency as the grid run, and the benchmark's trial budget
(``search.num_samples``); it trains with the grid's first training seed. The replay of the same study against the lookup table runs beside it; the
two differ where real epoch times reorder results (Ray's ASHA is asynchronous) and where CPU
nondeterminism moves a curve, so the cross-check is "in line", not equal.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SPACE_NAME = "search_efficiency_grid"


@dataclass(frozen=True)
class CategoricalGrid:
    """A define-by-run space with one categorical per grid key (picklable, unlike a closure)."""

    grid: dict[str, list[Any]]

    def __call__(self, trial) -> None:
        for name, values in self.grid.items():
            trial.suggest_categorical(name, values)


def _register(grid: dict[str, list[Any]]) -> None:
    from search_spaces import SPACES, register_space

    if SPACE_NAME not in SPACES:
        register_space(SPACE_NAME)(CategoricalGrid(grid))


def _live_results(study_dir: Path, metric: str) -> list[dict[str, Any]]:
    """Every epoch's result of every trial, in the order the driver received them."""
    records = []
    for path in study_dir.glob("*/result.json"):
        for line in path.read_text().splitlines():
            if line.strip():
                record = json.loads(line)
                if metric in record:
                    records.append(record)
    return sorted(records, key=lambda r: (r["timestamp"], r.get("time_total_s", 0.0)))


def live_check(table: dict[str, Any], out: Path, scheduler: dict[str, Any], concurrency: int, within: float,
               data: str, trials: int) -> dict[str, Any]:
    """Runs TPE + ASHA (seed 0) for real on ``data`` and replays the same study; returns both."""
    from _search_grid import grid_study, run_grid
    from _search_replay import per_seed_curves, replay_search

    setup = table["setup"]
    grid, params, metric = setup["grid"], setup["params"], setup["metric"]
    # the live study trains with the grid's first training seed: replay against that seed's curves
    curves = {config: runs[0] for config, runs in
              per_seed_curves({tuple(c["params"][k] for k in grid): c.get("curves", c.get("curve")) for c in table["configs"]}).items()}
    target = max(max(c) for c in curves.values()) - within
    _register(grid)
    study = grid_study(data, grid, {**params, "seed": setup.get("training_seeds", [params["seed"]])[0]}, metric,
                       setup["split"], name="live-tpe-asha")
    study.update(search={"space": SPACE_NAME, "sampler": "tpe", "num_samples": trials, "seed": 0},
                 scheduler=scheduler, max_concurrent_trials=concurrency)
    study_dir, wall = run_grid(study, out)
    records = _live_results(study_dir, metric)
    best, reached = float("-inf"), None
    for index, record in enumerate(records, start=1):
        best = max(best, 100.0 * float(record[metric]))
        if reached is None and best >= target:
            reached = index
    per_trial = sorted(len([r for r in records if r["trial_id"] == t]) for t in {r["trial_id"] for r in records})
    replay = replay_search(curves, grid, params["epochs"], "tpe", 0, target, budget=trials * params["epochs"],
                           scheduler=scheduler, concurrency=concurrency, metric=metric, max_trials=trials,
                           stop_at_target=False)
    return {
        "what": f"TPE + ASHA, search seed 0, {trials} trials, live through corrotune vs replayed on the table",
        "live": {"epochs": len(records), "epochs_to_within": reached, "best": round(best, 4),
                 "epochs_per_trial_sorted": per_trial, "wall_s": round(wall, 1)},
        "replay": {"epochs": replay.epochs_used, "epochs_to_within": replay.epochs_to_target, "best": replay.best,
                   "epochs_per_trial_sorted": sorted(e for _, e in replay.trials_run)},
        "target": round(target, 4),
        "wall_s_vs_grid": round(wall / table["grid_wall_s"], 3) if table.get("grid_wall_s") else None,
    }
