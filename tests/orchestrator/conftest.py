"""A tiny classifier trial trained through Ray on real photos, and its ONNX export (shared by
test_export.py and test_predict.py: trained and exported once per session)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import shared_dataset

SPLIT_SIZES = {"train": 4, "val": 3, "test": 3}  # per class


def copy_real_photos(root: Path) -> Path:
    """A pre-split two-class folder of real fastener photos (``SPLIT_SIZES`` per class)."""
    source = shared_dataset("fastener_corrosion")
    for split, count in SPLIT_SIZES.items():
        for cls in ("corroded", "non_corroded"):
            (root / split / cls).mkdir(parents=True)
            for path in sorted((source / split / cls).glob("*.jpg"))[:count]:
                shutil.copy(path, root / split / cls / path.name)
    return root


def add_bad_files(folder: Path, a_good_jpeg: Path) -> dict[str, str]:
    """A truncated JPEG, a text file named .jpg and a ``._`` AppleDouble file; returns path → kind."""
    data = a_good_jpeg.read_bytes()
    (folder / "broken").mkdir(exist_ok=True)
    (folder / "broken" / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (folder / "notes.jpg").write_text("inspection notes, not a photo\n")
    (folder / "._photo.jpg").write_bytes(b"\0\5\26\7\0\2\0\0Mac OS X")
    return {"broken/truncated.jpg": "truncated", "notes.jpg": "unreadable", "._photo.jpg": "junk"}


@pytest.fixture(scope="session")
def tiny_study(tmp_path_factory) -> Path:
    """The study directory of one classifier trial (resnet10t, 32 px, 2 epochs) run by ``run_study``."""
    import ray
    from rich.console import Console

    from orchestrator.runner import run_study
    from orchestrator.spec import validate_study

    root = tmp_path_factory.mktemp("deploy")
    data = copy_real_photos(root / "photos")
    study = validate_study({
        "name": "tiny", "trainable": "classifier", "data": {"path": str(data)},
        "params": {"backbone": "resnet10t", "image_size": 32, "epochs": 2, "batch_size": 4,
                   "profile": False, "artifacts": False, "device": "cpu"},
        "search": {"space": "classifier_basic", "sampler": "random", "num_samples": 1, "seed": 0},
        "objective": {"metric": "val/accuracy", "mode": "max"},
        "scheduler": {"name": "fifo"},
        "resources": {"cpu": 1},
        "tracking": {"wandb": {"mode": "disabled"}},
    })
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        outcome = run_study(study, root / "results", Console(quiet=True))
    finally:
        if started:
            ray.shutdown()
    assert not outcome.num_errors
    return outcome.study_dir


@pytest.fixture(scope="session")
def onnx_model(tiny_study, tmp_path_factory) -> Path:
    """The tiny study's best trial exported to ONNX."""
    from orchestrator.deploy import export_study

    [result] = export_study(tiny_study, best=True, fmt="onnx", out=tmp_path_factory.mktemp("onnx") / "model", log=lambda _: None)
    return result.out_dir
