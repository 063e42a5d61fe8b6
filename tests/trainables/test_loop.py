"""The shared loop's pieces: batch cuts, the best-epoch tracker, the LR rescale."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from trainables.loop import _Best, batch_indices, scale_lr


@pytest.mark.parametrize("n,batch_size", [(9, 4), (10, 4), (8, 4), (1, 4), (5, 1), (3, 2), (13, 6)])
def test_batches_cover_every_sample_once_and_never_hold_a_lone_sample(n, batch_size):
    batches = batch_indices(n, batch_size, torch.Generator().manual_seed(0))
    assert sorted(torch.cat(batches).tolist()) == list(range(n))
    if batch_size > 1 and n > 1:
        assert all(len(b) > 1 for b in batches)
    assert all(len(b) <= batch_size + 1 for b in batches)
    if n % batch_size == 1 and n > batch_size:
        assert len(batches[-1]) == batch_size + 1 and len(batches) == n // batch_size


def test_batches_replay_from_the_same_generator_state():
    a = batch_indices(21, 4, torch.Generator().manual_seed(3))
    b = batch_indices(21, 4, torch.Generator().manual_seed(3))
    assert all(torch.equal(x, y) for x, y in zip(a, b)) and len(a) == len(b)


def test_best_epoch_follows_the_metric_direction():
    model = nn.Linear(1, 1)
    best = _Best("val/loss")
    for epoch, value in enumerate([0.5, 0.3, 0.4], start=1):
        best.update({"val/loss": value}, model, epoch)
    assert (best.epoch, best.score) == (2, 0.3)
    best = _Best("val/iou")
    for epoch, value in enumerate([0.5, 0.3, 0.7], start=1):
        best.update({"val/iou": value}, model, epoch)
    assert (best.epoch, best.score) == (3, 0.7) and set(best.weights) == {"weight", "bias"}


def test_lr_rescale_moves_optimiser_and_schedule_together():
    model = nn.Linear(2, 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda t: 1.0)
    scale_lr(optimizer, scheduler, 10.0)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-2)
    assert scheduler.base_lrs == pytest.approx([1e-2])
    scheduler.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-2)
