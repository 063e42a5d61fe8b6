"""The classifier model and its train/evaluate loop, on CPU with tiny synthetic tensors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from trainables._runtime import seed_everything
from trainables.classifier import evaluate, train_one_epoch
from trainables.classifier_build import build_loss, build_model, positive_index
from trainables.losses import BinaryCrossEntropyLoss, CrossEntropyLoss, create_loss
from trainables.classifier_config import ClassifierConfig
from trainables.data.augment import build_augmentation, normalize_batch
from trainables.data.config import DataConfig
from trainables.data.tensors import SplitTensors
from trainables.models.classifier import ClassifierNet, GlobalPool

CLASSES = {2: ("a", "b"), 3: ("a", "b", "c")}
CPU = torch.device("cpu")
BACKBONES = [
    "resnet10t",
    "mobilenetv3_small_050",
    "efficientnet_b0",
    "convnext_atto",
    "test_mambaout",  # NHWC features, like Swin
]
# timm keeps these final-head parts in a backbone built with num_classes=0, global_pool="";
# forward_features does not use them, so they get no gradient.
UNUSED_TIMM_HEAD_PREFIXES = ("backbone.conv_head.", "backbone.head.")
METRIC_KEYS = {"accuracy", "precision", "recall", "f1", "roc_auc", "pr_auc", "kappa"}


def _cfg(**overrides) -> ClassifierConfig:
    values = dict(
        data=DataConfig(path="synthetic:corrosion"),
        backbone="resnet10t",
        dense_units=16,
        dropout=0.0,
        lr=3e-3,
        batch_size=8,
        eval_batch_size=64,
        epochs=4,
        image_size=32,
        augmentation=None,
        device="cpu",
        amp=False,
        channels_last=False,
        seed=0,
    )
    values.update(overrides)
    return ClassifierConfig(**values)


def _brightness_data(n: int, num_classes: int, seed: int, size: int = 32) -> SplitTensors:
    """Class k is a noisy uniform image of brightness 40 + k * 170 / (K - 1): separable."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % num_classes
    level = 40 + labels * (170 // (num_classes - 1))
    noise = torch.randint(-25, 26, (n, 3, size, size), generator=g)
    images = (level.view(-1, 1, 1, 1) + noise).clamp(0, 255).to(torch.uint8)
    return SplitTensors(images=images, labels=labels)


def _train(cfg: ClassifierConfig, data: SplitTensors, num_classes: int, epochs: int, generator_seed: int = 0):
    seed_everything(cfg.seed)
    model = build_model(cfg, num_classes)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    loss_fn = build_loss(cfg, num_classes, data.labels)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    generator = torch.Generator().manual_seed(generator_seed)
    augmentation = build_augmentation(cfg.augmentation)
    losses = [
        train_one_epoch(model, optimizer, loss_fn, data, cfg, generator, CPU, scaler, augmentation)
        for _ in range(epochs)
    ]
    return model, loss_fn, losses


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ---------------------------------------------------------------- model contract


PLACEMENTS = {"none": "none", "last_stage": "mhsa", "penultimate_stage": "gam", "head": "ela"}
"""Each placement with one attention type (every type × placement: test_every_attention_type...)."""


@pytest.mark.parametrize("num_classes,outputs", [(2, 1), (3, 3)])
@pytest.mark.parametrize("placement", list(PLACEMENTS))
@pytest.mark.parametrize("pooling", ["gap", "gmp"])
@pytest.mark.parametrize("backbone", BACKBONES)
def test_model_contract(backbone, pooling, placement, num_classes, outputs):
    torch.manual_seed(0)
    cfg = _cfg(backbone=backbone, pooling=pooling, dense_units=8, dropout=0.2,
               attention=PLACEMENTS[placement], attention_placement=placement, attention_heads=4)
    model = build_model(cfg, num_classes)
    assert isinstance(model, ClassifierNet)
    assert model.pool.kind == pooling
    model.train()
    x = torch.randn(2, 3, 64, 64)
    logits = model(x)
    assert logits.shape == (2, outputs)
    assert torch.isfinite(logits).all()
    targets = torch.tensor([0, 1]) if outputs == 1 else torch.tensor([0, 2])
    loss_fn = create_loss("bce" if outputs == 1 else "ce", num_outputs=outputs)
    loss = loss_fn(logits, targets)
    loss.backward()
    assert torch.isfinite(loss)
    without_grad = []
    for name, p in model.named_parameters():
        if p.grad is None:
            without_grad.append(name)
            continue
        assert torch.isfinite(p.grad).all(), name
    assert all(name.startswith(UNUSED_TIMM_HEAD_PREFIXES) for name in without_grad), without_grad
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.head.parameters())
    first = next(p for n, p in model.named_parameters() if n.startswith("backbone."))
    assert first.grad is not None and first.grad.abs().sum() > 0  # gradient reaches the stem
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), model(x))  # eval is deterministic (no dropout)


