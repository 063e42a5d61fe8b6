"""Scans a dataset folder and reports, before any training, everything a run would trip over.

Every file under the root is accounted for: junk and non-image files are listed, every image and
mask is read once (bytes hashed in the same read) and fully decoded, and each problem becomes a
:class:`Finding`. Severities say what a run does with the file:

* ``error``: the file cannot be used and a run skips it (:meth:`ScanReport.unusable`);
* ``warning``: usable, but converted, suspicious or outside the dataset's structure;
* ``info``: a notable fact (grey content, odd sizes, a COCO file next to the images).

Duplicates are judged on content: identical bytes within one class are ``duplicate``; identical
bytes under two classes are ``conflicting_labels`` with severity ``error`` for every copy (no
label can be trusted, so a run skips them all and the user relabels); identical bytes in two
splits are ``leakage``. Near-duplicates have the same three variants prefixed ``near_``, all
warnings, since a perceptual match can be a false alarm: a pair's 64-bit dHash (compared with the
other's 8 flips and quarter turns, so Roboflow-augmented copies count) is within the threshold,
and a 32×32 detail signature confirms it (dHash alone pairs up unrelated texture photos).
Near-duplicate groups are the connected components of those pairs.

PIL's ``ImageFile.LOAD_TRUNCATED_IMAGES`` is forced off while the files are decoded and restored
afterwards (not thread-safe: do not decode images in other threads of the process meanwhile).

Example:
    >>> report = scan_path("/data/steel_defects")  # doctest: +SKIP
    >>> print(report.summary())  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from trainables.data.checks import MACOS_ZIP_DIR, decode_file, skip_reason, strict_truncation, walk_files
from trainables.data.folder import SPLIT_ALIASES

__all__ = ["Finding", "ScanReport", "content_hash", "perceptual_hash", "scan_path"]

_SEVERITIES = ("error", "warning", "info")
_SUFFIX_FORMATS = {
    ".jpg": {"JPEG", "MPO"}, ".jpeg": {"JPEG", "MPO"}, ".png": {"PNG"}, ".bmp": {"BMP", "DIB"},
    ".tif": {"TIFF"}, ".tiff": {"TIFF"}, ".webp": {"WEBP"},
}
_INT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")
_MASK_DIR, _IMAGE_DIR = "masks", "images"
_MAX_INDEX_VALUE = 63  # masks whose values are all below this are read as class indices
# A dHash match is confirmed when the detail signatures agree: score = mean of their linear and
# sign-pattern correlations. Measured on the real datasets: re-saved (q70), resized (0.25-0.9x) or
# brightened copies score >= 0.80, Roboflow copies (shifted, recoloured) >= 0.75; unrelated photos
# whose dHash matched (texture sets, isolated bolts on white) <= 0.66.
_MIN_DETAIL_SCORE = 0.7


@dataclass
class Finding:
    """One problem or notable fact about one or more files.

    Attributes:
        kind: What was found (``truncated``, ``duplicate``, ``mode``, ...).
        severity: ``error`` (unusable: skipped), ``warning`` (usable, converted or suspicious)
            or ``info``.
        paths: The files concerned, relative to the scanned root (POSIX separators); folders end
            with ``/``; empty for findings about the whole dataset.
        detail: One human sentence.
    """

    kind: str
    severity: str
    paths: list[str]
    detail: str


@dataclass
class ScanReport:
    """What :func:`scan_path` found.

    Attributes:
        root: The folder scanned.
        layout: One of ``imagefolder``, ``presplit``, ``segmentation``, ``segmentation_presplit``,
            ``unknown``.
        num_files: Every regular file under the root (junk and masks included).
        num_images: Usable images (segmentation: usable image/mask pairs).
        classes: Usable images per class (``"red_iron"``), per split and class
            (``"train/corroded"``) or, for segmentation, per image folder (``"images"``,
            ``"train/images"``); empty class folders count 0.
        findings: Everything found, errors first.
        hashes: sha256 of every image and mask read, by relative path (computed from the same
            read as the decode).
    """

    root: str
    layout: str
    num_files: int
    num_images: int
    classes: dict[str, int]
    findings: list[Finding] = field(default_factory=list)
    hashes: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_json(cls, payload: dict) -> "ScanReport":
        """Rebuilds a report from :meth:`to_json` output (the scan cache)."""
        return cls(
            root=payload["root"], layout=payload["layout"], num_files=payload["num_files"],
            num_images=payload["num_images"], classes=dict(payload["classes"]),
            findings=[Finding(**f) for f in payload["findings"]], hashes=dict(payload.get("hashes", {})),
        )

    def unusable(self) -> list[str]:
        """Files with an error finding, sorted: exactly the files a run skips.

        ``layout`` errors name folders or the whole dataset, not files, and are not included.
        """
        return sorted({p for f in self.findings if f.severity == "error" and f.kind != "layout" for p in f.paths})

    def to_json(self) -> dict:
        """A JSON-serialisable dict with stable keys."""
        return {
            "root": self.root,
            "layout": self.layout,
            "num_files": self.num_files,
            "num_images": self.num_images,
            "classes": dict(self.classes),
            "unusable": self.unusable(),
            "findings": [asdict(f) for f in self.findings],
            "hashes": dict(self.hashes),
        }

    def summary(self, max_paths: int = 3) -> str:
        """A human summary: counts, then per severity each kind with its details and first paths."""
        ranked = sorted(self.classes.items(), key=lambda kv: (-kv[1], kv[0]))
        counts = ", ".join(f"{n} {c}" for c, n in ranked[:8]) + (", ..." if len(ranked) > 8 else "")
        lines = [f"{self.root}: {self.layout}, {self.num_images} {self._extent()}" + (f" ({counts})" if counts else "")]
        for severity, title in zip(_SEVERITIES, ("errors", "warnings", "info")):
            by_kind: dict[str, list[Finding]] = defaultdict(list)
            for f in self.findings:
                if f.severity == severity:
                    by_kind[f.kind].append(f)
            if not by_kind:
                lines.append(f"  {title}: none")
                continue
            lines.append(f"  {title}:")
            for kind, found in by_kind.items():
                files = {p for f in found for p in f.paths}
                if len(found) == 1:
                    lines.append(f"    {len(files)} {kind}: {_describe(found[0], max_paths)}")
                    continue
                lines.append(f"    {len(files)} {kind} in {len(found)} findings:")
                lines += [f"      - {_describe(f, max_paths)}" for f in found[:max_paths]]
                if len(found) > max_paths:
                    lines.append(f"      - ... {len(found) - max_paths} more")
        return "\n".join(lines)


    def _extent(self) -> str:
        """``"images in 2 classes over 3 splits"``: ``classes`` is keyed per split and class when pre-split."""
        splits = sorted({g.split("/")[0] for g in self.classes if "/" in g})
        over = f" over {len(splits)} split{'s' if len(splits) != 1 else ''}" if splits else ""
        if self.layout.startswith("segmentation"):
            return "image/mask pairs" + over
        names = {g.split("/")[-1] for g in self.classes}
        return f"images in {len(names)} class{'es' if len(names) != 1 else ''}{over}"


def _describe(finding: Finding, max_paths: int) -> str:
    shown = ", ".join(finding.paths[:max_paths]) + (", ..." if len(finding.paths) > max_paths else "")
    return finding.detail + (f" ({shown})" if shown else "")


def content_hash(path: str | os.PathLike) -> str:
    """sha256 hex digest of a file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def perceptual_hash(image: Image.Image) -> int:
    """64-bit difference hash (dHash): is each of 8×8 grey cells brighter than its right neighbour?

    Robust to re-encoding, resizing and small brightness changes; 16-bit and float images are
    hashed on their own value range, colour and alpha images on their grey level.
    """
    return _dhash(_thumbnail(image))


