"""benchmarks/gpu_check.py on a machine without CUDA: a clean skip, and configs the trainable accepts."""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_check.py"


@pytest.fixture()
def gpu_check(monkeypatch):
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setattr(sys, "path", list(sys.path))  # the script puts benchmarks/ on the path
    spec.loader.exec_module(module)
    return module


def test_without_cuda_it_prints_a_skip_with_the_reason_and_returns(gpu_check, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(sys, "argv", ["gpu_check.py"])
    gpu_check.main()  # returns: exit status 0
    report = json.loads(capsys.readouterr().out)
    assert report["skipped"] is True and "no CUDA device" in report["reason"]


@pytest.mark.parametrize("amp,channels_last", [(False, False), (True, True)])
def test_every_variant_it_runs_is_a_valid_classifier_config(gpu_check, amp, channels_last):
    from trainables import get_trainable

    args = argparse.Namespace(num_images=40, image_size=32, epochs=2, backbone="resnet18")
    cfg = get_trainable("classifier").config_model.model_validate(gpu_check._config(args, amp, channels_last))
    assert (cfg.amp, cfg.channels_last, cfg.device) == (amp, channels_last, "cuda")
