"""classification_metrics against hand computations from known confusion counts."""

from __future__ import annotations

import math

import pytest
import torch

from trainables.metrics import classification_metrics

BINARY_KEYS = {"accuracy", "precision", "recall", "f1", "roc_auc", "pr_auc", "kappa", "tp", "fp", "tn", "fn"}
MULTI_KEYS = {"accuracy", "precision", "recall", "f1", "roc_auc", "pr_auc", "kappa"}


def _binary_case(tp: int, fn: int, tn: int, fp: int, margin: float = 2.0):
    """(N, 1) logits for class 1 and (N,) targets with exactly these counts (class 1 positive)."""
    targets = torch.tensor([1] * (tp + fn) + [0] * (tn + fp))
    logits = torch.tensor([margin] * tp + [-margin] * fn + [-margin] * tn + [margin] * fp).view(-1, 1)
    return logits, targets


def _kappa(tp: int, fn: int, tn: int, fp: int) -> float:
    n = tp + fn + tn + fp
    observed = (tp + tn) / n
    expected = ((tp + fp) * (tp + fn) + (tn + fn) * (tn + fp)) / n**2
    return (observed - expected) / (1 - expected)


# P002's ResNet50 confusion counts
P002 = dict(tp=180, fn=9, tn=215, fp=5)


def test_p002_counts_reproduce_the_papers_scores():
    logits, targets = _binary_case(**P002)
    m = classification_metrics(logits, targets, num_classes=2, positive_index=1, prefix="test")
    assert {k.split("/", 1)[1] for k in m} == BINARY_KEYS
    assert all(k.startswith("test/") for k in m)
    assert all(isinstance(v, float) for v in m.values())
    assert (m["test/tp"], m["test/fn"], m["test/tn"], m["test/fp"]) == (180, 9, 215, 5)
    assert round(m["test/accuracy"], 4) == 0.9658
    assert round(m["test/kappa"], 4) == 0.9310
    assert m["test/kappa"] == pytest.approx(_kappa(**P002), abs=1e-6)
    assert m["test/accuracy"] == pytest.approx(395 / 409, abs=1e-6)
    assert m["test/precision"] == pytest.approx(180 / 185, abs=1e-6)
    assert m["test/recall"] == pytest.approx(180 / 189, abs=1e-6)
    assert m["test/f1"] == pytest.approx(2 * 180 / (2 * 180 + 5 + 9), abs=1e-6)


def test_order_of_samples_does_not_matter():
    logits, targets = _binary_case(**P002)
    perm = torch.randperm(len(targets), generator=torch.Generator().manual_seed(0))
    a = classification_metrics(logits, targets, 2)
    b = classification_metrics(logits[perm], targets[perm], 2)
    assert a == pytest.approx(b, abs=1e-6)


def test_positive_index_zero_swaps_the_roles_of_the_classes():
    logits, targets = _binary_case(**P002)
    m = classification_metrics(logits, targets, num_classes=2, positive_index=0)
    # class 0 is positive: its 215 hits are TP, class-1 hits are TN
    assert (m["val/tp"], m["val/fn"], m["val/tn"], m["val/fp"]) == (215, 5, 180, 9)
    assert m["val/precision"] == pytest.approx(215 / 224, abs=1e-6)
    assert m["val/recall"] == pytest.approx(215 / 220, abs=1e-6)
    assert m["val/f1"] == pytest.approx(2 * 215 / (2 * 215 + 9 + 5), abs=1e-6)
    # symmetric scores do not change
    one = classification_metrics(logits, targets, num_classes=2, positive_index=1)
    assert m["val/accuracy"] == pytest.approx(one["val/accuracy"], abs=1e-6)
    assert m["val/kappa"] == pytest.approx(one["val/kappa"], abs=1e-6)


def test_logit_zero_is_predicted_as_class_one():
    logits = torch.zeros(4, 1)
    targets = torch.tensor([0, 1, 1, 0])
    m = classification_metrics(logits, targets, 2)
    assert (m["val/tp"], m["val/fp"], m["val/tn"], m["val/fn"]) == (2, 2, 0, 0)


