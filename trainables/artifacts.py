"""End-of-trial artifacts: confusion matrix, ROC and PR curves, training curves, Grad-CAM.

P002 reports each model with a confusion matrix, ROC and PR curves, train/val loss curves and
Grad-CAM overlays on sample images; :func:`write_trial_artifacts` writes all of them into a
trial's ``artifacts/`` folder. Curve points and areas come from torchmetrics (the same numbers
as ``val/roc_auc`` and ``val/pr_auc``); Grad-CAM from the ``grad-cam`` package.

Figures are plain :class:`matplotlib.figure.Figure` objects rendered by Agg, never pyplot
figures: no backend is switched, no global figure registry fills up, nothing needs closing.
The ``*_figure`` builders return such a figure (for W&B, say); the ``save_*`` functions write
it as a PNG.

Example::

    paths = write_trial_artifacts(
        trial_dir / "artifacts", targets=y, scores=p, preds=(p >= 0.5), classes=("no", "yes"),
        history=reported_metrics, positive_index=1, model=model, sample_images=x_uint8,
        sample_targets=y[:8],
    )  # {"confusion_matrix.png": ..., "roc.png": ..., "gradcam_000.png": ..., ...}
"""

from __future__ import annotations

import logging
import math
import numbers
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, NamedTuple, Optional, Sequence, Union

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from torch import nn
from torchmetrics.functional import classification as tmf

from trainables.data.augment import normalize_batch

__all__ = [
    "GradCam",
    "cam_reshape_transform",
    "compute_gradcam",
    "confusion_counts",
    "confusion_matrix_figure",
    "curves_figure",
    "find_target_layer",
    "pr_figure",
    "roc_figure",
    "run_artifact_jobs",
    "save_confusion_matrix",
    "save_curves",
    "save_gradcam",
    "save_pr",
    "save_roc",
    "write_trial_artifacts",
]

logger = logging.getLogger(__name__)

PathLike = Union[str, Path]
DEFAULT_CURVE_METRICS = ("train/loss", "val/loss", "val/accuracy", "val/f1")
_DPI = 100


def _save(fig: Figure, path: PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=_DPI, format="png")
    fig.clear()
    return path


def _as_numpy(values) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        return values.detach().float().cpu().numpy() if values.is_floating_point() else values.cpu().numpy()
    return np.asarray(values)


# ---------------------------------------------------------------------------------------------
# Confusion matrix


def confusion_counts(targets, preds, num_classes: int) -> np.ndarray:
    """(K, K) int64 counts; rows are true classes, columns predicted classes."""
    t, p = _as_numpy(targets).astype(np.int64).ravel(), _as_numpy(preds).astype(np.int64).ravel()
    if t.shape != p.shape:
        raise ValueError(f"targets and preds differ in length: {t.shape[0]} vs {p.shape[0]}")
    for name, v in (("targets", t), ("preds", p)):
        if v.size and (v.min() < 0 or v.max() >= num_classes):
            raise ValueError(f"{name} hold labels outside [0, {num_classes}): {sorted(set(v.tolist()))}")
    return np.bincount(t * num_classes + p, minlength=num_classes**2).reshape(num_classes, num_classes)


