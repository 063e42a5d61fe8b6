"""Creates timm backbones, with pretrained weights from the hub or a local file."""

from __future__ import annotations

import difflib
import os
import socket
import urllib.parse
from pathlib import Path
from typing import Union

import torch
from torch import nn

__all__ = ["PAPER_BACKBONES", "PretrainedWeightsError", "create_backbone", "resolve_backbone_name"]

PAPER_BACKBONES: dict[str, str] = {
    # P000, P002
    "ResNet18": "resnet18",
    "ResNet50": "resnet50",
    "ResNet101": "resnet101",
    # P003 (Keras EfficientNetV2 ports: the tf_ variants keep Keras' padding and weights)
    "EfficientNetV2B0": "tf_efficientnetv2_b0",
    "EfficientNetV2B1": "tf_efficientnetv2_b1",
    "EfficientNetV2B2": "tf_efficientnetv2_b2",
    "EfficientNetV2B3": "tf_efficientnetv2_b3",
    "EfficientNetV2S": "tf_efficientnetv2_s",
    "EfficientNetV2M": "tf_efficientnetv2_m",
    "EfficientNetV2L": "tf_efficientnetv2_l",
    "EfficientNetB0": "efficientnet_b0",
    "EfficientNetB1": "efficientnet_b1",
    "EfficientNetB2": "efficientnet_b2",
    "DenseNet121": "densenet121",
    "DenseNet169": "densenet169",
    "MobileNetV2": "mobilenetv2_100",
    "MobileNetV3Large": "mobilenetv3_large_100",
    "MobileNetV3Small": "mobilenetv3_small_100",
    "InceptionV3": "inception_v3",
    "ConvNeXtV2": "convnextv2_tiny",
    "ViT": "vit_base_patch16_224",
    "Swin-T": "swin_tiny_patch4_window7_224",
    # NASNetMobile has no timm equivalent (timm only has NASNet-A Large, 89M parameters);
    # the substitute is MnasNet-1.0: also a NAS-found mobile network, 4.4M vs 5.3M parameters.
    "NASNetMobile": "mnasnet_100",
}
"""Backbone names as the papers write them → timm model names (``backbone:`` accepts either)."""


def resolve_backbone_name(name: str) -> str:
    """A timm model name for ``name``, which may be a paper's name (see ``PAPER_BACKBONES``)."""
    return PAPER_BACKBONES.get(name, name)


class PretrainedWeightsError(RuntimeError):
    """Pretrained weights could not be loaded (offline hub, missing or bad local file)."""


_PREFIXES = ("module.", "model.", "backbone.", "encoder.")
"""Wrappers whose prefix a saved state dict may carry (DDP, Lightning, our ClassifierNet)."""


def _read_state_dict(path: Path) -> dict:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    return state


def _load_local_weights(model: nn.Module, name: str, path: Path) -> None:
    """Loads a local weights file, refusing one that would leave backbone weights unset.

    Common wrapper prefixes are stripped and classifier weights of the file ignored; every
    parameter of the backbone must then be found, with matching shapes.
    """
    if not path.is_file():
        raise PretrainedWeightsError(f"pretrained weights file {str(path)!r} does not exist")
    try:
        state = _read_state_dict(path)
    except Exception as err:  # corrupt file, pickle refused, wrong format
        raise PretrainedWeightsError(f"could not read weights file {str(path)!r} for {name!r}: {err}") from err
    expected = model.state_dict()
    for prefix in _PREFIXES:
        if not (state.keys() & expected.keys()) and any(k.startswith(prefix) for k in state):
            state = {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}
    usable = {k: v for k, v in state.items() if k in expected}
    missing = sorted(expected.keys() - usable.keys())
    mismatched = sorted(k for k, v in usable.items() if tuple(v.shape) != tuple(expected[k].shape))
    if missing or mismatched:
        raise PretrainedWeightsError(
            f"{str(path)!r} does not fit backbone {name!r}: {len(missing)} weight(s) missing "
            f"(e.g. {missing[:3]}), {len(mismatched)} of another shape (e.g. {mismatched[:3]}). "
            "Is it a checkpoint of this timm model?"
        )
    model.load_state_dict(usable, strict=False)


def _hub_unreachable(timeout: float = 3.0) -> str | None:
    """Why the Hugging Face hub cannot be reached (offline mode, DNS, connect), or None."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return "HF_HUB_OFFLINE is set"
    host = urllib.parse.urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
    except OSError as err:
        return f"{host} is unreachable ({err}); this machine may be offline"
    return None


def create_backbone(name: str, pretrained: Union[bool, str] = False) -> nn.Module:
    """Returns a timm model without classifier (``forward_features`` gives the feature map).

    Args:
        name: A timm model name.
        pretrained: ``False``, ``True`` (download from the hub) or a path to a local
            ``.safetensors``/``.pth``/``.bin`` file with the backbone's weights.

    Raises:
        KeyError: unknown model name (the message lists close timm names).
        PretrainedWeightsError: the weights cannot be had; the message names the fix.
    """
    import timm

    import trainables.models  # noqa: F401  (registers esg_convnext_<size> with timm)

    name = resolve_backbone_name(name)
    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=12, cutoff=0.6)
        raise KeyError(f"Unknown timm backbone {name!r}. Close names: {', '.join(close) or '(none)'}")
    kwargs = dict(num_classes=0, global_pool="")
    if isinstance(pretrained, str):
        model = timm.create_model(name, pretrained=False, **kwargs)
        _load_local_weights(model, name, Path(pretrained).expanduser())
        return model
    if not pretrained:
        return timm.create_model(name, pretrained=False, **kwargs)
    unreachable = _hub_unreachable()
    if unreachable:  # huggingface_hub would retry with back-off for about a minute first
        raise PretrainedWeightsError(
            f"cannot download pretrained weights for {name!r}: {unreachable}. Set `pretrained` to a "
            "local .safetensors/.pth file of that model, or `pretrained: false`."
        )
    try:
        return timm.create_model(name, pretrained=True, **kwargs)
    except Exception as err:  # network, hub or cache errors
        raise PretrainedWeightsError(
            f"downloading pretrained weights for {name!r} failed ({type(err).__name__}: {err}). "
            "This machine may be offline: set `pretrained` to a local .safetensors/.pth file "
            "of that model, or `pretrained: false`."
        ) from err
