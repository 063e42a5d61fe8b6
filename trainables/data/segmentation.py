"""Reads segmentation data: image/mask folder pairs, or COCO instance annotations.

Layouts:
    * ``images/`` + ``masks/`` matched by file stem (``masks/x.png`` for ``images/x.jpg``);
    * pre-split ``{train,val,test}/{images,masks}``;
    * COCO instance-segmentation JSON (polygons and RLE), rasterised once to semantic PNG masks.

Masks are binary 0/255 (or 0/1) or class-index PNGs; JPEG masks are accepted (each pixel snapped
to the nearest valid class value, so compression noise never creates a class) and flagged by the
scan. :func:`load_segmentation_tensors` decodes a split index for a trial, through the decode
cache, and checks the masks against their images and the declared classes.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import numpy as np
from PIL import Image

from corrotune.paths import cache_dir as default_cache_dir
from trainables.data.cache import open_decoded
from trainables.data.folder import IMAGE_SUFFIXES, is_image_file, split_dirs
from trainables.data.index import SPLITS, Sample, SampleIndex

if TYPE_CHECKING:
    import torch

__all__ = [
    "MaskError",
    "SegmentationData",
    "classes_to_indices",
    "load_mask",
    "load_segmentation_tensors",
    "rasterize_coco",
    "read_coco",
    "read_segmentation_folder",
]


def _pairs(images_dir: Path, masks_dir: Path, split: str | None) -> tuple[list[Sample], list[str], list[str]]:
    images = {p.stem: p for p in sorted(images_dir.iterdir()) if is_image_file(p)}
    masks = {p.stem: p for p in sorted(masks_dir.iterdir()) if is_image_file(p)}
    samples = [
        Sample(path=str(images[stem].resolve()), mask=str(masks[stem].resolve()), split=split)
        for stem in sorted(images.keys() & masks.keys())
    ]
    return samples, sorted(images.keys() - masks.keys()), sorted(masks.keys() - images.keys())


def read_segmentation_folder(root: str | os.PathLike, *, strict: bool = True) -> SampleIndex:
    """Indexes ``images/`` + ``masks/`` pairs (optionally under split folders).

    Args:
        root: The dataset folder.
        strict: Raise on images without masks and masks without images (else they are left out;
            the scan lists them).

    Raises:
        FileNotFoundError: ``root`` does not exist.
        ValueError: no ``images/``+``masks/`` layout, no pairs, or unmatched files with ``strict``.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset folder {str(root)!r} does not exist (set data.path to a segmentation folder)")
    splits = split_dirs(root)
    sources = splits or {None: root}
    samples: list[Sample] = []
    for split, folder in sources.items():
        images_dir, masks_dir = folder / "images", folder / "masks"
        if not images_dir.is_dir() or not masks_dir.is_dir():
            raise ValueError(f"{folder}: expected images/ and masks/ sub-folders for a segmentation dataset")
        pairs, no_mask, no_image = _pairs(images_dir, masks_dir, split)
        if strict and (no_mask or no_image):
            raise ValueError(
                f"{folder}: {len(no_mask)} image(s) without a mask (e.g. {no_mask[:3]}) and "
                f"{len(no_image)} mask(s) without an image (e.g. {no_image[:3]}); masks are matched by file stem. "
                "Fix the names, or set data.on_bad_files: skip to leave them out"
            )
        samples += pairs
    if not samples:
        raise ValueError(f"{root}: no image/mask pairs found")
    return SampleIndex(
        root=str(root), task="segmentation", layout="segmentation_presplit" if splits else "segmentation",
        classes=("background", "foreground"), samples=tuple(samples),
    )


def load_mask(path: str | os.PathLike) -> np.ndarray:
    """Returns a mask as uint8 (H, W) class indices: 0/255 and JPEG masks become 0/1."""
    with Image.open(path) as im:
        is_jpeg = im.format == "JPEG"
        array = np.asarray(im.convert("L") if im.mode not in ("L", "P", "I", "I;16") else im)
    if array.ndim == 3:
        array = array[..., 0]
    if is_jpeg or (array.max() > 1 and set(np.unique(array).tolist()) <= {0, 255}):
        return (array >= 128).astype(np.uint8)
    return array.astype(np.uint8)


