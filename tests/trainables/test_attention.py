"""The attention registry: a contract over every module, and each module's defining property."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from timm.layers.coord_attn import EfficientLocalAttn
from torch import nn

from trainables.models.attention import (
    ATTENTION,
    EfficientLocalAttention,
    GlobalAttentionMechanism,
    MultiHeadSelfAttention2d,
    SimAM,
    create_attention,
)

# (C, H, W): 1×1 and 4×4 maps, C not divisible by GAM's rate 4, C below it, non-square maps.
SHAPES = [(3, 1, 1), (6, 4, 4), (8, 4, 4), (5, 8, 6), (2, 4, 8)]


def _build(name: str, channels: int) -> nn.Module:
    kwargs = {"heads": 2 if channels % 2 == 0 else 1} if name == "mhsa" else {}
    torch.manual_seed(0)
    return create_attention(name, channels, **kwargs)


def _input(c: int, h: int, w: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(2, c, h, w, generator=torch.Generator().manual_seed(seed))


def test_registry_holds_the_papers_modules_and_timm_extras():
    assert {"none", "mhsa", "ela", "simam", "gam", "se", "cbam", "eca"} <= set(ATTENTION.names())


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("name", ATTENTION.names())
def test_contract_shape_gradients_finite(name: str, shape: tuple[int, int, int]):
    module = _build(name, shape[0]).train()
    x = _input(*shape).requires_grad_(True)
    out = module(x)
    assert out.shape == x.shape
    assert torch.isfinite(out).all()
    (out * torch.randn_like(out)).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    for param_name, param in module.named_parameters():
        assert param.grad is not None, param_name
        assert torch.isfinite(param.grad).all(), param_name


@pytest.mark.parametrize("name", ATTENTION.names())
def test_contract_deterministic_in_eval(name: str):
    module = _build(name, 8).eval()
    x = _input(8, 4, 4)
    with torch.no_grad():
        assert torch.equal(module(x), module(x))


def test_none_is_identity():
    module = create_attention("none", 8)
    assert isinstance(module, nn.Identity)
    x = _input(8, 4, 4)
    assert module(x) is x


def test_unknown_name_lists_valid_names():
    with pytest.raises(KeyError) as info:
        create_attention("mhas", 8)
    message = str(info.value)
    assert "did you mean 'mhsa'" in message
    for name in ATTENTION.names():
        assert name in message


def test_kwargs_reach_the_module():
    assert create_attention("ela", 8, kernel_size=3).conv_h.kernel_size == (3, 1)
    assert create_attention("simam", 8, e_lambda=0.5).e_lambda == 0.5
    assert create_attention("mhsa", 8, heads=4).attn.num_heads == 4


# --- MHSA -------------------------------------------------------------------------------------


def test_mhsa_matches_hand_computation():
    torch.manual_seed(0)
    c, h, w = 4, 2, 3
    module = MultiHeadSelfAttention2d(c, heads=1, residual=False, norm=False).eval()
    x = _input(c, h, w)
    tokens = x.flatten(2).transpose(1, 2)  # (N, L, C)
    qkv = module.attn.qkv
    wq, wk, wv = qkv.weight.split(c)
    bq, bk, bv = qkv.bias.split(c)
    q, k, v = tokens @ wq.T + bq, tokens @ wk.T + bk, tokens @ wv.T + bv
    weights = torch.softmax(q @ k.transpose(1, 2) / c**0.5, dim=-1)
    expected = (weights @ v) @ module.attn.proj.weight.T + module.attn.proj.bias
    expected = expected.transpose(1, 2).reshape(2, c, h, w)
    with torch.no_grad():
        torch.testing.assert_close(module(x), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("pos_encoding", ["none", "learned", "sincos"])
@pytest.mark.parametrize("norm", [True, False])
def test_mhsa_residual_with_zero_projection_is_identity(norm: bool, pos_encoding: str):
    # Pre-norm: LayerNorm and positions feed the attention branch only, never the residual path.
    module = MultiHeadSelfAttention2d(8, heads=2, norm=norm, pos_encoding=pos_encoding, tokens=16)
    nn.init.zeros_(module.attn.proj.weight)
    nn.init.zeros_(module.attn.proj.bias)
    x = _input(8, 4, 4)
    assert torch.equal(module(x), x)


def test_mhsa_pre_norm_branch_ignores_per_token_affine_rescaling():
    # LayerNorm on the attention input makes the branch invariant to x ↦ a·x + b per token.
    module = MultiHeadSelfAttention2d(8, heads=2, residual=False, norm=True).eval()
    x = _input(8, 4, 4)
    shift = torch.randn(2, 1, 4, 4)
    with torch.no_grad():
        torch.testing.assert_close(module(3.0 * x + shift), module(x), rtol=1e-4, atol=1e-4)
    without_norm = MultiHeadSelfAttention2d(8, heads=2, residual=False, norm=False).eval()
    with torch.no_grad():
        assert not torch.allclose(without_norm(3.0 * x + shift), without_norm(x), atol=1e-3)


def _permute_positions(x: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    n, c, h, w = x.shape
    return x.flatten(2)[:, :, order].reshape(n, c, h, w)


@pytest.mark.parametrize("pos_encoding", ["none", "learned", "sincos"])
def test_mhsa_permutation_equivariant_only_without_positions(pos_encoding: str):
    torch.manual_seed(0)
    module = MultiHeadSelfAttention2d(8, heads=2, pos_encoding=pos_encoding, tokens=16).eval()
    x = _input(8, 4, 4)
    order = torch.randperm(16, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        permuted_then_attended = module(_permute_positions(x, order))
        attended_then_permuted = _permute_positions(module(x), order)
    equivariant = torch.allclose(permuted_then_attended, attended_then_permuted, atol=1e-5)
    assert equivariant == (pos_encoding == "none")


def test_mhsa_invalid_heads_names_valid_counts():
    with pytest.raises(ValueError, match=r"valid head counts: 1, 2, 3, 4, 6, 12"):
        MultiHeadSelfAttention2d(12, heads=5)
    with pytest.raises(ValueError, match="valid head counts"):
        create_attention("mhsa", 6)  # default heads=8


def test_mhsa_positional_encoding_errors():
    with pytest.raises(ValueError, match="tokens"):
        MultiHeadSelfAttention2d(8, heads=2, pos_encoding="learned")
    with pytest.raises(ValueError, match="pos_encoding"):
        MultiHeadSelfAttention2d(8, heads=2, pos_encoding="rope")
    module = MultiHeadSelfAttention2d(8, heads=2, pos_encoding="learned", tokens=16)
    assert module.pos_embed.shape == (1, 16, 8)
    with pytest.raises(ValueError, match="16 tokens"):
        module(_input(8, 2, 2))


def test_mhsa_sincos_has_no_parameters_and_handles_any_width():
    base = sum(p.numel() for p in MultiHeadSelfAttention2d(6, heads=2).parameters())
    sincos = MultiHeadSelfAttention2d(6, heads=2, pos_encoding="sincos")  # C=6: not a multiple of 4
    assert sum(p.numel() for p in sincos.parameters()) == base
    assert sincos(_input(6, 3, 5)).shape == (2, 6, 3, 5)


# --- SimAM ------------------------------------------------------------------------------------


def _simam_numpy(x: np.ndarray, e_lambda: float) -> np.ndarray:
    out = np.empty_like(x)
    for i in range(x.shape[0]):
        for j in range(x.shape[1]):
            t = x[i, j]
            mu = t.mean()
            var = ((t - mu) ** 2).sum() / (t.size - 1)
            inv_e = (t - mu) ** 2 / (4 * (var + e_lambda)) + 0.5
            out[i, j] = t / (1 + np.exp(-inv_e))
    return out


@pytest.mark.parametrize("e_lambda", [1e-4, 0.5])
def test_simam_matches_numpy_formula(e_lambda: float):
    x = _input(3, 4, 5)
    expected = _simam_numpy(x.double().numpy(), e_lambda)
    out = SimAM(3, e_lambda=e_lambda)(x.double()).numpy()
    np.testing.assert_allclose(out, expected, rtol=1e-12)


def test_simam_is_parameter_free_and_ignores_channels():
    assert list(SimAM(64).parameters()) == [] and list(SimAM(64).buffers()) == []
    x = _input(4, 4, 4)
    assert torch.equal(SimAM(4)(x), SimAM(999)(x))


def test_simam_on_one_pixel_map_scales_by_sigmoid_half():
    x = _input(4, 1, 1)
    torch.testing.assert_close(SimAM(4)(x), x * torch.sigmoid(torch.tensor(0.5)))


# --- ELA --------------------------------------------------------------------------------------


def _gate(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        out = module(x)
    nonzero = x != 0
    assert nonzero.all()
    return out / x


def test_ela_is_timm_with_paper_defaults():
    module = create_attention("ela", 40)
    assert isinstance(module, EfficientLocalAttn)
    assert module.conv_h.kernel_size == (5, 1) and module.conv_w.kernel_size == (1, 5)
    assert module.conv_h.groups == 40  # depthwise
    assert module.norm_h.num_groups == 10  # largest divisor of 40 that is <= 16
    assert isinstance(module.act, nn.Identity)
    with pytest.raises(ValueError, match="odd"):
        EfficientLocalAttention(8, kernel_size=4)


@pytest.mark.parametrize("shape", [(8, 4, 4), (3, 6, 5)])
def test_ela_is_a_separable_gate_in_unit_interval(shape: tuple[int, int, int]):
    torch.manual_seed(0)
    x = _input(*shape)
    gate = _gate(create_attention("ela", shape[0]).train(), x)
    assert ((gate > 0) & (gate < 1)).all()
    # Y = x · y_h · y_w: the gate is an outer product per channel, so any 2×2 minor vanishes.
    torch.testing.assert_close(gate[..., :-1, :-1] * gate[..., 1:, 1:], gate[..., :-1, 1:] * gate[..., 1:, :-1])


# --- GAM --------------------------------------------------------------------------------------


def test_gam_channel_then_spatial_gating():
    torch.manual_seed(0)
    module = GlobalAttentionMechanism(6)  # 6 // 4 = 1 hidden channel
    assert module.channel.mlp[0].out_features == 1 and module.spatial.conv[0].out_channels == 1
    seen: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for stage in ("channel", "spatial"):
        getattr(module, stage).register_forward_hook(
            lambda _m, inputs, output, stage=stage: seen.__setitem__(stage, (inputs[0], output))
        )
    x = _input(6, 4, 5)
    out = module(x)
    channel_in, channel_gate = seen["channel"]
    spatial_in, spatial_gate = seen["spatial"]
    assert channel_gate.shape == spatial_gate.shape == x.shape
    assert torch.equal(channel_in, x)
    torch.testing.assert_close(spatial_in, x * channel_gate)  # F2 = M_C(F1) ⊗ F1
    torch.testing.assert_close(out, spatial_in * spatial_gate)  # F3 = M_S(F2) ⊗ F2
    for gate in (channel_gate, spatial_gate):
        assert ((gate > 0) & (gate < 1)).all()
    overall = _gate(module, x)
    assert ((overall > 0) & (overall < 1)).all()


def test_gam_rate_larger_than_channels_keeps_one_hidden_channel():
    module = GlobalAttentionMechanism(2, rate=16)
    assert module.channel.mlp[0].out_features == 1
    assert module(_input(2, 4, 4)).shape == (2, 2, 4, 4)
