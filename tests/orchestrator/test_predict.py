"""``corrotune predict``: the trial's own preprocessing and decisions, every bad file accounted for."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from rich.console import Console
from typer.testing import CliRunner

from orchestrator.cli import app
from orchestrator.deploy import open_model, predict_folder, select_trials
from orchestrator.deploy import predict as predict_module
from tests.orchestrator.conftest import add_bad_files

pytestmark = pytest.mark.slow  # every test here uses the trial trained through Ray (tests/orchestrator/conftest.py)

QUIET = Console(file=io.StringIO())


def _rows(path: Path) -> dict[str, dict[str, str]]:
    with path.open(newline="") as handle:
        return {row["path"]: row for row in csv.DictReader(handle)}


def _test_photos(study: Path) -> Path:
    return study.parent.parent / "photos" / "test"


@pytest.fixture(scope="module")
def messy_folder(tiny_study, tmp_path_factory) -> tuple[Path, set[str], dict[str, str]]:
    """The trial's test photos (some in a sub-folder) plus three bad files: (folder, good, bad)."""
    folder = tmp_path_factory.mktemp("messy")
    photos = sorted(_test_photos(tiny_study).glob("*/*.jpg"))
    good = set()
    for number, photo in enumerate(photos):
        rel = f"line2/{photo.name}" if number % 2 else photo.name
        (folder / rel).parent.mkdir(exist_ok=True)
        shutil.copy(photo, folder / rel)
        good.add(rel)
    bad = add_bad_files(folder, photos[0])
    return folder, good, bad


def test_predict_scores_exactly_the_good_images_and_lists_the_bad_ones(onnx_model, messy_folder, tmp_path):
    folder, good, bad = messy_folder
    summary = predict_folder(onnx_model, folder, tmp_path / "out.csv", console=QUIET)
    rows = _rows(tmp_path / "out.csv")
    assert set(rows) == good and summary.predicted == len(good)
    assert {s.path: s.kind for s in summary.skipped} == bad
    with (tmp_path / "out.skipped.csv").open(newline="") as handle:
        assert {r["path"]: r["kind"] for r in csv.DictReader(handle)} == bad
    assert summary.engine == "onnxruntime"
    assert f"{len(good)} images predicted, 3 skipped (junk 1, truncated 1, unreadable 1)" in summary.line()
    for row in rows.values():
        p = [float(row["prob_corroded"]), float(row["prob_non_corroded"])]
        assert sum(p) == pytest.approx(1.0, abs=1e-6)
        assert row["predicted_class"] == ("non_corroded" if p[1] >= 0.5 else "corroded")


def test_each_prediction_equals_what_the_trial_scored_in_its_own_test_pass(tiny_study, onnx_model, tmp_path):
    from trainables.classifier import load_training_data, predict
    from trainables.classifier_build import build_model
    from trainables.classifier_config import ClassifierConfig

    [trial] = select_trials(tiny_study)
    state = trial.best_state()
    cfg = ClassifierConfig.model_validate(state["config"])
    dataset, splits = load_training_data(cfg)  # the trial's own data path: manifest, decode cache, its split
    network = build_model(cfg, len(state["classes"]))
    network.load_state_dict(state["best_model"])
    logits = predict(network, splits["test"], cfg, torch.device("cpu"))  # the trainable's test-pass predict
    theirs = {Path(s.path).name: float(torch.sigmoid(logits[i, 0])) for i, s in enumerate(dataset.split("test"))}
    labels = {Path(s.path).name: state["classes"][s.label] for s in dataset.split("test")}
    reported = [r for r in trial.results() if "test/accuracy" in r][-1]["test/accuracy"]

    for source, tolerance in ((onnx_model, 1e-5), (tiny_study, 1e-6)):  # ONNX Runtime, and the study with PyTorch
        out = tmp_path / f"{Path(source).name}.csv"
        predict_folder(source, _test_photos(tiny_study), out, batch_size=4, console=QUIET)
        rows = {Path(path).name: row for path, row in _rows(out).items()}
        assert set(rows) == set(theirs)
        for name, row in rows.items():
            assert float(row["prob_non_corroded"]) == pytest.approx(theirs[name], abs=tolerance), name
            assert row["predicted_class"] == state["classes"][int(theirs[name] >= 0.5)], name
        accuracy = np.mean([row["predicted_class"] == labels[name] for name, row in rows.items()])
        assert accuracy == pytest.approx(reported, abs=1e-6)  # the test/accuracy the trial reported


def test_an_interrupted_predict_leaves_the_previous_csv_whole(onnx_model, messy_folder, tmp_path):
    folder, _, _ = messy_folder
    out = tmp_path / "predictions.csv"
    out.write_text("path,predicted_class\nearlier.jpg,corroded\n")
    model = open_model(onnx_model)
    calls = []
    run = model.run

    def interrupted(x):
        calls.append(len(x))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return run(x)

    model.run = interrupted
    with pytest.raises(KeyboardInterrupt):
        predict_folder(model, folder, out, batch_size=2, console=QUIET)
    assert out.read_text() == "path,predicted_class\nearlier.jpg,corroded\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["predictions.csv"]  # no temporary file left


