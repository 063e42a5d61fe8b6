"""End-of-trial artifacts of the segmenter, written with the best epoch's weights.

* ``test/per_image.csv``: image path, F1 and IoU of every test image (the report's paired tests
  read it), with true and predicted foreground pixel counts and the ``empty_mask_score`` used;
* ``overlay_best_NN.png`` / ``overlay_worst_NN.png``: image | true mask | predicted mask of the
  N best and N worst test images by IoU;
* ``curves.png``: losses and IoU/F1 per epoch;
* ``gradcam_NNN.png``: Grad-CAM of the predicted foreground (grad-cam's
  ``SemanticSegmentationTarget``) on the encoder's last convolution.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn

from trainables.artifacts import _cam_ready, run_artifact_jobs, save_curves
from trainables.data.augment import normalize_batch

__all__ = ["CURVE_METRICS", "save_overlays", "save_per_image_csv", "save_segmentation_gradcam", "write_segmenter_artifacts"]

CURVE_METRICS = ("train/loss", "val/loss", "val/iou", "val/f1", "val/iou_dataset")

_DPI = 100


def predicted_masks(logits: torch.Tensor, threshold: float) -> torch.Tensor:
    """(N, 1|K, H, W) logits → (N, H, W) class indices."""
    if logits.shape[1] == 1:
        return (torch.sigmoid(logits[:, 0]) > threshold).long()
    return logits.argmax(dim=1)


def save_per_image_csv(
    path: Path, paths: Sequence[str], f1: torch.Tensor, iou: torch.Tensor, true: torch.Tensor, pred: torch.Tensor,
    empty_mask_score: float,
) -> Path:
    """One row per image: ``image, f1, iou, true_pixels, predicted_pixels, empty_mask_score``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "f1", "iou", "true_pixels", "predicted_pixels", "empty_mask_score"])
        for row in zip(paths, f1.tolist(), iou.tolist(), (true > 0).flatten(1).sum(1).tolist(), (pred > 0).flatten(1).sum(1).tolist()):
            writer.writerow([row[0], f"{row[1]:.6f}", f"{row[2]:.6f}", row[3], row[4], empty_mask_score])
    return path


def _colour(mask: np.ndarray, num_classes: int) -> np.ndarray:
    """(H, W) indices → (H, W, 4) RGBA, background transparent."""
    palette = np.array([[0, 0, 0, 0], [255, 64, 0, 150], [0, 160, 255, 150], [255, 220, 0, 150], [180, 0, 255, 150]], np.uint8)
    colours = palette[1 + (np.arange(max(num_classes - 1, 1)) % (len(palette) - 1))]
    table = np.concatenate([palette[:1], colours])
    return table[mask]


def _save_panels(path: Path, panels: list[tuple[np.ndarray, ...]], titles: Sequence[str], suptitle: str) -> Path:
    """Side-by-side panels, each a stack of images drawn on top of each other (enlarged when tiny)."""
    height, width = panels[0][0].shape[:2]
    scale = max(1.0, 160 / min(height, width))
    fig = Figure(figsize=(len(panels) * width * scale / _DPI + 0.3, height * scale / _DPI + 0.5))
    for j, (layers, title) in enumerate(zip(panels, titles)):
        ax = fig.add_axes((j / len(panels), 0, 1 / len(panels), height * scale / _DPI / fig.get_figheight()))
        for layer in layers:
            ax.imshow(layer, interpolation="nearest")
        ax.set_title(title, fontsize=8)
        ax.set_axis_off()
    fig.suptitle(suptitle, fontsize=8, y=0.99)
    fig.savefig(path, dpi=_DPI, format="png")
    return path


def save_overlays(
    out_dir: Path, images: torch.Tensor, true: torch.Tensor, pred: torch.Tensor, iou: torch.Tensor, paths: Sequence[str],
    count: int, num_classes: int,
) -> list[Path]:
    """``overlay_best_NN.png`` and ``overlay_worst_NN.png``: image | true | predicted, by IoU."""
    order = torch.argsort(iou, descending=True, stable=True).tolist()
    count = min(count, len(order))
    chosen = [("best", i, n) for n, i in enumerate(order[:count])] + [("worst", i, n) for n, i in enumerate(order[::-1][:count])]
    written = []
    for kind, i, n in chosen:
        rgb = images[i].permute(1, 2, 0).numpy()  # (H, W, 3) uint8
        panels = [(rgb,), (rgb, _colour(true[i].numpy(), num_classes)), (rgb, _colour(pred[i].numpy(), num_classes))]
        title = f"{kind} {n + 1}: IoU {float(iou[i]):.3f} | {Path(paths[i]).name}"
        written.append(_save_panels(out_dir / f"overlay_{kind}_{n:02d}.png", panels, ("image", "true", "predicted"), title))
    return written


