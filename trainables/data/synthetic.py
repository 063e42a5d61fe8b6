"""Deterministic procedural generator of corrosion-like images: the embedded demo dataset.

Every image is a procedurally textured surface (brushed metal, paint, galvanised steel or
concrete) with surface features (paint marks and labels, some rust-coloured; rivets;
scratches), rust patches on positives only (blobs, drips, pitting, edge rust), translucent
overlays (grime, shadows, water stains), lighting changes and sensor noise. The mask holds
exactly the rust pixels, so positives have a non-empty mask and negatives an empty one.

Each sample draws from its own ``np.random.default_rng([seed, index])``, split into
independent streams, so an image does not depend on how many are generated, and the
negative rendering of an index is its positive rendering without the rust.

Example:
    >>> image, mask = render_sample(3, seed=0, image_size=64, positive=True)
    >>> image.shape, mask.shape, bool(mask.any())
    ((64, 64, 3), (64, 64), True)
"""

from __future__ import annotations

import json
import math
import os
import pathlib
import shutil
import uuid

import numpy as np
from PIL import Image

from corrotune.files import write_text
from corrotune.paths import cache_dir as _cache_dir

__all__ = [
    "GENERATOR_VERSION",
    "ensure_corrosion_dataset",
    "generate_corrosion_dataset",
    "render_sample",
]

GENERATOR_VERSION = 1
"""Version of the rendering; bump it whenever images change (it is part of the cache key)."""

_SPLITS = ("train", "val", "test")
_POSITIVE, _NEGATIVE = "corrosion", "no_corrosion"
_LABEL_STREAM = 0x1ABE1  # entropy word separating the label shuffle from the per-sample streams
_DEFAULTS = {
    "num_images": 600,
    "image_size": 128,
    "seed": 0,
    "positive_fraction": 0.5,
    "split": (0.7, 0.15, 0.15),
}

# RGB colours in [0, 1].
_RUST = np.array(
    [
        [0.78, 0.40, 0.13],  # orange
        [0.56, 0.24, 0.12],  # red-brown
        [0.34, 0.19, 0.10],  # dark brown
        [0.72, 0.54, 0.22],  # yellowish ochre
    ],
    dtype=np.float32,
)
_PAINT = np.array(
    [
        [0.20, 0.33, 0.58],  # blue
        [0.24, 0.47, 0.30],  # green
        [0.85, 0.74, 0.20],  # safety yellow
        [0.86, 0.86, 0.83],  # white
        [0.52, 0.55, 0.58],  # grey
        [0.15, 0.17, 0.20],  # black
        [0.55, 0.70, 0.80],  # light blue
        [0.80, 0.77, 0.66],  # cream
    ],
    dtype=np.float32,
)
_RUST_LIKE_PAINT = np.array(  # hard negatives
    [
        [0.68, 0.16, 0.12],  # red
        [0.88, 0.44, 0.12],  # orange
        [0.44, 0.27, 0.17],  # brown primer
        [0.52, 0.20, 0.16],  # oxide-red primer
    ],
    dtype=np.float32,
)
_MARK = np.array(
    [
        [0.86, 0.42, 0.12],  # orange
        [0.60, 0.25, 0.12],  # rust-brown
        [0.40, 0.22, 0.12],  # brown
        [0.74, 0.18, 0.12],  # red
        [0.92, 0.90, 0.86],  # white label
        [0.90, 0.80, 0.20],  # yellow label
    ],
    dtype=np.float32,
)
_RUST_LIKE_MARKS = 4  # the first entries of _MARK


# --------------------------------------------------------------------------- noise primitives


def _axis_lerp(size: int, cells: int, offset: float) -> tuple[np.ndarray, np.ndarray]:
    pos = (np.arange(size, dtype=np.float32) + 0.5) * (cells / size) + offset
    floor = np.floor(pos)
    t = pos - floor
    return floor.astype(np.intp), t * t * (3.0 - 2.0 * t)


