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
from trainables.training_config import TrainingConfig

_TINY_DATA = {"path": "synthetic:corrosion", "synthetic": {"num_images": 40, "image_size": 32}}

register_trainable(
    "classifier", ClassifierConfig, "trainables.classifier:train_classifier", task="classification",
    test_columns=("test/accuracy", "test/f1"),
    artifact_files=("confusion_matrix.png", "roc.png", "pr.png", "curves.png"),
    tiny_config={
        "data": _TINY_DATA, "backbone": "resnet10t", "image_size": 32, "batch_size": 8, "epochs": 2,
        "dense_units": 8, "gradcam_images": 1, "profile": False,
    },
)
register_trainable(
    "esg_convnext", EsgConvNeXtConfig, "trainables.esg_convnext:train_esg_convnext", task="classification",
    test_columns=("test/accuracy", "test/f1"),
    artifact_files=("confusion_matrix.png", "roc.png", "pr.png", "curves.png", "tsne.png", "tsne.csv"),
    tiny_config={
        "data": _TINY_DATA, "depths": [1, 1, 1, 1], "dims": [8, 16, 16, 16], "image_size": 64, "batch_size": 8,
        "epochs": 2, "warmup_epochs": 0, "offline_expansion": 1, "profile": False,
    },
)
register_trainable(
    "noop", NoopConfig, "trainables.noop:train_noop", task="classification",
    tiny_config={"data": _TINY_DATA, "epochs": 2, "x": 0.5},
)

__all__ = [
    "ARTIFACT_COUNT_KEY",
    "TRAINABLES",
    "TRIAL_META_KEY",
    "ClassifierConfig",
    "DataConfig",
    "EsgConvNeXtConfig",
    "TrainableEntry",
    "TrainingConfig",
    "get_trainable",
    "register_trainable",
    "split_trial_meta",
]
