"""ESG-ConvNeXt (P004): timm's ConvNeXt V2 with ELA / SimAM / GAM, parallel branches and PReLU.

:class:`EsgConvNeXt` *is* a timm ``ConvNeXt`` (stem, stages, downsampling, head,
``forward_features``, ``feature_info``, ``forward_intermediates``...) whose blocks are
:class:`~trainables.models.esg_convnext_blocks.EsgBlock` and whose downsampling layers may end in
a PReLU. With ``variant="convnext"`` it is exactly timm's ``convnextv2_<size>``: same parameters,
same names, same output.

Every size is a timm model, so the classifier can use it as a backbone::

    import timm
    import trainables.models  # registers esg_convnext_{atto,femto,pico,nano,tiny}
    model = timm.create_model("esg_convnext_atto", num_classes=7, variant="block1")
    model = timm.create_model("esg_convnext_atto", num_classes=7, variant="esg", attention_project="none")

``variant`` picks one of P004's five cumulative rows (:data:`VARIANTS`); any switch passed
explicitly overrides the preset.
"""

from __future__ import annotations

import difflib
from functools import partial
from typing import Any, Mapping, Optional, Sequence

import torch
from timm.layers import DropPath
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models._manipulate import named_apply
from timm.models.convnext import ConvNeXt, _init_weights, checkpoint_filter_fn
from torch import nn

from trainables.models.attention import create_attention_with_options
from trainables.models.esg_convnext_blocks import ACTIVATIONS, FUSIONS, EsgBlock

__all__ = [
    "DOWNSAMPLE_ACTIVATIONS",
    "SIZES",
    "SWITCHES",
    "VARIANTS",
    "EsgConvNeXt",
    "EsgConvNeXtClassifier",
    "convnextv2_state_dict",
    "resolve_switches",
]

SIZES: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "atto": ((2, 2, 6, 2), (40, 80, 160, 320)),
    "femto": ((2, 2, 6, 2), (48, 96, 192, 384)),
    "pico": ((2, 2, 6, 2), (64, 128, 256, 512)),
    "nano": ((2, 2, 8, 2), (80, 160, 320, 640)),  # timm's nano is 2:2:8:2, not P004's 1:1:3:1
    "tiny": ((3, 3, 9, 3), (96, 192, 384, 768)),
}
"""Named sizes → (depths, dims), those of timm's ``convnextv2_<size>``."""

DOWNSAMPLE_ACTIVATIONS = ("none", "prelu")

_OFF = {
    "attention_dw": "none",
    "attention_expand": "none",
    "attention_project": "none",
    "block1": False,
    "block2": False,
    "downsample_act": "none",
}
_P004_ATTENTION = {"attention_dw": "ela", "attention_expand": "simam", "attention_project": "gam"}
VARIANTS: dict[str, dict[str, Any]] = {
    "convnext": dict(_OFF),
    "block1": {**_OFF, "block1": True},
    "block1_block2": {**_OFF, "block1": True, "block2": True},
    "block1_block2_attention": {**_OFF, "block1": True, "block2": True, **_P004_ATTENTION},
    "esg": {**_OFF, "block1": True, "block2": True, **_P004_ATTENTION, "downsample_act": "prelu"},
}
"""P004's Table 2 rows, cumulative: the switches each preset sets."""

SWITCHES = tuple(_OFF)
"""The switches a variant presets (each can be overridden)."""