def _value_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Smooth noise in [0, 1]: a random lattice of ``cells`` per side, smoothstep-interpolated."""
    cells = max(1, min(cells, size))
    lattice = rng.random((cells + 2, cells + 2), dtype=np.float32)
    iy, ty = _axis_lerp(size, cells, rng.random())
    ix, tx = _axis_lerp(size, cells, rng.random())
    rows = lattice[iy] * (1.0 - ty)[:, None] + lattice[iy + 1] * ty[:, None]
    return rows[:, ix] * (1.0 - tx) + rows[:, ix + 1] * tx


def _fractal(rng: np.random.Generator, size: int, cells: int, octaves: int = 3) -> np.ndarray:
    """Sum of ``octaves`` value-noise layers (each twice as fine, half as strong); zero mean, unit std."""
    total = np.zeros((size, size), dtype=np.float32)
    for octave in range(octaves):
        total += _value_noise(rng, size, cells * 2**octave) * 0.5**octave
    return (total - total.mean()) / (total.std() + 1e-6)


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates (y, x) in [0, 1]."""
    axis = (np.arange(size, dtype=np.float32) + 0.5) / size
    return axis[:, None], axis[None, :]


def _point(rng: np.random.Generator, low: float, high: float) -> np.ndarray:
    """A random (y, x) point, float32 so that arithmetic with the float32 images stays float32."""
    return rng.uniform(low, high, 2).astype(np.float32)


def _direction(rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray, max_angle: float) -> np.ndarray:
    """Coordinate along a random direction with angle in [0, max_angle)."""
    angle = rng.uniform(0.0, max_angle)
    return yy * math.cos(angle) + xx * math.sin(angle)


def _top_area(field: np.ndarray, area: float) -> np.ndarray:
    """Boolean mask of the ``area`` fraction of pixels where ``field`` is highest (at least one)."""
    k = max(1, round(area * field.size))
    flat = field.ravel()
    return field >= np.partition(flat, flat.size - k)[flat.size - k]


