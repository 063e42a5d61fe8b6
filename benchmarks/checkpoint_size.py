"""Storage per trial: bytes of a running trial's checkpoints and of a finished trial's folder.

Runs the classifier trainable as one Ray Tune trial (Adam, so the optimiser state is two moments
per weight) with corrotune's ``CheckpointPruner``, records every checkpoint as it is registered
(its ``state.pt`` bytes against the bytes of the weights + optimiser state it must hold for an
exact resume), and after the trial has finished measures the checkpoint folders left in its
trial folder against the bytes of the best weights. Prints JSON with both ratios and the goals
(running ≤ 1.05, finished ≤ 1.1).

    python benchmarks/checkpoint_size.py [--backbone resnet18] [--epochs 4] [--image-size 32]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import tempfile
from pathlib import Path

import torch

RUNNING_GOAL, FINISHED_GOAL = 1.05, 1.1


def _nbytes(obj) -> int:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return len(buffer.getvalue())


def _checkpoint_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--num-images", type=int, default=40)
    args = parser.parse_args()

    os.environ.setdefault("WANDB_MODE", "offline")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import ray
    from ray import tune

    from orchestrator.ray_repairs.checkpoints import CheckpointPruner
    from trainables import get_trainable

    running: list[dict] = []

    class Record(tune.Callback):
        """Measures each checkpoint when Ray registers it (before any pruning)."""

        def on_checkpoint(self, iteration, trials, trial, checkpoint, **info):
            folder = Path(checkpoint.path)
            state = torch.load(folder / "state.pt", map_location="cpu", weights_only=False)
            needed = _nbytes({"model": state["model"], "optimizer": state["optimizer"]})
            size = _checkpoint_bytes(folder)
            running.append({
                "epoch": state["epoch"], "bytes": size, "weights_plus_optimizer_bytes": needed,
                "ratio": round(size / needed, 4), "holds_best_weights": state.get("best_model") is not None,
            })

    config = {
        "data": {"path": "synthetic:corrosion", "synthetic": {"num_images": args.num_images, "image_size": args.image_size}},
        "backbone": args.backbone, "image_size": args.image_size, "epochs": args.epochs, "batch_size": 8,
        "optimizer": "adam", "profile": False, "artifacts": False,
    }
    metric, mode = "val/loss", "min"
    with tempfile.TemporaryDirectory(prefix="corrotune-ckpt-bench-") as storage:
        ray.init(num_cpus=min(2, os.cpu_count() or 1), include_dashboard=False, log_to_driver=False)
        try:
            tuner = tune.Tuner(
                tune.with_resources(get_trainable("classifier").as_trainable(), {"cpu": 1}),
                param_space=config,
                tune_config=tune.TuneConfig(metric=metric, mode=mode),
                run_config=tune.RunConfig(
                    name="size", storage_path=storage, verbose=0,
                    callbacks=[Record(), CheckpointPruner(2, metric, mode, min_read_interval_s=0)],
                    checkpoint_config=tune.CheckpointConfig(num_to_keep=2, checkpoint_score_attribute=metric, checkpoint_score_order=mode),
                ),
            )
            with contextlib.redirect_stdout(sys.stderr):  # Tune's banner: stdout stays JSON
                result = tuner.fit()[0]
        finally:
            ray.shutdown()
        if result.error:
            raise SystemExit(f"the benchmark trial failed: {result.error}")
        trial = Path(result.path)
        left = sorted(trial.glob("checkpoint_*"))
        finished_bytes = sum(_checkpoint_bytes(f) for f in left)
        final = torch.load(left[-1] / "state.pt", map_location="cpu", weights_only=False)
        weights = _nbytes(final["best_model"])

    worst = max(r["ratio"] for r in running)
    print(json.dumps({
        "benchmark": "checkpoint_size",
        "setup": {**{k: v for k, v in config.items() if k != "data"}, "num_images": args.num_images, "checkpoints_num_to_keep": 2},
        "running": {"per_checkpoint": running, "worst_ratio": worst, "goal": RUNNING_GOAL, "met": worst <= RUNNING_GOAL},
        "finished": {
            "checkpoints_left": [f.name for f in left], "bytes": finished_bytes, "best_weights_bytes": weights,
            "ratio": round(finished_bytes / weights, 4), "goal": FINISHED_GOAL, "met": finished_bytes / weights <= FINISHED_GOAL,
            "best_epoch": final["best_epoch"],
        },
    }, indent=2))


if __name__ == "__main__":
    main()