def last_encoder_conv(model: nn.Module, size: tuple[int, int]) -> nn.Module:
    """The encoder's last ``Conv2d`` that a forward pass runs (its deepest feature map).

    Registration order is not enough: an encoder used at ``encoder_depth < 5`` keeps stages it
    never runs, and Grad-CAM on one of those gets no gradient.
    """
    ran: list[nn.Module] = []
    hooks = [m.register_forward_hook(lambda m, i, o: ran.append(m)) for m in model.encoder.modules() if isinstance(m, nn.Conv2d)]
    modes = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        with torch.no_grad():
            model.encoder(torch.zeros(1, 3, *size, device=next(model.parameters()).device))
    finally:
        for hook in hooks:
            hook.remove()
        for module, training in modes:
            module.training = training
    if not ran:
        raise ValueError(f"no Conv2d runs in the encoder of {type(model).__name__}: no Grad-CAM target layer")
    return ran[-1]


def save_segmentation_gradcam(
    model: nn.Module, images: torch.Tensor, pred: torch.Tensor, out_dir: Path, normalization: str, num_classes: int
) -> list[Path]:
    """Grad-CAM of each image's predicted foreground (the most frequent foreground class for K > 2)."""
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.image import show_cam_on_image
    from pytorch_grad_cam.utils.model_targets import SemanticSegmentationTarget

    if not len(images):
        return []
    device = next(model.parameters()).device
    x = normalize_batch(images.to(device), normalization)  # (N, 3, H, W)
    targets = []
    for mask in pred:
        if num_classes == 2:
            category, region = 0, (mask == 1)
        else:
            counts = torch.bincount(mask.flatten(), minlength=num_classes)[1:]
            category = int(counts.argmax()) + 1
            region = mask == category
        targets.append(SemanticSegmentationTarget(category, region.float().numpy()))
    layer = last_encoder_conv(model, tuple(x.shape[-2:]))
    with _cam_ready(model, layer), GradCAM(model=model, target_layers=[layer]) as cam:
        heatmaps = cam(input_tensor=x, targets=targets)  # (N, H, W) in [0, 1]
    written = []
    for i, image in enumerate(images):
        rgb = image.permute(1, 2, 0).numpy().astype(np.float32) / 255.0  # (H, W, 3) in [0, 1]
        overlay = show_cam_on_image(rgb, heatmaps[i], use_rgb=True)
        title = f"Grad-CAM of the predicted foreground ({int(targets[i].mask.sum())} px)"
        written.append(_save_panels(out_dir / f"gradcam_{i:03d}.png", [(rgb,), (overlay,)], ("image", "Grad-CAM"), title))
    return written


def write_segmenter_artifacts(
    out_dir: Path,
    *,
    model: nn.Module,
    images: torch.Tensor,
    masks: torch.Tensor,
    logits: torch.Tensor,
    paths: Sequence[str],
    f1: torch.Tensor,
    iou: torch.Tensor,
    history: Sequence[dict[str, Any]],
    num_classes: int,
    threshold: float,
    empty_mask_score: float,
    overlay_images: int,
    gradcam_images: int,
    normalization: str,
) -> dict[str, Path]:
    """Writes every segmenter artifact (see the module doc) of one split; returns name → path.

    One failing artifact is logged as a warning and the others are still written.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    pred = predicted_masks(logits, threshold)
    jobs: list[tuple[str, Callable[[], Any]]] = [
        ("test/per_image.csv", lambda: save_per_image_csv(out_dir / "test" / "per_image.csv", paths, f1, iou, masks, pred, empty_mask_score)),
        ("curves.png", lambda: save_curves(history, out_dir / "curves.png", CURVE_METRICS)),
        ("overlays", lambda: save_overlays(out_dir, images, masks, pred, iou, paths, overlay_images, num_classes)),
        ("gradcam", lambda: save_segmentation_gradcam(model, images[:gradcam_images], pred[:gradcam_images], out_dir, normalization, num_classes)),
    ]
    return run_artifact_jobs(jobs, out_dir)