def rasterize_coco(annotation_file: str | os.PathLike, out_dir: str | os.PathLike) -> dict[str, Path]:
    """Rasterises COCO instance annotations into one semantic PNG mask per image.

    One category gives binary 0/255 masks; several give class-index masks (category order
    of the file, 1..K, 0 = background). Overlaps: the later annotation wins.

    Returns:
        ``{image file_name: mask path}`` for every image listed in the file.
    """
    from pycocotools import mask as mask_utils

    coco = json.loads(Path(annotation_file).read_text())
    categories = [c["id"] for c in coco.get("categories", [])]
    value = {cid: (255 if len(categories) == 1 else i + 1) for i, cid in enumerate(categories)}
    by_image: dict[int, list[dict]] = {}
    for ann in coco.get("annotations", []):
        by_image.setdefault(ann["image_id"], []).append(ann)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    masks = {}
    for image in coco["images"]:
        h, w = int(image["height"]), int(image["width"])
        mask = np.zeros((h, w), np.uint8)
        for ann in by_image.get(image["id"], []):
            segmentation = ann["segmentation"]
            if isinstance(segmentation, list):
                if not segmentation:
                    continue
                rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, h, w))
            elif isinstance(segmentation.get("counts"), list):
                rle = mask_utils.frPyObjects(segmentation, h, w)
            else:
                rle = segmentation
            mask[mask_utils.decode(rle).astype(bool)] = value.get(ann["category_id"], 255)
        path = out_dir / (Path(image["file_name"]).stem + ".png")
        Image.fromarray(mask).save(path)
        masks[image["file_name"]] = path
    return masks


def read_coco(annotation_file: str | os.PathLike, images_dir: str | os.PathLike | None = None, cache_dir: str | os.PathLike | None = None) -> SampleIndex:
    """Indexes a COCO instance-segmentation dataset with rasterised semantic masks.

    Masks are written once under ``cache_dir`` (default ``$CORROTUNE_CACHE_DIR/coco`` or
    ``~/.cache/corrotune/coco``), keyed by the annotation file's content.

    Args:
        annotation_file: The COCO JSON.
        images_dir: Folder of the images (default: ``images/`` beside the JSON, else its folder).
        cache_dir: Where the rasterised masks go.

    Raises:
        ValueError: images listed in the JSON are missing on disk.
    """
    annotation_file = Path(annotation_file)
    if images_dir is None:
        images_dir = annotation_file.parent / "images"
        if not images_dir.is_dir():
            images_dir = annotation_file.parent
    images_dir = Path(images_dir)
    digest = hashlib.sha256(annotation_file.read_bytes()).hexdigest()[:16]
    base = Path(cache_dir) if cache_dir else default_cache_dir("coco")
    out_dir = base / digest
    coco = json.loads(annotation_file.read_text())
    missing = [im["file_name"] for im in coco["images"] if not (images_dir / im["file_name"]).is_file()]
    if missing:
        raise ValueError(f"{annotation_file}: {len(missing)} listed image(s) are missing in {images_dir} (e.g. {missing[:3]})")
    masks = rasterize_coco(annotation_file, out_dir) if not (out_dir / ".done").exists() else {
        im["file_name"]: out_dir / (Path(im["file_name"]).stem + ".png") for im in coco["images"]
    }
    (out_dir / ".done").touch()
    names = [c["name"] for c in coco.get("categories", [])]
    classes = ("background", *names) if len(names) > 1 else ("background", names[0] if names else "foreground")
    samples = tuple(
        Sample(path=str((images_dir / name).resolve()), mask=str(masks[name]))
        for name in sorted(masks)
        if Path(name).suffix.lower() in IMAGE_SUFFIXES
    )
    return SampleIndex(root=str(images_dir), task="segmentation", layout="coco", classes=classes, samples=samples)


class MaskError(ValueError):
    """Masks that cannot be used as declared; the message names the files and the fix."""


@dataclass(frozen=True)
class SegmentationData:
    """A trial's decoded segmentation splits.

    Attributes:
        images: ``{split: (N, 3, S, S) uint8}``.
        masks: ``{split: (N, S, S) uint8 class indices}``.
        paths: ``{split: image paths in row order}``.
        num_classes: K, background included.
        classes: K class names, background first.
        jpeg_masks: How many masks were JPEG files (snapped to the nearest class value).
    """

    images: dict[str, torch.Tensor]
    masks: dict[str, torch.Tensor]
    paths: dict[str, list[str]]
    num_classes: int
    classes: tuple[str, ...]
    jpeg_masks: int


def _fingerprint(path: str, content_hash: Optional[str]) -> str:
    if content_hash:
        return content_hash
    stat = os.stat(path)
    return f"{os.path.abspath(path)}|{stat.st_size}|{stat.st_mtime_ns}"


