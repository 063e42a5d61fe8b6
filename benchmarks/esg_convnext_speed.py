"""Speed of ESG-ConvNeXt's variants vs timm's ConvNeXt V2 of the same size, measured in one run.

Prints JSON: training images/s (forward, cross-entropy, backward, AdamW step) and inference FPS
(eval, no gradients) of timm's ``convnextv2_<size>`` and of ``esg_convnext_<size>`` with each of
P004's five variants, on random batches. The goal: the ``convnext`` variant (our code path with
every module off) runs at >= 0.95 of timm's speed; each later variant's ratio is the cost of
its modules. Models are measured in interleaved rounds (every model once per round, in
alternating order, so a load change on a shared machine hits all of them alike); the best round is the reported rate (as
``timeit`` takes the fastest run: other load only ever slows a round down), the median is given
beside it.

    python benchmarks/esg_convnext_speed.py [--size atto] [--image-size 224] [--batch-size 16]
        [--steps 5] [--rounds 3] [--threads N] [--device auto] [--variants convnext,esg]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from typing import Callable

import timm
import torch
from torch import nn

import trainables.models  # noqa: F401  (registers esg_convnext_<size> with timm)
from trainables.models.esg_convnext import SIZES, VARIANTS

CPUS = os.cpu_count() or 1
BASELINE = "timm"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _train_rate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int) -> float:
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model.train()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()

    step()  # warm-up: allocator, optimiser state, cuDNN choice
    _sync(x.device)
    started = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(x.device)
    return steps * x.shape[0] / (time.perf_counter() - started)


def _infer_rate(model: nn.Module, x: torch.Tensor, steps: int) -> float:
    model.eval()
    with torch.inference_mode():
        model(x)  # warm-up
        _sync(x.device)
        started = time.perf_counter()
        for _ in range(steps):
            model(x)
        _sync(x.device)
    return steps * x.shape[0] / (time.perf_counter() - started)


def _builders(size: str, variants: list[str], num_classes: int) -> dict[str, Callable[[], nn.Module]]:
    builders = {BASELINE: lambda: timm.create_model(f"convnextv2_{size}", num_classes=num_classes)}
    for variant in variants:
        builders[variant] = lambda v=variant: timm.create_model(f"esg_convnext_{size}", num_classes=num_classes, variant=v)
    return builders


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="atto", choices=list(SIZES))
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the best is reported")
    parser.add_argument("--num-classes", type=int, default=7)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=CPUS, help="torch intra-op threads (1 is steadier on a shared CPU)")
    parser.add_argument("--channels-last", action="store_true", help="NHWC memory format (timm's CUDA default)")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated subset of {list(VARIANTS)}")
    args = parser.parse_args()
    variants = [v for v in args.variants.split(",") if v]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown or "convnext" not in variants:
        parser.error(f"--variants must include 'convnext' and only name {list(VARIANTS)}; got unknown {unknown}")
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    torch.manual_seed(0)
    memory_format = torch.channels_last if args.channels_last else torch.contiguous_format
    x = torch.randn(args.batch_size, 3, args.image_size, args.image_size, device=device).to(memory_format=memory_format)
    y = torch.randint(0, args.num_classes, (args.batch_size,), device=device)
    models = {name: build().to(device, memory_format=memory_format) for name, build in _builders(args.size, variants, args.num_classes).items()}
    train = {name: [] for name in models}
    infer = {name: [] for name in models}
    for round_index in range(args.rounds):
        order = list(models.items())
        for name, model in order if round_index % 2 == 0 else order[::-1]:  # no model always goes first
            train[name].append(_train_rate(model, x, y, args.steps))
            infer[name].append(_infer_rate(model, x, args.steps))
    rows = {}
    for name, model in models.items():
        rows[name] = {
            "model": f"convnextv2_{args.size}" if name == BASELINE else f"esg_convnext_{args.size} variant={name}",
            "params": sum(p.numel() for p in model.parameters()),
            "train_img_per_s": round(max(train[name]), 2),
            "infer_fps": round(max(infer[name]), 2),
            "train_img_per_s_median": round(statistics.median(train[name]), 2),
            "infer_fps_median": round(statistics.median(infer[name]), 2),
        }
    base = rows[BASELINE]
    for name in variants:
        rows[name]["train_ratio_vs_timm"] = round(rows[name]["train_img_per_s"] / base["train_img_per_s"], 3)
        rows[name]["infer_ratio_vs_timm"] = round(rows[name]["infer_fps"] / base["infer_fps"], 3)
    plain = rows["convnext"]
    print(json.dumps({
        "size": args.size, "device": str(device), "threads": torch.get_num_threads(), "image_size": args.image_size,
        "batch_size": args.batch_size, "steps": args.steps, "rounds": args.rounds, "channels_last": args.channels_last,
        "models": rows,
        "goal": "variant convnext >= 0.95 x timm for training and inference",
        "goal_met": plain["train_ratio_vs_timm"] >= 0.95 and plain["infer_ratio_vs_timm"] >= 0.95,
        "total_s": round(time.perf_counter() - started, 1),
        "note": "best of interleaved rounds (median beside); random inputs; AdamW lr 1e-4; cross-entropy",
    }, indent=2))


if __name__ == "__main__":
    main()
