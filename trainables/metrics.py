"""Classification metrics (torchmetrics) and segmentation metrics (``smp.metrics``) from
model outputs; names follow ``<split>/<metric>``."""

from __future__ import annotations

from typing import Sequence

import torch
from torchmetrics.functional import classification as tmf

__all__ = ["classification_metrics", "per_image_scores", "segmentation_metrics", "segmentation_stats"]


def classification_metrics(
    logits: torch.Tensor,
    targets: torch.Tensor,
    num_classes: int,
    positive_index: int = 1,
    prefix: str = "val",
    class_names: Sequence[str] | None = None,
) -> dict[str, float]:
    """Computes accuracy, precision, recall, F1, ROC-AUC, PR-AUC and Cohen's kappa.

    Args:
        logits: (N, 1) binary logits for class index 1, or (N, K) multi-class logits (also
            K = 2 for a softmax binary head).
        targets: (N,) integer labels.
        num_classes: K (2 for binary).
        positive_index: Binary only: the label scored as positive (0 or 1).
        prefix: Namespace of the returned keys.
        class_names: Multi-class only: also report per-class F1 as ``{prefix}/f1/<name>``.

    Returns:
        ``{f"{prefix}/accuracy": ..., ...}``; binary metrics also carry the confusion
        counts (``tp``, ``fp``, ``tn``, ``fn``) so any paper's scoring can be recomputed.
        Multi-class scores are macro averages. ROC-AUC and PR-AUC are NaN when the targets hold
        a single class (undefined), rather than torchmetrics' 0.
    """
    targets = targets.long()
    single_class = targets.unique().numel() < 2
    if num_classes == 2:
        logits = logits.float().reshape(len(targets), -1)
        prob_one = torch.sigmoid(logits[:, 0]) if logits.shape[1] == 1 else torch.softmax(logits, dim=1)[:, 1]
        preds = torch.where(prob_one >= 0.5, 1, 0)
        scores = prob_one if positive_index == 1 else 1.0 - prob_one
        pos_targets = (targets == positive_index).long()
        pos_preds = (preds == positive_index).long()
        (tn, fp), (fn, tp) = tmf.binary_confusion_matrix(pos_preds, pos_targets).tolist()
        values = {
            "accuracy": tmf.binary_accuracy(pos_preds, pos_targets),
            "precision": tmf.binary_precision(pos_preds, pos_targets),
            "recall": tmf.binary_recall(pos_preds, pos_targets),
            "f1": tmf.binary_f1_score(pos_preds, pos_targets),
            "roc_auc": tmf.binary_auroc(scores, pos_targets),
            "pr_auc": tmf.binary_average_precision(scores, pos_targets),
            "kappa": tmf.binary_cohen_kappa(pos_preds, pos_targets),
            "tp": tp, "fp": fp, "tn": tn, "fn": fn,
        }
    else:
        probs = torch.softmax(logits.float(), dim=1)
        preds = probs.argmax(dim=1)
        kw = dict(num_classes=num_classes, average="macro")
        values = {
            "accuracy": tmf.multiclass_accuracy(preds, targets, num_classes=num_classes, average="micro"),
            "precision": tmf.multiclass_precision(preds, targets, **kw),
            "recall": tmf.multiclass_recall(preds, targets, **kw),
            "f1": tmf.multiclass_f1_score(preds, targets, **kw),
            "roc_auc": tmf.multiclass_auroc(probs, targets, **kw),
            "pr_auc": tmf.multiclass_average_precision(probs, targets, **kw),
            "kappa": tmf.multiclass_cohen_kappa(preds, targets, num_classes=num_classes),
        }
        if class_names is not None:
            per_class = tmf.multiclass_f1_score(preds, targets, num_classes=num_classes, average=None)
            values.update({f"f1/{name}": f1 for name, f1 in zip(class_names, per_class)})
    if single_class:
        values["roc_auc"] = values["pr_auc"] = float("nan")
    return {f"{prefix}/{k}": float(v) for k, v in values.items()}


def segmentation_stats(logits: torch.Tensor, masks: torch.Tensor, num_classes: int, threshold: float = 0.5):
    """smp's per-image confusion counts ``(tp, fp, fn, tn)``, each (N, C) int64.

    Args:
        logits: (N, 1, H, W) binary logits or (N, K, H, W) multi-class logits.
        masks: (N, H, W) integer class indices.
        num_classes: 2 (binary: C = 1, the foreground) or K (C = K, background included).
        threshold: Sigmoid probability above which a pixel is foreground (binary).
    """
    import segmentation_models_pytorch as smp

    masks = masks.long()
    if num_classes == 2:
        return smp.metrics.get_stats(torch.sigmoid(logits.float()), masks.unsqueeze(1), mode="binary", threshold=threshold)
    return smp.metrics.get_stats(logits.argmax(dim=1), masks, mode="multiclass", num_classes=num_classes)