def test_head_structure_with_and_without_dense_layer():
    with_dense = build_model(_cfg(dense_units=16, dropout=0.3), 3)
    layers = list(with_dense.head)
    assert [type(m) for m in layers] == [nn.Linear, nn.ReLU, nn.Dropout, nn.Linear]
    assert (layers[0].in_features, layers[0].out_features) == (512, 16)
    assert (layers[3].in_features, layers[3].out_features) == (16, 3)
    assert layers[2].p == pytest.approx(0.3)

    no_dense = build_model(_cfg(dense_units=0, dropout=0.3), 2)
    layers = list(no_dense.head)
    assert [type(m) for m in layers] == [nn.Dropout, nn.Linear]
    assert (layers[1].in_features, layers[1].out_features) == (512, 1)
    assert layers[0].p == pytest.approx(0.3)
    assert no_dense(torch.randn(2, 3, 32, 32)).shape == (2, 1)


def test_global_pool_average_and_max():
    x = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).view(2, 3, 2, 2)
    assert torch.equal(GlobalPool("gap")(x), x.mean(dim=(2, 3)))
    assert torch.equal(GlobalPool("gmp")(x), x.amax(dim=(2, 3)))
    assert GlobalPool("gmp")(x)[0].tolist() == [3.0, 7.0, 11.0]
    tokens = torch.randn(2, 5, 4)  # (N, L, C)
    assert torch.allclose(GlobalPool("gap")(tokens), tokens.mean(dim=1))
    assert GlobalPool("gmp")(tokens).shape == (2, 4)
    with pytest.raises(ValueError, match="gap"):
        GlobalPool("avg")


def test_channels_last_backbone_output_is_pooled_over_space():
    model = build_model(_cfg(backbone="test_mambaout", dense_units=0), 3)
    assert getattr(model.backbone, "output_fmt", "NCHW") == "NHWC"
    x = torch.randn(2, 3, 64, 64)
    assert model(x).shape == (2, 3)
    features = model.backbone.forward_features(x)  # (N, H, W, C)
    assert model.feature_map(x).shape == features.permute(0, 3, 1, 2).shape  # the head works on NCHW
    assert torch.allclose(model.pool(model.feature_map(x)), features.mean(dim=(1, 2)))


def test_global_pool_of_nhwc_features_equals_nchw_pooling_of_the_same_map():
    nchw = torch.randn(2, 5, 3, 4)
    nhwc = nchw.permute(0, 2, 3, 1)
    for kind in ("gap", "gmp"):
        assert torch.allclose(GlobalPool(kind, channels_last=True)(nhwc), GlobalPool(kind)(nchw))


def test_output_width_follows_the_loss():
    assert build_model(_cfg(loss="auto"), 2).head[-1].out_features == 1
    assert build_model(_cfg(loss="auto"), 4).head[-1].out_features == 4
    assert build_model(_cfg(loss="bce"), 2).head[-1].out_features == 1
    assert build_model(_cfg(loss="ce"), 3).head[-1].out_features == 3
    assert isinstance(build_loss(_cfg(loss="auto"), 2, torch.tensor([0, 1])), BinaryCrossEntropyLoss)
    assert isinstance(build_loss(_cfg(loss="auto"), 3, torch.tensor([0, 1, 2])), CrossEntropyLoss)


def test_bce_with_three_classes_is_a_value_error():
    with pytest.raises(ValueError, match="two classes"):
        build_model(_cfg(loss="bce"), 3)


def test_unknown_pooling_is_rejected_by_the_config():
    with pytest.raises(ValueError):
        _cfg(pooling="avg")


# ---------------------------------------------------------------- positive class


def testpositive_index():
    classes = ("corroded", "non_corroded")
    assert positive_index(_cfg(), classes) == 1  # default: second class in sorted order
    assert positive_index(_cfg(positive_class="corroded"), classes) == 0
    assert positive_index(_cfg(positive_class="non_corroded"), classes) == 1
    with pytest.raises(ValueError, match="rust") as info:
        positive_index(_cfg(positive_class="rust"), classes)
    assert "corroded" in str(info.value)


# ---------------------------------------------------------------- train / evaluate


