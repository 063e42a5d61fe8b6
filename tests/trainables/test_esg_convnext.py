"""ESG-ConvNeXt (P004): plain variant == timm's ConvNeXt V2, every switch builds and trains."""

from __future__ import annotations

import itertools
import math

import pytest
import timm
import torch
from timm.layers import DropPath
from torch import nn

from trainables.models.attention import EfficientLocalAttention, GlobalAttentionMechanism, SimAM
from trainables.models.esg_convnext import SIZES, VARIANTS, EsgConvNeXt, convnextv2_state_dict, resolve_switches
from trainables.models.esg_convnext_blocks import EsgBlock, InvertedResidualBranch, ResidualBranch

MICRO = dict(depths=(1, 1, 1, 1), dims=(8, 16, 16, 16))
"""A network small enough to run every switch combination in milliseconds."""


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _meta_params(name: str, **kwargs) -> int:
    with torch.device("meta"):  # parameter counts without allocating or initialising weights
        return _params(timm.create_model(name, **kwargs))


@pytest.mark.parametrize("size", list(SIZES))
def test_convnext_variant_has_exactly_timms_parameters(size: str):
    ours = _meta_params(f"esg_convnext_{size}", num_classes=7, variant="convnext")
    assert ours == _meta_params(f"convnextv2_{size}", num_classes=7)


def test_atto_matches_the_reference_count():
    assert _meta_params("esg_convnext_atto", num_classes=6, variant="convnext") == 3_389_326  # REFERENCE.md


def _same_output(reference: nn.Module, ours: nn.Module) -> None:
    ours.load_state_dict(convnextv2_state_dict(reference.state_dict(), ours))  # strict: every key maps
    reference.eval(), ours.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x), rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(ours.forward_features(x), reference.forward_features(x), rtol=1e-4, atol=1e-5)


def test_convnext_variant_with_timms_weights_gives_timms_output():
    torch.manual_seed(0)
    reference = timm.create_model("convnextv2_atto", num_classes=5, drop_path_rate=0.1)
    _same_output(reference, timm.create_model("esg_convnext_atto", num_classes=5, variant="convnext"))


def test_timms_linear_mlp_weights_map_onto_our_1x1_convs():
    # timm's convnextv2_tiny and larger run the MLP as nn.Linear on channels-last maps (conv_mlp=False);
    # the same layout at micro size keeps the test fast
    torch.manual_seed(0)
    reference = timm.models.convnext.ConvNeXt(**MICRO, num_classes=5, use_grn=True, ls_init_value=None)
    assert reference.stages[0].blocks[0].mlp.fc1.weight.ndim == 2
    _same_output(reference, EsgConvNeXt("convnext", **MICRO, num_classes=5))


def test_each_later_variant_adds_parameters():
    counts = [_meta_params("esg_convnext_atto", num_classes=7, variant=v) for v in VARIANTS]
    assert list(VARIANTS) == ["convnext", "block1", "block1_block2", "block1_block2_attention", "esg"]
    assert all(a < b for a, b in zip(counts, counts[1:])), counts
    # esg adds exactly one PReLU slope per channel after each of the three downsampling convs
    assert counts[-1] - counts[-2] == 80 + 160 + 320


def test_variant_presets_are_cumulative_and_overridable():
    assert resolve_switches("convnext") == VARIANTS["convnext"]
    assert resolve_switches("esg", attention_project="none", block1=None)["attention_project"] == "none"
    assert resolve_switches("esg", block1=None)["block1"] is True  # None keeps the preset
    net = EsgConvNeXt("esg", **MICRO, attention_project="none", block2=False, num_classes=3)
    block = net.stages[1].blocks[0]
    assert isinstance(block.attn_project, nn.Identity) and block.block2 is None
    assert isinstance(block.attn_dw, EfficientLocalAttention) and isinstance(block.block1, ResidualBranch)
    same = _params(EsgConvNeXt("convnext", **MICRO, block1=True, num_classes=3))
    assert same == _params(EsgConvNeXt("block1", **MICRO, num_classes=3))


def test_p004_modules_sit_where_the_paper_puts_them():
    net = EsgConvNeXt("esg", **MICRO, ela_kernel=7, gam_rate=2, simam_lambda=0.01, num_classes=3)
    block = net.stages[2].blocks[0]
    assert isinstance(block.attn_dw, EfficientLocalAttention) and block.attn_dw.conv_h.kernel_size == (7, 1)
    assert isinstance(block.mlp.attn, SimAM) and block.mlp.attn.e_lambda == 0.01
    assert isinstance(block.attn_project, GlobalAttentionMechanism)
    assert block.attn_project.channel.mlp[0].out_features == 16 // 2
    assert isinstance(block.block2, InvertedResidualBranch) and block.block2.attn.e_lambda == 0.01
    assert isinstance(net.stages[1].downsample[-1], nn.PReLU) and isinstance(net.stages[0].downsample, nn.Identity)