def _foreground(stats):
    """Foreground classes only: binary stats already are; multi-class drops background (class 0)."""
    return tuple(s[:, 1:] if s.shape[1] > 1 else s for s in stats)


def per_image_scores(stats, empty_mask_score: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image ``(f1, iou)``, each (N,), over the foreground pixels of all foreground classes.

    Their means are ``{prefix}/f1`` and ``{prefix}/iou`` of :func:`segmentation_metrics`. An
    image whose true and predicted foreground are both empty scores ``empty_mask_score``.
    """
    import segmentation_models_pytorch as smp

    tp, fp, fn, tn = (s.sum(dim=1, keepdim=True) for s in _foreground(stats))
    f1 = smp.metrics.f1_score(tp, fp, fn, tn, reduction="none", zero_division=empty_mask_score)[:, 0]
    iou = smp.metrics.iou_score(tp, fp, fn, tn, reduction="none", zero_division=empty_mask_score)[:, 0]
    return f1, iou


def segmentation_metrics(
    logits: torch.Tensor,
    masks: torch.Tensor,
    num_classes: int,
    *,
    threshold: float = 0.5,
    empty_mask_score: float = 1.0,
    prefix: str = "val",
    class_names: Sequence[str] | None = None,
) -> dict[str, float]:
    """P001's per-image F1/IoU and dataset-level scores, through ``smp.metrics``.

    * ``iou``, ``f1``: per image, then averaged over images (``micro-imagewise``, P001's
      metric); an image with empty true and predicted foreground scores ``empty_mask_score``.
    * ``iou_dataset``, ``f1_dataset``, ``precision``, ``recall``: over all pixels of the split
      (``micro``; no empty-image convention needed).
    * ``pixel_accuracy``: correctly labelled pixels (background included) over all pixels.
    * K > 2: the summary scores count the foreground classes (1..K-1) together; per class
      ``iou/<name>`` and ``f1/<name>`` (dataset level) for every class, background included.

    Args:
        logits: (N, 1, H, W) or (N, K, H, W).
        masks: (N, H, W) class indices.
        num_classes: K (2 for binary).
        threshold: Binary foreground threshold on the sigmoid probability.
        empty_mask_score: smp's ``zero_division`` for the per-image scores.
        prefix: Namespace of the keys.
        class_names: K > 2: names for the per-class keys (default ``class_<k>``).
    """
    import segmentation_models_pytorch as smp

    stats = segmentation_stats(logits, masks, num_classes, threshold)
    tp, fp, fn, tn = _foreground(stats)
    summed = [s.sum(dim=1, keepdim=True) for s in (tp, fp, fn, tn)]
    imagewise = dict(reduction="micro-imagewise", zero_division=empty_mask_score)
    values = {
        "iou": smp.metrics.iou_score(*summed, **imagewise),
        "f1": smp.metrics.f1_score(*summed, **imagewise),
        "iou_dataset": smp.metrics.iou_score(*summed, reduction="micro"),
        "f1_dataset": smp.metrics.f1_score(*summed, reduction="micro"),
        "precision": smp.metrics.precision(*summed, reduction="micro"),
        "recall": smp.metrics.recall(*summed, reduction="micro"),
    }
    if num_classes == 2:
        values["pixel_accuracy"] = smp.metrics.accuracy(*stats, reduction="micro")
    else:
        values["pixel_accuracy"] = stats[0].sum() / masks.numel()  # Σ_c tp_c = correct pixels
        names = list(class_names) if class_names is not None else [f"class_{k}" for k in range(num_classes)]
        per_class_iou = smp.metrics.iou_score(*(s.sum(dim=0) for s in stats), reduction="none")
        per_class_f1 = smp.metrics.f1_score(*(s.sum(dim=0) for s in stats), reduction="none")
        for name, iou, f1 in zip(names, per_class_iou, per_class_f1):
            values[f"iou/{name}"], values[f"f1/{name}"] = iou, f1
    return {f"{prefix}/{k}": float(v) for k, v in values.items()}
