"""The loss registry against hand-computed values and the properties each loss promises."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from trainables.losses import (
    LOSSES,
    BinaryCrossEntropyLoss,
    CrossEntropyLoss,
    FocalLoss,
    ModifiedFocalLoss,
    create_loss,
)

LN2 = math.log(2.0)
# (name, num_outputs) for every loss in every form it supports
FORMS = [("bce", 1), ("ce", 3), ("ce", 2), ("focal", 1), ("focal", 3), ("modified_focal", 1), ("modified_focal", 3)]
FOCALS = [("focal", 1), ("focal", 3), ("modified_focal", 1), ("modified_focal", 3)]


def _logit(p: float) -> float:
    return math.log(p / (1.0 - p))


def _binary(ps: list[float]) -> torch.Tensor:
    """(N, 1) logits whose sigmoid is ``ps``."""
    return torch.tensor([[_logit(p)] for p in ps], dtype=torch.float64).float()


def _multi(rows: list[list[float]]) -> torch.Tensor:
    """(N, K) logits whose softmax is ``rows`` (each row sums to one)."""
    return torch.tensor(rows, dtype=torch.float64).log().float()


def _per_sample(loss: torch.nn.Module, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(N,) losses, each from a single-sample batch."""
    return torch.stack([loss(logits[i : i + 1], targets[i : i + 1]) for i in range(len(targets))])


def _confident(num_outputs: int, right: bool, margin: float = 6.0):
    """A class-1 sample predicted confidently right or wrong."""
    if num_outputs == 1:
        logits = torch.tensor([[margin if right else -margin]])
    else:
        logits = torch.full((1, num_outputs), -margin)
        logits[0, 1 if right else 0] = margin
    return logits, torch.tensor([1])


