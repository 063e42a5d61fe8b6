"""The papers as studies (studies/papers/*.yaml) and `corrotune run --smoke`, which shrinks any study."""

from __future__ import annotations

import json

import pytest
import yaml

from orchestrator.smoke import SMOKE_EPOCHS, smoke_overrides, subset_image_folder
from orchestrator.spec import load_study
from tests.conftest import REPO, shared_dataset

PAPERS = sorted((REPO / "studies" / "papers").glob("*.yaml"))


def test_the_papers_ship_as_studies():
    assert {p.stem for p in PAPERS} == {"p000_resnet_mhsa_focal", "p001_unet_encoders", "p002_bayesian_cnns", "p003_pooling",
                                        "p003_fine_tune_fraction", "p004_ablation", "p004_models"}


@pytest.mark.parametrize("path", PAPERS, ids=lambda p: p.stem)
def test_a_paper_study_keeps_its_protocol_and_every_reference_cell(path, tmp_path):
    study = load_study(path, [f"data.path={tmp_path}"])
    labels = {",".join(f"{k}={v}" for k, v in levels.items()) for levels, _ in study.cells}
    assert set(study.reference.values) == labels  # a published number for every cell
    assert all("/" in metric for values in study.reference.values.values() for metric in values)
    assert study.epochs() >= 25 and study.ablation.repeats >= 1


@pytest.mark.parametrize("path", [*PAPERS, *(REPO / "studies" / "examples").glob("*.yaml")], ids=lambda p: p.stem)
def test_smoke_shrinks_any_study_and_says_what(path, tmp_path):
    (tmp_path / "corroded").mkdir()
    positive = (yaml.safe_load(path.read_text()).get("params") or {}).get("positive_class")
    if positive:  # validate checks the positive class against the folder's classes
        (tmp_path / positive).mkdir(exist_ok=True)
    study = load_study(path, [f"data.path={tmp_path}"] if "papers" in path.parts else [])
    overrides, changes = smoke_overrides(study)
    small = load_study(path, [*([f"data.path={tmp_path}"] if "papers" in path.parts else []), *overrides])
    assert small.name == f"{study.name}_smoke" and small.epochs() <= SMOKE_EPOCHS
    assert small.trials_per_cell <= 2 and small.ablation.repeats <= 2 and small.resources.gpu == 0
    assert len(small.cells) == len(study.cells)  # the structure is what a smoke run checks
    side = 64 if small.trainable == "segmenter" else 32
    assert small.params.get("pretrained", False) is False and small.params.get("encoder_weights") is None
    assert small.params.get("image_size", side) <= side
    for _, values in small.cells:
        assert values.get("image_size", side) <= side  # also where a factor level sets it (P003)
    assert changes[0] == f"name -> {study.name}_smoke" and any("epochs" in c for c in changes) == (study.epochs() > SMOKE_EPOCHS)


def test_an_image_folder_is_replaced_by_a_few_linked_images_per_class(tmp_path):
    for split, count in (("train", 40), ("val", 12)):
        for name in ("rust", "clean"):
            folder = tmp_path / "data" / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                (folder / f"{i:03d}.jpg").write_bytes(b"x")
    assert subset_image_folder(tmp_path / "data", tmp_path / "small") == 2 * 24 + 2 * 8
    links = sorted((tmp_path / "small" / "train" / "rust").iterdir())
    assert len(links) == 24 and links[0].is_symlink() and links[0].resolve() == (tmp_path / "data" / "train" / "rust" / "000.jpg")
    (tmp_path / "flat").mkdir()
    assert subset_image_folder(tmp_path / "flat", tmp_path / "none") == 0


@pytest.fixture
def ray_left_as_found():
    """An in-process ``run`` starts Ray in this process and leaves it up (the CLI's process ends
    there); later tests that expect no Ray must not inherit it."""
    import ray

    was_up = ray.is_initialized()
    yield
    if not was_up and ray.is_initialized():
        ray.shutdown()


@pytest.mark.slow
def test_a_smoke_run_of_p002_ends_with_the_papers_numbers_beside_ours(tmp_path, monkeypatch, ray_left_as_found):
    from typer.testing import CliRunner

    from orchestrator.cli import app

    data = shared_dataset("fastener_corrosion")
    monkeypatch.chdir(tmp_path)
    args = ["run", str(REPO / "studies" / "papers" / "p002_bayesian_cnns.yaml"), "--smoke", "--storage", str(tmp_path),
            "--set", f"data.path={data}", "--set", "ray.num_cpus=2",
            # smaller still than --smoke: 4 cells x (1 search + 2 confirm runs), no Grad-CAM or profiling
            "--set", "search.num_samples=1", "--set", "params.epochs=1", "--set", "params.artifacts=false",
            "--set", "params.profile=false"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "Smoke run, shrunk:" in result.output
    report = json.loads((tmp_path / "p002_bayesian_cnns_smoke" / "report" / "report.json").read_text())
    assert [c["n"] for c in report["cells"]] == [2, 2, 2, 2] and report["metric"] == "test/accuracy"
    paper = {(r["cell"], r["metric"]): r for r in report["reference"]}
    assert paper[("backbone=ResNet50", "test/accuracy")]["paper"] == 0.9658
    assert all(r["ours_mean"] is not None for r in paper.values())
    assert "Paper vs ours" in (tmp_path / "p002_bayesian_cnns_smoke" / "report" / "report.html").read_text()


@pytest.mark.slow
@pytest.mark.parametrize("name, shrunk, metric", [
    ("segmenter", "params.image_size 128 -> 64", "test/iou"),
    ("esg_convnext", "params.image_size 64 -> 32", "test/f1"),
])
def test_a_smoke_run_of_each_other_trainables_example_ends_with_a_report(name, shrunk, metric, tmp_path, monkeypatch,
                                                                        ray_left_as_found):
    from typer.testing import CliRunner

    from orchestrator.cli import app

    monkeypatch.chdir(tmp_path)
    args = ["run", str(REPO / "studies" / "examples" / f"{name}.yaml"), "--smoke", "--storage", str(tmp_path),
            "--set", "ray.num_cpus=2", "--set", "params.artifacts=false", "--set", "params.profile=false"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert shrunk in result.output
    report = json.loads((tmp_path / f"{name}_smoke" / "report" / "report.json").read_text())
    assert report["metric"] == metric and report["cells"][0]["n"] == 1 and report["cells"][0]["mean"] is not None
