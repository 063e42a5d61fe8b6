"""Fine-tune fraction, BatchNorm freezing, two-phase schedule, optimisers and LR schedules (CPU, tiny)."""

from __future__ import annotations

import copy
import math
from fractions import Fraction

import pytest
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from trainables._backbones import create_backbone
from trainables.finetune import (
    FineTuneSchedule,
    Phase,
    backbone_layers,
    build_lr_scheduler,
    build_optimizer,
    enter_phase,
    fine_tune_layer_count,
    set_fine_tune_fraction,
    train_mode,
)
from trainables.models.classifier import ClassifierNet

SIZE = 32
FRACTIONS = [0.0, 0.05, 0.2, 1.0]


def _net(backbone_name: str, dropout: float = 0.5, seed: int = 0, projection_channels: int = 0) -> ClassifierNet:
    torch.manual_seed(seed)
    backbone = create_backbone(backbone_name, pretrained=False)
    return ClassifierNet(
        backbone,
        backbone.num_features,
        num_outputs=2,
        dense_units=(8,),
        dropout=dropout,
        projection_channels=projection_channels,
    )


def _top_count(fraction: float, num_layers: int) -> int:
    """ceil(f·L) in exact rational arithmetic (independent of the module's float rounding)."""
    return math.ceil(Fraction(str(fraction)) * num_layers)


def _trainable_ids(module: nn.Module) -> set[int]:
    return {id(p) for p in module.parameters() if p.requires_grad}


# --------------------------------------------------------------------------- layers


@pytest.mark.parametrize("fraction", FRACTIONS)
@pytest.mark.parametrize("name", ["resnet10t", "mobilenetv3_small_050"])
def test_fraction_trains_exactly_the_top_layers(name: str, fraction: float) -> None:
    model = _net(name)
    layers = backbone_layers(model.backbone, SIZE)
    top = _top_count(fraction, len(layers))

    assert set_fine_tune_fraction(model.backbone, fraction, SIZE) == top

    expected = sum(p.numel() for _, m in layers[len(layers) - top :] for p in m.parameters(recurse=False))
    trainable = sum(p.numel() for p in model.backbone.parameters() if p.requires_grad)
    assert trainable == expected
    if fraction == 0:
        assert trainable == 0
    if fraction == 1:
        assert trainable == sum(p.numel() for p in model.backbone.parameters())
    # each layer is all-or-nothing, and the trainable ones are the last `top` in forward order
    flags = [[p.requires_grad for p in m.parameters(recurse=False)] for _, m in layers]
    assert all(len(set(f)) == 1 for f in flags)
    assert [f[0] for f in flags] == [False] * (len(layers) - top) + [True] * top

    optimizer, _ = enter_phase(model, Phase(2, 1e-4, fraction, 1), "adam", 0.0, "constant", 0, 3, input_size=SIZE)
    assert all(p.requires_grad for p in model.head.parameters())
    assert {id(p) for g in optimizer.param_groups for p in g["params"]} == _trainable_ids(model)


def test_resnet_unfreezes_layer4_before_the_stem() -> None:
    backbone = create_backbone("resnet10t")
    layers = backbone_layers(backbone, SIZE)
    names = [n for n, _ in layers]
    assert names[0] == "conv1.0" and names[1] == "conv1.1"
    set_fine_tune_fraction(backbone, 0.2, SIZE)
    trainable = {n.rsplit(".", 1)[0] for n, p in backbone.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("layer4.") for n in trainable)
    assert any(isinstance(backbone.get_submodule(n), _BatchNorm) for n in trainable)  # final BN included
    assert not any(p.requires_grad for p in backbone.conv1.parameters())


@pytest.mark.parametrize("name", ["resnet10t", "mobilenetv3_small_050", "efficientnet_b0", "convnext_atto"])
def test_layers_partition_the_backbone_parameters(name: str) -> None:
    """Every parameter belongs to exactly one layer: fraction 1 trains all of them, none twice."""
    backbone = create_backbone(name)
    layers = backbone_layers(backbone, SIZE)
    owned = [id(p) for _, m in layers for p in m.parameters(recurse=False)]
    assert len(owned) == len(set(owned))
    assert set(owned) == {id(p) for p in backbone.parameters()}


