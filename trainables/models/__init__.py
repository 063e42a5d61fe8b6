"""Pure ``nn.Module`` models: no Ray, W&B, optimiser or file I/O.

Importing this package registers ESG-ConvNeXt's sizes with timm (``esg_convnext_atto`` ...).
"""

from trainables.models.classifier import ClassifierNet, GlobalPool
from trainables.models.esg_convnext import EsgConvNeXt, EsgConvNeXtClassifier

__all__ = ["ClassifierNet", "EsgConvNeXt", "EsgConvNeXtClassifier", "GlobalPool"]
