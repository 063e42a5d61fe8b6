import json

import pytest

from trainables.data.index import Sample, SampleIndex
from trainables.data.manifest import read_manifest, write_manifest


def test_round_trip_keeps_every_field(tmp_path):
    index = SampleIndex(
        root="/d", task="segmentation", layout="segmentation", classes=("background", "rust"),
        samples=(Sample(path="/d/images/a.jpg", mask="/d/masks/a.png", split="train", hash="ab"),
                 Sample(path="/d/images/b.jpg", mask="/d/masks/b.png", split="val", hash="cd")),
    )
    path = write_manifest(index, tmp_path / "manifest.json")
    assert read_manifest(path) == index
    assert json.loads(path.read_text())["counts"] == {"train": {"images": 1}, "val": {"images": 1}}
    assert not list(tmp_path.glob("*.tmp"))


def test_bad_manifests_are_refused(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_manifest(tmp_path / "none.json")
    path = tmp_path / "m.json"
    path.write_text(json.dumps({"version": 99}))
    with pytest.raises(ValueError, match="version 99"):
        read_manifest(path)
    path.write_text(json.dumps({"version": 1, "root": "/", "task": "classification", "layout": "x", "classes": ["a"],
                                "samples": [{"path": "/a.png", "label": 0, "split": None}]}))
    with pytest.raises(ValueError, match="must have a split"):
        read_manifest(path)
