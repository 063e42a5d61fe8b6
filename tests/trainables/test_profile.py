import torch
from torch import nn

from trainables.profile import model_profile


def test_counts_flops_params_and_keeps_the_mode():
    model = nn.Sequential(nn.Conv2d(3, 4, kernel_size=1, bias=False), nn.Flatten(), nn.Linear(4 * 8 * 8, 2))
    model[0].weight.requires_grad_(False)
    model.train()
    profile = model_profile(model, 8, torch.device("cpu"), repeats=3)
    conv_flops = 2 * 3 * 4 * 8 * 8  # one multiply-add per input channel, output channel and pixel
    linear_flops = 2 * 256 * 2
    assert profile["model/gflops"] * 1e9 == conv_flops + linear_flops
    assert profile["model/gmacs"] * 2 == profile["model/gflops"]
    assert profile["model/params"] == 12 + 256 * 2 + 2
    assert profile["model/trainable_params"] == 256 * 2 + 2
    assert profile["model/latency_ms"] > 0
    assert model.training  # restored