def resolve_switches(variant: str = "esg", **overrides: Any) -> dict[str, Any]:
    """The switches of ``variant`` with every non-``None`` override applied.

    Args:
        variant: A key of :data:`VARIANTS`.
        **overrides: Any of :data:`SWITCHES`; ``None`` keeps the preset's value.

    Raises:
        KeyError: unknown variant or switch (the message lists the valid names).
    """
    if variant not in VARIANTS:
        close = difflib.get_close_matches(variant, VARIANTS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise KeyError(f"Unknown ESG-ConvNeXt variant {variant!r}{hint} Valid variants: {', '.join(VARIANTS)}")
    unknown = sorted(set(overrides) - set(SWITCHES))
    if unknown:
        raise KeyError(f"Unknown ESG-ConvNeXt switch(es) {unknown}; valid switches: {', '.join(SWITCHES)}")
    return {**VARIANTS[variant], **{k: v for k, v in overrides.items() if v is not None}}


class EsgConvNeXt(ConvNeXt):
    """ConvNeXt V2 with P004's modules, each switchable.

    Args:
        variant: P004's preset (:data:`VARIANTS`): ``convnext``, ``block1``, ``block1_block2``,
            ``block1_block2_attention`` or ``esg`` (default).
        depths: Blocks per stage (4 stages; P004's ratio is 1:1:3:1; default atto's 2:2:6:2).
        dims: Channels per stage (default atto's 40, 80, 160, 320).
        attention_dw: Attention after the depthwise 7×7 (C channels); any name of the attention
            registry, ``none`` off. ``None`` takes the variant's value (``ela`` from
            ``block1_block2_attention`` on).
        attention_expand: Attention after the 1×1 expansion and its activation (4C; P004: ``simam``).
        attention_project: Attention after the final 1×1 projection, before the residual add
            (C; P004: ``gam``).
        ela_kernel / gam_rate / simam_lambda: Options of ELA, GAM and SimAM wherever they are
            (block2's SimAM included).
        block1: The residual-style parallel branch (``None``: the variant's value).
        block2: The inverted-residual parallel branch (``None``: the variant's value).
        branch_fusion: ``sum`` or ``concat`` (+ 1×1 conv) of the main path and the branches.
        branch_expansion: block2's expansion ratio.
        downsample_act: ``none`` or ``prelu`` after each 2×2 stride-2 downsampling conv
            (``None``: the variant's value; ``prelu`` in ``esg``).
        block_act: ``gelu`` (ConvNeXt V2) or ``prelu`` after the expansion.
        drop_path_rate: Stochastic depth, rising linearly over blocks as in timm.
        **kwargs: timm ``ConvNeXt`` options: ``num_classes``, ``global_pool``, ``in_chans``,
            ``drop_rate``, ``head_init_scale``...

    Raises:
        KeyError: unknown variant or attention name; ValueError: another bad switch value.
    """

    def __init__(
        self,
        variant: str = "esg",
        depths: Sequence[int] = SIZES["atto"][0],
        dims: Sequence[int] = SIZES["atto"][1],
        *,
        attention_dw: Optional[str] = None,
        attention_expand: Optional[str] = None,
        attention_project: Optional[str] = None,
        ela_kernel: int = 5,
        gam_rate: int = 4,
        simam_lambda: float = 1e-4,
        block1: Optional[bool] = None,
        block2: Optional[bool] = None,
        branch_fusion: str = "sum",
        branch_expansion: float = 4.0,
        downsample_act: Optional[str] = None,
        block_act: str = "gelu",
        drop_path_rate: float = 0.0,
        **kwargs: Any,
    ) -> None:
        switches = resolve_switches(
            variant,
            attention_dw=attention_dw,
            attention_expand=attention_expand,
            attention_project=attention_project,
            block1=block1,
            block2=block2,
            downsample_act=downsample_act,
        )
        if len(depths) != 4 or len(dims) != 4:
            raise ValueError(f"depths and dims need 4 stages each, got depths={list(depths)} dims={list(dims)}")
        if switches["downsample_act"] not in DOWNSAMPLE_ACTIVATIONS:
            raise ValueError(f"downsample_act must be one of {DOWNSAMPLE_ACTIVATIONS}, got {switches['downsample_act']!r}")
        if block_act not in ACTIVATIONS:
            raise ValueError(f"block_act must be one of {ACTIVATIONS}, got {block_act!r}")
        if branch_fusion not in FUSIONS:
            raise ValueError(f"branch_fusion must be one of {FUSIONS}, got {branch_fusion!r}")
        if branch_expansion <= 0:
            raise ValueError(f"branch_expansion must be positive, got {branch_expansion}")
        # timm builds the stem, stages (with its own blocks), downsampling, head and feature_info;
        # the blocks are then replaced. ConvNeXt V2: GRN, no layer scale; 1x1 convs (NCHW) throughout.
        super().__init__(
            depths=tuple(depths),
            dims=tuple(dims),
            use_grn=True,
            ls_init_value=None,
            conv_mlp=True,
            drop_path_rate=drop_path_rate,
            **kwargs,
        )
        self.variant = variant
        self.switches = {
            **switches,
            "ela_kernel": ela_kernel,
            "gam_rate": gam_rate,
            "simam_lambda": simam_lambda,
            "branch_fusion": branch_fusion,
            "branch_expansion": branch_expansion,
            "block_act": block_act,
        }
        attention = partial(
            create_attention_with_options, ela_kernel=ela_kernel, gam_rate=gam_rate, simam_lambda=simam_lambda
        )
        for stage, channels in zip(self.stages, dims):
            if switches["downsample_act"] == "prelu" and isinstance(stage.downsample, nn.Sequential):
                stage.downsample.append(nn.PReLU(num_parameters=channels))  # LN → 2×2 conv → PReLU
            for index, old in enumerate(stage.blocks):
                block = EsgBlock(
                    channels,
                    attention_dw=attention(switches["attention_dw"], channels),
                    attention_expand=attention(switches["attention_expand"], 4 * channels),
                    attention_project=attention(switches["attention_project"], channels),
                    block1=switches["block1"],
                    block2=switches["block2"],
                    branch_fusion=branch_fusion,
                    branch_expansion=branch_expansion,
                    simam_lambda=simam_lambda,
                    block_act=block_act,
                    drop_path=old.drop_path.drop_prob if isinstance(old.drop_path, DropPath) else 0.0,
                )
                # timm's ConvNeXt init (trunc-normal convs, zero biases); attention modules keep their own
                for name, child in block.named_children():
                    if not name.startswith("attn_"):
                        named_apply(_init_weights, child)
                stage.blocks[index] = block


class EsgConvNeXtClassifier(nn.Module):
    """An :class:`EsgConvNeXt` split into ``backbone`` (stem + stages) and ``head`` (GAP → LayerNorm → Linear).

    The head is timm's own ConvNeXt head, moved out of the network, so the parameters are
    exactly the network's; the split is what the fine-tune fraction and the two-phase schedule
    need (``backbone`` is the part that is frozen or fine-tuned) and what Grad-CAM looks up
    (``backbone.feature_info``).

    Args:
        network: An :class:`EsgConvNeXt` with ``num_classes`` > 0 (taken over: its head moves here).
    """

    def __init__(self, network: EsgConvNeXt) -> None:
        super().__init__()
        if network.num_classes < 1:
            raise ValueError("EsgConvNeXtClassifier needs a network built with num_classes >= 1")
        self.num_classes = network.num_classes
        self.head = network.head  # NormMlpClassifierHead: avg pool → LayerNorm2d → flatten → dropout → fc
        network.head = nn.Identity()  # forward_features never used it
        network.num_classes = 0
        self.backbone = network

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The penultimate features: pooled and normalised, before the final Linear (N, C)."""
        return self.head(self.backbone.forward_features(x), pre_logits=True)  # (N, C)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone.forward_features(x))  # (N, classes)


def convnextv2_state_dict(state_dict: Mapping[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """A timm (or official) ConvNeXt V2 state dict in :class:`EsgConvNeXt`'s layout.

    Names are the same as timm's; the only difference is that timm's ``tiny`` and larger use
    ``nn.Linear`` MLPs on channels-last maps where ESG-ConvNeXt uses 1×1 convs everywhere, so 2-D
    MLP weights are reshaped to (out, in, 1, 1). Official checkpoints are first renamed by timm's
    ``checkpoint_filter_fn``. Load the result with ``model.load_state_dict(..., strict=False)``
    for a variant with extra modules (they keep their initialisation).

    Args:
        state_dict: Weights of a ``convnextv2_<size>`` model.
        model: The :class:`EsgConvNeXt` of the same size that will load them.
    """
    state = checkpoint_filter_fn(dict(state_dict), model)
    expected = model.state_dict()
    out = {}
    for key, value in state.items():
        target = expected.get(key)
        if target is not None and value.ndim == 2 and target.ndim == 4 and ".mlp.fc" in key:
            value = value.reshape(target.shape)
        out[key] = value
    return out


def _cfg(**kwargs: Any) -> dict[str, Any]:
    return {
        "url": "",
        "num_classes": 1000,
        "input_size": (3, 224, 224),  # P004 resizes to 224×224
        "pool_size": (7, 7),
        "crop_pct": 1.0,
        "interpolation": "bicubic",
        "mean": (0.485, 0.456, 0.406),
        "std": (0.229, 0.224, 0.225),
        "first_conv": "stem.0",
        "classifier": "head.fc",
        "license": "none (no pretrained weights)",
        **kwargs,
    }


default_cfgs = generate_default_cfgs({f"esg_convnext_{size}": _cfg() for size in SIZES})


def _create(size: str, pretrained: bool, kwargs: dict[str, Any]) -> EsgConvNeXt:
    if pretrained:
        raise ValueError(
            f"esg_convnext_{size} has no pretrained weights; build it untrained and load ConvNeXt V2 weights "
            "with trainables.models.esg_convnext.convnextv2_state_dict"
        )
    depths, dims = SIZES[size]
    kwargs = {"depths": depths, "dims": dims, **kwargs}
    variant = kwargs.pop("variant", "esg")  # timm's builder takes `variant` as the model name
    return build_model_with_cfg(
        partial(EsgConvNeXt, variant),
        f"esg_convnext_{size}",
        pretrained=False,
        feature_cfg=dict(out_indices=(0, 1, 2, 3), flatten_sequential=True),
        **kwargs,
    )


@register_model
def esg_convnext_atto(pretrained: bool = False, **kwargs: Any) -> EsgConvNeXt:
    """ESG-ConvNeXt at ConvNeXt V2 atto size: depths 2-2-6-2, dims 40-320."""
    return _create("atto", pretrained, kwargs)


@register_model
def esg_convnext_femto(pretrained: bool = False, **kwargs: Any) -> EsgConvNeXt:
    """ESG-ConvNeXt at ConvNeXt V2 femto size: depths 2-2-6-2, dims 48-384."""
    return _create("femto", pretrained, kwargs)


@register_model
def esg_convnext_pico(pretrained: bool = False, **kwargs: Any) -> EsgConvNeXt:
    """ESG-ConvNeXt at ConvNeXt V2 pico size: depths 2-2-6-2, dims 64-512."""
    return _create("pico", pretrained, kwargs)


@register_model
def esg_convnext_nano(pretrained: bool = False, **kwargs: Any) -> EsgConvNeXt:
    """ESG-ConvNeXt at ConvNeXt V2 nano size: depths 2-2-8-2, dims 80-640."""
    return _create("nano", pretrained, kwargs)


@register_model
def esg_convnext_tiny(pretrained: bool = False, **kwargs: Any) -> EsgConvNeXt:
    """ESG-ConvNeXt at ConvNeXt V2 tiny size: depths 3-3-9-3, dims 96-768."""
    return _create("tiny", pretrained, kwargs)