def test_training_lowers_the_loss_and_separates_bright_from_dark():
    cfg = _cfg()
    train, val = _brightness_data(32, 2, seed=0), _brightness_data(16, 2, seed=1)
    model, loss_fn, losses = _train(cfg, train, 2, epochs=4)
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < 0.5 * losses[0], losses
    metrics = evaluate(model, loss_fn, val, cfg, CPU, classes=CLASSES[2], positive=1, prefix="val")
    assert {k.split("/", 1)[1] for k in metrics} == METRIC_KEYS | {"loss", "tp", "fp", "tn", "fn"}
    assert all(k.startswith("val/") for k in metrics)
    assert metrics["val/accuracy"] >= 0.9
    assert metrics["val/loss"] < losses[0]
    assert metrics["val/tp"] + metrics["val/fn"] == 8  # 8 bright (label 1) images


def test_training_three_classes_with_cross_entropy():
    cfg = _cfg(epochs=5)
    train, val = _brightness_data(36, 3, seed=2), _brightness_data(18, 3, seed=3)
    model, loss_fn, losses = _train(cfg, train, 3, epochs=5)
    assert losses[-1] < losses[0]
    metrics = evaluate(model, loss_fn, val, cfg, CPU, classes=CLASSES[3], positive=1, prefix="test")
    assert set(metrics) == {f"test/{k}" for k in METRIC_KEYS | {"loss"}} | {f"test/f1/{c}" for c in CLASSES[3]}
    assert metrics["test/accuracy"] >= 0.8


def test_evaluate_does_not_depend_on_the_eval_batch_size():
    cfg = _cfg(dropout=0.5)
    data = _brightness_data(10, 2, seed=4)
    torch.manual_seed(0)
    model = build_model(cfg, 2)
    loss_fn = create_loss("bce", num_outputs=1)
    whole = evaluate(model, loss_fn, data, cfg, CPU, CLASSES[2], 1, "val")
    batched = evaluate(model, loss_fn, data, cfg.model_copy(update={"eval_batch_size": 3}), CPU, CLASSES[2], 1, "val")
    assert batched == pytest.approx(whole, abs=1e-5)
    assert not model.training


def test_the_train_loss_is_the_sample_weighted_mean():
    """With lr≈0 the model is fixed: the epoch loss equals the loss over all samples at once."""
    cfg = _cfg(lr=1e-12, batch_size=4, dropout=0.0)
    data = _brightness_data(10, 2, seed=5)  # batches of 4, 4, 2
    torch.manual_seed(0)
    model = build_model(cfg, 2)
    model.eval()  # BatchNorm in eval mode so batches do not change the statistics used
    loss_fn = create_loss("bce", num_outputs=1)
    with torch.no_grad():
        expected = loss_fn(model(normalize_batch(data.images, "imagenet")), data.labels).item()

    class EvalModeWrapper(nn.Module):  # train_one_epoch calls .train(); keep BN frozen
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def train(self, mode=True):
            return self

        def forward(self, x):
            return self.inner(x)

    wrapped = EvalModeWrapper(model)
    optimizer = torch.optim.SGD(wrapped.parameters(), lr=cfg.lr)
    loss = train_one_epoch(
        wrapped, optimizer, loss_fn, data, cfg, torch.Generator().manual_seed(0), CPU,
        torch.amp.GradScaler("cpu", enabled=False), build_augmentation(None),
    )
    assert loss == pytest.approx(expected, rel=1e-4)


def test_a_non_finite_loss_is_a_floating_point_error():
    class NaNModel(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.ones(1))

        def forward(self, x):
            return (x.mean(dim=(1, 2, 3)) * self.w * float("nan")).view(-1, 1)

    model = NaNModel()
    cfg = _cfg(lr=0.5)
    with pytest.raises(FloatingPointError, match="lr=0.5"):
        train_one_epoch(
            model, torch.optim.SGD(model.parameters(), lr=0.5), create_loss("bce", num_outputs=1), _brightness_data(4, 2, 0),
            cfg, torch.Generator().manual_seed(0), CPU, torch.amp.GradScaler("cpu", enabled=False),
            build_augmentation(None),
        )