def _thumbnail(image: Image.Image) -> Image.Image:
    """64×64 grey level (mode ``F``; 16-bit and float values kept) that the hashes start from."""
    if image.mode in _INT_MODES:
        grey = Image.fromarray(np.asarray(image, dtype=np.float32))
    else:
        grey = (image if image.mode in ("L", "RGB", "RGBA", "LA", "1") else image.convert("RGB")).convert("L")
    return grey.resize((64, 64), Image.Resampling.BOX).convert("F")


def _dhash(thumb: Image.Image) -> int:
    cells = np.asarray(thumb.resize((9, 8), Image.Resampling.BOX), dtype=np.float32)  # (8, 9)
    bits = cells[:, 1:] > cells[:, :-1]  # (8, 8)
    return int.from_bytes(np.packbits(bits.ravel()).tobytes(), "big")


# The 8 flips and quarter turns (Roboflow-style augmented copies) on numpy (..., H, W), as PIL's
# None, FLIP_LEFT_RIGHT, FLIP_TOP_BOTTOM, ROTATE_180, ROTATE_90, ROTATE_270, TRANSPOSE, TRANSVERSE.
_DIHEDRAL_NP = (
    lambda a: a, lambda a: a[..., ::-1], lambda a: a[..., ::-1, :], lambda a: a[..., ::-1, ::-1],
    lambda a: np.rot90(a, 1, axes=(-2, -1)), lambda a: np.rot90(a, -1, axes=(-2, -1)),
    lambda a: np.swapaxes(a, -1, -2), lambda a: np.swapaxes(a[..., ::-1, ::-1], -1, -2),
)


def _fingerprint(image: Image.Image) -> tuple[np.ndarray, np.ndarray]:
    """(dHash of the image and of its 7 flips/turns as (8,) uint64, detail signature (32, 32)).

    Box averaging commutes with flips and quarter turns, so every variant's 8×9 cells come from
    two grids of the thumbnail: 8 rows × 9 columns, and 9 × 8 for the turned ones.
    """
    thumb = _thumbnail(image)
    wide = np.asarray(thumb.resize((9, 8), Image.Resampling.BOX), dtype=np.float32)  # (8, 9)
    tall = np.asarray(thumb.resize((8, 9), Image.Resampling.BOX), dtype=np.float32)  # (9, 8)
    cells = np.stack([op(wide if k < 4 else tall) for k, op in enumerate(_DIHEDRAL_NP)])  # (8, 8, 9)
    bits = (cells[:, :, 1:] > cells[:, :, :-1]).reshape(8, 64)
    hashes = np.packbits(bits, axis=1).view(">u8")[:, 0].astype(np.uint64)  # (8,)
    return hashes, _detail_signature(thumb)


