"""The ``esg_convnext`` trainable (P004): the classification task with ESG-ConvNeXt and P004's defaults.

It is the classifier's task (:class:`~trainables.classifier.ClassifierTask`: data, splits,
offline expansion, metrics, confusion matrix, ROC/PR, curves) on the shared loop
(:func:`trainables.loop.fit`: resume, schedule, best epoch, test), with its own network, loss
and extras:

* network: ``esg_convnext_<size>`` with the trial's switches, split into backbone and
  P004's head (GAP → LayerNorm → Linear); loss: cross-entropy over K logits;
* ``model/fps_b1`` and ``model/fps``: inference images/s at batch 1 and at ``batch_size`` on
  the trial's device, beside the loop's ``model/params``/``model/gflops`` (``profile: true``);
* artifacts: ``gradcam_class_<i>.png`` (the first test image of every class), ``tsne.png`` and
  ``tsne.csv`` (t-SNE of the penultimate test features, seed 42).

Every epoch reports macro ``val/precision``, ``val/recall``, ``val/f1`` and ``val/accuracy``
(plus ROC-AUC, PR-AUC, κ and per-class F1); the last epoch adds the same on ``test/``.

Example (inside Ray Tune)::

    tuner = tune.Tuner(train_esg_convnext, param_space={"data": {"path": "synthetic:corrosion"}, "size": "atto"})
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from trainables import loop
from trainables.classifier import ClassifierTask
from trainables.classifier_build import _class_weights  # the classifier's class-weight rule, shared
from trainables.esg_convnext_config import EsgConvNeXtConfig
from trainables.losses import create_loss

__all__ = ["EsgConvNeXtTask", "train_esg_convnext"]

logger = logging.getLogger(__name__)


class EsgConvNeXtTask(ClassifierTask):
    """ESG-ConvNeXt classification: the classifier's task with P004's network, loss and extras."""

    cfg: EsgConvNeXtConfig

    def build_model(self) -> nn.Module:
        import timm

        from trainables.models.esg_convnext import EsgConvNeXtClassifier  # registers esg_convnext_<size>

        network = timm.create_model(f"esg_convnext_{self.cfg.size}", num_classes=len(self.classes), **self.cfg.network_kwargs)
        self.model = EsgConvNeXtClassifier(network)
        self._fps_due = self.cfg.profile  # measured once per (re)start, like the loop's model/* profile
        return self.model

    def build_loss(self) -> nn.Module:
        classes = len(self.classes)
        weights = _class_weights(self.cfg, self.splits["train"].labels, classes)
        return create_loss("ce", num_outputs=classes, label_smoothing=self.cfg.label_smoothing, class_weights=weights)

    def report_extras(self) -> dict[str, Any]:
        if not self._fps_due:
            return {}
        self._fps_due = False
        from trainables.esg_convnext_artifacts import images_per_second

        cfg, device = self.cfg, next(self.model.parameters()).device
        measure = lambda batch: images_per_second(  # noqa: E731
            self.model, cfg.image_size, batch, device, repeats=cfg.fps_repeats, amp=cfg.amp
        )
        return {"model/fps_b1": measure(1), "model/fps": measure(cfg.batch_size)}

    def write_artifacts(self, model: nn.Module, out_dir: Path, history: list[dict[str, Any]], device: torch.device) -> dict[str, Path]:
        """The classifier's artifacts, then per-class Grad-CAM and the t-SNE of the test split."""
        from trainables.artifacts import save_gradcam
        from trainables.esg_convnext_artifacts import first_of_each_class, penultimate_features, save_tsne

        written = super().write_artifacts(model, out_dir, history, device)
        data = self.splits.get("test") or self.splits["val"]
        jobs = []
        if self.cfg.gradcam_per_class:
            index = first_of_each_class(data.labels, len(self.classes))
            jobs.append(("gradcam_class", lambda: save_gradcam(
                model, data.images[index], data.labels[index].tolist(), self.classes, out_dir,
                normalization=self.cfg.normalization, prefix="gradcam_class", max_images=len(index), binary=False,
            )))
        if self.cfg.tsne:
            jobs.append(("tsne", lambda: save_tsne(
                penultimate_features(model, data.images, self.cfg, device), data.labels.tolist(), self.classes, out_dir
            )))
        for name, job in jobs:
            try:
                paths = job()
            except Exception as err:  # one broken artifact must not cost the others (as write_trial_artifacts)
                logger.warning("could not write artifact %s in %s: %s: %s", name, out_dir, type(err).__name__, err)
                continue
            written.update({path.name: path for path in paths})
        return written


def train_esg_convnext(config: dict[str, Any]) -> None:
    """Ray Tune function trainable; ``config`` validates as :class:`EsgConvNeXtConfig`."""
    loop.fit(EsgConvNeXtTask(EsgConvNeXtConfig.model_validate(config)))
