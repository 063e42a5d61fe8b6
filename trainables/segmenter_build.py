"""Builds the segmenter's network (``smp.create_model``) and loss from a :class:`SegmenterConfig`."""

from __future__ import annotations

import difflib
from pathlib import Path

from torch import nn

from trainables._backbones import PretrainedWeightsError, _hub_unreachable, _load_local_weights
from trainables.segmenter_config import SegmenterConfig
from trainables.segmenter_losses import create_segmentation_loss

__all__ = ["build_loss", "build_model", "encoder_names", "num_outputs"]

_WEIGHT_FILE_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")


def num_outputs(num_classes: int) -> int:
    """One logit (sigmoid) for binary masks, K logits (softmax) for K > 2 classes."""
    return 1 if num_classes == 2 else num_classes


def encoder_names() -> list[str]:
    """smp's named encoders (``tu-<timm name>`` encoders come on top)."""
    import segmentation_models_pytorch as smp

    return list(smp.encoders.get_encoder_names())


def _check_encoder(name: str) -> None:
    if name.startswith("tu-"):
        import timm

        if not timm.is_model(name[3:]):
            close = difflib.get_close_matches(name[3:], timm.list_models(), n=8, cutoff=0.6)
            raise KeyError(f"encoder {name!r}: {name[3:]!r} is not a timm model (close: {', '.join(close) or 'none'})")
        return
    names = encoder_names()
    if name not in names:
        close = difflib.get_close_matches(name, names, n=5, cutoff=0.6)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise KeyError(f"unknown encoder {name!r}; {hint}valid smp encoders: {', '.join(names)} (or tu-<timm model>)")


def _is_weights_file(value: str) -> bool:
    return value.endswith(_WEIGHT_FILE_SUFFIXES) or "/" in value or Path(value).expanduser().is_file()


def build_model(cfg: SegmenterConfig, num_classes: int) -> nn.Module:
    """``smp.create_model(arch, encoder, ...)`` with one logit (binary) or K logits.

    Raises:
        KeyError: unknown encoder (valid names listed).
        PretrainedWeightsError: ``imagenet`` weights offline, or a local file that does not fit.
        ValueError: ``image_size`` not divisible by the encoder's output stride.
    """
    import segmentation_models_pytorch as smp

    _check_encoder(cfg.encoder)
    weights = cfg.encoder_weights
    hub_weights = weights if weights is not None and not _is_weights_file(weights) else None
    if hub_weights is not None:
        unreachable = _hub_unreachable()
        if unreachable:  # huggingface_hub would retry with back-off for about a minute first
            raise PretrainedWeightsError(
                f"cannot download {hub_weights!r} weights for encoder {cfg.encoder!r}: {unreachable}. Set "
                "encoder_weights to a local .safetensors/.pth file of that encoder, or encoder_weights: null."
            )
    hub_arg = (True if cfg.encoder.startswith("tu-") else hub_weights) if hub_weights is not None else None
    try:
        model = smp.create_model(
            cfg.arch, encoder_name=cfg.encoder, encoder_weights=hub_arg, encoder_depth=cfg.encoder_depth,
            classes=num_outputs(num_classes), **_decoder_kwargs(cfg),
        )
    except KeyError as err:  # e.g. weights the encoder does not have: smp's message lists them
        raise KeyError(f"{cfg.arch}/{cfg.encoder}: {err.args[0] if err.args else err}") from None
    except PretrainedWeightsError:
        raise
    except OSError as err:  # hub download failed
        raise PretrainedWeightsError(
            f"downloading {hub_weights!r} weights for encoder {cfg.encoder!r} failed ({type(err).__name__}: {err}); "
            "set encoder_weights to a local .safetensors/.pth file, or null"
        ) from err
    if weights is not None and hub_weights is None:
        _load_local_weights(model.encoder, cfg.encoder, Path(weights).expanduser())
    stride = int(getattr(model.encoder, "output_stride", 2**cfg.encoder_depth))
    if cfg.image_size % stride:
        multiples = ", ".join(str(stride * k) for k in range(max(1, cfg.image_size // stride - 1), cfg.image_size // stride + 3))
        raise ValueError(
            f"image_size {cfg.image_size} is not divisible by the output stride {stride} of encoder "
            f"{cfg.encoder!r}; sizes that work: {multiples}, ..."
        )
    return model


def _decoder_kwargs(cfg: SegmenterConfig) -> dict:
    """U-Net-like decoders need one channel width per encoder stage used."""
    if cfg.arch in ("unet", "unetplusplus", "manet") and cfg.encoder_depth != 5:
        return {"decoder_channels": (256, 128, 64, 32, 16)[5 - cfg.encoder_depth :]}
    return {}


def build_loss(cfg: SegmenterConfig, num_classes: int) -> nn.Module:
    """The loss module, called as ``loss(logits, masks)`` with (N, H, W) class-index masks."""
    return create_segmentation_loss(
        cfg.loss, num_classes=num_classes, dice_weight=cfg.dice_weight, focal_alpha=cfg.focal_alpha,
        focal_gamma=cfg.focal_gamma, tversky_alpha=cfg.tversky_alpha, tversky_beta=cfg.tversky_beta,
    )