def _headers(samples: list[Sample]) -> list[bool]:
    """Checks every mask has its image's size; returns which masks are JPEG files."""
    jpeg, wrong = [], []
    for sample in samples:
        with Image.open(sample.path) as image, Image.open(sample.mask) as mask:
            jpeg.append(mask.format in ("JPEG", "MPO"))
            if image.size != mask.size:
                wrong.append(f"{sample.mask} is {mask.size[0]}x{mask.size[1]}, its image {sample.path} {image.size[0]}x{image.size[1]}")
    if wrong:
        raise MaskError(
            f"{len(wrong)} mask(s) differ in size from their image (e.g. {'; '.join(wrong[:3])}): "
            "save each mask at its image's size, or leave those pairs out"
        )
    return jpeg


def _detect_num_classes(values: set[int], dataset: SampleIndex) -> int:
    if dataset.layout == "coco":
        return len(dataset.classes)
    if values <= {0, 255} or values <= {0, 1}:
        return 2
    return max(values) + 1


def classes_to_indices(raw: np.ndarray, num_classes: int, jpeg: bool) -> np.ndarray:
    """One decoded mask's raw values → class indices 0..K-1 (uint8), or None when invalid.

    Binary (K = 2): 0/255 or 0/1. K > 2: the values are the indices. A JPEG mask is snapped to
    the nearest valid value (0/255 masks: at 128; class indices: clipped to K-1), so
    compression noise never creates a class; any other mask must hold only valid values.
    """
    top = int(raw.max()) if raw.size else 0
    if num_classes == 2:
        if jpeg:
            return (raw >= (128 if top > 127 else 1)).astype(np.uint8)
        if top <= 1 or set(np.unique(raw).tolist()) <= {0, 255}:
            return (raw > 0).astype(np.uint8)
        return None
    if jpeg:
        return np.minimum(raw, num_classes - 1).astype(np.uint8)
    return raw if top < num_classes else None


def load_segmentation_tensors(
    dataset: SampleIndex, size: int, resize: str = "stretch", num_classes: Optional[int] = None
) -> SegmentationData:
    """Decodes images and masks of every split (decode-once cache) and maps masks to class indices.

    Args:
        dataset: A split segmentation index.
        size: Square side in pixels (masks resized nearest-neighbour).
        resize: Resize policy of :func:`trainables.data.cache.resize_image`.
        num_classes: Declared K, or None to detect it from the masks (COCO: its categories).

    Raises:
        MaskError: a mask whose size differs from its image, values outside the declared (or
            detected) classes, or ``num_classes`` that disagrees with the data.
    """
    import torch

    ordered = sorted(dataset.samples, key=lambda s: s.path)
    jpeg = _headers(ordered)
    images = open_decoded([(s.path, _fingerprint(s.path, s.hash)) for s in ordered], size, resize, kind="image")
    raw = open_decoded([(s.mask, _fingerprint(s.mask, None)) for s in ordered], size, resize, kind="mask")
    plain_values = {int(v) for i in range(len(ordered)) if not jpeg[i] for v in np.unique(raw[i])}
    detected = _detect_num_classes(plain_values or {0, 1}, dataset)
    k = num_classes or detected
    masks = np.empty(raw.shape, dtype=np.uint8)
    bad = []
    for i, sample in enumerate(ordered):
        mapped = classes_to_indices(np.asarray(raw[i]), k, jpeg[i])
        if mapped is None:
            bad.append(f"{sample.mask} (values {sorted(np.unique(raw[i]).tolist())[:8]})")
        else:
            masks[i] = mapped
    if bad:
        hint = "0/255 or 0/1" if k == 2 else f"class indices 0..{k - 1}"
        fix = f"set num_classes: {detected}" if num_classes and detected != num_classes else "fix those masks"
        raise MaskError(
            f"{len(bad)} mask(s) hold values outside the {k} {'declared' if num_classes else 'detected'} classes "
            f"({hint}), e.g. {'; '.join(bad[:3])}: {fix}"
        )
    classes = dataset.classes if len(dataset.classes) == k else ("background", *(f"class_{i}" for i in range(1, k)))
    row = {s.path: i for i, s in enumerate(ordered)}
    out_images, out_masks, paths = {}, {}, {}
    for split in SPLITS:
        samples = dataset.split(split)
        if samples:
            rows = np.fromiter((row[s.path] for s in samples), dtype=np.int64, count=len(samples))
            out_images[split] = torch.from_numpy(np.ascontiguousarray(images[rows])).permute(0, 3, 1, 2).contiguous()
            out_masks[split] = torch.from_numpy(masks[rows])
            paths[split] = [s.path for s in samples]
    return SegmentationData(out_images, out_masks, paths, k, tuple(classes), sum(jpeg))