def _detail_signature(thumb: Image.Image) -> np.ndarray:
    """Unit-norm 32×32 high-pass thumbnail (float16) that confirms a dHash match.

    dHash sees only the 8×8 brightness layout, which unrelated texture photos taken under the same
    light share (NEU, X-SDD); the detail left after removing that layout differs between them but
    survives re-encoding and resizing (see ``_MIN_DETAIL_SCORE``).
    """
    small = thumb.resize((32, 32), Image.Resampling.BOX)
    layout = small.resize((8, 8), Image.Resampling.BOX).resize((32, 32), Image.Resampling.BILINEAR)
    detail = np.asarray(small, dtype=np.float32) - np.asarray(layout, dtype=np.float32)  # (32, 32)
    detail -= detail.mean()
    return (detail / max(float(np.linalg.norm(detail)), 1e-6)).astype(np.float16)


# ------------------------------------------------------------------------------------ file reading


@dataclass
class _Entry:
    """One file under the root and what reading it gave."""

    rel: str
    role: str = "image"  # "image" | "mask" | "stray" | "junk" | "other"
    label: str | None = None  # class name (classification)
    split: str | None = None
    group: str | None = None  # key in ScanReport.classes
    error: tuple[str, str] | None = None  # (kind, detail)
    sha: str | None = None
    fmt: str | None = None
    mode: str | None = None
    size: tuple[int, int] | None = None  # (width, height)
    hashes: np.ndarray | None = None  # _fingerprint: dHash of the image and its flips/turns
    signature: np.ndarray | None = None  # _detail_signature
    grey: bool = False
    alpha_used: float = 0.0  # fraction of pixels not fully opaque
    max_value: int = 0  # 16-bit and float images
    saturated: float = 0.0  # fraction of pixels > 255 (16-bit and float images)
    orientation: int = 1
    frames: int = 1
    values: tuple[int, ...] = ()  # masks: distinct grey values (the 255 smallest and the largest)
    colours: int = 0  # masks: distinct colours of a colour-coded RGB mask (counted up to 17)
    caught: list[str] = field(default_factory=list)


def _read(path: Path, entry: _Entry) -> None:
    """Reads, hashes and fully decodes one file once, filling ``entry``."""

    def inspect(im: Image.Image) -> None:
        entry.frames = getattr(im, "n_frames", 1)
        entry.orientation = _orientation(im)
        (_measure_mask if entry.role == "mask" else _measure_image)(im, entry)

    decoded = decode_file(path, inspect)
    entry.sha, entry.fmt, entry.mode, entry.size = decoded.sha, decoded.format, decoded.mode, decoded.size
    entry.error, entry.caught = decoded.error, decoded.warnings


def _orientation(im: Image.Image) -> int:
    """The EXIF orientation tag (1 = upright); a broken EXIF block is not a broken image."""
    try:
        return int(im.getexif().get(0x0112, 1) or 1)
    except Exception:  # noqa: BLE001 - EXIF parsers raise many types on bad data
        return 1


def _measure_image(im: Image.Image, entry: _Entry) -> None:
    entry.hashes, entry.signature = _fingerprint(im)
    if im.mode == "RGB":
        a = np.asarray(im)  # (H, W, 3)
        entry.grey = bool((a[..., 0] == a[..., 1]).all() and (a[..., 1] == a[..., 2]).all())
    elif im.mode in _INT_MODES:
        a = np.asarray(im)
        entry.max_value, entry.saturated = int(a.max()), float((a > 255).mean())
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        alpha = np.asarray(im.convert("RGBA"))[..., 3] if im.mode.startswith("P") else np.asarray(im.getchannel("A"))
        entry.alpha_used = float((alpha < 255).mean())


def _measure_mask(im: Image.Image, entry: _Entry) -> None:
    if im.mode == "RGB":
        a = np.asarray(im)
        if not ((a[..., 0] == a[..., 1]).all() and (a[..., 1] == a[..., 2]).all()):
            entry.colours = min(len(np.unique(a.reshape(-1, 3), axis=0)), 17)
            return
        a = a[..., 0]
    else:
        a = np.asarray(im.convert("L") if im.mode in ("LA", "RGBA", "CMYK", "YCbCr") else im)
    distinct = np.flatnonzero(np.bincount(a.ravel())) if a.dtype == np.uint8 else np.unique(a.astype(np.int64))
    entry.values = tuple(int(v) for v in (distinct if len(distinct) <= 256 else [*distinct[:255], distinct[-1]]))


# ---------------------------------------------------------------------------------- walking, layout


def _top_dirs(path: Path) -> dict[str, str]:
    """Visible sub-folder names keyed by lower case."""
    return {
        p.name.lower(): p.name for p in path.iterdir()
        if p.is_dir() and not p.name.startswith(".") and p.name != MACOS_ZIP_DIR
    }