def confusion_matrix_figure(targets, preds, classes: Sequence[str]) -> Figure:
    """Heatmap of row-normalised rates, each cell annotated ``count`` and ``row %``."""
    k = len(classes)
    counts = confusion_counts(targets, preds, k)
    totals = counts.sum(axis=1, keepdims=True)
    rates = np.divide(counts, totals, out=np.zeros(counts.shape), where=totals > 0)
    side = max(4.0, 0.7 * k + 2.5)
    fig = Figure(figsize=(side + 1, side), layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(rates, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, label="fraction of true class")
    for i in range(k):
        for j in range(k):
            ax.text(j, i, f"{counts[i, j]}\n{100 * rates[i, j]:.1f}%", ha="center", va="center",
                    color="white" if rates[i, j] > 0.5 else "black", fontsize=9)
    ax.set(xticks=range(k), yticks=range(k), xlabel="predicted", ylabel="true",
           title=f"Confusion matrix (n={int(counts.sum())})")
    ax.set_xticklabels(classes, rotation=45 if k > 3 else 0, ha="right" if k > 3 else "center")
    ax.set_yticklabels(classes)
    return fig


def save_confusion_matrix(targets, preds, classes: Sequence[str], path: PathLike) -> Path:
    """Writes :func:`confusion_matrix_figure` as a PNG.

    Args:
        targets: (N,) true labels in ``[0, K)``.
        preds: (N,) predicted labels in ``[0, K)``.
        classes: The K class names, in label order.
        path: Output ``.png`` path (parents are created).
    """
    return _save(confusion_matrix_figure(targets, preds, classes), path)


# ---------------------------------------------------------------------------------------------
# ROC and PR curves


class _Curve(NamedTuple):
    label: str
    x: np.ndarray
    y: np.ndarray
    area: float


def _one_vs_rest(
    targets, scores, classes: Sequence[str], positive_index: int
) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """``(class name, float scores, 0/1 targets)`` per curve: one for binary, K for multi-class."""
    t = _as_numpy(targets).astype(np.int64).ravel()
    s = _as_numpy(scores).astype(np.float64)
    if len(classes) == 2:
        if s.ndim == 2 and s.shape[1] == 2:
            s = s[:, positive_index]
        s = s.reshape(-1)
        if s.shape[0] != t.shape[0]:
            raise ValueError(f"binary scores must be (N,) positive-class probabilities, got shape {s.shape}")
        return [(classes[positive_index], s, (t == positive_index).astype(np.int64))]
    if s.ndim != 2 or s.shape != (t.shape[0], len(classes)):
        raise ValueError(f"multi-class scores must be (N, {len(classes)}) probabilities, got shape {s.shape}")
    return [(name, s[:, k], (t == k).astype(np.int64)) for k, name in enumerate(classes)]


def _curves(targets, scores, classes, positive_index, kind: str) -> list[_Curve]:
    curves = []
    for name, s, t in _one_vs_rest(targets, scores, classes, positive_index):
        if t.min(initial=1) == t.max(initial=0):  # one class only: the curve is undefined
            curves.append(_Curve(name, np.empty(0), np.empty(0), float("nan")))
            continue
        st, tt = torch.from_numpy(s), torch.from_numpy(t)
        if kind == "roc":
            x, y, _ = tmf.binary_roc(st, tt)
            area = tmf.binary_auroc(st, tt)
        else:
            y, x, _ = tmf.binary_precision_recall_curve(st, tt)  # precision, recall
            area = tmf.binary_average_precision(st, tt)
        curves.append(_Curve(name, x.double().numpy(), y.double().numpy(), float(area)))
    return curves


def _macro(curves: list[_Curve], kind: str) -> Optional[_Curve]:
    """Per-class curves interpolated on one grid and averaged; area = mean of per-class areas."""
    defined = [c for c in curves if c.x.size]
    if len(curves) < 3 or not defined:
        return None
    grid = np.linspace(0.0, 1.0, 201)
    ys = []
    for c in defined:
        order = np.argsort(c.x, kind="stable")  # ROC: fpr ascending; PR: recall ascending
        ys.append(np.interp(grid, c.x[order], c.y[order]))
    return _Curve("macro", grid, np.mean(ys, axis=0), float(np.mean([c.area for c in defined])))


def _curve_figure(curves: list[_Curve], kind: str, prevalence: Optional[float]) -> Figure:
    name = "AUC" if kind == "roc" else "AP"
    fig = Figure(figsize=(5.5, 5), layout="constrained")
    ax = fig.add_subplot()
    if kind == "roc":
        ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="chance")
    elif prevalence is not None:
        ax.axhline(prevalence, ls="--", color="grey", lw=1, label=f"chance ({prevalence:.3f})")
    for curve in curves:
        area = f"{curve.area:.3f}" if math.isfinite(curve.area) else "n/a"
        label = f"{curve.label} ({name} = {area})"
        style = dict(color="black", lw=2.5, ls=":") if curve.label == "macro" else dict(lw=1.5)
        if kind == "roc":
            ax.plot(curve.x, curve.y, label=label, **style)
        else:
            ax.step(curve.x, curve.y, where="post", label=label, **style)
    title = "ROC" if kind == "roc" else "Precision-recall"
    if len(curves) == 1 and math.isfinite(curves[0].area):
        title += f" ({name} = {curves[0].area:.3f})"
    ax.set(xlim=(-0.01, 1.01), ylim=(-0.01, 1.01), title=title,
           xlabel="false positive rate" if kind == "roc" else "recall",
           ylabel="true positive rate" if kind == "roc" else "precision")
    ax.legend(loc="lower right" if kind == "roc" else "lower left", fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def _curve_plot(targets, scores, classes, positive_index: int, kind: str) -> Figure:
    curves = _curves(targets, scores, classes, positive_index, kind)
    macro = _macro(curves, kind)
    prevalence = None
    if len(classes) == 2 and kind == "pr":
        prevalence = float(np.mean(_as_numpy(targets).ravel() == positive_index))
    return _curve_figure(curves + ([macro] if macro else []), kind, prevalence)


def roc_figure(targets, scores, classes: Sequence[str], positive_index: int = 1) -> Figure:
    """ROC curve(s), AUC in the legend; see :func:`save_roc`."""
    return _curve_plot(targets, scores, classes, positive_index, "roc")


def pr_figure(targets, scores, classes: Sequence[str], positive_index: int = 1) -> Figure:
    """Precision-recall curve(s), average precision in the legend; see :func:`save_pr`."""
    return _curve_plot(targets, scores, classes, positive_index, "pr")


def save_roc(targets, scores, classes: Sequence[str], path: PathLike, positive_index: int = 1) -> Path:
    """Writes ROC curves as a PNG.

    Binary (two classes): one curve for ``classes[positive_index]``. Multi-class: one
    one-vs-rest curve per class plus a ``macro`` curve whose AUC is the mean of the per-class
    AUCs (torchmetrics' macro ``multiclass_auroc``). A class absent from ``targets`` is listed
    with ``n/a``.

    Args:
        targets: (N,) true labels.
        scores: Binary: (N,) probabilities of ``classes[positive_index]`` (an (N, 2) array is
            read at column ``positive_index``). Multi-class: (N, K) probabilities.
        classes: Class names in label order.
        path: Output ``.png`` path.
        positive_index: Binary only: the label scored as positive.
    """
    return _save(roc_figure(targets, scores, classes, positive_index), path)


def save_pr(targets, scores, classes: Sequence[str], path: PathLike, positive_index: int = 1) -> Path:
    """Writes precision-recall curves with average precision (AP) as a PNG; as :func:`save_roc`."""
    return _save(pr_figure(targets, scores, classes, positive_index), path)


# ---------------------------------------------------------------------------------------------
# Training curves


def curves_figure(history: Sequence[dict], metrics: Sequence[str] = DEFAULT_CURVE_METRICS) -> Figure:
    """Per-epoch lines: losses in the left panel, other metrics in the right one.

    Rows lacking ``epoch`` count from 1; non-finite or missing values are skipped. Where the
    ``phase`` key changes between epochs a dashed vertical line marks the switch.
    """
    epochs = [float(row.get("epoch", i + 1)) for i, row in enumerate(history)]
    series = {}
    for key in metrics:
        points = [(e, float(row[key])) for e, row in zip(epochs, history)
                  if isinstance(row.get(key), numbers.Real) and math.isfinite(float(row[key]))]
        if points:
            series[key] = np.array(points).T
    losses = [k for k in series if k.endswith("loss")]
    groups = [g for g in (losses, [k for k in series if k not in losses]) if g]
    fig = Figure(figsize=(5 * max(len(groups), 1) + 0.5, 4), layout="constrained")
    if not groups:
        ax = fig.add_subplot()
        ax.text(0.5, 0.5, "no metrics reported", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return fig
    phases = [row.get("phase") for row in history]
    switches = [(0.5 * (epochs[i - 1] + epochs[i]), phases[i - 1], phases[i])
                for i in range(1, len(history))
                if None not in (phases[i - 1], phases[i]) and phases[i] != phases[i - 1]]
    for n, keys in enumerate(groups):
        ax = fig.add_subplot(1, len(groups), n + 1)
        for key in keys:
            x, y = series[key]
            ax.plot(x, y, marker="o" if len(x) < 30 else None, ms=3, label=key)
        for at, before, after in switches:
            ax.axvline(at, ls="--", color="grey", lw=1, label=f"phase {before} → {after}")
        ax.set(xlabel="epoch", ylabel="loss" if n == 0 and keys[0].endswith("loss") else "value")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    return fig


def save_curves(history: Sequence[dict], path: PathLike, metrics: Sequence[str] = DEFAULT_CURVE_METRICS) -> Path:
    """Writes :func:`curves_figure` of the reported metric dicts as a PNG."""
    return _save(curves_figure(history, metrics), path)


# ---------------------------------------------------------------------------------------------
# Grad-CAM


def _backbone(model: nn.Module) -> nn.Module:
    return getattr(model, "backbone", model)


def find_target_layer(model: nn.Module) -> nn.Module:
    """The layer Grad-CAM explains: the backbone's last stage.

    Looks up timm's ``feature_info[-1]["module"]`` in ``model.backbone`` (or ``model`` itself):
    ``layer4`` for ResNets, ``blocks.6``/``blocks.5`` for EfficientNet-B0/MobileNetV3,
    ``stages.3`` for ConvNeXt, ``features.norm5`` for DenseNet, the last block for ViT/Swin.
    Without feature_info it falls back to the last ``nn.Conv2d``. ViT blocks emit tokens and
    Swin/MambaOut stages NHWC maps: pass :func:`cam_reshape_transform` to Grad-CAM for those
    (:func:`compute_gradcam` does).

    Raises:
        ValueError: the backbone has neither feature_info nor a Conv2d.
    """
    backbone = _backbone(model)
    info = getattr(backbone, "feature_info", None)
    if isinstance(info, (list, tuple)) and info and isinstance(info[-1], dict) and info[-1].get("module"):
        try:
            return backbone.get_submodule(info[-1]["module"])
        except AttributeError:
            logger.debug("feature_info module %r not found; falling back to the last Conv2d", info[-1]["module"])
    convs = [m for m in backbone.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError(f"no Grad-CAM target layer in {type(backbone).__name__}: no timm feature_info and no Conv2d")
    return convs[-1]


def cam_reshape_transform(model: nn.Module, image_size: tuple[int, int]) -> Callable[[torch.Tensor], torch.Tensor]:
    """Grad-CAM's ``reshape_transform``: the target layer's output as (N, C, h, w).

    NCHW maps (CNNs) pass unchanged.

    * (N, L, C) tokens (ViT): prefix tokens (``num_prefix_tokens``, class/register) are dropped
      and the rest laid out on an h × w grid with the aspect ratio of ``image_size``.
    * NHWC maps (``output_fmt == "NHWC"``: Swin, MambaOut): permuted to NCHW.
    """
    backbone = _backbone(model)
    channels_last = str(getattr(backbone, "output_fmt", "NCHW")) == "NHWC"
    prefix = int(getattr(backbone, "num_prefix_tokens", 0) or 0)
    height, width = image_size

    def to_nchw(t: torch.Tensor) -> torch.Tensor:
        if t.ndim == 3:  # (N, L, C) tokens
            t = t[:, prefix:, :]
            tokens = t.shape[1]
            h = max(1, round(math.sqrt(tokens * height / width)))
            w = tokens // h
            if h * w != tokens:
                raise ValueError(f"cannot lay {tokens} tokens out on a grid for a {height}x{width} image")
            return t.reshape(t.shape[0], h, w, t.shape[2]).permute(0, 3, 1, 2)
        if t.ndim == 4 and channels_last:
            return t.permute(0, 3, 1, 2)  # (N, H, W, C) → (N, C, H, W)
        return t

    return to_nchw


class _PredictedClassTarget:
    """Grad-CAM target (like ``ClassifierOutputTarget``) explaining the predicted class.

    One logit (sigmoid head, logit of class 1): the logit when it predicts class 1
    (logit >= 0), its negation when it predicts class 0. K logits: the largest logit.
    """

    def __call__(self, model_output: torch.Tensor) -> torch.Tensor:  # (num_outputs,) of one image
        if model_output.shape[-1] == 1:
            logit = model_output[..., 0]
            return logit if bool(logit.detach() >= 0) else -logit
        return model_output[..., int(model_output.detach().argmax(dim=-1))]


class GradCam(NamedTuple):
    """Grad-CAM output: ``heatmaps`` (N, H, W) in [0, 1] at the input size, ``preds`` (N,)
    predicted labels, ``probs`` (N,) probability of the predicted label."""

    heatmaps: np.ndarray
    preds: np.ndarray
    probs: np.ndarray


def _graph_root(module: nn.Module, inputs, output):
    """Forward hook: the target layer's output becomes the root of the autograd graph."""
    if isinstance(output, torch.Tensor):
        return output.detach().requires_grad_(True).clone()  # clone: later in-place ops stay legal
    return None


@contextmanager
def _cam_ready(model: nn.Module, layer: nn.Module) -> Iterator[None]:
    """Gradients reach ``layer``'s output even with a frozen backbone; the model is left as found.

    Instead of switching ``requires_grad`` on, ``layer``'s output is detached and made to
    require grad, so backward runs only from the output to ``layer`` and no parameter flag
    changes. Grad-CAM also sets eval mode and zeroes gradients: train/eval flags per module
    and ``.grad`` per parameter are put back afterwards.
    """
    modes = [(m, m.training) for m in model.modules()]
    grads = [(p, p.grad) for p in model.parameters()]
    handle = layer.register_forward_hook(_graph_root)  # before GradCAM's hooks, which see its output
    try:
        with torch.enable_grad():
            yield
    finally:
        handle.remove()
        for m, training in modes:
            m.training = training
        for p, grad in grads:
            p.grad = grad


def compute_gradcam(
    model: nn.Module, images_uint8: torch.Tensor, *, normalization: str = "imagenet", binary: bool
) -> GradCam:
    """Grad-CAM heatmaps of ``model``'s predicted class for each image.

    Args:
        model: A ClassifierNet-like module (``model.backbone`` a timm model), any mode.
        images_uint8: (N, 3, H, W) uint8 RGB images.
        normalization: :func:`~trainables.data.augment.normalize_batch` preset of the trial.
        binary: True for a one-logit sigmoid head (a two-logit softmax head also works).

    The model's train/eval modes, ``requires_grad`` flags and gradients are left as found.
    """
    from pytorch_grad_cam import GradCAM

    if images_uint8.ndim != 4 or images_uint8.dtype != torch.uint8:
        raise ValueError(f"images must be (N, 3, H, W) uint8, got {tuple(images_uint8.shape)} {images_uint8.dtype}")
    device = next(model.parameters()).device
    x = normalize_batch(images_uint8.to(device), normalization)  # (N, 3, H, W) float
    layer = find_target_layer(model)
    transform = cam_reshape_transform(model, tuple(x.shape[-2:]))
    with _cam_ready(model, layer), GradCAM(model=model, target_layers=[layer], reshape_transform=transform) as cam:
        heatmaps = cam(input_tensor=x, targets=[_PredictedClassTarget()] * len(x))  # (N, H, W)
        logits = cam.outputs.detach().float()  # (N, 1) or (N, K), from the same forward
    if logits.shape[1] == 1:
        prob_one = torch.sigmoid(logits[:, 0])
        preds = (prob_one >= 0.5).long()
        probs = torch.where(preds == 1, prob_one, 1 - prob_one)
    else:
        if binary and logits.shape[1] != 2:
            raise ValueError(f"binary=True but the model has {logits.shape[1]} outputs")
        probs, preds = torch.softmax(logits, dim=1).max(dim=1)
    return GradCam(np.asarray(heatmaps, dtype=np.float32), preds.cpu().numpy(), probs.cpu().numpy())


def save_gradcam(
    model: nn.Module,
    images_uint8: torch.Tensor,
    targets: Optional[Sequence[int]],
    classes: Sequence[str],
    out_dir: PathLike,
    *,
    normalization: str = "imagenet",
    prefix: str = "gradcam",
    max_images: int = 8,
    binary: bool,
) -> list[Path]:
    """Writes ``{prefix}_000.png`` … : each image beside its Grad-CAM overlay.

    The heatmap explains the predicted class (:func:`compute_gradcam`) and is overlaid on the
    un-normalised image; the title names the true class, the predicted one and its probability.

    Args:
        model: A ClassifierNet-like module; left in the mode and with the flags it had.
        images_uint8: (N, 3, H, W) uint8 RGB images; the first ``max_images`` are used.
        targets: True labels of those images, or None (not shown).
        classes: Class names in label order.
        out_dir: Folder for the PNGs (created).
        normalization: The trial's normalisation preset.
        prefix: File name prefix.
        max_images: Most images explained.
        binary: The model has a binary head (see :func:`compute_gradcam`).

    Returns:
        The written paths, in image order.
    """
    from pytorch_grad_cam.utils.image import show_cam_on_image

    images = images_uint8[:max_images]
    result = compute_gradcam(model, images, normalization=normalization, binary=binary)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, image in enumerate(images):
        rgb = image.permute(1, 2, 0).cpu().numpy().astype(np.float32) / 255.0  # (H, W, 3) in [0, 1]
        overlay = show_cam_on_image(rgb, result.heatmaps[i], use_rgb=True)
        height, width = rgb.shape[:2]
        scale = max(1.0, 160 / min(height, width))  # tiny images are enlarged, never shrunk
        fig = Figure(figsize=(2 * width * scale / _DPI + 0.2, height * scale / _DPI + 0.5))
        for j, (panel, label) in enumerate(((rgb, "image"), (overlay, "Grad-CAM"))):
            ax = fig.add_axes((j / 2, 0, 0.5, height * scale / _DPI / fig.get_figheight()))
            ax.imshow(panel, interpolation="nearest")
            ax.set_axis_off()
        pred = int(result.preds[i])
        true = f"true: {classes[int(targets[i])]} | " if targets is not None else ""
        fig.suptitle(f"{true}pred: {classes[pred]} (p={result.probs[i]:.2f})", fontsize=9, y=0.98)
        paths.append(_save(fig, out_dir / f"{prefix}_{i:03d}.png"))
    return paths


# ---------------------------------------------------------------------------------------------
# Everything at once


def _preds_from_scores(scores, num_classes: int, positive_index: int) -> np.ndarray:
    s = _as_numpy(scores).astype(np.float64)
    if num_classes == 2 and (s.ndim == 1 or s.shape[-1] == 1):
        positive = s.reshape(-1) >= 0.5
        return np.where(positive, positive_index, 1 - positive_index)
    return s.argmax(axis=1)


def write_trial_artifacts(
    out_dir: PathLike,
    *,
    targets,
    scores,
    preds,
    classes: Sequence[str],
    history: Sequence[dict],
    positive_index: int = 1,
    model: Optional[nn.Module] = None,
    sample_images: Optional[torch.Tensor] = None,
    sample_targets: Optional[Sequence[int]] = None,
    normalization: str = "imagenet",
    binary: bool = True,
) -> dict[str, Path]:
    """Writes the confusion matrix, ROC, PR, training curves and Grad-CAM overlays.

    Args:
        out_dir: The trial's ``artifacts/`` folder (created).
        targets, scores, classes, positive_index: As for :func:`save_roc`.
        preds: (N,) predicted labels; None derives them from ``scores`` (0.5 / argmax).
        history: The reported per-epoch metric dicts.
        model, sample_images, sample_targets, normalization, binary: Grad-CAM inputs, as for
            :func:`save_gradcam`; Grad-CAM is skipped without a model or images.

    Returns:
        File name → path of every artifact written. One failing artifact is logged as a
        warning and the others are still written.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if preds is None:
        preds = _preds_from_scores(scores, len(classes), positive_index)
    jobs: list[tuple[str, Callable[[], Union[Path, list[Path]]]]] = [
        ("confusion_matrix.png",
         lambda: save_confusion_matrix(targets, preds, classes, out_dir / "confusion_matrix.png")),
        ("roc.png", lambda: save_roc(targets, scores, classes, out_dir / "roc.png", positive_index)),
        ("pr.png", lambda: save_pr(targets, scores, classes, out_dir / "pr.png", positive_index)),
        ("curves.png", lambda: save_curves(history, out_dir / "curves.png")),
    ]
    if model is not None and sample_images is not None and len(sample_images):
        jobs.append(("gradcam", lambda: save_gradcam(
            model, sample_images, sample_targets, classes, out_dir, normalization=normalization, binary=binary)))
    return run_artifact_jobs(jobs, out_dir)


def run_artifact_jobs(jobs: list[tuple[str, Callable[[], Union[Path, list[Path]]]]], out_dir: Path) -> dict[str, Path]:
    """Runs each ``(name, job)``; a job returns the file(s) it wrote under ``out_dir``.

    One broken artifact must not cost the others: a job that raises is logged and skipped.

    Returns:
        ``out_dir``-relative POSIX path → path of every file written.
    """
    written: dict[str, Path] = {}
    for name, job in jobs:
        try:
            result = job()
        except Exception as err:  # noqa: BLE001 - see the docstring
            logger.warning("could not write artifact %s in %s: %s: %s", name, out_dir, type(err).__name__, err)
            continue
        for path in result if isinstance(result, list) else [result]:
            written[path.relative_to(out_dir).as_posix()] = path
    return written
