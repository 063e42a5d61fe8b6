"""GPU paths of the classifier trainable: AMP, channels_last, fractional-GPU packing, Tune vs bare.

On a CUDA machine it prints JSON with:

* ``amp_channels_last``: steady training images/s of the trainable called directly for each of
  fp32, AMP, channels_last and both, whether the loss stayed finite, and each speed-up over fp32;
  plus two property checks (``autocast`` yields float16, ``prepare_batch`` yields NHWC);
* ``tune_vs_bare``: the same (AMP + channels_last) config as one Ray Tune trial with ``gpu: 1``
  against the direct call: the throughput ratio on CUDA;
* ``fractional_packing``: 4 trials at ``gpu: 0.25`` at once: whether all saw the same device and
  ran at the same time, and their summed images/s against the one ``gpu: 1`` trial.

Without CUDA it prints ``{"skipped": true, "reason": ...}`` and exits 0.

    python benchmarks/gpu_check.py [--backbone resnet18] [--image-size 128] [--epochs 3]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # run as a script: the helper beside it
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _tune_rate import steady  # noqa: E402

CPUS = os.cpu_count() or 1
PACKED = 4


def _config(args, amp: bool = True, channels_last: bool = True) -> dict:
    return {
        "data": {"path": "synthetic:corrosion", "synthetic": {"num_images": args.num_images, "image_size": args.image_size}},
        "backbone": args.backbone, "image_size": args.image_size, "epochs": args.epochs, "batch_size": 64,
        "augmentation": "hflip", "profile": False, "artifacts": False, "device": "cuda",
        "amp": amp, "channels_last": channels_last,
    }


def _direct(config: dict) -> tuple[float, bool]:
    """Steady training images/s of the trainable in this process, and whether every loss was finite."""
    import trainables.classifier as classifier
    import trainables.loop as loop

    reported: list[dict] = []
    original = (loop.load_trial_checkpoint, loop.report_with_checkpoint)
    loop.load_trial_checkpoint = lambda: None
    loop.report_with_checkpoint = lambda metrics, state: reported.append(metrics)
    try:
        classifier.train_classifier(config)
    finally:
        loop.load_trial_checkpoint, loop.report_with_checkpoint = original
    finite = all(torch.isfinite(torch.tensor(m["train/loss"])) for m in reported)
    return steady([m["time/train_img_per_s"] for m in reported]), bool(finite)


def _properties() -> dict:
    from trainables._runtime import autocast
    from trainables.loop import prepare_batch
    from trainables.training_config import TrainingConfig

    device = torch.device("cuda")
    with autocast(device, True):
        dtype = torch.nn.Linear(8, 8).to(device)(torch.ones(2, 8, device=device)).dtype
    cfg = TrainingConfig.model_validate({"data": {"path": "synthetic:corrosion"}, "channels_last": True})
    x = prepare_batch(torch.zeros(2, 3, 16, 16, dtype=torch.uint8), cfg, device)
    return {"autocast_dtype": str(dtype), "batch_is_channels_last": x.is_contiguous(memory_format=torch.channels_last)}


def _packed_trainable(config: dict) -> None:
    """The classifier trainable, noting which GPU Ray gave it and when it started and ended."""
    from ray import tune

    from trainables import get_trainable

    note = Path(tune.get_context().get_trial_dir()) / "gpu_check.json"
    seen = {"visible": os.environ.get("CUDA_VISIBLE_DEVICES"), "uuid": str(torch.cuda.get_device_properties(0).uuid), "start": time.time()}
    get_trainable("classifier").as_trainable()(config)
    note.write_text(json.dumps({**seen, "end": time.time()}))


def _under_tune(config: dict, trials: int, gpu: float) -> list[dict]:
    """``trials`` copies of ``config`` at ``gpu`` GPUs each; per trial its steady images/s and GPU note."""
    import ray
    from ray import tune

    cpus = max(1, CPUS // trials)
    ray.init(num_cpus=CPUS, num_gpus=1, include_dashboard=False, log_to_driver=False)
    try:
        with tempfile.TemporaryDirectory() as storage:
            tuner = tune.Tuner(
                tune.with_resources(_packed_trainable, {"cpu": cpus, "gpu": gpu}),
                param_space={**config, "seed": tune.grid_search(list(range(trials)))},
                tune_config=tune.TuneConfig(max_concurrent_trials=trials),
                run_config=tune.RunConfig(storage_path=storage, name="gpu_check", verbose=0),
            )
            with contextlib.redirect_stdout(sys.stderr):  # keep stdout for the JSON
                results = tuner.fit()
            if results.errors:
                raise SystemExit(f"gpu_check: a trial at gpu={gpu} failed: {results.errors[0]}")
            return [
                {"img_per_s": steady(r.metrics_dataframe["time/train_img_per_s"].tolist()),
                 **json.loads((Path(r.path) / "gpu_check.json").read_text())}
                for r in results
            ]
    finally:
        ray.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--num-images", type=int, default=600)
    parser.add_argument("--backbone", default="resnet18")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print(json.dumps({
            "benchmark": "gpu_check", "skipped": True,
            "reason": f"no CUDA device visible (torch {torch.__version__}, built for CUDA {torch.version.cuda}); "
                      "run it on a machine with an NVIDIA GPU",
        }, indent=2))
        return
    os.environ.setdefault("WANDB_MODE", "disabled")
    from trainables.data.config import DataConfig
    from trainables.data.folder import resolve_root

    started = time.perf_counter()
    resolve_root(DataConfig(**_config(args)["data"]))  # generate the data before timing
    variants = {}
    for name, amp, channels_last in (("fp32", False, False), ("amp", True, False), ("channels_last", False, True), ("amp_channels_last", True, True)):
        rate, finite = _direct(_config(args, amp, channels_last))
        variants[name] = {"img_per_s": round(rate, 1), "loss_finite": finite}
    for row in variants.values():
        row["speedup_over_fp32"] = round(row["img_per_s"] / variants["fp32"]["img_per_s"], 3)

    alone = _under_tune(_config(args), 1, 1.0)[0]
    packed = _under_tune(_config(args), PACKED, 1.0 / PACKED)
    overlap = max(p["start"] for p in packed) < min(p["end"] for p in packed)
    print(json.dumps({
        "benchmark": "gpu_check", "skipped": False, "device": torch.cuda.get_device_name(0),
        "backbone": args.backbone, "image_size": args.image_size, "epochs": args.epochs, "cpus": CPUS,
        "amp_channels_last": {**variants, **_properties()},
        "tune_vs_bare": {
            "bare_img_per_s": variants["amp_channels_last"]["img_per_s"], "tune_img_per_s": round(alone["img_per_s"], 1),
            "ratio": round(alone["img_per_s"] / variants["amp_channels_last"]["img_per_s"], 3),
        },
        "fractional_packing": {
            "trials": PACKED, "gpu_per_trial": 1.0 / PACKED,
            "same_device": len({p["uuid"] for p in packed}) == 1, "ran_concurrently": overlap,
            "summed_img_per_s": round(sum(p["img_per_s"] for p in packed), 1),
            "ratio_over_one_full_gpu_trial": round(sum(p["img_per_s"] for p in packed) / alone["img_per_s"], 3),
        },
        "total_s": round(time.perf_counter() - started, 1),
        "note": "median training images/s over epochs 2..N (epoch 1 warms up)",
    }, indent=2))


if __name__ == "__main__":
    main()