def test_simam_matches_its_closed_form_on_a_hand_computed_map():
    # one 2×2 channel [0, 1, 2, 3]: μ = 1.5, d = [2.25, .25, .25, 2.25], σ² = 5/3 (n = HW − 1 = 3);
    # with λ = 1/3, 4(σ² + λ) = 8, so 1/e* = d/8 + 0.5 = [0.78125, 0.53125, 0.53125, 0.78125]
    x = torch.tensor([[[[0.0, 1.0], [2.0, 3.0]]]])
    sig = lambda v: 1.0 / (1.0 + math.exp(-v))  # noqa: E731
    expected = torch.tensor([[[[0.0, sig(0.53125)], [2.0 * sig(0.53125), 3.0 * sig(0.78125)]]]])
    torch.testing.assert_close(SimAM(1, e_lambda=1.0 / 3.0)(x), expected)


@pytest.mark.parametrize(
    ("module", "channels"), [(EfficientLocalAttention(40, kernel_size=5), 40), (GlobalAttentionMechanism(320, rate=4), 320)]
)
def test_ela_and_gam_keep_shapes_and_pass_gradients_at_network_widths(module: nn.Module, channels: int):
    x = torch.randn(2, channels, 5, 7, requires_grad=True)
    y = module(x)
    assert y.shape == x.shape
    y.square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())


ATTENTION_CHOICES = ["none", "ela", "simam", "gam"]
FACTORS = {
    "attention_dw": ATTENTION_CHOICES,
    "attention_expand": ATTENTION_CHOICES,
    "attention_project": ATTENTION_CHOICES,
    "block1": [False, True],
    "block2": [False, True],
    "branch_fusion": ["sum", "concat"],
    "downsample_act": ["none", "prelu"],
    "block_act": ["gelu", "prelu"],
}


def _pairwise_cases() -> list[dict]:
    """A greedy pairwise covering: every value pair of every two switches appears in some case."""
    names = list(FACTORS)
    uncovered = {(a, va, b, vb) for a, b in itertools.combinations(names, 2) for va in FACTORS[a] for vb in FACTORS[b]}
    cases = []
    while uncovered:
        a, va, b, vb = min(uncovered, key=repr)  # seed each case with an uncovered pair
        case = {a: va, b: vb}
        for name in names:
            if name not in case:
                case[name] = max(
                    FACTORS[name],
                    key=lambda v: sum((n, case[n], name, v) in uncovered or (name, v, n, case[n]) in uncovered for n in case),
                )
        uncovered -= {(x, case[x], y, case[y]) for x, y in itertools.combinations(names, 2)}
        cases.append(case)
    return cases


CASES = _pairwise_cases()


