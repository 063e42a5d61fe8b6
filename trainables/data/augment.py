"""Seeded on-the-fly augmentation of uint8 image batches (and their masks), plus normalisation.

An :class:`Augmentation` is a sequence of ops applied to a whole batch at once: per-sample
random parameters are drawn from the ``torch.Generator`` passed in (never the global RNG), so
an epoch seeded as ``classifier.py`` does replays exactly on resume. Masks follow the geometric
ops only (flips, rotate, translate, zoom, with nearest sampling, so 0/255 or class-index values
survive); colour and noise ops never touch them. Consecutive rotate/translate/zoom ops are fused
into one affine resample per batch (one ``grid_sample``, bilinear for images); keep them adjacent,
since each separate run resamples again (more blur, and nearest masks drift). Images are held
as float32 in 0-255 between ops (clipped after each colour op), rounded back to uint8 at the end.

Specs are a preset name, ``None``/``"none"``, or a list of ops, each a name or a one-key mapping
of parameters; every op has a probability ``p`` of being applied to each sample.

Example:
    >>> aug = build_augmentation(["hflip", {"rotate": {"degrees": 15}}, {"brightness": {"delta": 0.15}}])
    >>> images = torch.zeros(4, 3, 32, 32, dtype=torch.uint8)
    >>> out, _ = aug(images, None, torch.Generator().manual_seed(0))
    >>> out.shape, out.dtype
    (torch.Size([4, 3, 32, 32]), torch.uint8)
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass
from typing import Any, Callable, ClassVar

import torch
import torch.nn.functional as F

from corrotune.registry import Registry, closest
from trainables.data.tensors import IMAGENET_MEAN, IMAGENET_STD, normalize

__all__ = [
    "AUGMENTATIONS",
    "CAFFE_BGR_MEAN",
    "NORMALIZATIONS",
    "Augmentation",
    "build_augmentation",
    "expand_offline",
    "normalize_batch",
]

AUGMENTATIONS: Registry[Callable[..., Any]] = Registry("augmentation")
"""Ops (dataclasses taking their parameters) and presets (functions taking none), by name."""

NORMALIZATIONS = ("imagenet", "unit", "caffe")
CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)
"""Per-channel means, in B, G, R order, that Keras' ``caffe`` preprocessing subtracts."""

_FILLS = ("zeros", "border", "reflection")  # grid_sample padding modes
_GRAY = (0.299, 0.587, 0.114)  # ITU-R 601 luma, as torchvision's rgb_to_grayscale
_GAMMA = 2.2


