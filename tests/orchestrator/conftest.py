"""Tiny classifier and segmenter trials trained through Ray on real photos, and their ONNX
exports (shared by test_export.py and test_predict.py: trained and exported once per session)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import shared_dataset

SPLIT_SIZES = {"train": 4, "val": 3, "test": 3}  # per class
SEGMENTATION_PAIRS = 14


def copy_real_photos(root: Path) -> Path:
    """A pre-split two-class folder of real fastener photos (``SPLIT_SIZES`` per class)."""
    source = shared_dataset("fastener_corrosion")
    for split, count in SPLIT_SIZES.items():
        for cls in ("corroded", "non_corroded"):
            (root / split / cls).mkdir(parents=True)
            for path in sorted((source / split / cls).glob("*.jpg"))[:count]:
                shutil.copy(path, root / split / cls / path.name)
    return root


def copy_real_segmentation(root: Path) -> Path:
    """``images/`` + ``masks/`` (0/255 PNG) of the first ``SEGMENTATION_PAIRS`` real corrosion photos."""
    source = shared_dataset("corrosion_seg")
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for image in sorted((source / "images").glob("*.jpg"))[:SEGMENTATION_PAIRS]:
        shutil.copy(image, root / "images" / image.name)
        shutil.copy(source / "masks" / f"{image.stem}.png", root / "masks" / f"{image.stem}.png")
    return root


def add_bad_files(folder: Path, a_good_jpeg: Path) -> dict[str, str]:
    """A truncated JPEG, a text file named .jpg and a ``._`` AppleDouble file; returns path → kind."""
    data = a_good_jpeg.read_bytes()
    (folder / "broken").mkdir(exist_ok=True)
    (folder / "broken" / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (folder / "notes.jpg").write_text("inspection notes, not a photo\n")
    (folder / "._photo.jpg").write_bytes(b"\0\5\26\7\0\2\0\0Mac OS X")
    return {"broken/truncated.jpg": "truncated", "notes.jpg": "unreadable", "._photo.jpg": "junk"}


def _run_one_trial(root: Path, name: str, trainable: str, data: Path, params: dict, space: str, metric: str) -> Path:
    import ray
    from rich.console import Console

    from orchestrator.runner import run_study
    from orchestrator.spec import validate_study

    study = validate_study({
        "name": name, "trainable": trainable, "data": {"path": str(data)},
        "params": {**params, "epochs": 2, "profile": False, "artifacts": False, "device": "cpu"},
        "search": {"space": space, "sampler": "random", "num_samples": 1, "seed": 0},
        "objective": {"metric": metric, "mode": "max"},
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


def _export_onnx(study: Path, out: Path) -> Path:
    from orchestrator.deploy import export_study

    [result] = export_study(study, best=True, fmt="onnx", out=out, log=lambda _: None)
    return result.out_dir


@pytest.fixture(scope="session")
def tiny_study(tmp_path_factory) -> Path:
    """The study directory of one classifier trial (resnet10t, 32 px, 2 epochs) run by ``run_study``."""
    root = tmp_path_factory.mktemp("deploy")
    return _run_one_trial(root, "tiny", "classifier", copy_real_photos(root / "photos"),
                          {"backbone": "resnet10t", "image_size": 32, "batch_size": 4}, "classifier_basic", "val/accuracy")


@pytest.fixture(scope="session")
def onnx_model(tiny_study, tmp_path_factory) -> Path:
    """The tiny classifier study's best trial exported to ONNX."""
    return _export_onnx(tiny_study, tmp_path_factory.mktemp("onnx") / "model")


@pytest.fixture(scope="session")
def tiny_seg_study(tmp_path_factory) -> Path:
    """The study directory of one segmenter trial (U-Net, resnet18 encoder of depth 3, 32 px, 2 epochs)."""
    root = tmp_path_factory.mktemp("deploy_seg")
    return _run_one_trial(root, "tiny_seg", "segmenter", copy_real_segmentation(root / "photos"),
                          {"encoder": "resnet18", "encoder_depth": 3, "image_size": 32}, "segmenter_basic", "val/iou")


@pytest.fixture(scope="session")
def seg_onnx_model(tiny_seg_study, tmp_path_factory) -> Path:
    """The tiny segmenter study's best trial exported to ONNX."""
    return _export_onnx(tiny_seg_study, tmp_path_factory.mktemp("seg_onnx") / "model")
