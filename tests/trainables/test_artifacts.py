"""End-of-trial plots and Grad-CAM overlays, on CPU with tiny inputs."""

from __future__ import annotations

import logging
import re
from itertools import product

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from torchmetrics.functional import classification as tmf

from trainables import artifacts
from trainables.artifacts import (
    _PredictedClassTarget,
    cam_reshape_transform,
    compute_gradcam,
    confusion_counts,
    confusion_matrix_figure,
    curves_figure,
    find_target_layer,
    pr_figure,
    roc_figure,
    save_confusion_matrix,
    save_curves,
    save_gradcam,
    save_pr,
    save_roc,
    write_trial_artifacts,
)
from trainables.models.classifier import ClassifierNet

BINARY_TARGETS = np.array([0, 0, 1, 1, 0, 1, 1, 0, 1, 0])
BINARY_SCORES = np.array([0.1, 0.4, 0.35, 0.8, 0.2, 0.9, 0.6, 0.7, 0.55, 0.05])  # P(class 1), no ties
MULTI_TARGETS = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 2, 1, 0])
MULTI_SCORES = np.random.default_rng(0).dirichlet(np.ones(3), size=len(MULTI_TARGETS))
HISTORY = [
    {"epoch": 1, "train/loss": 0.9, "val/loss": 0.8, "val/accuracy": 0.5, "phase": "head"},
    {"epoch": 2, "train/loss": 0.7, "val/loss": 0.7, "val/accuracy": 0.6, "phase": "head"},
    {"epoch": 3, "train/loss": 0.5, "val/loss": 0.6, "val/accuracy": 0.7, "phase": "finetune"},
]
CNN_BACKBONES = ["resnet10t", "resnet18", "efficientnet_b0", "mobilenetv3_small_050", "convnext_atto", "densenet121"]
CASES = {
    "binary": (BINARY_TARGETS, BINARY_SCORES, ("clean", "corroded")),
    "multi": (MULTI_TARGETS, MULTI_SCORES, ("a", "b", "c")),
}


def _hand_auc(t: np.ndarray, s: np.ndarray) -> float:
    """Mann-Whitney: P(score of a positive > score of a negative), ties count half."""
    pos, neg = s[t == 1], s[t == 0]
    return float(np.mean([(p > n) + 0.5 * (p == n) for p, n in product(pos, neg)]))


def _hand_ap(t: np.ndarray, s: np.ndarray) -> float:
    """Mean over positives of the precision at their rank (scores without ties)."""
    ranked = t[np.argsort(-s)]
    hits = np.cumsum(ranked)
    return float(np.mean([hits[k] / (k + 1) for k in range(len(ranked)) if ranked[k]]))


def _legend(fig) -> list[str]:
    return [t.get_text() for t in fig.axes[0].get_legend().get_texts()]


def _area(labels: list[str], name: str, metric: str) -> float:
    match = next(re.search(rf"{metric} = ([0-9.]+)", s) for s in labels if s.startswith(f"{name} ("))
    return float(match.group(1))


def _png_ok(path) -> tuple[int, int]:
    assert path.is_file() and path.stat().st_size > 0
    with Image.open(path) as image:
        assert image.format == "PNG"
        image.verify()
        return image.size


def _net(name: str, num_outputs: int = 1, seed: int = 0) -> ClassifierNet:
    """A random ClassifierNet whose head is monotone in the (post-ReLU) features.

    With random head weights the Grad-CAM channel weights can all come out negative and the
    ReLU'd map all zero; non-negative weights and zero biases keep the map informative.
    """
    torch.manual_seed(seed)
    backbone = timm.create_model(name, pretrained=False, num_classes=0, global_pool="")
    model = ClassifierNet(
        backbone, backbone.num_features, num_outputs, feature_format=str(getattr(backbone, "output_fmt", "NCHW"))
    )
    with torch.no_grad():
        for layer in model.head.modules():
            if isinstance(layer, torch.nn.Linear):
                layer.weight.abs_()
                layer.bias.zero_()
    return model


def _squares(n: int, size: int = 64) -> torch.Tensor:
    """(n, 3, size, size) uint8: dark images, each with a bright square in another place."""
    images = torch.full((n, 3, size, size), 30, dtype=torch.uint8)
    half = size // 2
    for i in range(n):
        r, c = [(0, 0), (half, half), (0, half), (half, 0)][i % 4]
        images[i, i % 3, r : r + half, c : c + half] = 230
    return images