def _true_class_sweep(num_outputs: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Class-1 samples whose true-class probability rises strictly, ~5e-5 → ~0.99995."""
    margins = torch.linspace(-10.0, 10.0, 41)
    if num_outputs == 1:
        logits = margins.view(-1, 1)
    else:
        logits = torch.zeros(len(margins), num_outputs)
        logits[:, 1] = margins
    return logits, torch.ones(len(margins), dtype=torch.long)


# ---------------------------------------------------------------- registry


def test_registry_holds_the_four_losses_and_lists_them_on_a_typo():
    assert LOSSES.names() == ["bce", "ce", "focal", "modified_focal"]
    with pytest.raises(KeyError, match="did you mean 'modified_focal'.*bce, ce, focal, modified_focal"):
        create_loss("modified_focall", num_outputs=1)


@pytest.mark.parametrize("name,num_outputs", FORMS)
def test_every_loss_is_a_pure_module_returning_a_scalar(name, num_outputs):
    loss = create_loss(name, num_outputs=num_outputs, class_weights=[1.0] * max(num_outputs, 2))
    assert isinstance(loss, torch.nn.Module)
    assert loss.state_dict() == {}  # nothing leaks into checkpoints
    logits = torch.randn(5, num_outputs, generator=torch.Generator().manual_seed(0))
    value = loss(logits, torch.tensor([0, 1, 1, 0, 1]))
    assert value.shape == () and value.dtype == torch.float32 and value > 0


# ---------------------------------------------------------------- modified focal by hand


def test_modified_focal_binary_matches_the_formula_by_hand():
    # L = −α_t (1 − p_t)^γ log(p_t) log(1 + 1/p_t), α = 0.25, γ = 2
    loss = ModifiedFocalLoss(1, reduction="none")
    logits = _binary([0.8, 0.3, 0.9])
    targets = torch.tensor([1, 0, 0])
    expected = [
        0.25 * (1 - 0.8) ** 2 * -math.log(0.8) * math.log(1 + 1 / 0.8),  # y=1: p_t=0.8, α_t=α
        0.75 * (1 - 0.7) ** 2 * -math.log(0.7) * math.log(1 + 1 / 0.7),  # y=0: p_t=0.7, α_t=1−α
        0.75 * (1 - 0.1) ** 2 * -math.log(0.1) * math.log(1 + 1 / 0.1),  # y=0, wrong: p_t=0.1
    ]
    assert expected == pytest.approx([0.0018095384831451145, 0.02136232017001836, 3.3542249301466494])
    assert loss(logits, targets).tolist() == pytest.approx(expected, rel=1e-5)
    mean = create_loss("modified_focal", num_outputs=1)(logits, targets)
    assert mean.item() == pytest.approx(sum(expected) / 3, rel=1e-5)


def test_modified_focal_multiclass_matches_the_formula_by_hand():
    probs = [[0.7, 0.2, 0.1]] * 3
    targets = torch.tensor([0, 2, 1])
    got = ModifiedFocalLoss(3, reduction="none")(_multi(probs), targets)  # scalar α = 0.25 for every class
    expected = [
        0.25 * (1 - 0.7) ** 2 * -math.log(0.7) * math.log(1 + 1 / 0.7),
        0.25 * (1 - 0.1) ** 2 * -math.log(0.1) * math.log(1 + 1 / 0.1),
        0.25 * (1 - 0.2) ** 2 * -math.log(0.2) * math.log(1 + 1 / 0.2),
    ]
    assert expected == pytest.approx([0.00712077339000612, 1.1180749767155498, 0.4613960991581492])
    assert got.tolist() == pytest.approx(expected, rel=1e-5)
    per_class = ModifiedFocalLoss(3, alpha=[0.2, 0.3, 0.5], reduction="none")(_multi(probs), targets)
    assert per_class.tolist() == pytest.approx([e / 0.25 * a for e, a in zip(expected, [0.2, 0.5, 0.3])], rel=1e-5)


@pytest.mark.parametrize("num_outputs", [1, 3])
def test_modified_focal_clips_p_t_at_both_ends(num_outputs):
    eps = 1e-7
    at_eps = 0.25 * (1 - eps) ** 2 * -math.log(eps) * math.log(1 + 1 / eps)
    at_one = 0.25 * eps**2 * -math.log(1 - eps) * math.log(1 + 1 / (1 - eps))
    assert (at_eps, at_one) == pytest.approx((64.94823926666295, 1.7328681603069663e-22))
    if num_outputs == 1:
        logits, targets = torch.tensor([[-50.0], [50.0]]), torch.tensor([1, 1])
    else:
        logits, targets = torch.tensor([[50.0, 0.0, -50.0], [0.0, 50.0, -50.0]]), torch.tensor([2, 1])
    got = ModifiedFocalLoss(num_outputs, eps=eps, reduction="none")(logits, targets)
    assert torch.isfinite(got).all()
    assert got.tolist() == pytest.approx([at_eps, at_one], rel=1e-4)


# ---------------------------------------------------------------- ordering properties


@pytest.mark.parametrize("name,num_outputs", FORMS)
def test_confidently_wrong_costs_more_than_confidently_right(name, num_outputs):
    loss = create_loss(name, num_outputs=num_outputs)
    right, wrong = loss(*_confident(num_outputs, True)), loss(*_confident(num_outputs, False))
    assert 0 <= right < wrong
    assert wrong > 100 * right


@pytest.mark.parametrize("name,num_outputs", FORMS)
def test_loss_falls_strictly_as_the_true_class_probability_rises(name, num_outputs):
    loss = create_loss(name, num_outputs=num_outputs)
    values = _per_sample(loss, *_true_class_sweep(num_outputs))
    assert torch.isfinite(values).all()
    assert (values.diff() < 0).all()


@pytest.mark.parametrize("name", ["bce", "focal", "modified_focal"])
def test_binary_form_treats_class_zero_symmetrically(name):
    loss = create_loss(name, num_outputs=1, alpha=0.5)
    margins = torch.linspace(-5.0, 5.0, 11).view(-1, 1)
    ones = _per_sample(loss, margins, torch.ones(11, dtype=torch.long))
    zeros = _per_sample(loss, -margins, torch.zeros(11, dtype=torch.long))
    assert torch.allclose(ones, zeros, rtol=1e-6)


# ---------------------------------------------------------------- γ = 0 and α relations


def test_focal_with_gamma_zero_alpha_half_is_half_bce():
    logits = torch.randn(64, 1, generator=torch.Generator().manual_seed(1)) * 4
    targets = torch.randint(0, 2, (64,), generator=torch.Generator().manual_seed(2))
    focal = FocalLoss(1, alpha=0.5, gamma=0.0, reduction="none")(logits, targets)
    bce = BinaryCrossEntropyLoss(1, reduction="none")(logits, targets)
    torch.testing.assert_close(focal, 0.5 * bce, rtol=1e-6, atol=0)
    torch_bce = F.binary_cross_entropy_with_logits(logits.view(-1), targets.float(), reduction="none")
    torch.testing.assert_close(bce, torch_bce, rtol=1e-6, atol=1e-6)  # torch loses digits on tiny losses
    mean = create_loss("focal", num_outputs=1, alpha=0.5, gamma=0.0)(logits, targets)
    torch.testing.assert_close(mean, 0.5 * create_loss("bce", num_outputs=1)(logits, targets), rtol=1e-6, atol=0)


@pytest.mark.parametrize("num_classes", [2, 3, 5])
def test_focal_with_gamma_zero_and_no_alpha_is_cross_entropy(num_classes):
    logits = torch.randn(64, num_classes, generator=torch.Generator().manual_seed(3)) * 4
    targets = torch.randint(0, num_classes, (64,), generator=torch.Generator().manual_seed(4))
    focal = create_loss("focal", num_outputs=num_classes, alpha=None, gamma=0.0)(logits, targets)
    torch.testing.assert_close(focal, F.cross_entropy(logits, targets), rtol=1e-6, atol=0)


def test_scalar_alpha_in_the_softmax_form_scales_every_class_alike():
    # K = 2 softmax is the multi-class form: α = 0.25 is a constant factor, not α / (1 − α)
    logits = torch.randn(16, 2, generator=torch.Generator().manual_seed(5))
    targets = torch.randint(0, 2, (16,), generator=torch.Generator().manual_seed(6))
    scaled = create_loss("focal", num_outputs=2, alpha=0.25, gamma=0.0)(logits, targets)
    torch.testing.assert_close(scaled, 0.25 * F.cross_entropy(logits, targets), rtol=1e-6, atol=0)


def test_binary_alpha_pair_equals_the_scalar_convention():
    logits, targets = torch.tensor([[1.5], [-0.5], [0.3]]), torch.tensor([1, 0, 0])
    pair = create_loss("modified_focal", num_outputs=1, alpha=[0.75, 0.25])(logits, targets)
    scalar = create_loss("modified_focal", num_outputs=1, alpha=0.25)(logits, targets)
    torch.testing.assert_close(pair, scalar)


def test_modified_focal_with_gamma_zero_is_half_bce_times_the_extra_factor():
    ps = [0.05, 0.2, 0.5, 0.8, 0.99]
    logits, targets = _binary(ps + ps), torch.tensor([1] * 5 + [0] * 5)
    p_t = torch.tensor(ps + [1 - p for p in ps])
    modified = ModifiedFocalLoss(1, alpha=0.5, gamma=0.0, reduction="none")(logits, targets)
    bce = F.binary_cross_entropy_with_logits(logits.view(-1), targets.float(), reduction="none")
    torch.testing.assert_close(modified, 0.5 * bce * torch.log(1 + 1 / p_t), rtol=1e-5, atol=0)


@pytest.mark.parametrize("num_outputs", [1, 3])
def test_extra_factor_tends_to_ln2_as_p_t_tends_to_one(num_outputs):
    ratios = []
    for p_t in [0.5, 0.9, 0.99, 1 - 1e-6]:
        if num_outputs == 1:
            logits = torch.tensor([[_logit(p_t)]])
        else:
            logits = _multi([[(1 - p_t) / 2, p_t, (1 - p_t) / 2]])
        targets = torch.tensor([1])
        focal = create_loss("focal", num_outputs=num_outputs)(logits, targets)
        modified = create_loss("modified_focal", num_outputs=num_outputs)(logits, targets)
        ratios.append((modified / focal).item())
    assert ratios[0] == pytest.approx(math.log(3.0), rel=1e-5)  # log(1 + 1/0.5)
    assert all(a > b for a, b in zip(ratios, ratios[1:]))
    assert ratios[-1] == pytest.approx(LN2, abs=1e-5)


@pytest.mark.parametrize("num_outputs", [1, 3])
def test_focal_down_weights_easy_examples(num_outputs):
    gamma = 2.0
    p_ts = torch.linspace(0.55, 0.99, 12)
    if num_outputs == 1:
        logits = torch.log(p_ts / (1 - p_ts)).view(-1, 1)
        reference = create_loss("bce", num_outputs=1)
    else:
        logits = torch.stack([((1 - p_ts) / 2).log(), p_ts.log(), ((1 - p_ts) / 2).log()], dim=1)
        reference = create_loss("ce", num_outputs=3)
    targets = torch.ones(12, dtype=torch.long)
    focal = _per_sample(create_loss("focal", num_outputs=num_outputs, alpha=None, gamma=gamma), logits, targets)
    ce = _per_sample(reference, logits, targets)
    assert (focal < ce).all()
    ratio = focal / ce  # (1 − p_t)^γ: the easier the example, the less it counts
    torch.testing.assert_close(ratio, (1 - p_ts) ** gamma, rtol=1e-3, atol=0)
    assert (ratio.diff() < 0).all() and (ratio <= 0.5**gamma).all()


# ---------------------------------------------------------------- label smoothing


def test_bce_label_smoothing_on_a_perfect_prediction_matches_the_formula():
    s, z = 0.1, 20.0
    # target y(1 − s) + s/2 = 0.95; L = −[0.95 log σ(20) + 0.05 log σ(−20)]
    by_hand = 0.95 * math.log1p(math.exp(-20.0)) + 0.05 * (20.0 + math.log1p(math.exp(-20.0)))
    loss = create_loss("bce", num_outputs=1, label_smoothing=s)
    for logits, targets in [(torch.tensor([[z]]), torch.tensor([1])), (torch.tensor([[-z]]), torch.tensor([0]))]:
        value = loss(logits, targets)
        assert value > 0
        assert value.item() == pytest.approx(by_hand, rel=1e-6)
    assert create_loss("bce", num_outputs=1)(torch.tensor([[z]]), torch.tensor([1])).item() < 1e-8


@pytest.mark.parametrize("weights", [None, [1.0, 2.0, 0.5]])
def test_ce_label_smoothing_and_weights_follow_torch(weights):
    logits = torch.randn(32, 3, generator=torch.Generator().manual_seed(7)) * 3
    targets = torch.randint(0, 3, (32,), generator=torch.Generator().manual_seed(8))
    got = create_loss("ce", num_outputs=3, label_smoothing=0.2, class_weights=weights)(logits, targets)
    weight = None if weights is None else torch.tensor(weights)
    torch.testing.assert_close(got, F.cross_entropy(logits, targets, weight=weight, label_smoothing=0.2))


def test_focal_smoothing_is_the_smoothed_target_cross_entropy_form():
    logits = torch.randn(32, 3, generator=torch.Generator().manual_seed(9)) * 3
    targets = torch.randint(0, 3, (32,), generator=torch.Generator().manual_seed(10))
    focal = create_loss("focal", num_outputs=3, alpha=None, gamma=0.0, label_smoothing=0.2)(logits, targets)
    torch.testing.assert_close(focal, F.cross_entropy(logits, targets, label_smoothing=0.2), rtol=1e-6, atol=0)
    binary_logits = logits[:, :1]
    binary_targets = targets.clamp(max=1)
    focal = create_loss("focal", num_outputs=1, alpha=None, gamma=0.0, label_smoothing=0.2)
    bce = create_loss("bce", num_outputs=1, label_smoothing=0.2)
    torch.testing.assert_close(focal(binary_logits, binary_targets), bce(binary_logits, binary_targets))


def test_modified_focal_smoothing_matches_the_formula_by_hand():
    # s = 0.2 → q = (0.1, 0.9) for y = 1; L = Σ_c q_c α_c (1 − p_c)^γ (−log p_c) log(1 + 1/p_c)
    by_hand = 0.9 * 0.25 * 0.2**2 * -math.log(0.8) * math.log(1 + 1 / 0.8) + 0.1 * 0.75 * 0.8**2 * -math.log(
        0.2
    ) * math.log(1 + 1 / 0.2)
    loss = create_loss("modified_focal", num_outputs=1, label_smoothing=0.2)
    assert loss(_binary([0.8]), torch.tensor([1])).item() == pytest.approx(by_hand, rel=1e-5)
    perfect = loss(torch.tensor([[20.0]]), torch.tensor([1]))
    assert perfect > 0.01  # smoothing keeps a cost on a perfect prediction


# ---------------------------------------------------------------- class weights


@pytest.mark.parametrize("name,num_outputs", [f for f in FORMS if f[0] != "ce"])
def test_doubling_a_class_weight_doubles_its_samples_loss(name, num_outputs):
    classes = max(num_outputs, 2)
    base = create_loss(name, num_outputs=num_outputs, class_weights=[1.0] * classes)
    doubled_weights = [1.0] * classes
    doubled_weights[1] = 2.0
    doubled = create_loss(name, num_outputs=num_outputs, class_weights=doubled_weights)
    unweighted = create_loss(name, num_outputs=num_outputs)
    logits = torch.randn(6, num_outputs, generator=torch.Generator().manual_seed(11))
    targets = torch.tensor([0, 1, 1, 0, 1, 0])
    b, d = _per_sample(base, logits, targets), _per_sample(doubled, logits, targets)
    torch.testing.assert_close(b, _per_sample(unweighted, logits, targets))
    torch.testing.assert_close(d[targets == 1], 2 * b[targets == 1])
    torch.testing.assert_close(d[targets == 0], b[targets == 0])
    torch.testing.assert_close(doubled(logits, targets), d.mean())  # plain mean over the batch


def test_ce_weights_scale_per_sample_terms_but_a_weighted_mean_normalises_them():
    logits = torch.randn(4, 3, generator=torch.Generator().manual_seed(12))
    targets = torch.tensor([0, 1, 2, 1])
    base = CrossEntropyLoss(3, class_weights=[1.0, 1.0, 1.0], reduction="none")(logits, targets)
    doubled = CrossEntropyLoss(3, class_weights=[1.0, 2.0, 1.0], reduction="none")(logits, targets)
    torch.testing.assert_close(doubled, base * torch.tensor([1.0, 2.0, 1.0, 2.0]))
    single = logits[1:2], targets[1:2]
    weighted = create_loss("ce", num_outputs=3, class_weights=[1.0, 2.0, 1.0])(*single)
    torch.testing.assert_close(weighted, create_loss("ce", num_outputs=3)(*single))  # Σ w ℓ / Σ w: w cancels


# ---------------------------------------------------------------- gradients and validation


@pytest.mark.parametrize("name,num_outputs", FORMS)
@pytest.mark.parametrize("gamma,smoothing", [(2.0, 0.0), (0.5, 0.1), (0.0, 0.0)])
def test_gradients_stay_finite_for_extreme_logits(name, num_outputs, gamma, smoothing):
    if num_outputs == 1:
        logits = torch.tensor([[50.0], [-50.0], [50.0], [-50.0], [0.0]])
    else:
        rows = [[50.0, -50.0, 0.0], [-50.0, 50.0, -50.0], [50.0, 50.0, -50.0], [0.0, 0.0, 50.0], [0.0, 0.0, 0.0]]
        logits = torch.tensor(rows)[:, :num_outputs]
    logits.requires_grad_(True)
    targets = torch.tensor([1, 1, 0, 0, 1])
    loss = create_loss(name, num_outputs=num_outputs, gamma=gamma, label_smoothing=smoothing)
    value = loss(logits, targets)
    value.backward()
    assert torch.isfinite(value)
    assert torch.isfinite(logits.grad).all()


def test_focal_keeps_a_gradient_on_confidently_wrong_predictions():
    # focal is computed from logsigmoid / log-softmax, unclipped; modified focal clips p_t (zero gradient there)
    logits = torch.tensor([[-30.0]], requires_grad=True)
    create_loss("focal", num_outputs=1)(logits, torch.tensor([1])).backward()
    assert logits.grad.item() < -0.1


@pytest.mark.parametrize(
    "name,options,parameter",
    [
        ("focal", dict(num_outputs=1, gamma=-0.5), "gamma"),
        ("modified_focal", dict(num_outputs=3, gamma=float("nan")), "gamma"),
        ("focal", dict(num_outputs=1, alpha=1.5), "alpha"),
        ("modified_focal", dict(num_outputs=3, alpha=-0.1), "alpha"),
        ("focal", dict(num_outputs=3, alpha=[0.2, 0.8]), "alpha"),
        ("focal", dict(num_outputs=1, alpha=[0.2, 0.3, 0.5]), "alpha"),
        ("modified_focal", dict(num_outputs=3, alpha=[0.2, 0.3, 1.5]), "alpha"),
        ("bce", dict(num_outputs=1, label_smoothing=1.0), "label_smoothing"),
        ("ce", dict(num_outputs=3, label_smoothing=-0.1), "label_smoothing"),
        ("focal", dict(num_outputs=1, label_smoothing=1.0), "label_smoothing"),
        ("bce", dict(num_outputs=1, class_weights=[1.0, 2.0, 3.0]), "class_weights"),
        ("ce", dict(num_outputs=3, class_weights=[1.0, 2.0]), "class_weights"),
        ("focal", dict(num_outputs=1, class_weights=[1.0]), "class_weights"),
        ("modified_focal", dict(num_outputs=3, class_weights=[1.0, -1.0, 1.0]), "class_weights"),
        ("modified_focal", dict(num_outputs=1, eps=0.0), "eps"),
        ("focal", dict(num_outputs=0), "num_outputs"),
        ("bce", dict(num_outputs=3), "num_outputs"),
        ("ce", dict(num_outputs=1), "num_outputs"),
    ],
)
def test_bad_parameters_are_value_errors_naming_the_parameter(name, options, parameter):
    with pytest.raises(ValueError, match=parameter):
        create_loss(name, **options)


def test_bad_inputs_are_rejected():
    loss = create_loss("focal", num_outputs=1)
    with pytest.raises(ValueError, match="logits"):
        loss(torch.zeros(4, 3), torch.tensor([0, 1, 0, 1]))
    with pytest.raises(ValueError, match="targets"):
        loss(torch.zeros(4, 1), torch.zeros(4, 1, dtype=torch.long))
    with pytest.raises(TypeError, match="integer"):
        loss(torch.zeros(4, 1), torch.tensor([0.0, 1.0, 0.0, 1.0]))
    with pytest.raises(RuntimeError):  # a label outside the form's classes
        loss(torch.zeros(2, 1), torch.tensor([0, 2]))
