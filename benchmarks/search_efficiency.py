"""Search efficiency: epochs TPE + ASHA and random + ASHA need to come within 1 point of the full grid's best.

Baseline: the full grid of a small classifier space (learning rate 3e-4..1e-2 × dropout {0, 0.5}
× dense units {0, 256}: 16 configurations) on the real X-SDD steel-defect set
(``../shared/datasets/xsdd``, 7 classes; a fixed, seeded (0), stratified subset of 600 of its 1360
images, linked, not copied, so the grid fits two shared CPU cores; split 60/30/10 so that one
point of ``val/accuracy`` is about two validation images) at 64 px with a ``resnet10t`` trained
from scratch, every configuration for the full epoch budget (6 epochs: 96 epochs in all). It
runs once, for real, as a corrotune study (``sampler: grid``, FIFO, two trials at a time), and
every trial's per-epoch ``val/accuracy`` becomes a **lookup table** (``--table`` caches it, so a
rerun skips the training). The table holds **one training seed per configuration** (``seed: 0``
is fixed, so a rerun of a configuration reproduces its curve up to CPU nondeterminism).

Then the searches are **replayed against that table** with corrotune's own searcher and
scheduler: ``AblationSearcher`` (Optuna ``TPESampler(constant_liar=True)`` or ``RandomSampler``,
seeded, over the same 16 points as categorical parameters) and the ``asha`` scheduler of
``orchestrator.schedulers.build_scheduler`` (Ray's ``ASHAScheduler`` with the study defaults:
grace period 1, reduction factor 2, one bracket, ``max_t`` = the epoch budget), two trials at a
time as in the grid run; a trial's ``val/accuracy`` at epoch e is read from the table. Each
search may spend at most the grid's epochs. Counted: the epochs consumed (results processed)
until the best ``val/accuracy`` observed so far (any trial, any epoch) is within 1 point of the
grid's best (the best of any configuration at any epoch); ratio = that / the grid's epochs
(goal ≤ 0.30 for TPE + ASHA). Over ``--seeds`` search seeds 0..N-1 (all of them, none picked):
mean, median and max. ``--live`` also runs TPE + ASHA for real (search seed 0, as many trials as
the grid has points) through corrotune and prints it beside its replay, to cross-check.

    python benchmarks/search_efficiency.py [--table search_table.json] [--seeds 10] [--live]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script: the helpers beside it
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))  # ... and the project
from _search_grid import (  # noqa: E402
    TABLE_VERSION, grid_study, link_subset, load_table, read_table, run_grid, subset_plan, write_table,
)

GOAL = 0.30
WITHIN_POINTS = 1.0
METRIC = "val/accuracy"
DATASET = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "xsdd"
GRID = {"lr": [3e-4, 1e-3, 3e-3, 1e-2], "dropout": [0.0, 0.5], "dense_units": [0, 256]}
PARAMS = {
    "backbone": "resnet10t", "pretrained": False, "image_size": 64, "batch_size": 32, "epochs": 6,
    "seed": 0, "profile": False, "artifacts": False,
}
SUBSET_IMAGES, SUBSET_SEED = 600, 0
SPLIT = [0.6, 0.3, 0.1]  # a large validation split: 1 point of val/accuracy is ~2 images
ASHA = {"name": "asha"}  # corrotune's defaults (SchedulerSpec): grace_period 1, reduction_factor 2, brackets 1
# context, not the headline: the demo study's grace period, and one past the rungs where the
# grid's early ranking is reversed (see grid.rung_rank_correlation_with_best)
ASHA_VARIANTS = ({"name": "asha", "grace_period": 2}, {"name": "asha", "grace_period": 4})
CONCURRENCY = 2


def _setup(data: Path, epochs: int, images: int) -> dict:
    plan = subset_plan(data, images, SUBSET_SEED)
    return {
        "data": str(data), "split": SPLIT, "grid": GRID, "params": {**PARAMS, "epochs": epochs}, "metric": METRIC,
        "subset": {"requested": images, "images": sum(map(len, plan.values())), "seed": SUBSET_SEED, "stratified": True,
                   "per_class": {name: len(files) for name, files in plan.items()}},
    }


def subset_folder(setup: dict, out: Path) -> Path:
    """The setup's subset as a folder of links under ``out``."""
    source = Path(setup["data"])
    return link_subset(source, subset_plan(source, setup["subset"]["requested"], SUBSET_SEED), out / "data-subset")


def measure_table(setup: dict, out: Path) -> dict:
    """Links the subset and runs the grid through corrotune under ``out``; returns the lookup table."""
    params = setup["params"]
    study_dir, wall = run_grid(grid_study(str(subset_folder(setup, out)), GRID, params, METRIC, SPLIT), out / "grid")
    configs = read_table(study_dir, GRID, METRIC, params["epochs"])
    return {
        "version": TABLE_VERSION, "setup": setup, "configs": configs, "grid_wall_s": round(wall, 1),
        "grid_study_dir": str(study_dir), "cpus": os.cpu_count(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATASET, help="classification image folder (default: the shared xsdd)")
    parser.add_argument("--epochs", type=int, default=PARAMS["epochs"], help="epoch budget of every grid trial")
    parser.add_argument("--images", type=int, default=SUBSET_IMAGES, help="size of the seeded stratified subset")
    parser.add_argument("--table", type=Path, help="lookup table file: read if it exists, else measured and written there")
    parser.add_argument("--out", type=Path, help="folder for the grid (and --live) studies (default: a temporary folder)")
    parser.add_argument("--seeds", type=int, default=10, help="search seeds 0..N-1 per method")
    parser.add_argument("--live", action="store_true", help="also run TPE + ASHA for real (search seed 0) to cross-check")
    args = parser.parse_args()
    if not args.data.is_dir():
        raise SystemExit(f"--data {args.data}: no such folder (the shared datasets live in ../shared/datasets/)")
    if args.seeds < 1:
        raise SystemExit("--seeds must be at least 1")
    if args.epochs < 2:
        raise SystemExit("--epochs must be at least 2 (ASHA needs a rung below the budget)")
    os.environ.setdefault("WANDB_MODE", "disabled")
    setup = _setup(args.data.resolve(), args.epochs, args.images)
    from orchestrator.spec import StudyError

    try:
        result = _run(args, setup)
    except StudyError as err:  # e.g. --out holds the grid study of an earlier run
        raise SystemExit(str(err)) from None
    print(json.dumps(result, indent=2))


def _run(args: argparse.Namespace, setup: dict) -> dict:
    """The table (measured or read), the replayed searches and, with ``--live``, the live check."""
    with tempfile.TemporaryDirectory(prefix="search-efficiency-") as scratch:
        out = args.out or Path(scratch)
        if args.table and args.table.exists():
            table, measured = load_table(args.table, setup), False
        else:
            table, measured = measure_table(setup, out), True
            if args.table:
                write_table(args.table, table)
        from _search_replay import report

        result = report(table, seeds=args.seeds, scheduler=ASHA, concurrency=CONCURRENCY,
                        within=WITHIN_POINTS, goal=GOAL, variants=ASHA_VARIANTS)
        result["table"] = {"file": str(args.table) if args.table else None, "measured_in_this_run": measured}
        if args.live:
            from _search_live import live_check

            result["live_cross_check"] = live_check(table, out / "live", ASHA, CONCURRENCY, WITHIN_POINTS,
                                                    data=str(subset_folder(setup, out)))
    return result


if __name__ == "__main__":
    main()
