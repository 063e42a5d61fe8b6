"""Reads segmentation data: image/mask folder pairs, or COCO instance annotations.

Layouts:
    * ``images/`` + ``masks/`` matched by file stem (``masks/x.png`` for ``images/x.jpg``);
    * pre-split ``{train,val,test}/{images,masks}``;
    * COCO instance-segmentation JSON (polygons and RLE), rasterised once to semantic PNG masks.

Masks are binary 0/255 or class-index PNGs; JPEG masks are accepted (thresholded at load) and
flagged by the scan.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
from PIL import Image

from trainables.data._paths import cache_dir as default_cache_dir
from trainables.data.folder import IMAGE_SUFFIXES, is_image_file, split_dirs
from trainables.data.index import Sample, SampleIndex

__all__ = ["load_mask", "rasterize_coco", "read_coco", "read_segmentation_folder"]


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
