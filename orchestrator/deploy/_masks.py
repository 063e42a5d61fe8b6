"""Segmentation outputs of ``predict``: a mask PNG and an overlay PNG per image, and a CSV of
foreground fractions; masks are mapped back from the model's frame to each image's own size."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageOps

from corrotune.files import atomic_open
from orchestrator.deploy._outputs import AtomicText
from trainables.data.cache import to_rgb

__all__ = ["SegmentationOutputs", "to_original_frame"]

_OVERLAY_ALPHA = 0.45
_PALETTE = np.array([[0, 0, 0], [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
                     [145, 30, 180], [70, 240, 240], [240, 50, 230], [210, 245, 60]], np.uint8)


def _center_crop_box(width: int, height: int) -> tuple[float, float, float, float]:
    """The source box ``ImageOps.fit(image, (S, S))`` resamples from (centering 0.5, no bleed)."""
    if width >= height:
        left = (width - height) * 0.5
        return left, 0.0, left + height, float(height)
    top = (height - width) * 0.5
    return 0.0, top, float(width), top + width


def to_original_frame(mask: np.ndarray, size: tuple[int, int], policy: str) -> np.ndarray:
    """An (S, S) class-index mask in the model's frame → (H, W) in the image's own frame.

    ``stretch`` and ``letterbox`` cover the whole image (letterbox padding is cut off first);
    ``center_crop`` saw only the central square, the rest is background (0).
    """
    width, height = size
    s = mask.shape[0]
    frame = Image.fromarray(mask.astype(np.uint8), "L")
    nearest = Image.Resampling.NEAREST
    if policy == "stretch":
        return np.asarray(frame.resize((width, height), nearest))
    if policy == "letterbox":
        rw, rh = ImageOps.contain(Image.new("L", (width, height)), (s, s)).size
        x = round((s - rw) * 0.5) if rw != s else 0
        y = round((s - rh) * 0.5) if rh != s else 0
        return np.asarray(frame.crop((x, y, x + rw, y + rh)).resize((width, height), nearest))
    left, top, right, bottom = _center_crop_box(width, height)
    out = Image.new("L", (width, height), 0)
    box = (round(left), round(top), round(right), round(bottom))
    out.paste(frame.resize((box[2] - box[0], box[3] - box[1]), nearest), box[:2])
    return np.asarray(out)


def _overlay(image: Image.Image, mask: np.ndarray) -> Image.Image:
    """The image with each foreground class tinted by its palette colour."""
    rgb = np.asarray(to_rgb(image), dtype=np.float32)
    colours = _PALETTE[np.minimum(mask, len(_PALETTE) - 1)].astype(np.float32)
    tinted = np.where((mask > 0)[..., None], (1 - _OVERLAY_ALPHA) * rgb + _OVERLAY_ALPHA * colours, rgb)
    return Image.fromarray(tinted.round().astype(np.uint8), "RGB")


def _save_png(image: Image.Image, path: Path) -> None:
    """Writes ``path`` whole or not at all (:func:`corrotune.files.atomic_open`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path, "wb") as handle:
        image.save(handle, format="PNG")


class SegmentationOutputs:
    """``masks/<stem>.png`` (0/255 for binary models, class indices otherwise) and
    ``overlays/<stem>.png`` per image, in the image's own size and sub-folder, and
    ``predictions.csv``: ``path, mask, overlay, foreground_fraction`` (and ``fraction_<class>``
    per foreground class of K-class models).

    Args:
        out_dir: The output folder.
        classes: Class names, background first.
        policy: The model's resize policy (to map masks back to each image's frame).
    """

    def __init__(self, out_dir: Path, classes: Sequence[str], policy: str) -> None:
        self.out_dir, self.classes, self.policy = out_dir, list(classes), policy
        self.path = out_dir / "predictions.csv"
        self._file = AtomicText(self.path)
        self._writer = None
        self._stems: set[str] = set()
        self.rows = 0

    def __enter__(self) -> "SegmentationOutputs":
        self._writer = csv.writer(self._file.__enter__())
        extra = [f"fraction_{c}" for c in self.classes[1:]] if len(self.classes) > 2 else []
        self._writer.writerow(["path", "mask", "overlay", "foreground_fraction", *extra])
        return self

    def __exit__(self, kind, error, traceback) -> None:
        self._file.__exit__(kind, error, traceback)

    def _stem(self, rel: str) -> str:
        """``dir/name`` without suffix; ``dir/name.jpg`` when another image already took it."""
        stem = rel.rsplit(".", 1)[0] if "." in rel.rsplit("/", 1)[-1] else rel
        stem = rel if stem in self._stems else stem
        self._stems.add(stem)
        return stem

    def add(self, paths: Sequence[str], predictions, originals: Sequence[Image.Image]) -> None:
        binary = len(self.classes) == 2
        for rel, mask, original in zip(paths, predictions.predicted, originals):
            full = to_original_frame(mask, original.size, self.policy)  # (H, W) class indices
            stem = self._stem(rel)
            mask_rel, overlay_rel = f"masks/{stem}.png", f"overlays/{stem}.png"
            _save_png(Image.fromarray((full * 255 if binary else full).astype(np.uint8), "L"), self.out_dir / mask_rel)
            _save_png(_overlay(original, full), self.out_dir / overlay_rel)
            counts = np.bincount(full.ravel(), minlength=len(self.classes)) / full.size
            extra = [f"{c:.6g}" for c in counts[1:]] if not binary else []
            self._writer.writerow([rel, mask_rel, overlay_rel, f"{1.0 - counts[0]:.6g}", *extra])
        self.rows += len(paths)
