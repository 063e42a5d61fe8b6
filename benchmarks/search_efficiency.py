"""Search efficiency: epochs TPE + ASHA and random + ASHA need to come within 1 point of the full grid's best.

Baseline: the full grid of a small classifier space (learning rate 3e-4..1e-2 × dropout {0, 0.5}
× dense units {0, 256}: 16 configurations) on the real X-SDD steel-defect set
(``../shared/datasets/xsdd``, 7 classes, all 1360 images; split 60/30/10, so one point of
``val/accuracy`` is about four of its 408 validation images) at 32 px with a ``resnet10t``
trained from scratch, every configuration for the full epoch budget (8 epochs: 128 epochs for
the grid a user would run). The grid runs for real as corrotune studies (``sampler: grid``,
FIFO, four trials at a time), **once per training seed** (``--training-seeds``, default 2: the
noise of one training run is as large as the differences between configurations), and every
trial's per-epoch ``val/accuracy`` becomes a **lookup table** (``--table`` caches it, so a
rerun skips the training; a seed's finished grid under ``--out`` is read, not rerun).

Then the searches are **replayed against that table** with corrotune's own searcher and
scheduler: ``AblationSearcher`` (Optuna ``TPESampler``, its random start sized to the budget,
or ``RandomSampler``; seeded; over the same 16 points as categorical parameters;
``search.num_samples`` = 2 × the configurations unless ``--trials``) and the ``asha`` scheduler of
``orchestrator.schedulers.build_scheduler`` (Ray's ``ASHAScheduler`` with the study defaults:
grace period 1, reduction factor 2, one bracket, ``max_t`` = the epoch budget), two trials at a
time as in the grid run. Each replay draws a world: one training seed per configuration (a
repeated configuration replays the same curve, as with a study's fixed ``seed``). Each search
may spend at most the grid's epochs. Counted: the epochs consumed (results processed) until the
best ``val/accuracy`` observed so far (any trial, any epoch) is within 1 point of the full
grid's best in the same world (any configuration, any epoch: the same measure on the same
curves); ratio = that / the grid's epochs (goal ≤ 0.30 for TPE + ASHA). Over ``--seeds`` search seeds 0..N-1 (all of them, none picked): mean, median and
max. ``--live`` also runs TPE + ASHA for real (search seed 0, training seed 0) through corrotune
and prints it beside its replay, to cross-check.

    python benchmarks/search_efficiency.py [--table search_table.json] [--seeds 10] [--training-seeds 2] [--live]
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
    TABLE_VERSION, grid_study, link_subset, load_table, merge_seeds, read_table, run_grid, subset_plan, write_table,
)

GOAL = 0.30
WITHIN_POINTS = 1.0
METRIC = "val/accuracy"
DATASET = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "xsdd"
GRID = {"lr": [3e-4, 1e-3, 3e-3, 1e-2], "dropout": [0.0, 0.5], "dense_units": [0, 256]}
# ``--space``: the 16-point space above, or the same with the papers' loss choice beside it
# (cross-entropy or focal, P000/P002): 32 points, a 256-epoch grid. (The papers' GAP/GMP choice
# is no factor at 32 px: resnet10t's last map is 1x1 there, and a 64-point grid with it gave
# bit-identical curves for gap and gmp; see docs/search_efficiency.md.)
SPACES = {"small": GRID, "wide": {**GRID, "loss": ["ce", "focal"]}}
PARAMS = {
    "backbone": "resnet10t", "pretrained": False, "image_size": 32, "batch_size": 32, "epochs": 8,
    "lr_schedule": "cosine",  # settled curves: a constant lr swung val/accuracy by 10-25 points between epochs
    "seed": 0, "profile": False, "artifacts": False,
}
SUBSET_IMAGES, SUBSET_SEED = 0, 0  # 0: every image of the set
TRAINING_SEEDS = 2  # the grid runs once per training seed 0..N-1
SPLIT = [0.6, 0.3, 0.1]  # a large validation split: 1 point of val/accuracy is ~4 of X-SDD's 1360 images
ASHA = {"name": "asha"}  # corrotune's defaults (SchedulerSpec): grace_period 1, reduction_factor 2, brackets 1
# context, not the headline: grace periods of 1/4 and 1/2 of max_t (the demo study's is 2)
ASHA_VARIANTS = ({"name": "asha", "grace_period": 2}, {"name": "asha", "grace_period": 4})
TRIALS_PER_CONFIG = 2  # search.num_samples = 2 x the grid's configurations (ASHA stops most trials early)
CONCURRENCY = 2  # the searches' (replayed and live)
GRID_CONCURRENCY = 4  # the grid's trials at once (more processes at nice 19 on a shared machine)


def _setup(data: Path, epochs: int, images: int, training_seeds: int, grid: dict = GRID) -> dict:
    plan = subset_plan(data, images, SUBSET_SEED)
    return {
        "data": str(data), "split": SPLIT, "grid": grid, "params": {**PARAMS, "epochs": epochs}, "metric": METRIC,
        "training_seeds": list(range(training_seeds)),
        "subset": {"requested": images, "images": sum(map(len, plan.values())), "seed": SUBSET_SEED, "stratified": True,
                   "per_class": {name: len(files) for name, files in plan.items()}},
    }


def subset_folder(setup: dict, out: Path) -> Path:
    """The setup's subset as a folder of links under ``out``."""
    source = Path(setup["data"])
    return link_subset(source, subset_plan(source, setup["subset"]["requested"], SUBSET_SEED), out / "data-subset")


