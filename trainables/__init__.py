"""Ray Tune function trainables, looked up by name; their configs are pydantic models.

Importing this package is cheap (no torch): the trainables themselves load on ``entry.load()``.

Example:
    >>> from trainables import get_trainable
    >>> entry = get_trainable("classifier")
    >>> entry.config_model(data={"path": "/data/corrosion"}).backbone
    'resnet18'
"""

from trainables._registry import TRAINABLES, TrainableEntry, get_trainable, register_trainable
from trainables.classifier_config import ClassifierConfig
from trainables.data.config import DataConfig

register_trainable("classifier", ClassifierConfig, "trainables.classifier:train_classifier", task="classification")

__all__ = [
    "TRAINABLES",
    "ClassifierConfig",
    "DataConfig",
    "TrainableEntry",
    "get_trainable",
    "register_trainable",
]