def test_accepts_flat_logits_and_float_targets():
    logits, targets = _binary_case(tp=3, fn=1, tn=4, fp=2)
    a = classification_metrics(logits, targets, 2)
    b = classification_metrics(logits.view(-1), targets.float(), 2)
    assert a == b


@pytest.mark.parametrize("positive_index", [0, 1])
def test_roc_auc_is_one_for_perfectly_separated_scores(positive_index):
    # every logit > 0 (all predicted class 1), but class 1 ranks strictly above class 0:
    # thresholded metrics are poor, ranking metrics perfect
    targets = torch.tensor([0, 0, 0, 1, 1, 1, 1])
    logits = torch.tensor([0.1, 0.2, 0.3, 1.0, 2.0, 3.0, 4.0]).view(-1, 1)
    m = classification_metrics(logits, targets, 2, positive_index=positive_index)
    assert m["val/roc_auc"] == pytest.approx(1.0)
    assert m["val/pr_auc"] == pytest.approx(1.0)
    assert m["val/accuracy"] == pytest.approx(4 / 7)


def test_roc_auc_is_zero_for_perfectly_inverted_scores():
    targets = torch.tensor([0, 0, 1, 1])
    logits = torch.tensor([3.0, 2.0, -2.0, -3.0]).view(-1, 1)
    m = classification_metrics(logits, targets, 2)
    assert m["val/roc_auc"] == pytest.approx(0.0)
    assert m["val/accuracy"] == 0.0
    assert m["val/kappa"] < 0


@pytest.mark.parametrize("positive_index", [0, 1])
def test_roc_auc_is_one_half_for_constant_scores(positive_index):
    targets = torch.tensor([0, 1] * 10)
    m = classification_metrics(torch.full((20, 1), 0.7), targets, 2, positive_index=positive_index)
    assert m["val/roc_auc"] == pytest.approx(0.5, abs=1e-6)
    assert m["val/kappa"] == pytest.approx(0.0, abs=1e-6)


def test_perfect_binary_predictions():
    logits, targets = _binary_case(tp=5, fn=0, tn=7, fp=0)
    m = classification_metrics(logits, targets, 2)
    for key in ("accuracy", "precision", "recall", "f1", "roc_auc", "pr_auc", "kappa"):
        assert m[f"val/{key}"] == pytest.approx(1.0), key


# ---------------------------------------------------------------- multi-class

TARGETS_3 = [0, 0, 0, 1, 1, 2, 2, 2, 2]
PREDS_3 = [0, 0, 1, 1, 2, 2, 2, 0, 2]


def _one_hot_logits(preds: list[int], k: int) -> torch.Tensor:
    logits = torch.full((len(preds), k), -1.0)
    logits[torch.arange(len(preds)), torch.tensor(preds)] = 2.0
    return logits


def _per_class_counts(targets, preds, k):
    out = []
    for c in range(k):
        tp = sum(t == c and p == c for t, p in zip(targets, preds))
        fp = sum(t != c and p == c for t, p in zip(targets, preds))
        fn = sum(t == c and p != c for t, p in zip(targets, preds))
        out.append((tp, fp, fn))
    return out


def test_multiclass_macro_scores_are_means_of_hand_computed_per_class_scores():
    m = classification_metrics(_one_hot_logits(PREDS_3, 3), torch.tensor(TARGETS_3), 3, prefix="val")
    assert {k.split("/", 1)[1] for k in m} == MULTI_KEYS  # no confusion counts for K > 2
    counts = _per_class_counts(TARGETS_3, PREDS_3, 3)
    # class 0: tp 2 fp 1 fn 1; class 1: tp 1 fp 1 fn 1; class 2: tp 3 fp 1 fn 1
    assert counts == [(2, 1, 1), (1, 1, 1), (3, 1, 1)]
    precision = [tp / (tp + fp) for tp, fp, fn in counts]
    recall = [tp / (tp + fn) for tp, fp, fn in counts]
    f1 = [2 * tp / (2 * tp + fp + fn) for tp, fp, fn in counts]
    assert m["val/f1"] == pytest.approx(sum(f1) / 3, abs=1e-6)
    assert m["val/f1"] == pytest.approx((4 / 6 + 2 / 4 + 6 / 8) / 3, abs=1e-6)
    assert m["val/precision"] == pytest.approx(sum(precision) / 3, abs=1e-6)
    assert m["val/recall"] == pytest.approx(sum(recall) / 3, abs=1e-6)