def test_a_threshold_moves_the_decision_and_a_bad_one_is_refused(onnx_model, messy_folder, tmp_path):
    folder, good, _ = messy_folder
    runner = CliRunner()
    for threshold, expected in (("0", "non_corroded"), ("1", "corroded")):
        out = tmp_path / f"t{threshold}.csv"
        result = runner.invoke(app, ["predict", str(onnx_model), str(folder), "--out", str(out), "--threshold", threshold])
        assert result.exit_code == 0, result.output
        assert f"{len(good)} images predicted, 3 skipped" in result.output
        assert {r["predicted_class"] for r in _rows(out).values()} == {expected}
    result = runner.invoke(app, ["predict", str(onnx_model), str(folder), "--threshold", "1.5"])
    assert result.exit_code == 2 and "--threshold must lie between 0 and 1" in result.output
    result = runner.invoke(app, ["predict", str(folder), str(folder)])
    assert result.exit_code == 2 and "neither an exported model folder" in " ".join(result.output.split())
    assert "Traceback" not in result.output


def test_large_folders_show_a_progress_bar(onnx_model, messy_folder, tmp_path, monkeypatch):
    folder, good, _ = messy_folder
    shown = io.StringIO()
    predict_folder(onnx_model, folder, tmp_path / "a.csv", console=Console(file=shown, force_terminal=True, width=100))
    assert "predicting" not in shown.getvalue()  # a handful of images: no bar
    monkeypatch.setattr(predict_module, "PROGRESS_MIN_IMAGES", len(good))
    predict_folder(onnx_model, folder, tmp_path / "b.csv", console=Console(file=shown, force_terminal=True, width=100))
    assert "predicting" in shown.getvalue()


def test_an_exported_card_drives_predict_without_the_study(onnx_model, messy_folder, tmp_path):
    folder, good, _ = messy_folder
    moved = tmp_path / "moved"
    shutil.copytree(onnx_model, moved)
    card = json.loads((moved / "model.json").read_text())
    card["decision"]["threshold"] = 0.0  # the card's threshold is predict's default
    (moved / "model.json").write_text(json.dumps(card))
    summary = predict_folder(moved, folder, tmp_path / "p.csv", console=QUIET)
    assert summary.predicted == len(good)
    assert {r["predicted_class"] for r in _rows(tmp_path / "p.csv").values()} == {"non_corroded"}


def test_segmenter_predict_writes_a_mask_and_overlay_per_good_image_and_the_trials_fractions(
    tiny_seg_study, seg_onnx_model, tmp_path
):
    from PIL import Image

    from trainables import loop
    from trainables.segmenter import SegmenterTask
    from trainables.segmenter_build import build_model
    from trainables.segmenter_config import SegmenterConfig

    [trial] = select_trials(tiny_seg_study)
    state = trial.best_state()
    cfg = SegmenterConfig.model_validate(state["config"])
    task = SegmenterTask(cfg)
    splits = task.load_data()  # the trial's own data path: manifest, decode cache, its split
    network = build_model(cfg, task.num_classes)
    network.load_state_dict(state["best_model"])
    logits = loop.predict(network, splits["test"].images, cfg, torch.device("cpu"))  # the loop's test pass
    frames = (torch.sigmoid(logits[:, 0]) >= cfg.threshold).numpy()  # (N, S, S), smp's rule at its threshold
    theirs = {Path(p).name: frame for p, frame in zip(task.paths["test"], frames)}

    folder = tmp_path / "photos"
    folder.mkdir()
    for path in task.paths["test"]:
        shutil.copy(path, folder / Path(path).name)
    bad = add_bad_files(folder, Path(task.paths["test"][0]))
    for source, out in ((seg_onnx_model, tmp_path / "onnx"), (tiny_seg_study, tmp_path / "study")):
        summary = predict_folder(source, folder, out, console=QUIET)
        assert {s.path: s.kind for s in summary.skipped} == bad and summary.predicted == len(theirs)
        rows = _rows(out / "predictions.csv")
        assert set(rows) == set(theirs)
        for name, frame in theirs.items():
            mask = np.asarray(Image.open(out / rows[name]["mask"]))
            with Image.open(folder / name) as photo:
                assert mask.shape == (photo.height, photo.width) and set(np.unique(mask)) <= {0, 255}
            assert Image.open(out / rows[name]["overlay"]).size == (mask.shape[1], mask.shape[0])
            # square photos, stretch policy: the full-size mask is the model's mask scaled up exactly
            step = mask.shape[0] // frame.shape[0]
            np.testing.assert_array_equal(mask[step // 2 :: step, step // 2 :: step] == 255, frame)
            assert float(rows[name]["foreground_fraction"]) == pytest.approx(frame.mean(), abs=1e-5)
        assert {r["kind"] for r in csv.DictReader((out / "skipped.csv").open())} == set(bad.values())