def _blend(image: np.ndarray, colour: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    alpha = alpha[..., None]
    return image * (1.0 - alpha) + colour * alpha


def _segment_distance(yy: np.ndarray, xx: np.ndarray, p0: np.ndarray, p1: np.ndarray) -> np.ndarray:
    d = p1 - p0
    t = np.clip(((yy - p0[0]) * d[0] + (xx - p0[1]) * d[1]) / (d @ d + 1e-9), 0.0, 1.0)
    return np.hypot(yy - p0[0] - t * d[0], xx - p0[1] - t * d[1])


# --------------------------------------------------------------------------- backgrounds


def _brushed_metal(rng: np.random.Generator, size: int) -> np.ndarray:
    yy, xx = _grid(size)
    across = (_direction(rng, yy, xx, math.pi) + 1.0) * size  # coordinate across the brushing
    lines = rng.standard_normal(int(2.5 * size) + 2).astype(np.float32)
    lines = (lines + np.roll(lines, 1)) * 0.7  # streaks a pixel or two wide
    streaks = lines[across.astype(np.intp)] * (1.0 + 0.5 * _fractal(rng, size, 4, 2))
    value = (
        rng.uniform(0.42, 0.75)
        + rng.uniform(0.02, 0.05) * streaks
        + rng.uniform(0.02, 0.06) * _fractal(rng, size, 3)
    )
    return value[..., None] * (1.0 + rng.uniform(-0.04, 0.04, 3).astype(np.float32))


def _painted(rng: np.random.Generator, size: int) -> np.ndarray:
    palette = _RUST_LIKE_PAINT if rng.random() < 0.2 else _PAINT
    colour = palette[rng.integers(len(palette))] * rng.uniform(0.8, 1.1) + rng.normal(0.0, 0.03, 3)
    texture = 0.015 * _fractal(rng, size, 24, 2) + rng.uniform(0.01, 0.05) * _fractal(rng, size, 3)
    return colour.astype(np.float32) * (1.0 + texture)[..., None]


def _galvanised(rng: np.random.Generator, size: int) -> np.ndarray:
    levels = int(rng.integers(3, 7))
    spangle = np.floor(_value_noise(rng, size, int(rng.integers(6, 16))) * levels) / levels
    specks = (rng.random((size, size)) < 0.01).astype(np.float32)
    value = (
        rng.uniform(0.5, 0.72)
        + rng.uniform(0.05, 0.12) * (spangle - 0.5)
        + 0.08 * specks
        + 0.03 * _fractal(rng, size, 4)
    )
    return value[..., None] * np.array([0.97, 1.0, 1.04], dtype=np.float32)


def _concrete(rng: np.random.Generator, size: int) -> np.ndarray:
    pores = (rng.random((size, size)) < 0.02).astype(np.float32)
    value = (
        rng.uniform(0.42, 0.66)
        + 0.05 * _fractal(rng, size, 5, 4)
        + 0.035 * rng.standard_normal((size, size), dtype=np.float32)
        - 0.15 * pores
    )
    return value[..., None] * np.array([1.02, 1.0, 0.95], dtype=np.float32)


_BACKGROUNDS = (_brushed_metal, _painted, _galvanised, _concrete)


# --------------------------------------------------------------------------- surface features


def _paint_marks(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """Flat, crisp-edged marks and labels, half of them rust-coloured (hard negatives)."""
    yy, xx = _grid(image.shape[0])
    for _ in range(rng.integers(1, 3)):
        rust_like = rng.random() < 0.5
        colour = _MARK[rng.integers(_RUST_LIKE_MARKS) if rust_like else rng.integers(_RUST_LIKE_MARKS, len(_MARK))]
        cy, cx = _point(rng, 0.15, 0.85)
        hy, hx = _point(rng, 0.04, 0.2)
        kind = rng.integers(3)
        if kind == 0:  # label / rectangle
            shape = (np.abs(yy - cy) < hy) & (np.abs(xx - cx) < hx)
        elif kind == 1:  # spot / ellipse
            shape = ((yy - cy) / hy) ** 2 + ((xx - cx) / hx) ** 2 < 1.0
        else:  # sprayed stroke
            shape = _segment_distance(yy, xx, np.array([cy, cx]), _point(rng, 0.1, 0.9)) < hy / 3
        flat = colour * rng.uniform(0.85, 1.1) + 0.01 * rng.standard_normal(image.shape, dtype=np.float32)
        image = np.where(shape[..., None], flat, image)
    return image


def _rivets(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    yy, xx = _grid(image.shape[0])
    count = int(rng.integers(1, 6))
    start, step = _point(rng, 0.1, 0.9), _point(rng, -0.2, 0.2)
    radius = rng.uniform(0.025, 0.05)
    grey = rng.uniform(0.35, 0.7)
    for k in range(count):
        cy, cx = start + k * step
        dy, dx = (yy - cy) / radius, (xx - cx) / radius
        r2 = dy**2 + dx**2
        shaded = grey - 0.18 * (dy + dx) - 0.25 * (r2 > 0.7).astype(np.float32)  # lit from top-left, dark rim
        image = np.where((r2 < 1.0)[..., None], np.broadcast_to(shaded[..., None], image.shape), image)
    return image


def _scratches(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    size = image.shape[0]
    yy, xx = _grid(size)
    for _ in range(rng.integers(1, 6)):
        p0 = _point(rng, 0.0, 1.0)
        p1 = p0 + _point(rng, -0.5, 0.5)
        line = np.clip(1.0 - _segment_distance(yy, xx, p0, p1) * size / rng.uniform(0.6, 1.2), 0.0, 1.0)
        tone = np.float32(0.85 if rng.random() < 0.6 else 0.15)
        image = _blend(image, tone, line * rng.uniform(0.3, 0.8))
    return image


# --------------------------------------------------------------------------- rust


def _blob_field(rng: np.random.Generator, size: int, area: float) -> np.ndarray:
    """An irregular blob: negative distance to a centre, roughened by low-frequency noise."""
    yy, xx = _grid(size)
    cy, cx = _point(rng, 0.1, 0.9)
    radius = math.sqrt(area / math.pi)
    aspect = rng.uniform(0.6, 1.6)
    dist = np.hypot((yy - cy) * aspect, (xx - cx) / aspect) / radius
    return -dist + rng.uniform(0.4, 1.0) * _fractal(rng, size, int(rng.integers(3, 9)))


def _drip_field(rng: np.random.Generator, size: int, area: float) -> np.ndarray:
    """Runs dripping downward from a source spot."""
    yy, xx = _grid(size)
    top, cx = rng.uniform(0.05, 0.55), rng.uniform(0.15, 0.85)
    width = math.sqrt(area) * 0.15
    field = -np.hypot(yy - top, xx - cx) / (2.5 * width)
    for _ in range(rng.integers(2, 7)):
        x0 = cx + rng.normal(0.0, 0.06)
        length = rng.uniform(0.15, 0.6)
        wiggle = rng.uniform(0.0, 0.02) * np.sin(rng.uniform(5, 20) * yy + rng.uniform(0, 2 * math.pi))
        below = np.clip((yy - top) / length, 0.0, 1.0)
        overshoot = np.maximum(top - yy, 0.0) + np.maximum(yy - top - length, 0.0)
        dist = np.hypot(xx - x0 - wiggle, overshoot)
        field = np.maximum(field, -dist / (width * (1.0 - 0.7 * below)))
    return field + 0.1 * _fractal(rng, size, 16, 1)


def _pitting_field(rng: np.random.Generator, size: int, area: float) -> np.ndarray:
    """A cluster of small round pits."""
    yy, xx = _grid(size)
    count = int(rng.integers(8, 40))
    spread = rng.uniform(0.05, 0.2)
    centres = rng.normal(_point(rng, 0.15, 0.85), spread, (count, 2)).astype(np.float32)
    radii = rng.uniform(0.5, 1.5, count).astype(np.float32)[:, None, None]
    dist = np.hypot(yy[None] - centres[:, 0, None, None], xx[None] - centres[:, 1, None, None])
    return (radii - dist / spread * 4.0).max(axis=0) + 0.1 * _fractal(rng, size, 16, 1)


def _edge_field(rng: np.random.Generator, size: int, area: float) -> np.ndarray:
    """Rust creeping in from one image border."""
    yy, xx = _grid(size)
    depth = (yy, 1.0 - yy, xx, 1.0 - xx)[rng.integers(4)]
    roughness = rng.uniform(0.8, 1.5) * _fractal(rng, size, int(rng.integers(3, 8)))
    return -depth / rng.uniform(0.06, 0.15) + roughness


_PATCHES = (_blob_field, _drip_field, _pitting_field, _edge_field)
_LARGE_PATCHES = (_blob_field, _edge_field)  # drips and pits stay small


def _rust_mask(rng: np.random.Generator, size: int) -> np.ndarray:
    """Union of 1-3 patches; cover log-uniform in 5%..40% of the image, or 1%..3% for 12% of samples."""
    low, high = (0.01, 0.03) if rng.random() < 0.12 else (0.05, 0.4)
    cover = math.exp(rng.uniform(math.log(low), math.log(high)))
    patches = int(rng.choice([1, 2, 3], p=[0.6, 0.3, 0.1]))
    mask = np.zeros((size, size), dtype=bool)
    for share in rng.dirichlet(np.full(patches, 2.0)):
        area = cover * share
        shapes = _LARGE_PATCHES if area > 0.12 else _PATCHES
        mask |= _top_area(shapes[rng.integers(len(shapes))](rng, size, area), area)
    return mask


def _rust_texture(rng: np.random.Generator, size: int) -> np.ndarray:
    """Mottled rust colours with flaky high-frequency texture and dark pits."""
    c1, c2 = _RUST[rng.integers(len(_RUST), size=2)] * rng.uniform(0.8, 1.15, (2, 1)).astype(np.float32)
    mix = np.clip(0.5 + 0.4 * _fractal(rng, size, int(rng.integers(3, 10))), 0.0, 1.0)[..., None]
    flakes = (
        1.0
        + rng.uniform(0.08, 0.22) * rng.standard_normal((size, size), dtype=np.float32)
        + 0.12 * _fractal(rng, size, 24, 2)
    )
    pits = np.where(rng.random((size, size)) < 0.03, np.float32(0.55), np.float32(1.0))
    return (c1 * (1.0 - mix) + c2 * mix) * (flakes * pits)[..., None]


def _add_rust(rng: np.random.Generator, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    size = image.shape[0]
    mask = _rust_mask(rng, size)
    opacity = rng.uniform(0.8, 1.0) * np.clip(1.0 + 0.2 * _fractal(rng, size, 6), 0.5, 1.0)
    return _blend(image, _rust_texture(rng, size), mask * opacity), mask


# --------------------------------------------------------------------------- overlays and lighting


def _grime(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """Desaturated brownish-grey dirt spots with soft edges."""
    size = image.shape[0]
    for _ in range(rng.integers(1, 4)):
        area = rng.uniform(0.01, 0.1)
        soft = np.clip(_blob_field(rng, size, area) + 1.0, 0.0, 1.0)
        colour = np.array([0.36, 0.33, 0.29], dtype=np.float32) * rng.uniform(0.7, 1.2)
        image = _blend(image, colour, soft * rng.uniform(0.25, 0.6))
    return image


def _shadow(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """A smooth dark region: a soft-edged half-plane with a wavy border."""
    size = image.shape[0]
    yy, xx = _grid(size)
    edge = _direction(rng, yy, xx, 2.0 * math.pi) - rng.uniform(-0.2, 0.9) + 0.05 * _fractal(rng, size, 2)
    shade = 0.5 + 0.5 * np.tanh(edge / rng.uniform(0.04, 0.2))  # a logistic step; no overflow
    return image * (1.0 - rng.uniform(0.2, 0.55) * shade)[..., None]


def _water_stain(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """A tide-mark ring with a faintly tinted inside."""
    size = image.shape[0]
    yy, xx = _grid(size)
    cy, cx = _point(rng, 0.2, 0.8)
    radius = rng.uniform(0.08, 0.3)
    dist = np.hypot(yy - cy, xx - cx) * (1.0 + 0.15 * _fractal(rng, size, 4, 2))
    ring = np.exp(-(((dist - radius) / (0.012 + 0.01 * rng.random())) ** 2))
    ring += 0.3 * (dist < radius).astype(np.float32)
    tint = np.array([0.95, 0.93, 0.86], dtype=np.float32) * rng.uniform(0.75, 0.9)
    return image * (1.0 - rng.uniform(0.1, 0.3) * ring[..., None] * (1.0 - tint))


def _lighting(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    yy, xx = _grid(image.shape[0])
    light = 1.0 + rng.uniform(-0.35, 0.35) * (_direction(rng, yy, xx, 2.0 * math.pi) - 0.5)
    if rng.random() < 0.5:
        light = light * (1.0 - rng.uniform(0.1, 0.5) * ((yy - 0.5) ** 2 + (xx - 0.5) ** 2) * 2.0)
    cast = np.clip(1.0 + rng.normal(0.0, 0.05, 3), 0.85, 1.15).astype(np.float32)
    contrast, brightness = rng.uniform(0.75, 1.25), rng.uniform(0.7, 1.25)
    return ((image * light[..., None] - 0.5) * contrast + 0.5) * brightness * cast


def _blur3(image: np.ndarray) -> np.ndarray:
    """Separable [1, 2, 1] / 4 blur with edge padding."""
    padded = np.pad(image, ((1, 1), (1, 1), (0, 0)), mode="edge")
    rows = (padded[:-2] + 2.0 * padded[1:-1] + padded[2:]) * 0.25
    return (rows[:, :-2] + 2.0 * rows[:, 1:-1] + rows[:, 2:]) * 0.25


def _sensor(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    image = image + rng.uniform(0.005, 0.03) * rng.standard_normal(image.shape, dtype=np.float32)
    return _blur3(image) if rng.random() < 0.35 else image


# --------------------------------------------------------------------------- public API


def render_sample(index: int, *, seed: int = 0, image_size: int = 128, positive: bool) -> tuple[np.ndarray, np.ndarray]:
    """Renders one sample, reproducibly from ``(seed, index)`` alone.

    Background, surface features, overlays, lighting and noise come from streams that do not
    depend on ``positive``: the negative rendering of an index is its positive rendering
    without the rust (outside the rust, up to one pixel of blur, the two are identical).

    Args:
        index: Sample index (>= 0).
        seed: Dataset seed (>= 0).
        image_size: Side of the square image in pixels (>= 16).
        positive: Whether to draw rust.

    Returns:
        ``(image, mask)``: image ``uint8 (H, W, 3)``; mask ``uint8 (H, W)`` with values {0, 255},
        exactly the rust pixels (non-empty iff ``positive``).

    Raises:
        ValueError: ``index`` or ``seed`` is negative, or ``image_size`` < 16.
    """
    if index < 0 or seed < 0:
        raise ValueError(f"index and seed must be >= 0, got index={index}, seed={seed}")
    if image_size < 16:
        raise ValueError(f"image_size must be >= 16, got {image_size}")
    background, surface, rust, overlay, light = np.random.default_rng([seed, index]).spawn(5)

    image = _BACKGROUNDS[background.integers(len(_BACKGROUNDS))](background, image_size)
    for feature, probability in ((_paint_marks, 0.3), (_rivets, 0.3), (_scratches, 0.4)):
        if surface.random() < probability:
            image = feature(surface, image)
    mask = np.zeros((image_size, image_size), dtype=bool)
    if positive:
        image, mask = _add_rust(rust, image)
    for effect, probability in ((_grime, 0.4), (_shadow, 0.35), (_water_stain, 0.25)):
        if overlay.random() < probability:
            image = effect(overlay, image)
    image = _sensor(light, _lighting(light, image))
    pixels = (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return pixels, mask.astype(np.uint8) * 255


def _checked_params(
    num_images: int, image_size: int, seed: int, positive_fraction: float, split: tuple[float, ...]
) -> dict:
    """Validates the dataset parameters and returns them as plain Python values.

    Raises:
        ValueError: a parameter is out of range, or a split would get no image of a class.
    """
    for name, value in (("num_images", num_images), ("image_size", image_size), ("seed", seed)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise ValueError(f"{name} must be an integer, got {value!r}")
    if num_images < 10:
        raise ValueError(f"num_images must be >= 10, got {num_images}")
    if image_size < 16:
        raise ValueError(f"image_size must be >= 16, got {image_size}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    if not 0.0 < positive_fraction < 1.0:
        raise ValueError(f"positive_fraction must be in (0, 1), got {positive_fraction}")
    split = tuple(float(part) for part in split)
    if len(split) != 3 or any(not part > 0.0 for part in split) or abs(sum(split) - 1.0) > 1e-6:
        raise ValueError(f"split must be three ratios > 0 (train, val, test) summing to 1, got {list(split)}")
    positives = round(num_images * positive_fraction)
    for class_name, size in ((_POSITIVE, positives), (_NEGATIVE, num_images - positives)):
        counts = _split_counts(size, split)
        if min(counts) == 0:
            raise ValueError(
                f"split {list(split)} leaves a split without {class_name} images ({size} {class_name} images "
                f"-> {dict(zip(_SPLITS, counts))}); use more images, a positive_fraction nearer 0.5 or larger ratios"
            )
    return {
        "num_images": int(num_images),
        "image_size": int(image_size),
        "seed": int(seed),
        "positive_fraction": float(positive_fraction),
        "split": split,
    }


def _split_counts(n: int, split: tuple[float, ...]) -> list[int]:
    """Per-split counts from the ratios, largest-remainder rounded so they sum to ``n``."""
    exact = [n * part for part in split]
    counts = [math.floor(x) for x in exact]
    by_remainder = sorted(range(len(split)), key=lambda i: (counts[i] - exact[i], i))
    for i in by_remainder[: n - sum(counts)]:
        counts[i] += 1
    return counts


def _assign(
    num_images: int, seed: int, positive_fraction: float, split: tuple[float, ...]
) -> tuple[np.ndarray, list[str]]:
    """Labels (bool, per index) and split names (per index), stratified by class."""
    rng = np.random.default_rng([_LABEL_STREAM, seed, num_images])
    labels = np.zeros(num_images, dtype=bool)
    labels[rng.permutation(num_images)[: round(num_images * positive_fraction)]] = True
    splits = [""] * num_images
    for label in (True, False):
        members = rng.permutation(np.flatnonzero(labels == label))
        counts = _split_counts(len(members), split)
        for name, part in zip(_SPLITS, np.split(members, np.cumsum(counts)[:-1])):
            for index in part:
                splits[index] = name
    return labels, splits


def _make_folders(root: pathlib.Path) -> None:
    for name in _SPLITS:
        for folder in (
            root / "classification" / name / _POSITIVE,
            root / "classification" / name / _NEGATIVE,
            root / "segmentation" / name / "images",
            root / "segmentation" / name / "masks",
        ):
            folder.mkdir(parents=True, exist_ok=True)


def _write_sample(
    root: pathlib.Path, split: str, class_name: str, file: str, image: np.ndarray, mask: np.ndarray
) -> None:
    """Writes image and mask once; the classification copy is a hard link (a copy where linking fails)."""
    image_path = root / "segmentation" / split / "images" / file
    Image.fromarray(image).save(image_path, compress_level=1)  # noisy pixels: higher levels gain ~10%
    Image.fromarray(mask).save(root / "segmentation" / split / "masks" / file, compress_level=1)
    link = root / "classification" / split / class_name / file
    link.unlink(missing_ok=True)
    try:
        os.link(image_path, link)
    except OSError:
        shutil.copyfile(image_path, link)


def generate_corrosion_dataset(
    root: str | os.PathLike,
    *,
    num_images: int = 600,
    image_size: int = 128,
    seed: int = 0,
    positive_fraction: float = 0.5,
    split: tuple[float, float, float] = (0.7, 0.15, 0.15),
) -> pathlib.Path:
    """Writes the dataset under ``root`` and returns ``root``.

    Layout (PNG, named ``img_XXXXX.png`` by global index)::

        classification/{train,val,test}/{corrosion,no_corrosion}/img_XXXXX.png
        segmentation/{train,val,test}/images/img_XXXXX.png
        segmentation/{train,val,test}/masks/img_XXXXX.png   # 0/255, single channel
        dataset.json   # version, params, counts, mean mask cover; written last

    Classification images are hard links to the segmentation images (copies where linking
    fails). Exactly ``round(num_images * positive_fraction)`` images are positive; the split
    is seeded and stratified by class.

    Args:
        root: Output folder (created if missing).
        num_images: Number of images (>= 10).
        image_size: Side of the square images in pixels (>= 16).
        seed: Seed of rendering, labels and split (>= 0).
        positive_fraction: Fraction of images with corrosion, in (0, 1).
        split: Train/val/test ratios (> 0, summing to 1).

    Returns:
        ``root`` as a path.

    Raises:
        ValueError: invalid parameters, or a split that would get no image of a class.
    """
    params = _checked_params(num_images, image_size, seed, positive_fraction, split)
    num_images, image_size, seed, positive_fraction, split = params.values()
    labels, splits = _assign(num_images, seed, positive_fraction, split)
    root = pathlib.Path(root)
    (root / "dataset.json").unlink(missing_ok=True)  # the folder is complete again only at the end
    _make_folders(root)

    counts = {name: {_POSITIVE: 0, _NEGATIVE: 0} for name in _SPLITS}
    covers: dict[str, list[float]] = {name: [] for name in _SPLITS}
    for index, (positive, name) in enumerate(zip(labels.tolist(), splits)):
        image, mask = render_sample(index, seed=seed, image_size=image_size, positive=positive)
        class_name = _POSITIVE if positive else _NEGATIVE
        _write_sample(root, name, class_name, f"img_{index:05d}.png", image, mask)
        counts[name][class_name] += 1
        if positive:
            covers[name].append(np.count_nonzero(mask) / mask.size)

    manifest = {
        "generator_version": GENERATOR_VERSION,
        "params": params,
        "classes": [_NEGATIVE, _POSITIVE],
        "counts": counts,
        "mean_mask_cover_positive": float(np.mean([c for name in _SPLITS for c in covers[name]])),
        "mean_mask_cover_positive_per_split": {name: float(np.mean(covers[name])) for name in _SPLITS},
    }
    write_text(root / "dataset.json", json.dumps(manifest, indent=2) + "\n")
    return root


def _default_cache_dir() -> pathlib.Path:
    return _cache_dir("synthetic")


def _dataset_name(
    num_images: int, image_size: int, seed: int, positive_fraction: float, split: tuple[float, ...]
) -> str:
    ratios = "_".join(repr(part) for part in split)
    return f"corrosion-v{GENERATOR_VERSION}-n{num_images}-s{image_size}-seed{seed}-p{positive_fraction!r}-split{ratios}"


def _is_complete(path: pathlib.Path) -> bool:
    return (path / "dataset.json").is_file()


def _discard_incomplete(target: pathlib.Path) -> None:
    """Moves an incomplete ``target`` aside and deletes it (put back if it became complete meanwhile)."""
    trash = target.with_name(f".{target.name}.stale-{uuid.uuid4().hex}")
    try:
        os.rename(target, trash)
    except FileNotFoundError:
        return
    if _is_complete(trash):  # another process published between our check and the move
        try:
            os.rename(trash, target)
            return
        except OSError:
            pass  # yet another copy took its place; ours is redundant
    shutil.rmtree(trash, ignore_errors=True)


def _publish(staging: pathlib.Path, target: pathlib.Path) -> None:
    """Atomically renames ``staging`` to ``target``, unless a complete ``target`` already exists."""
    for _ in range(5):
        try:
            os.rename(staging, target)
            return
        except OSError:
            if _is_complete(target):
                return
            _discard_incomplete(target)
    raise RuntimeError(f"could not move the generated dataset into {target}")


def ensure_corrosion_dataset(cache_dir: str | os.PathLike | None = None, **params) -> pathlib.Path:
    """Returns the dataset directory for these params, generating it once (cached).

    The directory ``<cache_dir>/corrosion-v<version>-n..-s..-seed..-p..-split..`` encodes every
    parameter and ``GENERATOR_VERSION``. It counts as complete only when it holds
    ``dataset.json``. Generation goes to a unique hidden sibling that is renamed into place, so
    concurrent callers (threads or processes) all get the same complete directory; an
    incomplete directory left at the target is replaced.

    Args:
        cache_dir: Cache root; default ``$CORROTUNE_CACHE_DIR/synthetic``, else
            ``~/.cache/corrotune/synthetic``.
        **params: Keyword arguments of :func:`generate_corrosion_dataset` (``num_images``,
            ``image_size``, ``seed``, ``positive_fraction``, ``split``); missing ones take its
            defaults.

    Returns:
        The complete dataset directory.

    Raises:
        TypeError: an unknown parameter name.
        ValueError: invalid parameter values.
    """
    unknown = sorted(set(params) - set(_DEFAULTS))
    if unknown:
        raise TypeError(f"unknown synthetic dataset parameter(s) {unknown}; expected some of {sorted(_DEFAULTS)}")
    values = _checked_params(**{**_DEFAULTS, **params})
    cache_dir = pathlib.Path(cache_dir if cache_dir is not None else _default_cache_dir()).expanduser()
    target = cache_dir / _dataset_name(**values)
    if _is_complete(target):
        return target

    cache_dir.mkdir(parents=True, exist_ok=True)
    staging = cache_dir / f".{target.name}.tmp-{uuid.uuid4().hex}"
    staging.mkdir()  # unlike tempfile.mkdtemp, honours the umask (the cache may be shared)
    try:
        generate_corrosion_dataset(staging, **values)
        _publish(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