def test_unreached_timm_head_parts_are_the_bottom_layers() -> None:
    """forward_features never runs MobileNetV3's conv_head / ConvNeXt's head.norm: never in a top fraction."""
    mobilenet = backbone_layers(create_backbone("mobilenetv3_small_050"), SIZE)
    assert [n for n, _ in mobilenet][:2] == ["conv_head", "conv_stem"]
    convnext = create_backbone("convnext_atto")
    layers = backbone_layers(convnext, SIZE)
    assert layers[0][0] == "head.norm"
    assert set_fine_tune_fraction(convnext, 0.98, SIZE) == len(layers) - 1
    assert not any(p.requires_grad for p in convnext.head.parameters())


class _Block(nn.Module):
    """A container that owns a parameter directly (like ConvNeXt's layer-scale gamma)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 1)
        self.gamma = nn.Parameter(torch.ones(4, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) * self.gamma


class _Reordered(nn.Module):
    """Registration order late, block, norm, unused, early; forward order early → norm → block → late."""

    def __init__(self) -> None:
        super().__init__()
        self.late = nn.Conv2d(4, 5, 1)
        self.block = _Block()
        self.norm = nn.BatchNorm2d(4)
        self.unused = nn.Linear(2, 2)
        self.early = nn.Conv2d(3, 4, 3, padding=1)
        self.act = nn.ReLU()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.late(self.block(self.act(self.norm(self.early(x)))))  # (N, 5, H, W)


def test_layers_follow_forward_order_not_registration_order() -> None:
    module = _Reordered()
    registration = [n for n, m in module.named_modules() if list(m.parameters(recurse=False))]
    assert registration == ["late", "block", "block.conv", "norm", "unused", "early"]
    layers = backbone_layers(module, input_size=8)
    assert [n for n, _ in layers] == ["unused", "early", "norm", "block", "block.conv", "late"]
    assert set_fine_tune_fraction(module, 0.5, 8) == 3
    assert {n for n, p in module.named_parameters() if p.requires_grad} == {
        "block.gamma",
        "block.conv.weight",
        "block.conv.bias",
        "late.weight",
        "late.bias",
    }


def test_layers_are_cached_per_instance_and_probe_leaves_modes_alone() -> None:
    module = _Reordered()
    module.train()
    module.norm.eval()
    stats = module.norm.running_mean.clone()
    first = backbone_layers(module, 8)
    assert module.training and module.early.training and not module.norm.training
    assert torch.equal(module.norm.running_mean, stats)
    assert all(not p.requires_grad or p.grad is None for p in module.parameters())

    calls = []
    module.early.register_forward_pre_hook(lambda *_: calls.append(1))
    assert backbone_layers(module, 8) == first and not calls  # cached: no second probe
    module.late = nn.Conv2d(4, 5, 1)  # a replaced submodule invalidates the cache
    assert backbone_layers(module, 8)[-1][1] is module.late and calls
    module.extra = nn.Conv2d(5, 5, 1)  # so does a new parameter owner (unreached: the bottom)
    assert [n for n, _ in backbone_layers(module, 8)][:2] == ["unused", "extra"]
    assert [n for n, _ in backbone_layers(_Reordered(), 8)] == [n for n, _ in first]


def test_fine_tune_layer_count_rounds_up_without_float_noise() -> None:
    assert fine_tune_layer_count(0.1, 30) == 3  # 0.1 * 30 == 3.0000000000000004
    assert fine_tune_layer_count(0.2, 270) == 54  # P003's example
    assert fine_tune_layer_count(0.05, 28) == 2
    assert fine_tune_layer_count(1e-6, 28) == 1
    assert fine_tune_layer_count(0.0, 28) == 0 and fine_tune_layer_count(1.0, 28) == 28
    with pytest.raises(ValueError, match="fine_tune_fraction"):
        fine_tune_layer_count(1.5, 28)


# --------------------------------------------------------------------------- train_mode


@pytest.mark.parametrize("name", ["resnet10t", "mobilenetv3_small_050"])
def test_train_mode_freezes_batchnorm_statistics_of_frozen_layers(name: str) -> None:
    model = _net(name, dropout=0.5, projection_channels=8)  # the projection's BN sits outside the backbone
    enter_phase(model, Phase(2, 1e-3, 0.2, 1), "adam", 0.0, "constant", 0, 1, input_size=SIZE)
    norms = {n: m for n, m in model.named_modules() if isinstance(m, _BatchNorm)}
    frozen = {n for n, m in norms.items() if not m.weight.requires_grad}
    assert frozen and frozen != set(norms) and "projection.1" not in frozen
    before = {n: (m.running_mean.clone(), m.running_var.clone()) for n, m in norms.items()}

    train_mode(model)
    model(torch.randn(4, 3, SIZE, SIZE) * 3 + 1)

    for n, m in norms.items():
        unchanged = torch.equal(m.running_mean, before[n][0]) and torch.equal(m.running_var, before[n][1])
        assert unchanged == (n in frozen), n
        assert m.training == (n not in frozen), n
    dropout = next(m for m in model.head if isinstance(m, nn.Dropout))
    assert dropout.training and model.training and model.head.training


# --------------------------------------------------------------------------- schedule


def test_two_phase_schedule_per_epoch() -> None:
    schedule = FineTuneSchedule.two_phase(2, 1e-3, 3, 1e-5, phase2_fraction=0.2)
    assert schedule.total_epochs == 5 and schedule.num_phases == 2
    got = [(p.index, p.lr, p.fine_tune_fraction) for p in map(schedule.phase_for_epoch, range(1, 6))]
    assert got == [(1, 1e-3, 0.0), (1, 1e-3, 0.0), (2, 1e-5, 0.2), (2, 1e-5, 0.2), (2, 1e-5, 0.2)]
    assert [schedule.phase_for_epoch(e).epoch_in_phase for e in range(1, 6)] == [1, 2, 1, 2, 3]
    assert schedule.epochs_in_phase(1) == 2 and schedule.epochs_in_phase(2) == 3
    for epoch in (0, 6):
        with pytest.raises(ValueError, match="epoch"):
            schedule.phase_for_epoch(epoch)


def test_single_phase_schedule_and_validation() -> None:
    schedule = FineTuneSchedule.single(4, 1e-4, fine_tune_fraction=0.1)
    assert schedule.total_epochs == 4 and schedule.num_phases == 1
    assert schedule.phase_for_epoch(4) == Phase(1, 1e-4, 0.1, 4)
    with pytest.raises(ValueError, match="phase2_lr"):
        FineTuneSchedule(phase1_epochs=2, phase1_lr=1e-3, phase2_epochs=2)
    with pytest.raises(ValueError, match="phase2_fraction"):
        FineTuneSchedule.two_phase(2, 1e-3, 2, 1e-5, phase2_fraction=1.2)
    with pytest.raises(ValueError, match="phase 1"):
        FineTuneSchedule.single(0, 1e-3)


def test_enter_phase_two_rebuilds_optimizer_over_trainable_params() -> None:
    model = _net("resnet10t")
    schedule = FineTuneSchedule.two_phase(2, 1e-3, 3, 1e-5, phase2_fraction=0.2)
    opt1, _ = enter_phase(model, schedule.phase_for_epoch(1), "adam", 0.0, "constant", 0, 2, input_size=SIZE)
    assert _trainable_ids(model) == {id(p) for p in model.head.parameters()}
    model(torch.randn(2, 3, SIZE, SIZE)).sum().backward()
    opt1.step()

    phase = schedule.phase_for_epoch(3)
    optimizer, scheduler = enter_phase(model, phase, "adam", 0.0, "cosine", 1, 3, input_size=SIZE)
    params = [p for g in optimizer.param_groups for p in g["params"]]
    assert [id(p) for p in params] == [id(p) for p in model.parameters() if p.requires_grad]
    assert {id(p) for p in model.head.parameters()} < {id(p) for p in params}
    backbone = [p for p in model.backbone.parameters()]
    assert 0 < sum(p.requires_grad for p in backbone) < len(backbone)
    assert all(g["initial_lr"] == 1e-5 for g in optimizer.param_groups)
    assert not optimizer.state  # fresh state, nothing carried over from phase 1
    assert scheduler.get_last_lr() == [pytest.approx(0.5e-5)]  # first warm-up epoch


# --------------------------------------------------------------------------- LR schedules


def _lrs(kind: str, total: int, warmup: int = 0, min_lr_ratio: float = 0.0, base: float = 1e-3) -> list[float]:
    optimizer = build_optimizer("sgd", [nn.Parameter(torch.zeros(1))], base)
    scheduler = build_lr_scheduler(optimizer, kind, total, warmup, min_lr_ratio)
    lrs = []
    for _ in range(total):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


def test_warmup_cosine_matches_hand_values() -> None:
    assert _lrs("cosine", 5, warmup=2) == pytest.approx([1e-3 / 3, 2e-3 / 3, 1e-3, 0.75e-3, 0.25e-3])
    # min_lr_ratio 0.2: 0.2 + 0.8 · {1, 0.75, 0.25}
    assert _lrs("cosine", 5, 2, min_lr_ratio=0.2) == pytest.approx([1e-3 / 3, 2e-3 / 3, 1e-3, 0.8e-3, 0.4e-3])
    assert _lrs("cosine", 2) == pytest.approx([1e-3, 0.5e-3])


def test_constant_schedule_stays_constant() -> None:
    assert _lrs("constant", 5) == [1e-3] * 5
    assert _lrs("constant", 4, warmup=1) == pytest.approx([0.5e-3, 1e-3, 1e-3, 1e-3])


def test_lr_scheduler_rejects_bad_arguments() -> None:
    optimizer = build_optimizer("adam", [nn.Parameter(torch.zeros(1))], 1e-3)
    with pytest.raises(ValueError, match=r"'constant', 'cosine'"):
        build_lr_scheduler(optimizer, "cosin", 5)
    with pytest.raises(ValueError, match="warmup_epochs"):
        build_lr_scheduler(optimizer, "cosine", 3, warmup_epochs=3)


def _step(model: nn.Module, optimizer, scheduler, x: torch.Tensor, y: torch.Tensor) -> None:
    train_mode(model)
    optimizer.zero_grad(set_to_none=True)
    nn.functional.cross_entropy(model(x), y).backward()
    optimizer.step()
    scheduler.step()


@pytest.mark.parametrize("optimizer_name", ["adam", "adamw", "sgd"])
def test_resume_mid_phase_two_replays_identical_updates(optimizer_name: str) -> None:
    """Checkpoint after epoch 4 (phase 2, epoch 2 of 4); a rebuilt trial continues bit-identically."""
    schedule = FineTuneSchedule.two_phase(2, 1e-2, 4, 1e-3, phase2_fraction=0.3)
    args = (optimizer_name, 1e-2, "cosine", 1)
    gen = torch.Generator().manual_seed(0)
    batches = [(torch.randn(4, 3, SIZE, SIZE, generator=gen), torch.tensor([0, 1, 0, 1])) for _ in range(6)]

    model = _net("resnet10t", dropout=0.0, seed=1)
    optimizer = scheduler = checkpoint = None
    for epoch in range(1, schedule.total_epochs + 1):
        phase = schedule.phase_for_epoch(epoch)
        if phase.epoch_in_phase == 1:
            optimizer, scheduler = enter_phase(
                model, phase, *args, schedule.epochs_in_phase(phase.index), input_size=SIZE
            )
        _step(model, optimizer, scheduler, *batches[epoch - 1])
        if epoch == 4:
            checkpoint = copy.deepcopy(
                {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}
            )
    uninterrupted = model.state_dict()
    final_lr = optimizer.param_groups[0]["lr"]

    resumed = _net("resnet10t", dropout=0.0, seed=2)  # a fresh process: other init, cold layer cache
    resumed.load_state_dict(checkpoint["model"])
    phase = schedule.phase_for_epoch(5)
    assert phase.index == 2 and phase.epoch_in_phase == 3
    optimizer, scheduler = enter_phase(resumed, phase, *args, schedule.epochs_in_phase(2), input_size=SIZE)
    optimizer.load_state_dict(checkpoint["optimizer"])
    scheduler.load_state_dict(checkpoint["scheduler"])
    for epoch in (5, 6):
        _step(resumed, optimizer, scheduler, *batches[epoch - 1])

    assert optimizer.param_groups[0]["lr"] == final_lr
    for key, value in resumed.state_dict().items():
        assert torch.equal(value, uninterrupted[key]), key
    changed = [k for k in uninterrupted if not torch.equal(uninterrupted[k], checkpoint["model"][k])]
    assert any(k.startswith("backbone.layer4") for k in changed)  # phase 2 really trained the backbone
    assert not any(k.startswith("backbone.conv1") for k in changed)  # and the frozen stem stayed put


# --------------------------------------------------------------------------- optimisers


@pytest.mark.parametrize(
    ("name", "cls"), [("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW), ("sgd", torch.optim.SGD)]
)
def test_build_optimizer(name: str, cls: type) -> None:
    params = [nn.Parameter(torch.ones(3))]
    optimizer = build_optimizer(name, params, lr=0.1, weight_decay=0.01)
    assert type(optimizer) is cls
    group = optimizer.param_groups[0]
    assert group["lr"] == 0.1 and group["weight_decay"] == 0.01 and group["params"][0] is params[0]
    if name == "sgd":
        assert group["nesterov"] and group["momentum"] == 0.9


def test_unknown_optimizer_lists_valid_names() -> None:
    with pytest.raises(ValueError, match=r"valid names: \['adam', 'adamw', 'sgd'\]. Did you mean 'adamw'"):
        build_optimizer("adamW", [nn.Parameter(torch.ones(1))], 1e-3)
