"""The ``esg_convnext`` trainable: P004's defaults, macro metrics, FPS, per-class Grad-CAM and t-SNE.

The Ray-level contract (namespaced metrics, exact resume after a crash, artifacts) runs over
every registered trainable in ``test_contract.py``.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from tests.conftest import shared_dataset
from trainables import EsgConvNeXtConfig, get_trainable
from trainables.esg_convnext_artifacts import first_of_each_class, tsne_embedding

DATA = {"path": "synthetic:corrosion"}


def test_defaults_are_p004s():
    cfg = EsgConvNeXtConfig(data=DATA)
    assert (cfg.optimizer, cfg.lr, cfg.lr_schedule, cfg.batch_size, cfg.image_size, cfg.epochs) == (
        "adamw", 1e-4, "cosine", 64, 224, 100
    )
    assert 0 < cfg.warmup_epochs < cfg.epochs  # linear warm-up, then cosine
    assert cfg.variant == "esg" and cfg.offline_expansion == 4 and cfg.offline_augmentation == "p004"
    assert cfg.augmentation == "none"  # P004 augments offline only
    assert cfg.network_kwargs["variant"] == "esg" and "depths" not in cfg.network_kwargs


def test_bad_configs_fail_before_training():
    with pytest.raises(ValidationError, match="four positive integers"):
        EsgConvNeXtConfig(data=DATA, depths=[1, 1, 3])
    with pytest.raises(ValidationError, match="warmup_epochs"):
        EsgConvNeXtConfig(data=DATA, epochs=3, warmup_epochs=5)
    with pytest.raises(ValidationError, match="variant"):
        EsgConvNeXtConfig(data=DATA, variant="esg_full")
    with pytest.raises(ValidationError, match="select_metric"):
        EsgConvNeXtConfig(data=DATA, select_metric="val/iou")


def test_tsne_keeps_separated_classes_apart_and_is_seeded():
    rng = np.random.default_rng(0)
    centres = np.array([[0.0] * 8, [20.0] * 8, [-20.0] * 8])
    labels = np.repeat([0, 1, 2], 6)
    features = centres[labels] + rng.normal(size=(18, 8))
    points = tsne_embedding(features)
    assert points.shape == (18, 2)
    distances = np.linalg.norm(points[:, None] - points[None], axis=-1) + np.eye(18) * 1e9
    assert (labels[distances.argmin(axis=1)] == labels).all()  # every nearest neighbour shares the class
    np.testing.assert_allclose(tsne_embedding(features), points)  # seed 42
    with pytest.raises(ValueError, match="at least 3"):
        tsne_embedding(features[:2])


def test_first_of_each_class_skips_absent_classes():
    assert first_of_each_class(torch.tensor([2, 0, 2, 0, 3]), 4).tolist() == [1, 0, 4]


@pytest.fixture(scope="module")
def small_xsdd(tmp_path_factory) -> Path:
    """Four images of each X-SDD class (7 classes, .jpg and .png mixed), linked into an ImageFolder."""
    source = shared_dataset("xsdd")
    root = tmp_path_factory.mktemp("xsdd_small")
    for folder in sorted(p for p in source.iterdir() if p.is_dir()):
        (root / folder.name).mkdir()
        for image in sorted(folder.iterdir())[:4]:
            (root / folder.name / image.name).symlink_to(image)
    return root


def test_trains_on_seven_classes_with_macro_metrics_fps_gradcam_and_tsne(small_xsdd, tmp_path, monkeypatch):
    import trainables.loop as loop

    reported: list[dict] = []
    monkeypatch.setattr(loop, "load_trial_checkpoint", lambda: None)
    monkeypatch.setattr(loop, "report_with_checkpoint", lambda metrics, state: reported.append(metrics))
    monkeypatch.setattr(loop, "trial_dir", lambda: tmp_path)
    entry = get_trainable("esg_convnext")
    config = {
        **entry.tiny_config, "data": {"path": str(small_xsdd), "split": [0.5, 0.25, 0.25]},
        "offline_expansion": 2, "epochs": 2, "warmup_epochs": 1, "class_weights": "balanced", "profile": True,
        "fps_repeats": 1,
    }
    entry.load()(config)

    first, last = reported
    assert first["model/fps_b1"] > 0 and first["model/fps"] > 0 and first["model/gflops"] > 0
    assert "model/fps" not in last  # once per (re)start, like the loop's profile
    for key in ("accuracy", "precision", "recall", "f1"):
        assert 0.0 <= last[f"test/{key}"] <= 1.0
    assert len([k for k in last if k.startswith("val/f1/")]) == 7  # per-class F1 of 7 classes: macro scoring
    assert math.isfinite(last["train/loss"])
    artifacts = tmp_path / "artifacts"
    with (artifacts / "tsne.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert rows and {r["class"] for r in rows} <= {p.name for p in small_xsdd.iterdir()}
    assert (artifacts / "tsne.png").stat().st_size > 0
    per_class = sorted(artifacts.glob("gradcam_class_*.png"))
    assert len(per_class) == len({r["label"] for r in rows})  # one per class present in the test split
    assert last["artifacts/files"] == len(list(artifacts.glob("*.png")))  # the images W&B waits for
