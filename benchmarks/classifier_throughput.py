"""Training throughput of the classifier trainable under Ray Tune vs the same code in a bare loop.

Prints JSON: training images/s of resnet18 at 128 px on the generated corrosion set, (a) calling
the trainable directly in this process (a stand-in session records what it reports) and (b) as
one Ray Tune trial with the same CPUs, and the ratio (b)/(a). Both use the same code, data,
config and thread count, so the ratio is Tune's overhead on the training loop.

    python benchmarks/classifier_throughput.py [--epochs 3] [--image-size 128] [--backbone resnet18]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # run as a script: the helper beside it
from _tune_rate import steady, tune_train_rate  # noqa: E402

CPUS = os.cpu_count() or 1


def _config(args) -> dict:
    return {
        "data": {"path": "synthetic:corrosion", "synthetic": {"num_images": args.num_images, "image_size": args.image_size}},
        "backbone": args.backbone, "image_size": args.image_size, "epochs": args.epochs, "batch_size": 32,
        "augmentation": "hflip", "profile": False, "artifacts": False, "channels_last": True,
    }


def bare(args) -> float:
    import trainables.classifier as classifier
    import trainables.loop as loop

    reported: list[dict] = []
    original = (loop.load_trial_checkpoint, loop.report_with_checkpoint)
    loop.load_trial_checkpoint = lambda: None
    loop.report_with_checkpoint = lambda metrics, state: reported.append(metrics)
    try:
        torch.set_num_threads(CPUS)
        classifier.train_classifier(_config(args))
    finally:
        loop.load_trial_checkpoint, loop.report_with_checkpoint = original
    return steady([m["time/train_img_per_s"] for m in reported])


def under_tune(args) -> float:
    return tune_train_rate("classifier", _config(args), CPUS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--num-images", type=int, default=600)
    parser.add_argument("--backbone", default="resnet18")
    args = parser.parse_args()
    os.environ.setdefault("WANDB_MODE", "disabled")
    started = time.perf_counter()
    from trainables.data.config import DataConfig
    from trainables.data.folder import resolve_root

    resolve_root(DataConfig(**_config(args)["data"]))  # generate the data before timing
    bare_rate = bare(args)
    tune_rate = under_tune(args)
    print(json.dumps({
        "backbone": args.backbone, "image_size": args.image_size, "cpus": CPUS, "epochs": args.epochs,
        "train_images": int(args.num_images * 0.7),
        "bare_loop_img_per_s": round(bare_rate, 2), "ray_tune_img_per_s": round(tune_rate, 2),
        "ratio_tune_over_bare": round(tune_rate / bare_rate, 3), "total_s": round(time.perf_counter() - started, 1),
        "note": "median training images/s over epochs 2..N (epoch 1 warms up); same trainable code path",
    }, indent=2))


if __name__ == "__main__":
    main()