def test_multiclass_accuracy_is_micro_not_macro():
    m = classification_metrics(_one_hot_logits(PREDS_3, 3), torch.tensor(TARGETS_3), 3)
    micro = sum(t == p for t, p in zip(TARGETS_3, PREDS_3)) / len(TARGETS_3)  # 6/9
    macro = (2 / 3 + 1 / 2 + 3 / 4) / 3  # mean per-class recall, differs here
    assert micro != pytest.approx(macro, abs=1e-3)
    assert m["val/accuracy"] == pytest.approx(micro, abs=1e-6)


def test_multiclass_kappa_matches_hand_computation():
    m = classification_metrics(_one_hot_logits(PREDS_3, 3), torch.tensor(TARGETS_3), 3)
    n = len(TARGETS_3)
    observed = sum(t == p for t, p in zip(TARGETS_3, PREDS_3)) / n
    expected = sum(TARGETS_3.count(c) * PREDS_3.count(c) for c in range(3)) / n**2
    assert m["val/kappa"] == pytest.approx((observed - expected) / (1 - expected), abs=1e-6)


def test_multiclass_roc_auc_perfect_and_constant():
    targets = torch.tensor([0, 0, 1, 1, 2, 2])
    perfect = classification_metrics(_one_hot_logits(targets.tolist(), 3), targets, 3)
    assert perfect["val/roc_auc"] == pytest.approx(1.0)
    assert perfect["val/accuracy"] == pytest.approx(1.0)
    assert perfect["val/f1"] == pytest.approx(1.0)
    constant = classification_metrics(torch.zeros(6, 3), targets, 3)
    assert constant["val/roc_auc"] == pytest.approx(0.5, abs=1e-6)


def test_multiclass_scores_ignore_positive_index():
    logits, targets = _one_hot_logits(PREDS_3, 3), torch.tensor(TARGETS_3)
    assert classification_metrics(logits, targets, 3, positive_index=0) == classification_metrics(
        logits, targets, 3, positive_index=2
    )


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("label", [0, 1])
def test_ranking_scores_of_single_class_targets_are_nan_not_zero(label):
    logits = torch.tensor([[1.0], [2.0], [-1.0]])
    m = classification_metrics(logits, torch.tensor([label] * 3), 2)
    assert math.isnan(m["val/roc_auc"]) and math.isnan(m["val/pr_auc"])  # undefined
    assert m["val/accuracy"] == pytest.approx((2 if label == 1 else 1) / 3)  # the rest still counts


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_multiclass_ranking_scores_of_single_class_targets_are_nan():
    m = classification_metrics(_one_hot_logits([0, 1, 0], 3), torch.tensor([0, 0, 0]), 3)
    assert math.isnan(m["val/roc_auc"]) and math.isnan(m["val/pr_auc"])
    assert m["val/accuracy"] == pytest.approx(2 / 3)


def test_two_softmax_logits_equal_the_one_sigmoid_logit_they_imply():
    """A ``loss: ce`` binary head gives (N, 2) logits; softmax(l)[1] == sigmoid(l1 - l0)."""
    logits, targets = _binary_case(**P002)
    rng = torch.Generator().manual_seed(0)
    jitter = torch.randn(len(targets), 1, generator=rng)  # different scores, same ranking info
    one = logits + jitter
    offset = torch.randn(len(targets), 1, generator=rng)
    two = torch.cat([offset, offset + one], dim=1)
    for positive_index in (0, 1):
        a = classification_metrics(one, targets, 2, positive_index)
        b = classification_metrics(two, targets, 2, positive_index)
        assert b == pytest.approx(a, abs=1e-5)
    assert {k.split("/", 1)[1] for k in b} == BINARY_KEYS
