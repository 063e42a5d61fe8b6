"""Seeds, RNG state round trips, device selection and the autocast context."""

from __future__ import annotations

import pickle
import random
from contextlib import nullcontext

import numpy as np
import pytest
import torch

from trainables._runtime import autocast, rng_state, seed_everything, select_device, set_rng_state


def _draw() -> tuple:
    return (
        [random.random() for _ in range(3)],
        np.random.rand(3).tolist(),
        torch.rand(3).tolist(),
        torch.randint(0, 1000, (2,)).tolist(),
    )


def test_rng_state_round_trip_restores_every_stream_exactly():
    seed_everything(7)
    _draw()  # move away from the seed's start
    state = rng_state()
    expected = _draw()
    _draw()  # advance further, as a resumed trial's process would have
    set_rng_state(state)
    assert _draw() == expected


def test_rng_state_round_trip_survives_a_reseed_and_serialisation(tmp_path):
    seed_everything(3)
    state = rng_state()
    expected = _draw()
    path = tmp_path / "state.pt"
    torch.save(state, path)  # the way report_with_checkpoint stores it
    seed_everything(99)
    _draw()
    set_rng_state(torch.load(path, weights_only=False))
    assert _draw() == expected


def test_rng_state_is_a_snapshot_not_a_live_view():
    seed_everything(0)
    state = rng_state()
    frozen = pickle.dumps(state)
    _draw()
    assert pickle.dumps(state) == frozen


def test_each_stream_is_restored_independently():
    seed_everything(11)
    state = rng_state()
    py, np_, th = random.random(), np.random.rand(), torch.rand(1).item()
    set_rng_state(state)
    assert torch.rand(1).item() == th  # torch first: no coupling between streams
    assert np.random.rand() == np_
    assert random.random() == py


def test_seed_everything_is_reproducible_and_seed_dependent():
    seed_everything(5)
    a = _draw()
    seed_everything(5)
    assert _draw() == a
    seed_everything(6)
    assert _draw() != a


def test_seed_everything_accepts_large_and_negative_seeds():
    seed_everything(2**40 + 1)
    first = _draw()
    seed_everything(2**40 + 1)
    assert _draw() == first
    seed_everything(-3)  # numpy takes seed % 2**32
    assert len(_draw()[1]) == 3


def test_select_device_cuda_without_a_gpu_is_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is visible")
    with pytest.raises(RuntimeError, match="cuda"):
        select_device("cuda")


def test_select_device_auto_and_cpu():
    assert select_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert select_device("auto").type == expected


def test_select_device_auto_is_cpu_when_cuda_is_hidden(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert select_device("auto") == torch.device("cpu")
    with pytest.raises(RuntimeError):
        select_device("cuda")
    assert "cuda" not in rng_state()


@pytest.mark.parametrize("enabled", [True, False])
def test_autocast_on_cpu_is_a_no_op(enabled):
    device = torch.device("cpu")
    context = autocast(device, enabled)
    assert isinstance(context, nullcontext)
    a, b = torch.randn(4, 4), torch.randn(4, 4)
    with context:
        assert not torch.is_autocast_enabled("cpu")
        out = a @ b
    assert out.dtype == torch.float32
    assert torch.equal(out, a @ b)


@pytest.mark.filterwarnings("ignore:CUDA is not available:UserWarning")
def test_autocast_disabled_on_cuda_device_is_a_no_op():
    # building the context does not need a GPU; only entering torch.autocast would
    assert isinstance(autocast(torch.device("cuda"), False), nullcontext)
    context = autocast(torch.device("cuda"), True)
    assert isinstance(context, torch.autocast)
    assert context.fast_dtype == torch.float16