def _detect_layout(root: Path) -> tuple[str, dict[str, str]]:
    """Returns (layout, {split: folder name}) for pre-split layouts."""
    top = _top_dirs(root)
    splits = {SPLIT_ALIASES[k]: name for k, name in top.items() if k in SPLIT_ALIASES}
    if splits:  # split folders win, as in the folder and segmentation readers
        seg = all({_IMAGE_DIR, _MASK_DIR} <= set(_top_dirs(root / d)) for d in splits.values())
        return ("segmentation_presplit" if seg else "presplit"), splits
    if _IMAGE_DIR in top and _MASK_DIR in top:
        return "segmentation", {}
    if top:
        return "imagefolder", {}
    return "unknown", {}


def _assign(parts: list[str], layout: str, splits: dict[str, str], entry: _Entry) -> None:
    """Sets an image file's role, label, split and group from its position."""
    by_name = {v: k for k, v in splits.items()}
    if layout == "imagefolder" and len(parts) == 2:
        entry.label = entry.group = parts[0]
    elif layout == "presplit" and len(parts) == 3 and parts[0] in by_name:
        entry.split, entry.label = by_name[parts[0]], parts[1]
        entry.group = f"{entry.split}/{entry.label}"
    elif layout == "segmentation" and len(parts) == 2 and parts[0] in (_IMAGE_DIR, _MASK_DIR):
        entry.role = "mask" if parts[0] == _MASK_DIR else "image"
        entry.group = _IMAGE_DIR
    elif (layout == "segmentation_presplit" and len(parts) == 3 and parts[0] in by_name
          and parts[1] in (_IMAGE_DIR, _MASK_DIR)):
        entry.split = by_name[parts[0]]
        entry.role = "mask" if parts[1] == _MASK_DIR else "image"
        entry.group = f"{entry.split}/{_IMAGE_DIR}"
    elif layout != "unknown":
        entry.role = "stray"


# ------------------------------------------------------------------------------------- the scanner


class _Findings:
    """Collects findings, merging those with the same kind, severity and detail."""

    def __init__(self) -> None:
        self._by_key: dict[tuple, list[str]] = {}

    def add(self, kind: str, severity: str, paths, detail: str, merge: bool = True) -> None:
        key = (kind, severity, detail) if merge else (kind, severity, detail, len(self._by_key))
        self._by_key.setdefault(key, []).extend(paths)

    def sorted(self) -> list[Finding]:
        order = {s: i for i, s in enumerate(_SEVERITIES)}
        found = [Finding(k, s, sorted(set(p)), d) for (k, s, d, *_), p in self._by_key.items()]
        return sorted(found, key=lambda f: (order[f.severity], f.kind, f.paths[:1], f.detail))


