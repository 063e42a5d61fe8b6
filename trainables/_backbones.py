"""Creates timm backbones, with pretrained weights from the hub or a local file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Union

from torch import nn

__all__ = ["PretrainedWeightsError", "create_backbone"]


class PretrainedWeightsError(RuntimeError):
    """Pretrained weights could not be loaded (offline hub, missing or bad local file)."""


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

    if not timm.is_model(name):
        close = timm.list_models(f"*{name.split('_')[0]}*")[:10]
        raise KeyError(f"Unknown timm backbone {name!r}. Close names: {', '.join(close) or '(none)'}")
    kwargs = dict(num_classes=0, global_pool="")
    if isinstance(pretrained, str):
        path = Path(pretrained).expanduser()
        if not path.is_file():
            raise PretrainedWeightsError(f"pretrained weights file {str(path)!r} does not exist")
        try:
            return timm.create_model(name, pretrained=True, pretrained_cfg_overlay={"file": str(path)}, **kwargs)
        except Exception as err:  # timm raises several types for a bad file
            raise PretrainedWeightsError(f"could not load {str(path)!r} into {name!r}: {err}") from err
    if not pretrained:
        return timm.create_model(name, pretrained=False, **kwargs)
    os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", "10")
    os.environ.setdefault("HF_HUB_DOWNLOAD_TIMEOUT", "10")
    try:
        return timm.create_model(name, pretrained=True, **kwargs)
    except Exception as err:  # network, hub or cache errors
        raise PretrainedWeightsError(
            f"downloading pretrained weights for {name!r} failed ({type(err).__name__}: {err}). "
            "This machine may be offline: set `pretrained` to a local .safetensors/.pth file "
            "of that model, or `pretrained: false`."
        ) from err
