"""Ray Tune function trainables, looked up by name; their configs are pydantic models.

Importing this package is cheap (no torch): the trainables themselves load on ``entry.load()``.

Example:
    >>> from trainables import get_trainable
    >>> entry = get_trainable("classifier")
    >>> entry.config_model(data={"path": "/data/corrosion"}).backbone
    'resnet18'
"""

from trainables._registry import ARTIFACT_COUNT_KEY, TRAINABLES, TRIAL_META_KEY, TrainableEntry, get_trainable, register_trainable, split_trial_meta
from trainables.classifier_config import ClassifierConfig
from trainables.data.config import DataConfig
from trainables.esg_convnext_config import EsgConvNeXtConfig
from trainables.noop_config import NoopConfig
from trainables.segmenter_config import SegmenterConfig
from trainables.training_config import TrainingConfig

_TIMINGS = ("time/*", "resumed_from_epoch", "epoch")
_LOOP_METRICS = ("train/loss", "lr", "phase", "best_epoch", "val/best", "model/*", ARTIFACT_COUNT_KEY, *_TIMINGS)


def _reported(config, *extra: str) -> tuple[str, ...]:
    """What a trainable on the shared loop reports: its ``SELECT_METRICS`` and ``extra`` (names
    after ``val/``), each also per class (``val/f1/<class>``) and under ``test/``, plus the loop's keys."""
    names = [m.split("/", 1)[1] for m in config.SELECT_METRICS] + list(extra)
    return (*_LOOP_METRICS, *(f"{split}/{n}{per}" for split in ("val", "test") for n in names for per in ("", "/*")))



_TINY_DATA = {"path": "synthetic:corrosion", "synthetic": {"num_images": 40, "image_size": 32}}

register_trainable(
    "classifier", ClassifierConfig, "trainables.classifier:train_classifier", task="classification",
    test_columns=("test/accuracy", "test/f1"),
    artifact_files=("confusion_matrix.png", "roc.png", "pr.png", "curves.png"),
    tiny_config={
        "data": _TINY_DATA, "backbone": "resnet10t", "image_size": 32, "batch_size": 8, "epochs": 2,
        "dense_units": 8, "gradcam_images": 1, "profile": False,
    },
    metrics=_reported(ClassifierConfig, "tp", "fp", "tn", "fn"),
)
register_trainable(
    "segmenter", SegmenterConfig, "trainables.segmenter:train_segmenter", task="segmentation",
    test_columns=("test/iou", "test/f1"),
    artifact_files=("curves.png", "test/per_image.csv", "overlay_best_00.png", "overlay_worst_00.png", "gradcam_000.png"),
    tiny_config={
        "data": _TINY_DATA, "encoder": "resnet18", "encoder_depth": 3, "image_size": 32, "batch_size": 4,
        "epochs": 2, "overlay_images": 1, "gradcam_images": 1, "profile": False,
    },
    metrics=_reported(SegmenterConfig),
)
register_trainable(
    "esg_convnext", EsgConvNeXtConfig, "trainables.esg_convnext:train_esg_convnext", task="classification",
    test_columns=("test/accuracy", "test/f1"),
    artifact_files=("confusion_matrix.png", "roc.png", "pr.png", "curves.png", "tsne.png", "tsne.csv"),
    tiny_config={
        "data": _TINY_DATA, "depths": [1, 1, 1, 1], "dims": [8, 16, 16, 16], "image_size": 64, "batch_size": 8,
        "epochs": 2, "warmup_epochs": 0, "offline_expansion": 1, "profile": False,
    },
    metrics=_reported(EsgConvNeXtConfig, "tp", "fp", "tn", "fn"),
)
register_trainable(
    "noop", NoopConfig, "trainables.noop:train_noop", task="classification",
    tiny_config={"data": _TINY_DATA, "epochs": 2, "x": 0.5},
    metrics=("score", "node_id", "pid", *_TIMINGS),
)

__all__ = [
    "ARTIFACT_COUNT_KEY",
    "TRAINABLES",
    "TRIAL_META_KEY",
    "ClassifierConfig",
    "DataConfig",
    "EsgConvNeXtConfig",
    "SegmenterConfig",
    "TrainableEntry",
    "TrainingConfig",
    "get_trainable",
    "register_trainable",
    "split_trial_meta",
]