def scan_path(
    root: str | os.PathLike,
    *,
    near_duplicate_threshold: int = 6,
    extreme_min_side: int = 32,
    extreme_max_side: int = 4096,
    progress: Callable[[int, int], None] | None = None,
) -> ScanReport:
    """Scans a dataset folder: layout, every file, duplicates across classes and splits.

    Args:
        root: A classification (``<class>/*`` or ``{train,val,test}/<class>/*``) or segmentation
            (``images/`` + ``masks/``, optionally under ``{train,val,test}/``) folder.
        near_duplicate_threshold: Largest dHash Hamming distance (of 64 bits) reported as a
            near-duplicate; 0 turns the near-duplicate search off.
        extreme_min_side: Images with a side below this many pixels are ``extreme_size``.
        extreme_max_side: Images with a side above this many pixels are ``extreme_size``.
        progress: Called as ``progress(done, total)`` after each image or mask is decoded.

    Returns:
        The :class:`ScanReport`; the folder is never modified.

    Raises:
        FileNotFoundError: ``root`` is not a folder.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset folder {str(root)!r} does not exist")
    layout, splits = _detect_layout(root)
    out = _Findings()
    entries: list[_Entry] = []
    to_read: list[tuple[Path, _Entry]] = []
    files = walk_files(root)
    for rel, path, hidden in files:
        entry = _Entry(rel)
        entries.append(entry)
        if isinstance(path, OSError):
            entry.role = "junk" if hidden else "other"
            out.add("unreadable", "error", [rel], f"cannot list the folder: {path}")
            continue
        skip = skip_reason(path, hidden)
        if skip and skip[0] == "junk":
            entry.role = "junk"
            out.add("junk", "warning", [rel], skip[1])
        elif skip:
            entry.role = "other"
        else:
            _assign(rel.split("/"), layout, splits, entry)
            if entry.role == "stray":
                out.add("stray_file", "warning", [rel],
                        f"image outside the {layout} structure: not part of the dataset, ignored")
            else:
                to_read.append((path, entry))
    with strict_truncation():
        for done, (path, entry) in enumerate(to_read, 1):
            _read(path, entry)
            if progress is not None:
                progress(done, len(to_read))

    images = [e for e in entries if e.role == "image"]
    masks = [e for e in entries if e.role == "mask"]
    for e in images + masks:
        _file_findings(e, out, extreme_min_side, extreme_max_side)
    coco_jsons = _coco_findings(root, [e for e in entries if e.role in ("image", "stray")], entries, out)
    for e in entries:
        if e.role == "other" and e.rel not in coco_jsons and not e.rel.endswith("/"):
            out.add("non_image", "info", [e.rel], f"not an image ({Path(e.rel).suffix or 'no suffix'}): ignored")
    if layout.startswith("segmentation"):
        usable = _pair_masks(images, masks, out)
        _mask_class_finding(masks, out)
    else:
        usable = [e for e in images if e.error is None]
    usable = _duplicate_findings(usable, out, near_duplicate_threshold)
    _dataset_findings(usable, out)
    classes = _count(layout, root, splits, usable)
    _layout_findings(layout, splits, classes, images, out)
    return ScanReport(
        root=str(root), layout=layout, num_files=sum(not isinstance(p, OSError) for _, p, _ in files),
        num_images=len(usable), classes=classes,
        findings=out.sorted(), hashes={e.rel: e.sha for e in images + masks if e.sha},
    )


def _conversion(e: _Entry) -> tuple[str, str] | None:
    """(severity, detail) for a mode that the loader (``cache.to_rgb``) changes."""
    mode = e.mode
    if mode == "RGB":
        return None
    if mode == "L":
        return "warning", "greyscale (L): replicated to 3 equal RGB channels"
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and e.alpha_used > 0):
        if e.alpha_used == 0:
            return "info", f"{mode} with a fully opaque alpha channel: alpha dropped, no visible change"
        return "warning", f"{mode} with transparency: composited on black (transparent pixels become black)"
    if mode == "P":
        return "warning", "palette (P): expanded to its RGB colours"
    if mode == "CMYK":
        return "warning", "CMYK: PIL's naive CMYK→RGB formula (any ICC profile ignored; colours shift)"
    if mode in _INT_MODES:
        return "warning", (f"{mode} (16/32-bit): scaled to 8-bit by 255/65535 (12-bit data stored in 16 bits "
                           f"comes out dark)")
    if mode == "1":
        return "warning", "1-bit (1): black/white expanded to RGB 0/255"
    return "warning", f"{mode}: converted to RGB by PIL"


def _file_findings(e: _Entry, out: _Findings, min_side: int, max_side: int) -> None:
    if e.error is not None:
        out.add(e.error[0], "error", [e.rel], e.error[1])
        return
    suffix = Path(e.rel).suffix.lower()
    if e.fmt not in _SUFFIX_FORMATS[suffix]:
        out.add("extension_mismatch", "warning", [e.rel], f"{e.fmt} content with {suffix} extension (read by content)")
    for message in e.caught:
        out.add("decode_warning", "warning", [e.rel], f"PIL warned while decoding: {message}")
    if e.role == "mask":
        return
    conversion = _conversion(e)
    if conversion:
        severity, detail = conversion
        if e.mode in _INT_MODES:
            detail += f" (this file: max value {e.max_value}, {e.saturated:.0%} of pixels clip)"
        out.add("mode", severity, [e.rel], detail)
    w, h = e.size
    if min(w, h) < min_side or max(w, h) > max_side:
        where = f"a side below {min_side} px" if min(w, h) < min_side else f"a side above {max_side} px"
        out.add("extreme_size", "warning", [e.rel], f"{w}x{h}: {where}")
    if e.orientation not in (0, 1):
        out.add("exif_orientation", "warning", [e.rel], f"EXIF orientation {e.orientation}: the loader ignores it, "
                "so the image is used unrotated")
    if e.frames > 1 and e.fmt != "MPO":
        out.add("multi_frame", "info", [e.rel], f"{e.frames} frames: only the first is used")


def _pair_masks(images: list[_Entry], masks: list[_Entry], out: _Findings) -> list[_Entry]:
    """Pairs images/<stem>.* with masks/<stem>.* per split, as the reader does; returns the usable images."""
    by_stem: dict[tuple, list[_Entry]] = defaultdict(list)
    for e in images + masks:
        by_stem[(e.role, e.split, Path(e.rel).stem)].append(e)
    for (role, _, stem), same in by_stem.items():
        if len(same) > 1:
            out.add("stem_clash", "warning", [e.rel for e in same], f"{len(same)} {role}s named {stem}.*: "
                    "masks pair by file stem, so only one of them is used", merge=False)
    paired, usable = set(), []
    for img in images:
        mask = (by_stem.get(("mask", img.split, Path(img.rel).stem)) or [None])[-1]
        if mask is None:
            out.add("image_without_mask", "error", [img.rel], "no mask with the same name in masks/: unusable for training")
            continue
        paired.add(mask.rel)
        if img.error is not None:
            out.add("mask_without_image", "warning", [mask.rel], f"its image is unusable ({img.error[0]}): ignored")
            continue
        if mask.error is not None:
            out.add("image_without_mask", "error", [img.rel], f"its mask {mask.rel} is unusable ({mask.error[0]})")
            continue
        if mask.size != img.size:
            out.add("mask_size_mismatch", "error", [img.rel, mask.rel],
                    f"mask {mask.size[0]}x{mask.size[1]} vs image {img.size[0]}x{img.size[1]}")
            continue
        _mask_findings(mask, out)
        usable.append(img)
    for m in masks:
        if m.rel not in paired:
            out.add("mask_without_image", "warning", [m.rel], "no image with the same name in images/: ignored")
    return usable


def _mask_class_finding(masks: list[_Entry], out: _Findings) -> None:
    """How many classes the lossless masks hold, as the segmenter's ``num_classes: null`` detects them."""
    values = {v for m in masks if m.error is None and m.fmt not in ("JPEG", "MPO") and not m.colours for v in m.values}
    if values:
        k = 2 if values <= {0, 255} or values <= {0, 1} else max(values) + 1
        shown = ", ".join(map(str, sorted(values)[:8])) + (", ..." if len(values) > 8 else "")
        out.add("mask_classes", "info", [], f"masks hold {k} classes (values {shown}); num_classes: null detects {k}")