# --- confusion matrix -------------------------------------------------------------------------


def test_confusion_counts_rows_are_true_columns_predicted():
    counts = confusion_counts([0, 0, 1, 1, 1, 2], [0, 1, 1, 1, 2, 0], 3)
    assert counts.tolist() == [[1, 1, 0], [0, 2, 1], [1, 0, 0]]
    assert counts.sum() == 6
    with pytest.raises(ValueError, match="outside"):
        confusion_counts([0, 3], [0, 1], 3)


def test_confusion_matrix_figure_annotates_counts_and_row_percentages():
    targets = torch.tensor([0, 0, 0, 1, 1, 1, 1])
    preds = torch.tensor([0, 0, 1, 1, 1, 1, 0])
    fig = confusion_matrix_figure(targets, preds, ("clean", "corroded"))
    cells = [t.get_text() for t in fig.axes[0].texts]
    assert cells == ["2\n66.7%", "1\n33.3%", "1\n25.0%", "3\n75.0%"]
    assert "n=7" in fig.axes[0].get_title()


# --- ROC / PR ---------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("save", [save_confusion_matrix, save_roc, save_pr])
def test_save_functions_write_pngs(tmp_path, case, save):
    targets, scores, classes = CASES[case]
    second = scores.argmax(axis=1) if save is save_confusion_matrix and scores.ndim == 2 else scores
    if save is save_confusion_matrix and scores.ndim == 1:
        second = (scores >= 0.5).astype(int)
    path = save(targets, second, classes, tmp_path / "sub" / f"{save.__name__}.png")
    width, height = _png_ok(path)
    assert width > 100 and height > 100


def test_binary_roc_and_pr_report_hand_computed_areas():
    auc, ap = _hand_auc(BINARY_TARGETS, BINARY_SCORES), _hand_ap(BINARY_TARGETS, BINARY_SCORES)
    roc = _legend(roc_figure(BINARY_TARGETS, BINARY_SCORES, ("clean", "corroded")))
    pr = _legend(pr_figure(BINARY_TARGETS, BINARY_SCORES, ("clean", "corroded")))
    assert _area(roc, "corroded", "AUC") == pytest.approx(auc, abs=5e-4)
    assert _area(pr, "corroded", "AP") == pytest.approx(ap, abs=5e-4)
    assert f"{auc:.3f}" in roc_figure(BINARY_TARGETS, BINARY_SCORES, ("clean", "corroded")).axes[0].get_title()


def test_binary_positive_index_zero_scores_the_other_class():
    # scores are P(clean); clean (label 0) is the positive class
    p_clean = 1.0 - BINARY_SCORES
    positive = (BINARY_TARGETS == 0).astype(int)
    roc = _legend(roc_figure(BINARY_TARGETS, p_clean, ("clean", "corroded"), positive_index=0))
    pr = _legend(pr_figure(BINARY_TARGETS, p_clean, ("clean", "corroded"), positive_index=0))
    assert _area(roc, "clean", "AUC") == pytest.approx(_hand_auc(positive, p_clean), abs=5e-4)
    assert _area(pr, "clean", "AP") == pytest.approx(_hand_ap(positive, p_clean), abs=5e-4)


def test_multiclass_curves_one_vs_rest_plus_macro_match_torchmetrics():
    classes = ("a", "b", "c")
    roc = _legend(roc_figure(MULTI_TARGETS, MULTI_SCORES, classes))
    pr = _legend(pr_figure(MULTI_TARGETS, MULTI_SCORES, classes))
    assert [s.split(" (")[0] for s in roc] == ["chance", "a", "b", "c", "macro"]
    for k, name in enumerate(classes):
        t = (MULTI_TARGETS == k).astype(int)
        assert _area(roc, name, "AUC") == pytest.approx(_hand_auc(t, MULTI_SCORES[:, k]), abs=5e-4)
        assert _area(pr, name, "AP") == pytest.approx(_hand_ap(t, MULTI_SCORES[:, k]), abs=5e-4)
    probs, targets = torch.from_numpy(MULTI_SCORES).float(), torch.from_numpy(MULTI_TARGETS)
    macro_auc = tmf.multiclass_auroc(probs, targets, num_classes=3, average="macro")
    macro_ap = tmf.multiclass_average_precision(probs, targets, num_classes=3, average="macro")
    assert _area(roc, "macro", "AUC") == pytest.approx(float(macro_auc), abs=5e-4)
    assert _area(pr, "macro", "AP") == pytest.approx(float(macro_ap), abs=5e-4)


