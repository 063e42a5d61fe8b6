"""Batch augmentation: determinism, masks that follow geometry, op semantics, specs, normalisation."""

from __future__ import annotations

import pytest
import torch

from trainables.data.augment import (
    AUGMENTATIONS,
    NORMALIZATIONS,
    Augmentation,
    build_augmentation,
    expand_offline,
    normalize_batch,
)
from trainables.data.augment import _affine_grid
from trainables.data.tensors import normalize

PRESETS = ("p000", "p002", "p003", "p004")
GEOMETRIC = (
    [{"hflip": {"p": 1.0}}],
    [{"vflip": {"p": 1.0}}],
    [{"rotate": {"degrees": 30}}],
    [{"rotate": {"degrees": 30, "fill": "zeros"}}],
    [{"translate": {"fraction": 0.2}}],
    [{"zoom": {"range": 0.25, "fill": "border"}}],
    ["hflip", "vflip", {"rotate": {"degrees": 45}}, {"translate": {"fraction": 0.15}}, {"zoom": {"range": 0.2}}],
)
OPS = [name for name in AUGMENTATIONS if isinstance(AUGMENTATIONS.get(name), type)]  # presets are functions
COLOUR = [name for name in OPS if not AUGMENTATIONS.get(name).geometric]
EVERY_OP = [
    "hflip",
    "vflip",
    "rotate",
    "translate",
    "zoom",
    "brightness",
    "contrast",
    "saturation",
    "exposure",
    "hue",
    "salt_pepper",
    "gaussian_noise",
]


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _random_images(n: int = 8, h: int = 48, w: int = 64, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, h, w), generator=_gen(seed), dtype=torch.uint8)


