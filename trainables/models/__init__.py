"""Pure ``nn.Module`` models: no Ray, W&B, optimiser or file I/O."""

from trainables.models.classifier import ClassifierNet, GlobalPool

__all__ = ["ClassifierNet", "GlobalPool"]