def test_single_class_targets_are_marked_not_available(tmp_path):
    labels = _legend(roc_figure(np.ones(4, dtype=int), np.array([0.2, 0.4, 0.6, 0.8]), ("clean", "corroded")))
    assert "corroded (AUC = n/a)" in labels
    _png_ok(save_pr(np.ones(4, dtype=int), np.array([0.2, 0.4, 0.6, 0.8]), ("clean", "corroded"), tmp_path / "pr.png"))


def test_wrong_score_shape_is_rejected():
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        roc_figure(MULTI_TARGETS, MULTI_SCORES[:, :2], ("a", "b", "c"))


# --- training curves --------------------------------------------------------------------------


def test_curves_skip_missing_metrics_and_mark_the_phase_switch(tmp_path):
    fig = curves_figure(HISTORY)  # no val/f1 anywhere
    loss_ax, metric_ax = fig.axes
    assert [line.get_label() for line in loss_ax.lines if not line.get_label().startswith("phase")] == [
        "train/loss",
        "val/loss",
    ]
    metric_lines = [line.get_label() for line in metric_ax.lines if not line.get_label().startswith("phase")]
    assert metric_lines == ["val/accuracy"]
    switch = [line for line in loss_ax.lines if line.get_label().startswith("phase")]
    assert len(switch) == 1 and switch[0].get_label() == "phase head → finetune"
    assert switch[0].get_xdata()[0] == pytest.approx(2.5)
    assert list(loss_ax.lines[0].get_xdata()) == [1, 2, 3]
    assert not [line for line in curves_figure(HISTORY[:2]).axes[0].lines if line.get_label().startswith("phase")]
    _png_ok(save_curves(HISTORY, tmp_path / "curves.png"))
    _png_ok(save_curves([], tmp_path / "empty.png"))


# --- Grad-CAM ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", CNN_BACKBONES)
def test_find_target_layer_is_a_4d_feature_map_inside_the_backbone(name):
    model = _net(name).eval()
    layer = find_target_layer(model)
    assert any(layer is m for m in model.backbone.modules())
    shapes = []
    handle = layer.register_forward_hook(lambda module, inputs, output: shapes.append(tuple(output.shape)))
    with torch.no_grad():
        model(torch.zeros(1, 3, 64, 64))
    handle.remove()
    assert len(shapes) == 1 and len(shapes[0]) == 4 and shapes[0][2:] == (2, 2)  # reduction 32


