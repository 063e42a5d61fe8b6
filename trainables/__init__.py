"""Ray Tune function trainables, looked up by name; their configs are pydantic models.

Importing this package is cheap (no torch): the trainables themselves load on ``entry.load()``.

Example:
    >>> from trainables import get_trainable
    >>> entry = get_trainable("classifier")
    >>> entry.config_model(data={"path": "/data/corrosion"}).backbone
    'resnet18'
"""

from trainables._registry import TRAINABLES, TRIAL_META_KEY, TrainableEntry, get_trainable, register_trainable, split_trial_meta
from trainables.classifier_config import ClassifierConfig
from trainables.data.config import DataConfig
from trainables.noop_config import NoopConfig

_TIMINGS = ("time/*", "resumed_from_epoch", "epoch")
CLASSIFIER_METRICS = (
    "train/loss", "lr", "phase", "best_epoch", "val/best", "model/params", "model/gflops", "model/latency_ms",
    *(f"{split}/{name}" for split in ("val", "test") for name in (
        "loss", "accuracy", "precision", "recall", "f1", "roc_auc", "pr_auc", "kappa", "tp", "fp", "tn", "fn", "f1/*")),
    *_TIMINGS,
)
"""What ``trainables/classifier.py`` reports (``test/*`` once, at the end of a full budget)."""

register_trainable(
    "classifier", ClassifierConfig, "trainables.classifier:train_classifier", task="classification", metrics=CLASSIFIER_METRICS
)
register_trainable("noop", NoopConfig, "trainables.noop:train_noop", task="classification", metrics=("score", "node_id", "pid", *_TIMINGS))

__all__ = [
    "TRAINABLES",
    "TRIAL_META_KEY",
    "ClassifierConfig",
    "DataConfig",
    "TrainableEntry",
    "get_trainable",
    "register_trainable",
    "split_trial_meta",
]