def _mask_findings(mask: _Entry, out: _Findings) -> None:
    values = mask.values
    if values == (0,):
        out.add("empty_mask", "info", [mask.rel], "mask is all background (0)")
    elif mask.fmt in ("JPEG", "MPO"):
        out.add("mask_not_binary", "warning", [mask.rel], "JPEG mask (lossy compression adds in-between values): "
                "each pixel is snapped to the nearest valid class value")
    elif mask.colours:
        more = "+" if mask.colours > 16 else ""
        out.add("mask_not_binary", "warning", [mask.rel], f"colour-coded RGB mask ({min(mask.colours, 16)}{more} colours): "
                "the loader turns it into grey levels, not class indices")
    elif not set(values) <= {0, 255} and max(values) > _MAX_INDEX_VALUE:
        shown = ", ".join(map(str, values[:8])) + (f", ... {values[-1]}" if len(values) > 8 else "")
        out.add("mask_not_binary", "info", [mask.rel], f"values {shown}: neither 0/255 nor small class indices "
                "(the loader reads them as class indices)")


# ------------------------------------------------------------------------------------- duplicates


def _popcount(x: np.ndarray) -> np.ndarray:
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(x)
    table = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)
    return table[x.view(np.uint8)].reshape(*x.shape, 8).sum(-1, dtype=np.uint8)


def _near_pairs(
    hashes: np.ndarray, signatures: np.ndarray, threshold: int, block: int = 256
) -> tuple[np.ndarray, ...]:
    """Near-duplicate pairs as arrays (i, j, distance, detail score, variant), i < j.

    ``hashes`` is (n, 8): each image's dHash and those of its flips/turns; a pair's distance is
    the smallest over j's variants, and it counts when that distance is <= ``threshold`` and the
    detail signatures (j's turned the same way) score >= ``_MIN_DETAIL_SCORE``.
    O(n²) popcounts in numpy blocks: about 3 s for 20k images on one core.
    """
    found = []
    signs = _unit_sign(signatures.astype(np.float32)).astype(np.float16)  # flips and turns commute with it
    columns = np.ascontiguousarray(hashes.T)  # (8, n)
    for start in range(0, len(hashes), block):
        own = hashes[start : start + block, 0, None]  # (b, 1)
        xor = np.empty((len(own), len(hashes) - start), dtype=np.uint64)  # (b, n - start)
        distance = np.full(xor.shape, 64, dtype=np.uint8)
        for k in range(columns.shape[0]):
            np.bitwise_xor(own, columns[k, None, start:], out=xor)
            np.minimum(distance, _popcount(xor), out=distance)
        rows, cols = np.nonzero(distance <= threshold)
        keep = rows < cols
        rows, cols = rows[keep], cols[keep]
        i, j = rows + start, cols + start
        v = _popcount(hashes[i, 0, None] ^ hashes[j]).argmin(1)  # the closest flip/turn of j, (m,)
        turned = np.empty((2, len(j), *signatures.shape[1:]), dtype=np.float32)
        for k in np.unique(v):
            turned[:, v == k] = _DIHEDRAL_NP[k](np.stack([signatures[j[v == k]], signs[j[v == k]]]))
        linear = np.einsum("ihw,ihw->i", signatures[i].astype(np.float32), turned[0])
        score = (linear + np.einsum("ihw,ihw->i", signs[i].astype(np.float32), turned[1])) / 2
        keep = score >= _MIN_DETAIL_SCORE
        found.append((i[keep], j[keep], distance[rows, cols][keep], score[keep], v[keep]))
    if not found:
        return tuple(np.zeros(0) for _ in range(5))
    return tuple(np.concatenate(parts) for parts in zip(*found))


def _unit_sign(x: np.ndarray) -> np.ndarray:
    """Signs of detail signatures (n, 32, 32), centred and scaled to unit norm.

    A pair's detail score is the mean of the linear correlation of the signatures (robust to
    re-encoding, but one strong shared edge such as a stock-photo watermark bar can carry it) and
    the correlation of these sign patterns (every cell weighs alike).
    """
    x = np.sign(x)
    x -= x.mean(axis=(1, 2), keepdims=True)
    return x / np.maximum(np.linalg.norm(x, axis=(1, 2), keepdims=True), 1e-6)


