"""The ``segmenter`` trainable: an ``smp.create_model`` network (P001's U-Net encoders) on the shared loop.

Every epoch it reports, besides the loop's keys (``train/loss``, ``val/loss``, ``time/train_s``,
``time/total_s``, ...), ``val/iou`` and ``val/f1`` (per image, averaged over images: P001's
metric), ``val/iou_dataset``, ``val/f1_dataset``, ``val/pixel_accuracy``, ``val/precision``,
``val/recall`` (per class ``val/iou/<class>``, ``val/f1/<class>`` for K > 2) and the
``empty_mask_score`` convention they use. The last epoch adds the same ``test/*`` scored with
the best validation epoch's weights, and writes ``test/per_image.csv``, best/worst overlays,
curves and Grad-CAM to ``<trial dir>/artifacts/``.

Example (inside Ray Tune)::

    tuner = tune.Tuner(get_trainable("segmenter").as_trainable(),
                       param_space={"data": {"path": "synthetic:corrosion"}, "image_size": 64})
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from trainables import loop
from trainables.data.augment import build_augmentation
from trainables.data.prepare import load_index
from trainables.data.segmentation import load_segmentation_tensors
from trainables.data.tensors import SplitTensors
from trainables.metrics import per_image_scores, segmentation_metrics, segmentation_stats
from trainables.segmenter_build import build_loss, build_model
from trainables.segmenter_config import SegmenterConfig

__all__ = ["SegmenterTask", "train_segmenter"]


class SegmenterTask(loop.Task):
    """Semantic segmentation: ``SplitTensors.labels`` are (N, H, W) uint8 class-index masks."""

    cfg: SegmenterConfig

    def load_data(self) -> dict[str, SplitTensors]:
        cfg = self.cfg
        data = load_segmentation_tensors(load_index(cfg.data, "segmentation"), cfg.image_size, cfg.resize, cfg.num_classes)
        self.num_classes, self.classes, self.paths = data.num_classes, data.classes, data.paths
        self.augmentation = build_augmentation(cfg.augmentation)
        return {split: SplitTensors(images=data.images[split], labels=data.masks[split]) for split in data.images}

    def build_model(self) -> nn.Module:
        return build_model(self.cfg, self.num_classes)

    def build_loss(self) -> nn.Module:
        return build_loss(self.cfg, self.num_classes)

    def train_batch(self, index: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        train = self.splits["train"]
        # masks move with their images (nearest-neighbour resampling of the same draw)
        images, masks = self.augmentation(train.images[index], train.labels[index].unsqueeze(1), generator)
        return images, masks[:, 0].long()  # (B, 3, H, W) uint8, (B, H, W) int64

    def targets_for_loss(self, data: SplitTensors) -> torch.Tensor:
        return data.labels.long()

    def score(self, outputs: torch.Tensor, data: SplitTensors, prefix: str) -> dict[str, float]:
        return segmentation_metrics(
            outputs, data.labels, self.num_classes, threshold=self.cfg.threshold,
            empty_mask_score=self.cfg.empty_mask_score, prefix=prefix, class_names=self.classes,
        )

    def report_extras(self) -> dict[str, Any]:
        return {"empty_mask_score": self.cfg.empty_mask_score}

    def checkpoint_extras(self) -> dict[str, Any]:
        return {"classes": list(self.classes), "num_classes": self.num_classes}

    def write_artifacts(self, model: nn.Module, out_dir: Path, history: list[dict[str, Any]], device: torch.device) -> dict[str, Path]:
        """Per-image CSV, overlays and Grad-CAM of the test split (validation without one), curves."""
        from trainables.segmenter_artifacts import write_segmenter_artifacts

        cfg = self.cfg
        split = "test" if "test" in self.splits else "val"
        data = self.splits[split]
        logits = loop.predict(model, data.images, cfg, device)
        f1, iou = per_image_scores(segmentation_stats(logits, data.labels, self.num_classes, cfg.threshold), cfg.empty_mask_score)
        return write_segmenter_artifacts(
            out_dir, model=model, images=data.images, masks=data.labels.long(), logits=logits, paths=self.paths[split],
            f1=f1, iou=iou, history=history, num_classes=self.num_classes, threshold=cfg.threshold,
            empty_mask_score=cfg.empty_mask_score, overlay_images=cfg.overlay_images, gradcam_images=cfg.gradcam_images,
            normalization=cfg.normalization,
        )


def train_segmenter(config: dict[str, Any]) -> None:
    """Ray Tune function trainable; ``config`` validates as :class:`SegmenterConfig`."""
    loop.fit(SegmenterTask(SegmenterConfig.model_validate(config)))