def test_pairwise_cases_cover_every_pair_in_few_cases():
    pairs = {(a, c[a], b, c[b]) for c in CASES for a, b in itertools.combinations(FACTORS, 2)}
    wanted = {(a, va, b, vb) for a, b in itertools.combinations(FACTORS, 2) for va in FACTORS[a] for vb in FACTORS[b]}
    assert pairs == wanted and len(CASES) <= 24


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(str(v)[:5] for v in c.values()))
def test_every_switch_combination_trains(case: dict):
    torch.manual_seed(0)
    net = EsgConvNeXt("convnext", **MICRO, **case, branch_expansion=2, num_classes=3).train()
    x = torch.randn(2, 3, 32, 32)
    out = net(x)
    assert out.shape == (2, 3) and torch.isfinite(out).all()
    nn.functional.cross_entropy(out, torch.tensor([0, 2])).backward()
    stale = [name for name, p in net.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not stale, stale


def test_drop_path_rates_are_timms():
    ours = EsgConvNeXt("esg", **MICRO, drop_path_rate=0.3, num_classes=3)
    timm_net = timm.models.convnext.ConvNeXt(**MICRO, drop_path_rate=0.3, num_classes=3)
    rates = lambda net: [  # noqa: E731
        b.drop_path.drop_prob if isinstance(b.drop_path, DropPath) else 0.0 for s in net.stages for b in s.blocks
    ]
    assert rates(ours) == rates(timm_net) and rates(ours)[-1] == pytest.approx(0.3)
    assert all(isinstance(b, EsgBlock) for s in ours.stages for b in s.blocks)


def test_backbone_contract_for_the_classifier():
    from trainables._backbones import create_backbone
    from trainables.artifacts import compute_gradcam, find_target_layer
    from trainables.finetune import backbone_layers, set_fine_tune_fraction
    from trainables.models import ClassifierNet

    backbone = create_backbone("esg_convnext_atto")
    assert backbone.num_features == 320 and backbone.num_classes == 0
    assert [f["num_chs"] for f in backbone.feature_info] == [40, 80, 160, 320]
    assert find_target_layer(backbone) is backbone.stages[3]
    x = torch.randn(2, 3, 32, 32)
    assert backbone.forward_features(x).shape == (2, 320, 1, 1)
    layers = [name for name, _ in backbone_layers(backbone, input_size=32)]
    assert any(".block1." in name for name in layers) and any(".attn_project." in name for name in layers)
    assert layers[-1].startswith("stages.3.")  # forward order; the unused head.norm goes first
    set_fine_tune_fraction(backbone, 0.1, input_size=32)
    assert 0 < sum(p.requires_grad for p in backbone.parameters()) < len(list(backbone.parameters()))
    net = ClassifierNet(backbone, num_features=320, num_outputs=4, dense_units=())
    images = torch.randint(0, 256, (1, 3, 64, 64), dtype=torch.uint8)  # 2×2 last map
    cam = compute_gradcam(net, images, normalization="imagenet", binary=False)
    assert cam.heatmaps.shape == (1, 64, 64) and cam.heatmaps.max() > 0


def test_bad_switches_fail_with_the_valid_names():
    with pytest.raises(KeyError, match="did you mean 'esg'"):
        EsgConvNeXt("eesg", **MICRO)
    with pytest.raises(KeyError, match="did you mean 'simam'"):
        EsgConvNeXt("esg", **MICRO, attention_expand="simma")
    with pytest.raises(ValueError, match="branch_fusion must be one of"):
        EsgConvNeXt("esg", **MICRO, branch_fusion="add")
    with pytest.raises(ValueError, match="downsample_act must be one of"):
        EsgConvNeXt("esg", **MICRO, downsample_act="relu")
    with pytest.raises(ValueError, match="block_act must be one of"):
        EsgConvNeXt("esg", **MICRO, block_act="relu")
    with pytest.raises(ValueError, match="4 stages"):
        EsgConvNeXt("esg", depths=(1, 1, 3), dims=(8, 16, 32))
    with pytest.raises(ValueError, match="no pretrained weights"):
        timm.create_model("esg_convnext_atto", pretrained=True)


def test_search_space_builds_networks_and_is_conditional():
    import inspect

    import optuna

    from search_spaces import get_space

    esg_space = get_space("esg_convnext")

    switches = set(inspect.signature(EsgConvNeXt.__init__).parameters) - {"self", "kwargs", "depths", "dims"}
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(30):
        trial = study.ask()
        esg_space(trial)
        params = dict(trial.params)
        assert set(params) - {"lr", "weight_decay"} <= switches  # keys are the network's config keys
        positions = {params["attention_dw"], params["attention_expand"], params["attention_project"]}
        assert ("ela_kernel" in params) == ("ela" in positions)
        assert ("gam_rate" in params) == ("gam" in positions)
        assert ("simam_lambda" in params) == ("simam" in positions or params["block2"])
        assert ("branch_fusion" in params) == (params["block1"] or params["block2"])
        assert ("branch_expansion" in params) == params["block2"]
        for key in ("lr", "weight_decay"):
            params.pop(key)
        EsgConvNeXt("convnext", **MICRO, num_classes=3, **params)  # every suggestion builds
        study.tell(trial, 0.5)


def test_classifier_split_keeps_the_networks_parameters_and_output():
    from trainables.models.esg_convnext import EsgConvNeXtClassifier

    torch.manual_seed(0)
    network = EsgConvNeXt("esg", **MICRO, num_classes=4).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = network(x)
    count = _params(network)
    model = EsgConvNeXtClassifier(network).eval()
    assert _params(model) == count and _params(model.backbone) == count - _params(model.head)
    with torch.no_grad():
        torch.testing.assert_close(model(x), expected)
        features = model.features(x)
        assert features.shape == (2, 16)
        torch.testing.assert_close(model.head.fc(features), expected)  # features are the last Linear's input
    with pytest.raises(ValueError, match="num_classes"):
        EsgConvNeXtClassifier(EsgConvNeXt("esg", **MICRO, num_classes=0))