def _describe_group(members: list[_Entry], what: str) -> tuple[str, str]:
    """(variant, detail) of a duplicate group: conflicting labels, leakage or plain."""
    labels = sorted({m.label for m in members if m.label is not None})
    split_names = sorted({m.split for m in members if m.split is not None})
    where = []
    if len(labels) > 1:
        where.append("classes " + ", ".join(labels))
    if len(split_names) > 1:
        where.append("splits " + ", ".join(split_names))
    variant = "conflicting_labels" if len(labels) > 1 else "leakage" if len(split_names) > 1 else "duplicate"
    return variant, f"{len(members)} {what}" + (f" across {' and '.join(where)}" if where else "")


def _duplicate_findings(usable: list[_Entry], out: _Findings, threshold: int) -> list[_Entry]:
    """Adds exact and near-duplicate findings; returns the images still usable."""
    by_sha: dict[str, list[_Entry]] = defaultdict(list)
    for e in usable:
        by_sha[e.sha].append(e)
    skipped = set()
    for members in by_sha.values():
        if len(members) > 1:
            variant, detail = _describe_group(members, "identical files (same sha256)")
            severity = "error" if variant == "conflicting_labels" else "warning"
            if severity == "error":
                detail += ": the label is ambiguous, every copy is skipped"
                skipped.update(m.rel for m in members)
            out.add(variant, severity, [m.rel for m in members], detail, merge=False)
    if threshold > 0:
        groups = [g for g in by_sha.values() if g[0].rel not in skipped]
        hashes = np.stack([g[0].hashes for g in groups]) if groups else np.zeros((0, 8), np.uint64)
        signatures = np.stack([g[0].signature for g in groups]) if groups else np.zeros((0, 32, 32), np.float16)
        parent = list(range(len(groups)))

        def find(i: int) -> int:
            while parent[i] != i:
                parent[i] = parent[parent[i]]
                i = parent[i]
            return i

        worst: dict[int, tuple[int, float, bool]] = {}  # root -> (largest distance, lowest score, turned)
        for i, j, d, c, v in zip(*(a.tolist() for a in _near_pairs(hashes, signatures, threshold))):
            a, b = find(int(i)), find(int(j))
            parent[b] = a
            merged = [worst.get(a, (0, 1.0, False)), worst.pop(b, (0, 1.0, False)) if b != a else (0, 1.0, False)]
            merged.append((d, c, v != 0))
            worst[a] = (max(m[0] for m in merged), min(m[1] for m in merged), any(m[2] for m in merged))
        components: dict[int, list[int]] = defaultdict(list)
        for i in range(len(groups)):
            components[find(i)].append(i)
        for head, idx in components.items():
            if len(idx) > 1:
                members = [m for i in idx for m in groups[i]]
                d, c, turned = worst[head]
                what = f"near-identical images{' (some flipped or turned)' if turned else ''} " \
                       f"(dHash distance up to {int(d)}/64, detail similarity >= {c:.2f})"
                variant, detail = _describe_group(members, what)
                out.add("near_" + variant if variant != "duplicate" else "near_duplicate", "warning",
                        [m.rel for m in members], detail, merge=False)
    return [e for e in usable if e.rel not in skipped]


# ------------------------------------------------------------------------------- dataset-level facts