def test_same_seed_and_generator_give_identical_weights():
    cfg = _cfg(augmentation="hflip", dropout=0.5, seed=3)  # flips and dropout both draw random numbers
    data = _brightness_data(16, 2, seed=6)
    a, _, losses_a = _train(cfg, data, 2, epochs=2, generator_seed=11)
    b, _, losses_b = _train(cfg, data, 2, epochs=2, generator_seed=11)
    assert losses_a == losses_b
    state_a, state_b = a.state_dict(), b.state_dict()
    assert state_a.keys() == state_b.keys()
    for key in state_a:
        assert torch.equal(state_a[key], state_b[key]), key

    c, _, _ = _train(cfg, data, 2, epochs=2, generator_seed=12)  # other batch order and flips
    assert not all(torch.equal(state_a[k], v) for k, v in c.state_dict().items())
    d, _, _ = _train(cfg.model_copy(update={"seed": 4}), data, 2, epochs=2, generator_seed=11)  # other init
    assert not torch.equal(state_a["head.3.weight"], d.state_dict()["head.3.weight"])


def test_cross_entropy_on_two_classes_evaluates():
    cfg = _cfg(loss="ce")
    data = _brightness_data(8, 2, seed=7)
    model, loss_fn, _ = _train(cfg, data, 2, epochs=1)
    assert model.head[-1].out_features == 2
    metrics = evaluate(model, loss_fn, data, cfg, CPU, classes=CLASSES[2], positive=1, prefix="val")
    assert 0.0 <= metrics["val/accuracy"] <= 1.0
    assert {"val/tp", "val/fp", "val/tn", "val/fn", "val/loss"} <= set(metrics)  # scored as binary
    assert metrics["val/tp"] + metrics["val/fn"] == 4  # 4 of the 8 images are class 1


def test_cross_entropy_on_two_classes_learns_like_bce():
    cfg = _cfg(loss="ce")
    train, val = _brightness_data(32, 2, seed=0), _brightness_data(16, 2, seed=1)
    model, loss_fn, losses = _train(cfg, train, 2, epochs=4)
    assert isinstance(loss_fn, CrossEntropyLoss)
    assert losses[-1] < 0.5 * losses[0], losses
    metrics = evaluate(model, loss_fn, val, cfg, CPU, classes=CLASSES[2], positive=0, prefix="val")
    assert metrics["val/accuracy"] >= 0.9
    assert metrics["val/tp"] + metrics["val/fn"] == 8  # positive = class 0 here


def test_offline_expansion_grows_only_the_train_split():
    from trainables.classifier import load_training_data

    data = {"path": "synthetic:corrosion", "synthetic": {"num_images": 40, "image_size": 32}}
    plain = ClassifierConfig(data=data, image_size=32)
    expanded = ClassifierConfig(data=data, image_size=32, offline_expansion=3, offline_augmentation="p004")
    _, base = load_training_data(plain)
    _, grown = load_training_data(expanded)
    n = len(base["train"])
    assert len(grown["train"]) == 3 * n and len(grown["val"]) == len(base["val"]) and len(grown["test"]) == len(base["test"])
    assert torch.equal(grown["train"].images[:n], base["train"].images)  # originals first
    assert torch.equal(grown["train"].labels, base["train"].labels.repeat(3))
    assert not torch.equal(grown["train"].images[n : 2 * n], base["train"].images)  # augmented copies


@pytest.mark.parametrize("placement", ["last_stage", "penultimate_stage", "head"])
@pytest.mark.parametrize("attention", ["mhsa", "ela", "simam", "gam"])
def test_every_attention_type_at_every_placement_trains(attention, placement):
    cfg = _cfg(attention=attention, attention_placement=placement, projection_channels=64 if placement == "head" else 0,
               spatial_dropout=0.2, dense_units=[16, 8], pooling="gmp", loss="modified_focal")
    model = build_model(cfg, 2)
    names = [n for n, _ in model.named_modules()]
    if placement == "penultimate_stage":
        assert any(n.startswith("backbone.layer3.1") for n in names)  # wrapped: (stage, attention)
    else:
        assert not isinstance(getattr(model, "stage_attention" if placement == "last_stage" else "head_attention"), nn.Identity)
    logits = model(torch.randn(2, 3, 64, 64))
    loss = build_loss(cfg, 2, torch.tensor([0, 1]))(logits, torch.tensor([0, 1]))
    loss.backward()
    assert logits.shape == (2, 1) and torch.isfinite(loss)


def test_sampled_full_space_configs_build_and_run():
    import optuna

    from search_spaces import get_space

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    for _ in range(8):
        trial = study.ask()
        get_space("classifier_full")(trial)
        cfg = _cfg(**trial.params)
        model = build_model(cfg, 3)
        out = model(torch.randn(2, 3, 64, 64))
        assert out.shape == (2, 3) and torch.isfinite(out).all()
        study.tell(trial, 0.0)
