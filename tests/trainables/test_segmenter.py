"""The segmenter's config, network, losses and metrics (P001)."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from trainables.segmenter_config import SEGMENTATION_LOSS_NAMES, SMP_ARCHS, SegmenterConfig

DATA = {"path": "synthetic:corrosion"}


def _cfg(**overrides) -> SegmenterConfig:
    return SegmenterConfig.model_validate({"data": DATA, "image_size": 32, "encoder": "resnet18", "encoder_depth": 3, **overrides})


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ---------------------------------------------------------------- config


def test_name_lists_match_the_libraries():
    import segmentation_models_pytorch as smp

    from trainables.segmenter_losses import SEGMENTATION_LOSSES

    assert set(SMP_ARCHS) == set(smp.MODEL_ARCHITECTURES_MAPPING)
    assert set(SEGMENTATION_LOSS_NAMES) == set(SEGMENTATION_LOSSES.names())


def test_defaults_are_p001s():
    cfg = SegmenterConfig(data=DATA)
    assert (cfg.arch, cfg.encoder, cfg.loss, cfg.encoder_weights) == ("unet", "mobilenet_v2", "dice", None)
    assert cfg.select_metric == "val/iou" and cfg.empty_mask_score == 1.0


@pytest.mark.parametrize(
    "overrides,message",
    [
        ({"arch": "unett"}, "valid: unet, unetplusplus"),
        ({"image_size": 100}, "not divisible by the encoder's output stride 32 .* e.g. 96, 128"),
        ({"image_size": 100, "encoder_depth": 3}, "output stride 8"),
        ({"num_classes": 3, "loss": "bce"}, "bce is for binary masks"),
        ({"num_classes": 2, "loss": "ce"}, "ce needs num_classes > 2"),
        ({"select_metric": "val/accuracy"}, "valid: val/iou"),
        ({"encoder_wieghts": None}, "encoder_wieghts"),
    ],
)
def test_bad_configs_are_rejected_with_the_fix(overrides, message):
    with pytest.raises(ValidationError, match=message):
        SegmenterConfig.model_validate({"data": DATA, **overrides})


# ---------------------------------------------------------------- network


@pytest.mark.parametrize("num_classes,channels", [(2, 1), (4, 4)])
@pytest.mark.parametrize("arch", ["unet", "fpn", "deeplabv3plus"])
def test_model_outputs_one_logit_for_binary_and_k_for_more(arch, num_classes, channels):
    from trainables.segmenter_build import build_model

    depth = 5 if arch != "unet" else 3
    model = build_model(_cfg(arch=arch, encoder_depth=depth), num_classes).eval()
    with torch.no_grad():
        out = model(torch.zeros(2, 3, 32, 32))
    assert out.shape == (2, channels, 32, 32)


def test_timm_universal_encoder():
    from trainables.segmenter_build import build_model

    model = build_model(_cfg(encoder="tu-resnet10t"), 2).eval()
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 1, 32, 32)


def test_unknown_encoder_lists_the_valid_names():
    from trainables.segmenter_build import build_model

    with pytest.raises(KeyError, match="did you mean mobilenet_v2.*valid smp encoders: .*resnet152.*tu-<timm model>"):
        build_model(_cfg(encoder="mobilenet_v3"), 2)
    with pytest.raises(KeyError, match="not a timm model"):
        build_model(_cfg(encoder="tu-not_a_model"), 2)


def test_imagenet_weights_offline_fail_fast_naming_the_local_file_option(monkeypatch):
    from trainables._backbones import PretrainedWeightsError
    from trainables.segmenter_build import build_model

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(PretrainedWeightsError, match="local .safetensors/.pth file"):
        build_model(_cfg(encoder_weights="imagenet"), 2)


def test_local_encoder_weights_are_loaded_and_a_wrong_file_is_refused(tmp_path):
    from trainables._backbones import PretrainedWeightsError
    from trainables.segmenter_build import build_model

    torch.manual_seed(1)
    source = build_model(_cfg(), 2)
    torch.save(source.encoder.state_dict(), tmp_path / "encoder.pth")
    torch.manual_seed(2)
    loaded = build_model(_cfg(encoder_weights=str(tmp_path / "encoder.pth")), 2)
    for key, value in source.encoder.state_dict().items():
        assert torch.equal(value, loaded.encoder.state_dict()[key]), key
    assert not torch.equal(source.decoder.state_dict()[next(iter(source.decoder.state_dict()))],
                           loaded.decoder.state_dict()[next(iter(loaded.decoder.state_dict()))])
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(PretrainedWeightsError, match="does not fit"):
        build_model(_cfg(encoder_weights=str(tmp_path / "other.pth")), 2)


def test_fine_tune_fraction_acts_on_the_encoder():
    from trainables.finetune import FineTuneSchedule, enter_phase
    from trainables.segmenter_build import build_model

    model = build_model(_cfg(), 2)
    phase = FineTuneSchedule.single(2, 1e-3, 0.0).phase_for_epoch(1)
    optimizer, _ = enter_phase(model, phase, "adam", 0.0, "constant", 0, 2, input_size=32)
    assert not any(p.requires_grad for p in model.encoder.parameters())
    assert all(p.requires_grad for p in model.decoder.parameters())
    assert sum(len(g["params"]) for g in optimizer.param_groups) == sum(1 for p in model.parameters() if p.requires_grad)
    phase = FineTuneSchedule.single(2, 1e-3, 1.0).phase_for_epoch(1)
    enter_phase(model, phase, "adam", 0.0, "constant", 0, 2, input_size=32)
    assert all(p.requires_grad for p in model.parameters())


# ---------------------------------------------------------------- losses


def _masks(num_classes: int) -> torch.Tensor:
    masks = torch.zeros(2, 8, 8, dtype=torch.long)
    masks[:, :4] = 1
    if num_classes > 2:
        masks[:, :, :2] = 2
    return masks


def _confident(masks: torch.Tensor, num_classes: int, right: bool) -> torch.Tensor:
    if num_classes == 2:
        sign = 1.0 if right else -1.0
        return (sign * (masks.float() * 20 - 10)).unsqueeze(1)  # (N, 1, H, W)
    target = masks if right else (masks + 1) % num_classes
    return torch.nn.functional.one_hot(target, num_classes).permute(0, 3, 1, 2).float() * 20 - 10


@pytest.mark.parametrize("num_classes", [2, 3])
@pytest.mark.parametrize("name", SEGMENTATION_LOSS_NAMES)
def test_confident_right_beats_confident_wrong(name, num_classes):
    from trainables.segmenter_losses import create_segmentation_loss

    if (name == "bce" and num_classes > 2) or (name == "ce" and num_classes == 2):
        with pytest.raises(ValueError, match="binary masks|more than two classes"):
            create_segmentation_loss(name, num_classes=num_classes)
        return
    loss = create_segmentation_loss(name, num_classes=num_classes)
    masks = _masks(num_classes)
    right, wrong = loss(_confident(masks, num_classes, True), masks), loss(_confident(masks, num_classes, False), masks)
    assert torch.isfinite(right) and float(right) < float(wrong)


def test_dice_bce_is_the_weighted_sum_of_its_parts():
    from trainables.segmenter_losses import create_segmentation_loss

    masks = _masks(2)
    logits = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    dice = create_segmentation_loss("dice", num_classes=2)(logits, masks)
    bce = create_segmentation_loss("bce", num_classes=2)(logits, masks)
    mixed = create_segmentation_loss("dice+bce", num_classes=2, dice_weight=0.3)(logits, masks)
    assert float(mixed) == pytest.approx(0.3 * float(dice) + 0.7 * float(bce), rel=1e-5)


# ---------------------------------------------------------------- metrics


def test_per_image_iou_states_its_empty_mask_convention():
    from trainables.metrics import per_image_scores, segmentation_metrics, segmentation_stats

    masks = torch.zeros(3, 2, 2, dtype=torch.long)
    logits = torch.full((3, 1, 2, 2), -10.0)
    masks[1, 0, :] = 1  # two true pixels
    logits[1, 0, 0, 0] = logits[1, 0, 1, 0] = 10.0  # one hit, one false positive, one miss: IoU 1/3
    logits[2, 0, 0, 0] = 10.0  # false positive on an empty mask: IoU 0
    default = segmentation_metrics(logits, masks, 2)
    strict = segmentation_metrics(logits, masks, 2, empty_mask_score=0.0)
    assert default["val/iou"] == pytest.approx((1 + 1 / 3 + 0) / 3)
    assert strict["val/iou"] == pytest.approx((0 + 1 / 3 + 0) / 3)
    assert default["val/iou_dataset"] == strict["val/iou_dataset"] == pytest.approx(1 / 4)  # tp 1, fp 2, fn 1
    assert default["val/pixel_accuracy"] == pytest.approx(9 / 12)
    f1, iou = per_image_scores(segmentation_stats(logits, masks, 2))
    assert iou.tolist() == pytest.approx([1.0, 1 / 3, 0.0]) and f1.tolist() == pytest.approx([1.0, 0.5, 0.0])
    assert float(iou.mean()) == pytest.approx(default["val/iou"]) and float(f1.mean()) == pytest.approx(default["val/f1"])


def test_multiclass_metrics_per_class_and_perfect_prediction():
    from trainables.metrics import segmentation_metrics

    masks = _masks(3)
    perfect = segmentation_metrics(_confident(masks, 3, True), masks, 3, class_names=("bg", "rust", "paint"), prefix="test")
    assert perfect["test/iou"] == perfect["test/pixel_accuracy"] == perfect["test/iou/rust"] == pytest.approx(1.0)
    wrong = segmentation_metrics(_confident(masks, 3, False), masks, 3, class_names=("bg", "rust", "paint"))
    assert wrong["val/iou"] == pytest.approx(0.0) and wrong["val/pixel_accuracy"] == pytest.approx(0.0)
    assert {"val/iou/bg", "val/f1/paint"} <= wrong.keys()


# ---------------------------------------------------------------- artifacts


def test_artifacts_per_image_csv_matches_the_metric_and_overlays_rank_by_iou(tmp_path):
    import csv

    from trainables.metrics import per_image_scores, segmentation_metrics, segmentation_stats
    from trainables.segmenter_artifacts import write_segmenter_artifacts
    from trainables.segmenter_build import build_model

    torch.manual_seed(0)
    model = build_model(_cfg(), 2)
    images = torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8)
    masks = torch.zeros(5, 32, 32, dtype=torch.long)
    masks[:, 8:20, 8:20] = 1
    masks[4] = 0  # one empty mask
    with torch.no_grad():
        logits = model.eval()(images.float() / 255)
    f1, iou = per_image_scores(segmentation_stats(logits, masks, 2), 0.0)
    written = write_segmenter_artifacts(
        tmp_path, model=model, images=images, masks=masks, logits=logits, paths=[f"/d/{i}.png" for i in range(5)],
        f1=f1, iou=iou, history=[{"epoch": 1, "train/loss": 1.0, "val/iou": 0.2}], num_classes=2, threshold=0.5,
        empty_mask_score=0.0, overlay_images=2, gradcam_images=2, normalization="imagenet",
    )
    assert {"test/per_image.csv", "curves.png", "overlay_best_00.png", "overlay_worst_01.png", "gradcam_001.png"} <= written.keys()
    rows = list(csv.DictReader((tmp_path / "test" / "per_image.csv").open()))
    assert [r["image"] for r in rows] == [f"/d/{i}.png" for i in range(5)] and rows[4]["true_pixels"] == "0"
    mean_iou = sum(float(r["iou"]) for r in rows) / 5
    assert mean_iou == pytest.approx(segmentation_metrics(logits, masks, 2, empty_mask_score=0.0)["val/iou"], abs=1e-5)
    assert all(r["empty_mask_score"] == "0.0" for r in rows)