def _dataset_findings(usable: list[_Entry], out: _Findings) -> None:
    grey = [e.rel for e in usable if e.grey]
    if grey:
        out.add("grey_content", "info", grey, f"{len(grey)} of {len(usable)} RGB images have R = G = B everywhere "
                "(greyscale content stored as colour)")
    formats = Counter(e.fmt for e in usable)
    if len(formats) > 1:
        main = formats.most_common(1)[0][0]
        shown = ", ".join(f"{n} {f}" for f, n in formats.most_common())
        out.add("mixed_formats", "info", [e.rel for e in usable if e.fmt != main],
                f"mixed content formats: {shown} (files listed: those not {main})")
    sizes = Counter(e.size for e in usable)
    if len(sizes) > 1:
        (main_size, main_n), = sizes.most_common(1)
        rare = {s: n for s, n in sizes.items() if s != main_size and n <= max(1, len(usable) // 100)}
        if main_n * 2 >= len(usable) and rare:
            shown = ", ".join(f"{w}x{h} x{n}" for (w, h), n in sorted(rare.items(), key=lambda kv: (-kv[1], kv[0])))
            out.add("size_outlier", "info", [e.rel for e in usable if e.size in rare],
                    f"rare sizes vs the dominant {main_size[0]}x{main_size[1]} ({main_n} of {len(usable)}): {shown}")
        elif main_n * 2 < len(usable):
            widths, heights = [s[0] for s in sizes], [s[1] for s in sizes]
            out.add("mixed_sizes", "info", [], f"{len(sizes)} distinct sizes, no dominant one: "
                    f"width {min(widths)}..{max(widths)}, height {min(heights)}..{max(heights)} "
                    "(all resized to the training size)")


def _count(layout: str, root: Path, splits: dict[str, str], usable: list[_Entry]) -> dict[str, int]:
    counts: Counter = Counter(e.group for e in usable if e.group is not None)
    if layout == "imagefolder":
        for name in _top_dirs(root).values():
            counts.setdefault(name, 0)
    elif layout == "presplit":
        for split, folder in splits.items():
            for name in _top_dirs(root / folder).values():
                counts.setdefault(f"{split}/{name}", 0)
    elif layout == "segmentation_presplit":
        for split in splits:
            counts.setdefault(f"{split}/{_IMAGE_DIR}", 0)
    elif layout == "segmentation":
        counts.setdefault(_IMAGE_DIR, 0)
    return dict(sorted(counts.items()))


def _layout_findings(layout: str, splits: dict[str, str], classes: dict[str, int], images: list[_Entry], out: _Findings) -> None:
    if layout == "unknown":
        out.add("layout", "error", [], "no class folders (<class>/*), pre-split folders ({train,val,test}/<class>/*) or "
                "segmentation folders (images/ + masks/) found" + (f"; {len(images)} images read" if images else ""))
        return
    if layout in ("presplit", "segmentation_presplit") and "train" not in splits:
        out.add("layout", "error", [f"{d}/" for d in sorted(splits.values())],
                f"a pre-split folder needs train/ (val/ is carved from it when missing); found {sorted(splits)}")
    elif layout in ("presplit", "segmentation_presplit") and "val" not in splits:
        out.add("val_from_train", "info", [f"{splits['train']}/"],
                "no val/ folder: validation is carved from train/ at data.split's val share "
                "(stratified, duplicate groups kept together)")
    if layout.startswith("segmentation"):
        for group, n in classes.items():
            if n == 0:
                out.add("layout", "error", [f"{group}/"], f"{group}/ has no usable image/mask pairs")
        return
    names = sorted({g.split("/")[-1] for g in classes})
    for group, n in classes.items():
        if n == 0:
            out.add("layout", "error", [f"{group}/"], f"class folder {group}/ has no usable images "
                    "(the reader leaves it out: is a class missing?)")
    with_images = sorted({g.split("/")[-1] for g, n in classes.items() if n})
    if len(with_images) < 2:
        out.add("layout", "error", [], f"classification needs at least two classes with usable images; found "
                f"{with_images or 'none'} among class folders {names or 'none'}")
    if layout == "presplit":
        for split in ("train", "val", "test"):
            have = {g.split("/", 1)[1] for g, n in classes.items() if n and g.startswith(split + "/")}
            missing = sorted(set(with_images) - have) if split in splits else []
            if missing:
                severity = "warning" if split == "test" else "error"
                out.add("layout", severity, [f"{splits[split]}/"],
                        f"the {split} split has no usable images of class(es) {missing}")


# ------------------------------------------------------------------------------------------- COCO


def _coco_findings(root: Path, images: list[_Entry], entries: list[_Entry], out: _Findings) -> set[str]:
    """Checks COCO json files at the root or one level down against the images; returns their paths."""
    found = set()
    candidates = [e.rel for e in entries if e.role == "other" and e.rel.lower().endswith(".json") and e.rel.count("/") <= 1]
    for rel in candidates:
        try:
            coco = json.loads((root / rel).read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            out.add("bad_json", "warning", [rel], f"JSON file that cannot be parsed (a broken COCO file?): {e}")
            found.add(rel)
            continue
        if not (isinstance(coco, dict) and isinstance(coco.get("images"), list) and "annotations" in coco):
            continue
        found.add(rel)
        base = rel.rsplit("/", 1)[0] + "/" if "/" in rel else ""
        near = {e.rel: e for e in images if e.rel.startswith(base)}
        by_name: dict[str, list[str]] = defaultdict(list)
        for path in near:
            by_name[path.rsplit("/", 1)[-1]].append(path)
        listed = set()
        for item in coco["images"]:
            if not isinstance(item, dict):
                continue
            name = str(item.get("file_name", "")).replace("\\", "/")
            tries = [base + name, base + f"{_IMAGE_DIR}/{name}"]
            path = next((t for t in tries if t in near), None)
            if path is None and len(by_name.get(name.rsplit("/", 1)[-1], [])) == 1:
                path = by_name[name.rsplit("/", 1)[-1]][0]
            if path is None:
                out.add("coco_missing_image", "warning", [base + name], f"listed in {rel} but not on disk")
                continue
            listed.add(path)
            size, e = (item.get("width"), item.get("height")), near[path]
            if e.size and None not in size and tuple(size) != e.size:
                out.add("coco_size_mismatch", "warning", [path],
                        f"{rel} says {size[0]}x{size[1]}, file is {e.size[0]}x{e.size[1]}")
        for path in sorted(set(near) - listed):
            out.add("coco_unlisted_image", "warning", [path], f"not listed in {rel}: has no COCO annotations")
        names = [str(c.get("name")) for c in coco.get("categories") or [] if isinstance(c, dict)]
        categories = ", ".join(names[:10]) + (f", ... ({len(names)})" if len(names) > 10 else "")
        out.add("coco", "info", [rel], f"COCO annotations: {len(coco['images'])} images, {len(coco['annotations'])} "
                f"annotations, categories: {categories or 'none'}")
    return found
