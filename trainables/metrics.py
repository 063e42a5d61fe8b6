"""Classification metrics from logits, with torchmetrics; names follow ``<split>/<metric>``."""

from __future__ import annotations

from typing import Sequence

import torch
from torchmetrics.functional import classification as tmf

__all__ = ["classification_metrics"]


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