def measure_table(setup: dict, out: Path) -> dict:
    """Links the subset and runs the grid through corrotune under ``out``, once per training seed
    (each a complete grid study of its own); returns the lookup table."""
    data = str(subset_folder(setup, out))
    per_seed, walls, dirs = [], [], []
    for seed in setup["training_seeds"]:
        params = {**setup["params"], "seed": seed}
        name = f"grid-seed{seed}"
        done = out / "grid" / f"{name}.done.json"  # a seed's grid finished under this --out: read, not rerun
        if done.exists() and json.loads(done.read_text()).get("setup") == {**setup, "training_seeds": None}:
            study_dir, wall = out / "grid" / name, json.loads(done.read_text())["wall_s"]
        else:
            study = grid_study(data, setup["grid"], params, METRIC, SPLIT, name=name, concurrency=GRID_CONCURRENCY)
            study_dir, wall = run_grid(study, out / "grid")
        per_seed.append(read_table(study_dir, setup["grid"], METRIC, params["epochs"]))
        done.write_text(json.dumps({"setup": {**setup, "training_seeds": None}, "wall_s": wall}))
        walls.append(round(wall, 1))
        dirs.append(str(study_dir))
        print(f"grid, training seed {seed}: {wall:.0f} s -> {study_dir}", file=sys.stderr)
    return {
        "version": TABLE_VERSION, "setup": setup, "configs": merge_seeds(per_seed), "grid_wall_s": walls,
        "grid_study_dirs": dirs, "cpus": os.cpu_count(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATASET, help="classification image folder (default: the shared xsdd)")
    parser.add_argument("--space", choices=sorted(SPACES), default="small",
                        help="small: lr x dropout x dense units (16 points); wide: also the loss, ce or focal (32 points)")
    parser.add_argument("--epochs", type=int, default=PARAMS["epochs"], help="epoch budget of every grid trial")
    parser.add_argument("--images", type=int, default=SUBSET_IMAGES, help="size of a seeded stratified subset (0: all images)")
    parser.add_argument("--training-seeds", type=int, default=TRAINING_SEEDS,
                        help="the grid runs once per training seed 0..N-1; a replayed trial draws one of them")
    parser.add_argument("--table", type=Path, help="lookup table file: read if it exists, else measured and written there")
    parser.add_argument("--out", type=Path, help="folder for the grid (and --live) studies (default: a temporary folder)")
    parser.add_argument("--seeds", type=int, default=10, help="search seeds 0..N-1 per method")
    parser.add_argument("--trials", type=int, help="the searches' search.num_samples (default: 2 x the grid's configurations)")
    parser.add_argument("--live", action="store_true", help="also run TPE + ASHA for real (search seed 0) to cross-check")
    args = parser.parse_args()
    if not args.data.is_dir():
        raise SystemExit(f"--data {args.data}: no such folder (the shared datasets live in ../shared/datasets/)")
    if args.seeds < 1 or args.training_seeds < 1:
        raise SystemExit("--seeds and --training-seeds must be at least 1")
    if args.trials is not None and args.trials < 1:
        raise SystemExit("--trials must be at least 1")
    if args.epochs < 2:
        raise SystemExit("--epochs must be at least 2 (ASHA needs a rung below the budget)")
    os.environ.setdefault("WANDB_MODE", "disabled")
    setup = _setup(args.data.resolve(), args.epochs, args.images, args.training_seeds, SPACES[args.space])
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

        trials = args.trials or TRIALS_PER_CONFIG * len(table["configs"])
        result = report(table, seeds=args.seeds, scheduler=ASHA, concurrency=CONCURRENCY,
                        within=WITHIN_POINTS, goal=GOAL, variants=ASHA_VARIANTS, trials=trials)
        result["table"] = {"file": str(args.table) if args.table else None, "measured_in_this_run": measured}
        if args.live:
            from _search_live import live_check

            result["live_cross_check"] = live_check(table, out / "live", ASHA, CONCURRENCY, WITHIN_POINTS,
                                                    data=str(subset_folder(setup, out)), trials=trials)
    return result


if __name__ == "__main__":
    main()
