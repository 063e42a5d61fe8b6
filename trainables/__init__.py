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

register_trainable("classifier", ClassifierConfig, "trainables.classifier:train_classifier", task="classification")
register_trainable("noop", NoopConfig, "trainables.noop:train_noop", task="classification")

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
