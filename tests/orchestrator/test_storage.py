"""Where a study lives: paths, file:// and cloud URIs; driver files published to remote storage."""

from __future__ import annotations

from orchestrator.storage import StudyPlace, is_uri, split_study_uri
from trainables.data.manifest import read_manifest, write_manifest
from trainables.data.index import Sample, SampleIndex


def test_a_path_is_local_and_the_study_folder_is_the_driver_folder(tmp_path):
    place = StudyPlace.create(tmp_path / "results", "demo")
    assert not place.remote and place.local_dir == tmp_path / "results" / "demo" and place.uri == str(place.local_dir)
    assert not place.exists()
    place.local_dir.mkdir(parents=True)
    assert place.exists()


def test_file_uri_is_a_path_declared_shared(tmp_path):
    place = StudyPlace.create(f"file://{tmp_path}/results", "demo")
    assert not place.remote and place.storage_path == str(tmp_path / "results")


def test_cloud_uri_keeps_driver_files_in_a_local_cache():
    place = StudyPlace.create("s3://bucket/corrotune/", "demo")
    assert place.remote and place.uri == "s3://bucket/corrotune/demo"
    assert place.remote_path("data/manifest.json") == "s3://bucket/corrotune/demo/data/manifest.json"
    assert place.local_dir != StudyPlace.create("s3://other/corrotune", "demo").local_dir
    assert split_study_uri("s3://bucket/corrotune/demo/") == ("s3://bucket/corrotune", "demo")
    assert is_uri("gs://b/x") and not is_uri("/mnt/nfs/x")


def test_publish_and_fetch_through_the_remote_filesystem(tmp_path):
    remote_root = tmp_path / "bucket"
    remote_root.mkdir()
    place = StudyPlace(storage_path=f"file://{remote_root}", name="demo", local_dir=tmp_path / "cache" / "demo")
    assert place.remote and not place.exists()
    (place.local_dir / "data").mkdir(parents=True)
    (place.local_dir / "data" / "manifest.json").write_text("{}")
    (place.local_dir / "corrotune_study.yaml").write_text("name: demo\n")
    place.publish("data")
    place.publish("corrotune_study.yaml")
    assert (remote_root / "demo" / "data" / "manifest.json").read_text() == "{}"
    assert place.exists()

    elsewhere = StudyPlace(storage_path=place.storage_path, name="demo", local_dir=tmp_path / "other" / "demo")
    assert elsewhere.fetch("corrotune_study.yaml") and (elsewhere.local_dir / "corrotune_study.yaml").read_text() == "name: demo\n"
    assert not elsewhere.fetch("leaderboard.csv")


def test_trials_read_a_manifest_by_uri(tmp_path):
    index = SampleIndex(root=str(tmp_path), task="classification", layout="imagefolder", classes=("a", "b"),
                        samples=(Sample(path=str(tmp_path / "a" / "1.png"), label=0, split="train", hash="x"),))
    path = write_manifest(index, tmp_path / "manifest.json")
    assert read_manifest(f"file://{path}").samples == index.samples
    try:
        read_manifest(f"file://{tmp_path}/missing.json")
    except FileNotFoundError as err:
        assert "cannot be read" in str(err)
    else:
        raise AssertionError("a missing manifest URI must raise")