def _check(op: str, field: str, value: Any, low: float, high: float, *, high_open: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or math.isnan(value):
        raise ValueError(f"augmentation {op!r}: {field} must be a number, got {value!r}")
    if value < low or value > high or (high_open and value == high):
        bracket = ")" if high_open else "]"
        raise ValueError(f"augmentation {op!r}: {field}={value!r} is outside [{low}, {high}{bracket}")


def _uniform(generator: torch.Generator, n: int, bound: float) -> torch.Tensor:
    """``n`` draws from U(-bound, bound), float32 on the generator's device."""
    return (torch.rand(n, generator=generator, device=generator.device) * 2 - 1) * bound


@dataclass(frozen=True)
class _Op:
    """One op; ``p`` is the per-sample probability of applying it.

    Ops are called by :class:`Augmentation` on its float32 (B, 3, H, W) 0-255 working copy,
    which they may modify in place; only ``geometric`` ops touch masks.
    """

    name: ClassVar[str]
    geometric: ClassVar[bool] = False
    p: float = 1.0

    def __post_init__(self) -> None:
        _check(self.name, "p", self.p, 0.0, 1.0)

    def draw(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """Which of ``n`` samples the op applies to, (n,) bool."""
        return torch.rand(n, generator=generator, device=generator.device) < self.p

    def spec(self) -> dict[str, dict[str, Any]]:
        return {self.name: dataclasses.asdict(self)}


class _Flip(_Op):
    geometric: ClassVar[bool] = True
    dim: ClassVar[int]

    def __call__(self, images, masks, generator):
        on = self.draw(images.shape[0], generator).to(images.device).view(-1, 1, 1, 1)
        images = torch.where(on, images.flip(self.dim), images)
        if masks is not None:
            masks = torch.where(on, masks.flip(self.dim), masks)
        return images, masks


@AUGMENTATIONS.register("hflip")
@dataclass(frozen=True)
class HFlip(_Flip):
    """Mirrors left-right with probability ``p``."""

    name: ClassVar[str] = "hflip"
    dim: ClassVar[int] = -1
    p: float = 0.5


@AUGMENTATIONS.register("vflip")
@dataclass(frozen=True)
class VFlip(_Flip):
    """Mirrors top-bottom with probability ``p``."""

    name: ClassVar[str] = "vflip"
    dim: ClassVar[int] = -2
    p: float = 0.5


@dataclass(frozen=True)
class _Affine(_Op):
    """Rotate / translate / zoom: each yields per-sample inverse matrices, fused and resampled once.

    ``fill`` is the grid_sample padding for uncovered pixels: ``zeros`` (black), ``border``
    (Keras ``fill_mode="nearest"``) or ``reflection`` (Keras preprocessing layers' default).
    Masks are padded the same way, so they stay consistent with the image.
    """

    geometric: ClassVar[bool] = True
    fill: str = "reflection"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.fill not in _FILLS:
            raise ValueError(f"augmentation {self.name!r}: fill={self.fill!r} is not one of {list(_FILLS)}")

    def inverse(self, n: int, height: int, width: int, generator: torch.Generator) -> torch.Tensor:
        """(n, 3, 3) maps from output to input, in grid_sample's normalised [-1, 1] coordinates."""
        raise NotImplementedError


@AUGMENTATIONS.register("rotate")
@dataclass(frozen=True)
class Rotate(_Affine):
    """Rotates about the centre by an angle drawn from U(-degrees, degrees), aspect-correct."""

    name: ClassVar[str] = "rotate"
    degrees: float = 15.0

    def __post_init__(self) -> None:
        super().__post_init__()
        _check(self.name, "degrees", self.degrees, 0.0, 180.0)

    def inverse(self, n, height, width, generator):
        angle = torch.deg2rad(_uniform(generator, n, self.degrees))
        cos, sin = torch.cos(angle), torch.sin(angle)
        m = torch.eye(3).repeat(n, 1, 1)
        # Pixel-space rotation by -angle, conjugated by diag(W, H) to act on normalised coordinates.
        m[:, 0, 0], m[:, 0, 1] = cos, sin * height / width
        m[:, 1, 0], m[:, 1, 1] = -sin * width / height, cos
        return m


@AUGMENTATIONS.register("translate")
@dataclass(frozen=True)
class Translate(_Affine):
    """Shifts by U(-fraction, fraction) of the width and, independently, of the height."""

    name: ClassVar[str] = "translate"
    fraction: float = 0.1

    def __post_init__(self) -> None:
        super().__post_init__()
        _check(self.name, "fraction", self.fraction, 0.0, 1.0, high_open=True)

    def inverse(self, n, height, width, generator):
        m = torch.eye(3).repeat(n, 1, 1)
        m[:, 0, 2] = -2 * _uniform(generator, n, self.fraction)  # normalised span is 2
        m[:, 1, 2] = -2 * _uniform(generator, n, self.fraction)
        return m


@AUGMENTATIONS.register("zoom")
@dataclass(frozen=True)
class Zoom(_Affine):
    """Scales content about the centre by s ~ U(1 - range, 1 + range), isotropically (s > 1 zooms in)."""

    name: ClassVar[str] = "zoom"
    range: float = 0.1

    def __post_init__(self) -> None:
        super().__post_init__()
        _check(self.name, "range", self.range, 0.0, 1.0, high_open=True)

    def inverse(self, n, height, width, generator):
        inv_scale = 1.0 / (1.0 + _uniform(generator, n, self.range))
        m = torch.eye(3).repeat(n, 1, 1)
        m[:, 0, 0], m[:, 1, 1] = inv_scale, inv_scale
        return m


@dataclass(frozen=True)
class _Colour(_Op):
    """Per-sample ``factor`` drawn from U(-delta, delta) (0 where not applied); images only."""

    delta: float = 0.1
    max_delta: ClassVar[float] = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        _check(self.name, "delta", self.delta, 0.0, self.max_delta)

    def __call__(self, images, masks, generator):
        n = images.shape[0]
        on = self.draw(n, generator)
        factor = torch.where(on, _uniform(generator, n, self.delta), 0.0).to(images.device)
        return self.apply(images, factor).clamp_(0, 255), masks

    def apply(self, images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


def _per_sample(values: torch.Tensor) -> torch.Tensor:
    return values.view(-1, 1, 1, 1)  # (B,) → (B, 1, 1, 1)


def _luma(images: torch.Tensor) -> torch.Tensor:
    weights = torch.tensor(_GRAY, device=images.device).view(1, 3, 1, 1)
    return (images * weights).sum(1, keepdim=True)  # (B, 1, H, W)


@AUGMENTATIONS.register("brightness")
@dataclass(frozen=True)
class Brightness(_Colour):
    """Adds U(-delta, delta)·255 to every channel (Keras ``RandomBrightness``: additive)."""

    name: ClassVar[str] = "brightness"

    def apply(self, images, factor):
        return images.add_(_per_sample(factor) * 255.0)


@AUGMENTATIONS.register("contrast")
@dataclass(frozen=True)
class Contrast(_Colour):
    """Scales each channel about its own image mean by 1 + U(-delta, delta) (Keras ``RandomContrast``)."""

    name: ClassVar[str] = "contrast"

    def apply(self, images, factor):
        mean = images.mean(dim=(2, 3), keepdim=True)
        return images.sub_(mean).mul_(1 + _per_sample(factor)).add_(mean)


@AUGMENTATIONS.register("saturation")
@dataclass(frozen=True)
class Saturation(_Colour):
    """Blends with the luma image by 1 + U(-delta, delta), as torchvision's ``adjust_saturation``."""

    name: ClassVar[str] = "saturation"

    def apply(self, images, factor):
        gray = _luma(images)
        return images.sub_(gray).mul_(1 + _per_sample(factor)).add_(gray)


@AUGMENTATIONS.register("exposure")
@dataclass(frozen=True)
class Exposure(_Colour):
    """Multiplies linear light by a gain g = 1 + U(-delta, delta).

    Pixels are taken as gamma-2.2 encoded: decode (x/255)^2.2, multiply by g, re-encode. Before
    clipping that equals ``x · g^(1/2.2)``, which is what is computed. Unlike ``brightness``
    (additive), black stays black and bright pixels move most.
    """

    name: ClassVar[str] = "exposure"
    max_delta: ClassVar[float] = 0.99

    def apply(self, images, factor):
        return images.mul_(_per_sample(1 + factor).pow(1 / _GAMMA))


@AUGMENTATIONS.register("hue")
@dataclass(frozen=True)
class Hue(_Colour):
    """Rotates chroma by U(-delta, delta) of a full turn in YIQ space (luma kept; approximates an HSV hue shift)."""

    name: ClassVar[str] = "hue"
    max_delta: ClassVar[float] = 0.5

    def apply(self, images, factor):
        to_yiq = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
        angle = 2 * math.pi * factor.cpu()
        rot = torch.eye(3).repeat(len(angle), 1, 1)
        rot[:, 1, 1], rot[:, 1, 2], rot[:, 2, 1], rot[:, 2, 2] = angle.cos(), -angle.sin(), angle.sin(), angle.cos()
        matrix = (torch.linalg.inv(to_yiq) @ rot @ to_yiq).to(images.device)  # (B, 3, 3)
        return torch.einsum("bij,bjhw->bihw", matrix, images)


@AUGMENTATIONS.register("salt_pepper")
@dataclass(frozen=True)
class SaltPepper(_Op):
    """Sets each pixel (all channels) to 0 or 255, equally likely, with probability ``fraction``."""

    name: ClassVar[str] = "salt_pepper"
    fraction: float = 0.0022

    def __post_init__(self) -> None:
        super().__post_init__()
        _check(self.name, "fraction", self.fraction, 0.0, 1.0)

    def __call__(self, images, masks, generator):
        b, _, h, w = images.shape
        on = self.draw(b, generator).view(-1, 1, 1)
        hit = (torch.rand((b, h, w), generator=generator, device=generator.device) < self.fraction) & on
        sample, row, col = hit.nonzero(as_tuple=True)
        salt = torch.rand(len(sample), generator=generator, device=generator.device) < 0.5
        index = [i.to(images.device) for i in (sample, row, col)]
        images[index[0], :, index[1], index[2]] = (salt.float() * 255.0).to(images.device).unsqueeze(1)  # (n, 3)
        return images, masks


@AUGMENTATIONS.register("gaussian_noise")
@dataclass(frozen=True)
class GaussianNoise(_Op):
    """Adds N(0, std²) per pixel and channel, ``std`` in 0-255 units."""

    name: ClassVar[str] = "gaussian_noise"
    std: float = 8.0

    def __post_init__(self) -> None:
        super().__post_init__()
        _check(self.name, "std", self.std, 0.0, 255.0)

    def __call__(self, images, masks, generator):
        on = _per_sample(self.draw(images.shape[0], generator)).to(images.device)
        noise = torch.randn(images.shape, generator=generator, device=generator.device).to(images.device)
        return images.add_(noise.mul_(self.std * on)).clamp_(0, 255), masks


class Augmentation:
    """A sequence of ops applied to uint8 batches; build one with :func:`build_augmentation`.

    Args:
        ops: The ops, applied in order.
    """

    def __init__(self, ops: tuple[_Op, ...] | list[_Op] = ()) -> None:
        self.ops = tuple(ops)

    @property
    def spec(self) -> list[dict[str, dict[str, Any]]]:
        """The fully resolved op list (every parameter explicit), for configs and logs."""
        return [op.spec() for op in self.ops]

    def __repr__(self) -> str:
        return f"Augmentation({self.spec})"

    def __call__(
        self, images: torch.Tensor, masks: torch.Tensor | None, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Augments a batch; inputs are never modified in place.

        Args:
            images: (B, 3, H, W) uint8.
            masks: (B, 1, H, W) uint8 (0/255 or class indices), or None.
            generator: The only source of randomness; equal states give equal outputs.

        Returns:
            ``(images, masks)`` of the input shapes and dtypes; the inputs themselves when there
            are no ops. Leading flips run on the uint8 tensors (values are only moved), the
            rest on a float32 copy.
        """
        _check_batch(images, masks)
        ops = self.ops
        while ops and isinstance(ops[0], _Flip):  # leading flips: exact on uint8, no float round trip
            images, masks = ops[0](images, masks, generator)
            ops = ops[1:]
        if not ops:
            return images, masks
        x = images.float()  # (B, 3, H, W) in 0-255
        pending: list[_Affine] = []
        for op in ops:
            if isinstance(op, _Affine) and (not pending or pending[-1].fill == op.fill):
                pending.append(op)
                continue
            x, masks = _resample(pending, x, masks, generator)
            pending = [op] if isinstance(op, _Affine) else []
            if not pending:
                x, masks = op(x, masks, generator)
        x, masks = _resample(pending, x, masks, generator)
        return x.clamp_(0, 255).add_(0.5).to(torch.uint8), masks  # round half up, cheaper than round_()


def _check_batch(images: torch.Tensor, masks: torch.Tensor | None) -> None:
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be uint8 (B, 3, H, W), got {images.dtype} {tuple(images.shape)}")
    if masks is not None:
        b, _, h, w = images.shape
        if masks.dtype != torch.uint8 or tuple(masks.shape) != (b, 1, h, w):
            raise ValueError(f"masks must be uint8 {(b, 1, h, w)}, got {masks.dtype} {tuple(masks.shape)}")


def _affine_grid(theta: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``F.affine_grid(theta, ..., align_corners=False)`` by broadcasting (about 15× faster on CPU)."""
    xs = (torch.arange(width, device=theta.device) * 2 + 1) / width - 1  # pixel centres, normalised
    ys = ((torch.arange(height, device=theta.device) * 2 + 1) / height - 1).view(height, 1)
    t = theta.view(-1, 2, 3, 1, 1)
    grid = torch.empty(theta.shape[0], height, width, 2, device=theta.device)  # (n, H, W, xy)
    torch.add(t[:, 0, 0] * xs, t[:, 0, 1] * ys + t[:, 0, 2], out=grid[..., 0])
    torch.add(t[:, 1, 0] * xs, t[:, 1, 1] * ys + t[:, 1, 2], out=grid[..., 1])
    return grid


def _resample(ops: list[_Affine], images: torch.Tensor, masks: torch.Tensor | None, generator: torch.Generator):
    """Draws and composes the affine ops' matrices, then resamples only the samples that changed."""
    if not ops:
        return images, masks
    b, _, h, w = images.shape
    inverse, changed = torch.eye(3).repeat(b, 1, 1), torch.zeros(b, dtype=torch.bool)
    for op in ops:  # content moves by A1 then A2: output → input is A1⁻¹ A2⁻¹
        on = op.draw(b, generator).cpu()
        step = op.inverse(b, h, w, generator).cpu()
        inverse = inverse @ torch.where(on.view(-1, 1, 1), step, torch.eye(3))
        changed |= on
    index = changed.nonzero().squeeze(1).to(images.device)
    if len(index) == 0:
        return images, masks
    grid = _affine_grid(inverse[changed, :2, :].to(images.device), h, w)
    pad = ops[0].fill
    images = images.index_copy_(0, index, F.grid_sample(images[index], grid, "bilinear", pad, align_corners=False))
    if masks is not None:
        warped = F.grid_sample(masks[index].float(), grid, "nearest", pad, align_corners=False)
        masks = masks.index_copy(0, index, warped.to(torch.uint8))  # nearest: exact values
    return images, masks


# Presets: paper text followed, with [ours] marking ranges the paper does not give.


@AUGMENTATIONS.register("none")
def _none() -> Augmentation:
    """No augmentation."""
    return Augmentation()


@AUGMENTATIONS.register("p000")
def _p000() -> Augmentation:
    """P000: "random rotation, width/height shift, zoom, horizontal flip (no ranges given)".

    Ranges [ours]: ±15°, ±10 % shift per axis, zoom ±10 %, flip p=0.5; fill ``border`` [ours],
    as Keras ``ImageDataGenerator``'s default ``fill_mode="nearest"``.
    """
    fill = "border"
    return Augmentation(
        [Rotate(degrees=15, fill=fill), Translate(fraction=0.1, fill=fill), Zoom(range=0.1, fill=fill), HFlip()]
    )


@AUGMENTATIONS.register("p002")
def _p002() -> Augmentation:
    """P002 Table 4: "horizontal + vertical flip; saturation ±20%; brightness ±15%; exposure ±5%;
    noise on 0.22% of pixels" (train only).

    Flips p=0.5 each; the noise is salt-and-pepper [ours: Roboflow-style noise], every colour op on
    every image with a value drawn uniformly in its range [ours].
    """
    return Augmentation(
        [
            HFlip(),
            VFlip(),
            Saturation(delta=0.2),
            Brightness(delta=0.15),
            Exposure(delta=0.05),
            SaltPepper(fraction=0.0022),
        ]
    )


@AUGMENTATIONS.register("p003")
def _p003() -> Augmentation:
    """P003: "horizontal + vertical flip, random rotation, contrast, brightness, translation (no factors)".

    Ranges [ours]: flips p=0.5, ±15°, shift ±10 %, contrast ±10 %, brightness ±10 %; fill
    ``reflection`` (Keras preprocessing layers' default). Translation is moved next to rotation
    (the paper lists it last) so both share one resample; colour and geometry commute up to
    the fill.
    """
    return Augmentation(
        [HFlip(), VFlip(), Rotate(degrees=15), Translate(fraction=0.1), Contrast(delta=0.1), Brightness(delta=0.1)]
    )


@AUGMENTATIONS.register("p004")
def _p004() -> Augmentation:
    """P004: offline ×4 expansion by "rotation, noise, brightness" (see :func:`expand_offline`).

    Ranges [ours]: ±15° (fill ``reflection``), Gaussian noise std 8/255, brightness ±10 %, all
    applied to every copy.
    """
    return Augmentation([Rotate(degrees=15), GaussianNoise(std=8.0), Brightness(delta=0.1)])


def _build_one(name: Any, params: Any) -> list[_Op]:
    if not isinstance(name, str):
        raise ValueError(f"augmentation names are strings, got {name!r}")
    factory = AUGMENTATIONS.get(name)  # KeyError listing the valid names
    if not isinstance(params, dict):
        raise ValueError(f"augmentation {name!r}: parameters must be a mapping, got {params!r}")
    if dataclasses.is_dataclass(factory):
        valid = [f.name for f in dataclasses.fields(factory)]
        for key in params:
            if key not in valid:
                hint = closest(str(key), valid)
                hint_text = f" (did you mean {hint!r}?)" if hint else ""
                raise ValueError(f"augmentation {name!r}: unknown parameter {key!r}{hint_text}; valid: {valid}")
        return [factory(**params)]
    if params:
        raise ValueError(f"augmentation {name!r} is a preset and takes no parameters, got {params!r}")
    return list(factory().ops)


def build_augmentation(spec: str | list | None) -> Augmentation:
    """Builds an augmentation from a preset name, ``None``/``"none"``, or a list of ops.

    Args:
        spec: ``None``, a registered name (preset, or one op with its defaults), or a list whose
            items are names or one-key mappings ``{name: {param: value}}``; presets inside a list
            are spliced in.

    Raises:
        KeyError: an unknown name (the message lists the valid ones).
        ValueError: bad parameters or a malformed item; the message names the op.

    Example:
        >>> build_augmentation(["hflip", {"rotate": {"degrees": 15}}]).spec[1]
        {'rotate': {'p': 1.0, 'fill': 'reflection', 'degrees': 15}}
    """
    if spec is None:
        return Augmentation()
    if isinstance(spec, Augmentation):
        return spec
    items = [spec] if isinstance(spec, str) else spec
    if not isinstance(items, (list, tuple)):
        raise ValueError(f"an augmentation spec is None, a name or a list, got {spec!r}")
    ops: list[_Op] = []
    for item in items:
        if isinstance(item, dict):
            if len(item) != 1:
                raise ValueError(f"each augmentation mapping has exactly one key (the op), got {item!r}")
            ((name, params),) = item.items()
            ops += _build_one(name, {} if params is None else params)
        else:
            ops += _build_one(item, {})
    return Augmentation(ops)


def expand_offline(
    images: torch.Tensor,
    labels: torch.Tensor,
    k: int,
    augmentation: Augmentation | str | list,
    generator: torch.Generator,
    *,
    batch_size: int = 256,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Expands a set ×k as P004 does offline: the originals, then k-1 augmented copies of each.

    Apply it to the train split only, after splitting: P004 augments before splitting, which
    leaks augmented copies of test images into training.

    Args:
        images: (N, 3, H, W) uint8.
        labels: (N, ...) labels, repeated alongside.
        k: Expansion factor (1 returns the originals).
        augmentation: An :class:`Augmentation` or a spec for :func:`build_augmentation`.
        generator: Drives every copy.
        batch_size: Images augmented per call, to bound memory.

    Returns:
        ``(images, labels)`` of length k·N: rows ``[c·N, (c+1)·N)`` are copy ``c`` (0 = originals).
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}")
    if len(labels) != len(images):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    augment = build_augmentation(augmentation)
    copies = [images]
    for _ in range(k - 1):
        copies += [augment(images[i : i + batch_size], None, generator)[0] for i in range(0, len(images), batch_size)]
    return torch.cat(copies), labels.repeat(k, *([1] * (labels.ndim - 1)))


def normalize_batch(images_uint8: torch.Tensor, preset: str) -> torch.Tensor:
    """uint8 (B, 3, H, W) RGB → float32 input for a backbone.

    Args:
        images_uint8: (B, 3, H, W) uint8, RGB.
        preset: ``imagenet`` ((x/255 − mean)/std, PyTorch/timm), ``unit`` (x/255, as P002), or
            ``caffe`` (RGB→BGR and minus the BGR means 103.939, 116.779, 123.68, no scaling:
            Keras ResNet50/101 ``preprocess_input``).

    Raises:
        KeyError: an unknown preset (the message lists the valid ones).
    """
    if preset == "imagenet":
        return normalize(images_uint8, IMAGENET_MEAN, IMAGENET_STD)
    if preset == "unit":
        return images_uint8.float().div_(255.0)
    if preset == "caffe":
        mean = torch.tensor(CAFFE_BGR_MEAN, device=images_uint8.device).view(1, 3, 1, 1)
        return images_uint8.flip(1).float().sub_(mean)
    hint = closest(str(preset), NORMALIZATIONS)
    hint_text = f"; did you mean {hint!r}?" if hint else "."
    raise KeyError(f"Unknown normalization {preset!r}{hint_text} Valid names: {', '.join(NORMALIZATIONS)}")