def _square_batch(n: int = 16, h: int = 48, w: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Black images whose red channel is the mask: an off-centre white rectangle."""
    masks = torch.zeros(n, 1, h, w, dtype=torch.uint8)
    masks[:, :, 10:30, 14:40] = 255
    images = torch.zeros(n, 3, h, w, dtype=torch.uint8)
    images[:, :1] = masks
    return images, masks


def _foreground(red: torch.Tensor) -> torch.Tensor:
    """Thresholds (B, 1, H, W) halfway between each sample's background and square levels.

    Colour ops move both levels (brightness, contrast); the midpoint keeps the edge decision
    where nearest sampling puts it.
    """
    levels = torch.quantile(red.flatten(1).float(), torch.tensor([0.1, 0.95]), dim=1)  # (2, B)
    return red.float() > levels.mean(0).view(-1, 1, 1, 1)


def _iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-sample IoU of two boolean (B, 1, H, W) tensors."""
    inter = (a & b).flatten(1).sum(1).float()
    union = (a | b).flatten(1).sum(1).float()
    return inter / union.clamp(min=1)


@pytest.mark.parametrize("spec", [*PRESETS, EVERY_OP], ids=[*PRESETS, "every_op"])
def test_same_seed_same_output_whatever_the_global_rng(spec):
    aug = build_augmentation(spec)
    images, masks = _square_batch()
    images = images | _random_images(16, 48, 64) // 4
    torch.manual_seed(123)
    first = aug(images, masks, _gen(7))
    torch.manual_seed(456)
    second = aug(images, masks, _gen(7))
    other = aug(images, masks, _gen(8))
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    assert not torch.equal(first[0], other[0])


@pytest.mark.parametrize("spec", [*GEOMETRIC, *PRESETS], ids=[*(f"geo{i}" for i in range(len(GEOMETRIC))), *PRESETS])
def test_masks_follow_the_geometry(spec):
    images, masks = _square_batch()
    out, out_masks = build_augmentation(spec)(images, masks, _gen(3))
    assert set(out_masks.unique().tolist()) <= {0, 255}
    assert _iou(_foreground(out[:, :1]), out_masks > 127).min() > 0.95
    assert not torch.equal(out_masks, masks)  # something moved


def test_rotation_is_aspect_correct_and_keeps_the_content():
    """On a non-square image a rotation about the centre keeps area and distance to the centre."""
    h, w = 48, 80
    masks = torch.zeros(32, 1, h, w, dtype=torch.uint8)
    masks[:, :, 14:22, 52:62] = 255  # centroid (17.5, 56.5) pixel centres
    images = masks.expand(-1, 3, -1, -1).clone()
    _, out_masks = build_augmentation([{"rotate": {"degrees": 90, "fill": "zeros"}}])(images, masks, _gen(0))

    def centre_distance(m):
        ys, xs = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
        weight = (m[:, 0] > 0).float()
        area = weight.flatten(1).sum(1)
        cy = (weight * ys).flatten(1).sum(1) / area
        cx = (weight * xs).flatten(1).sum(1) / area
        return area, torch.hypot(cy - h / 2, cx - w / 2)

    area_in, dist_in = centre_distance(masks)
    area_out, dist_out = centre_distance(out_masks)
    assert ((area_out - area_in).abs() / area_in).max() < 0.15
    assert (dist_out - dist_in).abs().max() < 1.5
    assert (out_masks != masks).flatten(1).any(1).float().mean() > 0.9


def test_fast_grid_matches_affine_grid():
    theta = torch.randn(5, 2, 3, generator=_gen())
    expected = torch.nn.functional.affine_grid(theta, [5, 1, 12, 20], align_corners=False)
    assert torch.allclose(_affine_grid(theta, 12, 20), expected, atol=1e-6)


def test_translate_moves_content_within_the_fraction():
    images, masks = _square_batch(32)
    _, out = build_augmentation([{"translate": {"fraction": 0.1, "fill": "zeros"}}])(images, masks, _gen(2))
    ys, xs = torch.meshgrid(torch.arange(48).float(), torch.arange(64).float(), indexing="ij")

    def centroid(m):
        weight = (m[:, 0] > 0).float()
        area = weight.flatten(1).sum(1)
        return (weight * ys).flatten(1).sum(1) / area, (weight * xs).flatten(1).sum(1) / area

    (cy0, cx0), (cy1, cx1) = centroid(masks), centroid(out)
    assert (cy1 - cy0).abs().max() <= 0.1 * 48 + 1 and (cx1 - cx0).abs().max() <= 0.1 * 64 + 1
    assert (cx1 - cx0).abs().max() > 1  # it does move


def test_zero_range_affine_is_exact_identity():
    images = _random_images()
    out, _ = build_augmentation([{"rotate": {"degrees": 0}}, {"translate": {"fraction": 0}}])(images, None, _gen())
    assert torch.equal(out, images)


def test_colour_ops_are_the_ones_expected():
    assert sorted(OPS) == sorted(EVERY_OP)
    colour = ["brightness", "contrast", "exposure", "gaussian_noise", "hue", "salt_pepper", "saturation"]
    assert sorted(COLOUR) == colour


@pytest.mark.parametrize("name", COLOUR)
def test_colour_ops_never_touch_masks(name):
    images = _random_images()
    masks = (_random_images(seed=2)[:, :1] > 127).to(torch.uint8) * 255
    out, out_masks = build_augmentation(name)(images, masks, _gen())
    assert torch.equal(out_masks, masks)
    assert not torch.equal(out, images)


@pytest.mark.parametrize("spec", [None, "none", []])
def test_identity_spec_returns_the_inputs(spec):
    images, masks = _square_batch(4)
    out, out_masks = build_augmentation(spec)(images, masks, _gen())
    assert out is images and out_masks is masks


@pytest.mark.parametrize("name", AUGMENTATIONS.names())
def test_every_registered_name_keeps_dtype_shape_and_inputs(name):
    images, masks = _random_images(4, 32, 40), _square_batch(4, 32, 40)[1]
    before_images, before_masks = images.clone(), masks.clone()
    out, out_masks = build_augmentation(name)(images, masks, _gen())
    assert out.dtype == torch.uint8 and out.shape == images.shape
    assert out_masks.dtype == torch.uint8 and out_masks.shape == masks.shape
    assert torch.equal(images, before_images) and torch.equal(masks, before_masks)
    out_none, no_masks = build_augmentation(name)(images, None, _gen())
    assert no_masks is None and torch.equal(out_none, out)  # masks do not change the random stream


def test_flips_with_p1_equal_torch_flip():
    images, masks = _random_images(), _square_batch(8)[1]
    out, out_masks = build_augmentation([{"hflip": {"p": 1.0}}])(images, masks, _gen())
    assert torch.equal(out, images.flip(-1)) and torch.equal(out_masks, masks.flip(-1))
    out, out_masks = build_augmentation([{"vflip": {"p": 1.0}}])(images, masks, _gen())
    assert torch.equal(out, images.flip(-2)) and torch.equal(out_masks, masks.flip(-2))


def test_salt_pepper_hits_the_requested_fraction_with_0_or_255():
    images = torch.full((32, 3, 64, 64), 128, dtype=torch.uint8)
    out, _ = build_augmentation([{"salt_pepper": {"fraction": 0.0022}}])(images, None, _gen())
    changed = (out != images).any(1)  # (B, H, W)
    assert changed.float().mean().item() == pytest.approx(0.0022, rel=0.3)
    values = out.permute(0, 2, 3, 1)[changed]  # (n, 3)
    assert ((values == 0).all(1) | (values == 255).all(1)).all()
    assert (values == 0).all(1).any() and (values == 255).all(1).any()


@pytest.mark.parametrize("delta", [0.05, 0.15])
def test_brightness_shifts_the_mean_within_delta(delta):
    images = torch.randint(64, 192, (64, 3, 32, 32), generator=_gen(4), dtype=torch.uint8)
    out, _ = build_augmentation([{"brightness": {"delta": delta}}])(images, None, _gen())
    shift = out.float().mean((1, 2, 3)) - images.float().mean((1, 2, 3))
    assert shift.abs().max() <= delta * 255 + 0.5
    assert shift.max() > delta * 255 / 2 and shift.min() < -delta * 255 / 2


def test_exposure_is_a_gain_bounded_by_delta():
    images = torch.randint(20, 200, (32, 3, 16, 16), generator=_gen(5), dtype=torch.uint8)
    out, _ = build_augmentation([{"exposure": {"delta": 0.05}}])(images, None, _gen())
    ratio = out.float().sum((1, 2, 3)) / images.float().sum((1, 2, 3))
    assert ratio.min() >= 0.95 ** (1 / 2.2) - 1e-3 and ratio.max() <= 1.05 ** (1 / 2.2) + 1e-3
    black = torch.zeros_like(images)
    assert torch.equal(build_augmentation("exposure")(black, None, _gen())[0], black)  # a gain keeps black black


def test_saturation_and_hue_keep_greys_grey():
    grey = torch.randint(0, 256, (8, 1, 16, 16), generator=_gen(6), dtype=torch.uint8).expand(-1, 3, -1, -1)
    for name in ("saturation", "hue"):
        out, _ = build_augmentation([{name: {"delta": 0.4}}])(grey, None, _gen())
        assert (out.int() - grey.int()).abs().max() <= 1


def test_probability_half_flips_about_half():
    images = _random_images(512, 8, 8)
    out, _ = build_augmentation([{"hflip": {"p": 0.5}}])(images, None, _gen())
    flipped = (out == images.flip(-1)).flatten(1).all(1)
    kept = (out == images).flatten(1).all(1)
    assert torch.all(flipped ^ kept)
    assert 0.4 < flipped.float().mean().item() < 0.6
    assert build_augmentation([{"rotate": {"p": 0.0}}])(images, None, _gen())[0].equal(images)


@pytest.mark.parametrize("name", PRESETS)
def test_presets_build_and_run(name):
    aug = build_augmentation(name)
    assert isinstance(aug, Augmentation) and len(aug.ops) >= 3
    images = _random_images(4, 32, 32)
    out, _ = aug(images, None, _gen())
    assert out.shape == images.shape and not torch.equal(out, images)


def test_p002_follows_table_4():
    spec = {next(iter(item)): item[next(iter(item))] for item in build_augmentation("p002").spec}
    assert set(spec) == {"hflip", "vflip", "saturation", "brightness", "exposure", "salt_pepper"}
    assert spec["saturation"]["delta"] == 0.2 and spec["brightness"]["delta"] == 0.15
    assert spec["exposure"]["delta"] == 0.05 and spec["salt_pepper"]["fraction"] == 0.0022


def test_custom_list_parses_and_resolves():
    aug = build_augmentation(["hflip", {"rotate": {"degrees": 15}}, {"brightness": {"delta": 0.15}}, "p004"])
    names = [next(iter(item)) for item in aug.spec]
    assert names == ["hflip", "rotate", "brightness", "rotate", "gaussian_noise", "brightness"]
    assert aug.spec[1] == {"rotate": {"p": 1.0, "fill": "reflection", "degrees": 15}}
    assert build_augmentation(aug.spec).spec == aug.spec  # the resolved spec rebuilds the same ops


def test_unknown_op_lists_valid_names():
    with pytest.raises(KeyError) as err:
        build_augmentation(["hflip", "rotat"])
    message = err.value.args[0]
    assert "did you mean 'rotate'?" in message
    assert all(name in message for name in [*EVERY_OP, *PRESETS])


@pytest.mark.parametrize(
    ("spec", "op"),
    [
        ([{"rotate": {"degrees": -5}}], "rotate"),
        ([{"rotate": {"deg": 5}}], "rotate"),
        ([{"hflip": {"p": 1.5}}], "hflip"),
        ([{"brightness": {"delta": "x"}}], "brightness"),
        ([{"translate": {"fraction": 1.0}}], "translate"),
        ([{"zoom": {"fill": "wrap"}}], "zoom"),
        ([{"salt_pepper": {"fraction": True}}], "salt_pepper"),
        ([{"gaussian_noise": {"std": float("nan")}}], "gaussian_noise"),
        ([{"hue": {"delta": 0.6}}], "hue"),
        ([{"p002": {"p": 0.5}}], "p002"),
        ([{"hflip": 0.5}], "hflip"),
    ],
)
def test_bad_params_name_the_op(spec, op):
    with pytest.raises(ValueError, match=repr(op)):
        build_augmentation(spec)


@pytest.mark.parametrize("spec", [[{"hflip": {}, "vflip": {}}], [3], 3.5])
def test_malformed_specs_are_refused(spec):
    with pytest.raises(ValueError):
        build_augmentation(spec)


def test_batches_of_the_wrong_type_are_refused():
    aug = build_augmentation("hflip")
    with pytest.raises(ValueError, match="uint8"):
        aug(torch.zeros(2, 3, 8, 8), None, _gen())
    with pytest.raises(ValueError, match="masks"):
        aug(torch.zeros(2, 3, 8, 8, dtype=torch.uint8), torch.zeros(2, 8, 8, dtype=torch.uint8), _gen())


def test_normalisations_on_known_pixels():
    pixel = torch.tensor([10, 128, 255], dtype=torch.uint8).view(1, 3, 1, 1)
    unit = normalize_batch(pixel, "unit")
    assert unit.dtype == torch.float32
    assert torch.allclose(unit.flatten(), torch.tensor([10 / 255, 128 / 255, 1.0]))
    imagenet = normalize_batch(pixel, "imagenet").flatten()
    expected = [(10 / 255 - 0.485) / 0.229, (128 / 255 - 0.456) / 0.224, (1.0 - 0.406) / 0.225]
    assert torch.allclose(imagenet, torch.tensor(expected))
    assert torch.equal(normalize_batch(pixel, "imagenet"), normalize(pixel))
    caffe = normalize_batch(pixel, "caffe")
    assert caffe.dtype == torch.float32
    assert torch.allclose(caffe.flatten(), torch.tensor([255 - 103.939, 128 - 116.779, 10 - 123.68]))
    assert set(NORMALIZATIONS) == {"imagenet", "unit", "caffe"}


def test_unknown_normalisation_lists_valid_names():
    with pytest.raises(KeyError) as err:
        normalize_batch(torch.zeros(1, 3, 2, 2, dtype=torch.uint8), "imagnet")
    assert "did you mean 'imagenet'?" in err.value.args[0] and "caffe" in err.value.args[0]


@pytest.mark.parametrize("k", [1, 4])
def test_expand_offline_keeps_originals_first(k):
    images, labels = _random_images(5, 16, 16), torch.tensor([0, 1, 2, 1, 0])
    out, out_labels = expand_offline(images, labels, k, "p004", _gen(), batch_size=2)
    assert len(out) == len(out_labels) == k * 5
    assert torch.equal(out[:5], images)
    assert torch.equal(out_labels, labels.repeat(k))
    for copy in range(1, k):
        assert not torch.equal(out[copy * 5 : (copy + 1) * 5], images)
    again, _ = expand_offline(images, labels, k, build_augmentation("p004"), _gen(), batch_size=2)
    assert torch.equal(out, again)


def test_expand_offline_refuses_bad_k():
    with pytest.raises(ValueError, match="k must be"):
        expand_offline(_random_images(2), torch.zeros(2), 0, "p004", _gen())



@pytest.mark.parametrize("spec", [["hflip", "vflip"], "p002", "p003", ["hflip", {"brightness": {"delta": 0.3}}]])
def test_leading_flips_on_uint8_equal_the_float_path(spec, monkeypatch):
    """Flips before any other op skip the float round trip; outputs and draws are unchanged."""
    from trainables.data import augment

    images = torch.randint(0, 256, (6, 3, 16, 24), generator=_gen(1), dtype=torch.uint8)
    masks = torch.randint(0, 2, (6, 1, 16, 24), generator=_gen(2), dtype=torch.uint8) * 255
    aug = build_augmentation(spec)
    fast, fast_masks = aug(images, masks, _gen())
    monkeypatch.setattr(augment, "_Flip", type("NotAFlip", (), {}))  # every op on the float copy, as before
    slow, slow_masks = aug(images, masks, _gen())
    assert torch.equal(fast, slow) and torch.equal(fast_masks, slow_masks)
    assert fast.dtype == torch.uint8 and fast_masks.dtype == torch.uint8
