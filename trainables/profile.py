"""Model cost for multi-objective studies: parameters, FLOPs and inference latency."""

from __future__ import annotations

import statistics
import time

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["model_profile"]


@torch.no_grad()
def model_profile(model: nn.Module, image_size: int, device: torch.device, repeats: int = 10) -> dict[str, float]:
    """Measures a model at batch 1 on ``device``.

    Returns:
        ``model/params`` and ``model/trainable_params`` (counts), ``model/gflops`` (forward
        FLOPs of one image, multiply-add = 2 FLOPs, as torch's FlopCounterMode counts),
        ``model/gmacs`` (half of that) and ``model/latency_ms`` (median of ``repeats`` timed
        forwards after one warm-up; CUDA is synchronised around each).
    """
    was_training = model.training
    model.eval()
    x = torch.zeros(1, 3, image_size, image_size, device=device)
    counter = FlopCounterMode(display=False)
    with counter:
        model(x)
    flops = counter.get_total_flops()
    timings = []
    for i in range(repeats + 1):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        started = time.perf_counter()
        model(x)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i:  # the first run warms caches and kernels up
            timings.append((time.perf_counter() - started) * 1000.0)
    model.train(was_training)
    return {
        "model/params": float(sum(p.numel() for p in model.parameters())),
        "model/trainable_params": float(sum(p.numel() for p in model.parameters() if p.requires_grad)),
        "model/gflops": flops / 1e9,
        "model/gmacs": flops / 2e9,
        "model/latency_ms": statistics.median(timings),
    }
