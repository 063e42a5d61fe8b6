"""Dataset fixtures built from real photos, shared by unit and integration tests."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

from PIL import Image

from tests.conftest import shared_dataset


def build_messy_folder(root: Path) -> dict[str, Path]:
    """Two classes of real fastener photos plus the usual mess; returns the notable files."""
    source = shared_dataset("fastener_corrosion") / "train"
    for cls in ("corroded", "non_corroded"):
        (root / cls).mkdir(parents=True)
        for path in sorted((source / cls).glob("*.jpg"))[:24]:
            shutil.copy(path, root / cls / path.name)
    corroded = sorted((root / "corroded").glob("*.jpg"))
    notable = {
        "truncated": root / "corroded" / "truncated.jpg",
        "png_as_jpg": root / "corroded" / "really_a_png.jpg",
        "dup_a": root / "corroded" / "copy_in_corroded.jpg",
        "dup_b": root / "non_corroded" / "copy_in_non_corroded.jpg",
        "resaved": root / "corroded" / "resaved_q70.jpg",
    }
    data = corroded[0].read_bytes()
    notable["truncated"].write_bytes(data[: len(data) // 2])
    Image.open(corroded[1]).save(notable["png_as_jpg"], format="PNG")
    shutil.copy(corroded[2], notable["dup_a"])
    shutil.copy(corroded[2], notable["dup_b"])
    buffer = io.BytesIO()
    Image.open(corroded[3]).save(buffer, format="JPEG", quality=70)
    notable["resaved"].write_bytes(buffer.getvalue())
    notable["original_of_resaved"] = corroded[3]
    notable["dup_original"] = corroded[2]
    (root / "corroded" / ".DS_Store").write_bytes(b"\0junk")
    (root / "non_corroded" / "._shadow.jpg").write_bytes(b"\0\5\26\7")
    (root / "Thumbs.db").write_bytes(b"junk")
    return notable