def test_find_target_layer_falls_back_to_the_last_conv():
    class Plain(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = torch.nn.Conv2d(3, 4, 3), torch.nn.Conv2d(4, 8, 3)

    plain = Plain()
    assert find_target_layer(plain) is plain.b
    with pytest.raises(ValueError, match="no Grad-CAM target layer"):
        find_target_layer(torch.nn.Linear(2, 2))


@pytest.mark.parametrize("name", ["test_vit", "test_mambaout"])
def test_token_and_nhwc_backbones_are_reshaped_to_nchw(name):
    model = _net(name).eval()
    transform = cam_reshape_transform(model, (64, 64))
    outputs = []
    handle = find_target_layer(model).register_forward_hook(lambda m, i, o: outputs.append(o))
    with torch.no_grad():
        model(torch.zeros(2, 3, 64, 64))
    handle.remove()
    nchw = transform(outputs[0])
    assert nchw.ndim == 4 and nchw.shape[0] == 2 and nchw.shape[1] == 64
    heatmaps = compute_gradcam(model, _squares(2), binary=True).heatmaps
    assert heatmaps.shape == (2, 64, 64) and np.isfinite(heatmaps).all()


def test_binary_target_explains_the_predicted_class():
    target = _PredictedClassTarget()
    assert float(target(torch.tensor([2.0]))) == 2.0  # predicts class 1: its logit
    assert float(target(torch.tensor([-3.0]))) == 3.0  # predicts class 0: the negated logit
    assert float(target(torch.tensor([0.1, 0.5, -1.0]))) == 0.5  # softmax head: the top logit


def test_save_gradcam_writes_overlays_and_restores_the_model(tmp_path):
    model = _net("resnet10t")
    for p in model.backbone.parameters():
        p.requires_grad_(False)  # frozen backbone
    model.train()
    model.backbone.layer1.eval()  # a mixed-mode model, as frozen BatchNorm leaves it
    modes = {n: m.training for n, m in model.named_modules()}
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    head_weight = next(model.head.parameters())
    head_weight.grad = pending = torch.full_like(head_weight, 0.5)  # a training step's gradient

    images = _squares(4)
    with torch.no_grad():  # as at the end of an evaluation loop
        paths = save_gradcam(model, images, [0, 1, 0, 1], ("clean", "corroded"), tmp_path, max_images=3, binary=True)

    assert [p.name for p in paths] == ["gradcam_000.png", "gradcam_001.png", "gradcam_002.png"]
    for path in paths:
        width, height = _png_ok(path)
        assert width >= 64 and height >= 64
    assert {n: m.training for n, m in model.named_modules()} == modes
    assert {n: p.requires_grad for n, p in model.named_parameters()} == flags
    assert head_weight.grad is pending and bool((pending == 0.5).all())
    assert all(p.grad is None for p in model.parameters() if p is not head_weight)

    heatmaps = compute_gradcam(model, images[:2], binary=True).heatmaps
    assert heatmaps.shape == (2, 64, 64) and heatmaps.min() >= 0 and heatmaps.max() <= 1
    assert np.abs(heatmaps[0] - heatmaps[1]).max() > 0.1


def test_gradcam_on_a_softmax_head(tmp_path):
    model = _net("resnet10t", num_outputs=3).eval()
    result = compute_gradcam(model, _squares(2), normalization="unit", binary=False)
    with torch.no_grad():
        expected = model(_squares(2).float() / 255).softmax(dim=1)
    assert result.preds.tolist() == expected.argmax(dim=1).tolist()
    assert result.probs == pytest.approx(expected.max(dim=1).values.numpy(), abs=1e-5)
    paths = save_gradcam(model, _squares(2), None, ("a", "b", "c"), tmp_path, prefix="cam", binary=False)
    assert [p.name for p in paths] == ["cam_000.png", "cam_001.png"]
    assert not model.training


# --- everything at once -----------------------------------------------------------------------


def _write(tmp_path, model):
    return write_trial_artifacts(
        tmp_path / "artifacts",
        targets=BINARY_TARGETS,
        scores=BINARY_SCORES,
        preds=(BINARY_SCORES >= 0.5).astype(int),
        classes=("clean", "corroded"),
        history=HISTORY,
        positive_index=1,
        model=model,
        sample_images=_squares(2),
        sample_targets=[0, 1],
        binary=True,
    )


def test_write_trial_artifacts_writes_everything(tmp_path):
    written = _write(tmp_path, _net("resnet10t"))
    plots = {"confusion_matrix.png", "roc.png", "pr.png", "curves.png"}
    assert set(written) == plots | {"gradcam_000.png", "gradcam_001.png"}
    for name, path in written.items():
        assert path == tmp_path / "artifacts" / name
        _png_ok(path)


def test_write_trial_artifacts_survives_a_failing_gradcam(tmp_path, monkeypatch, caplog):
    def unsupported(model):
        raise ValueError("unsupported backbone")

    monkeypatch.setattr(artifacts, "find_target_layer", unsupported)
    with caplog.at_level(logging.WARNING, logger="trainables.artifacts"):
        written = _write(tmp_path, _net("resnet10t"))
    assert set(written) == {"confusion_matrix.png", "roc.png", "pr.png", "curves.png"}
    assert not list((tmp_path / "artifacts").glob("gradcam_*"))
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "gradcam" in warnings[0].getMessage()
    assert "unsupported backbone" in warnings[0].getMessage()


def test_write_trial_artifacts_derives_preds_and_skips_gradcam_without_a_model(tmp_path):
    written = write_trial_artifacts(
        tmp_path, targets=MULTI_TARGETS, scores=MULTI_SCORES, preds=None, classes=("a", "b", "c"),
        history=HISTORY, binary=False,
    )
    assert set(written) == {"confusion_matrix.png", "roc.png", "pr.png", "curves.png"}
