"""Every command answers bad input with a message and exit status 2, never a traceback (``--debug`` shows one)."""

import json

import numpy as np
import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from orchestrator import cli
from orchestrator.cli import EXIT_INTERNAL, app
from tests.conftest import REPO

DEMO = str(REPO / "studies" / "demo.yaml")
runner = CliRunner()


def _invoke(*args):
    result = runner.invoke(app, [str(a) for a in args])
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result


def _refused(*args, expected: str):
    result = _invoke(*args)
    assert result.exit_code == 2, result.output
    assert "error:" in result.output and expected in result.output, result.output
    return result.output


def _images(root, splits=(None,), classes=("bare", "rusty"), per_class=2, seed=0):
    rng = np.random.default_rng(seed)
    for split in splits:
        for name in classes:
            folder = root / split / name if split else root / name
            folder.mkdir(parents=True)
            for i in range(per_class):
                Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return root


def _study_dir(tmp_path, text: str | bytes):
    study_dir = tmp_path / "demo"
    study_dir.mkdir(parents=True)
    saved = study_dir / "corrotune_study.yaml"
    saved.write_bytes(text if isinstance(text, bytes) else text.encode())
    (study_dir / "classifier_00001").mkdir()
    (study_dir / "classifier_00001" / "result.json").write_text('{"epoch": 1}\n')
    return study_dir, saved


# ----------------------------------------------------------------------------- study files, --set


@pytest.mark.parametrize("command", ["validate", "run"])
def test_malformed_yaml_in_a_set_value(command, tmp_path):
    out = _refused(command, DEMO, "--set", "params.augmentation=[hflip", "--storage", tmp_path / "r",
                   expected="'params.augmentation=[hflip': the value is not valid YAML")
    assert "quote it" in out and not (tmp_path / "r").exists()


@pytest.mark.parametrize("command", ["validate", "run"])
def test_a_binary_study_file(command, tmp_path):
    study = tmp_path / "study.yaml"
    study.write_bytes(bytes(range(256)) * 4)
    _refused(command, study, "--storage", tmp_path / "r", expected="not a text file")
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("text, expected", [("", "got an empty file"), ("- a\n- b\n", "got a list"), ("a: [1\n", "not valid YAML")])
def test_study_files_that_are_no_mapping(tmp_path, text, expected):
    study = tmp_path / "study.yaml"
    study.write_text(text)
    _refused("validate", study, expected=expected)


def test_a_folder_given_as_the_study_file(tmp_path):
    _refused("validate", tmp_path, expected="is a folder; give the study file")


def test_a_study_name_the_file_system_cannot_hold(tmp_path):
    _refused("validate", DEMO, "--set", "name=" + "n" * 300, expected="name: String should have at most 128 characters")


# --------------------------------------------------------------------------------------- storage


def test_storage_that_is_a_file(tmp_path):
    (tmp_path / "file").write_text("keep me")
    for command in ("validate", "run"):
        _refused(command, DEMO, "--storage", tmp_path / "file", expected="is a file; give a folder")
    assert (tmp_path / "file").read_text() == "keep me"


def test_storage_with_an_unsupported_scheme():
    _refused("validate", DEMO, "--storage", "ftp://host/results", expected="unsupported scheme ftp://")


def test_resume_from_an_unsupported_scheme():
    _refused("resume", "ftp://host/results/demo", expected="ftp://host/results: unsupported scheme ftp://")


def test_storage_in_an_unreachable_bucket(monkeypatch):
    import orchestrator.storage as storage

    monkeypatch.setattr(storage, "_PROBE_TIMEOUT_S", 0.5)  # the SDK retries for seconds before giving up
    _refused("validate", DEMO, "--storage", "s3://corrotune-none/x?endpoint_override=127.0.0.1:9&scheme=http&region=us-east-1",
             expected="--storage s3://corrotune-none/x")


# ------------------------------------------------------------------------------ saved studies


@pytest.mark.parametrize("content, expected", [
    (b"name: demo\nobjectives: [{metric: val/accuracy\n", "not valid YAML"),
    (bytes(range(256)), "not a text file"),
    (b"name: demo\nobjectives: 3\n", "the saved study is corrupt"),
])
def test_a_corrupt_saved_study(tmp_path, content, expected):
    study_dir, saved = _study_dir(tmp_path, content)
    _refused("status", study_dir, expected=expected)
    _refused("resume", study_dir, expected=expected if "corrupt" not in expected else "invalid study")
    assert saved.read_bytes() == content  # nothing already written was lost
    assert (study_dir / "classifier_00001" / "result.json").read_text() == '{"epoch": 1}\n'


def test_an_unreadable_saved_study(tmp_path):
    import os

    if os.geteuid() == 0:
        pytest.skip("root reads anything")
    study_dir, saved = _study_dir(tmp_path, b"name: demo\n")
    saved.chmod(0)
    _refused("status", study_dir, expected="cannot read the saved study")


# ------------------------------------------------------------------- paths printed verbatim


def test_paths_with_square_brackets_are_printed_verbatim(tmp_path):
    odd = tmp_path / "[bold]x[/bold]" / "[/y]"
    _refused("validate", DEMO, "--set", f"data.path={odd}", expected=str(odd))
    _refused("status", odd, expected=str(odd))
    _refused("resume", odd, expected=str(odd))
    _refused("scan", odd, expected=str(odd))


def test_a_study_in_a_bracketed_folder_shows_its_path(tmp_path):
    study_dir, _ = _study_dir(tmp_path / "[red]runs[/red]", yaml.safe_dump({"name": "demo", "objectives": [{"metric": "val/f1"}]}))
    result = _invoke("status", study_dir)
    assert str(study_dir) in result.output, result.output


def test_scan_of_a_bracketed_folder_writes_its_json(tmp_path):
    data = _images(tmp_path / "[data]" / "[/set]")
    target = tmp_path / "[out].json"
    result = _invoke("scan", data, "--json", target)
    assert result.exit_code == 0, result.output
    assert f"JSON report written to {target}" in result.output
    assert json.loads(target.read_text())["num_images"] == 4


# ------------------------------------------------------------------------------------------ scan


def test_scan_exit_status_says_clean_warnings_or_errors(tmp_path):
    clean = _images(tmp_path / "clean", splits=("train", "val", "test"))
    result = _invoke("scan", clean)
    assert result.exit_code == 0, result.output
    assert "12 images in 2 classes over 3 splits" in result.output  # not "6 classes"
    warned = _images(tmp_path / "warned")
    Image.fromarray(np.random.default_rng(9).integers(0, 256, (32, 32), dtype=np.uint8)).save(warned / "bare" / "grey.png")
    assert _invoke("scan", warned).exit_code == 1
    (warned / "rusty" / "broken.png").write_bytes(b"not a png")
    assert _invoke("scan", warned).exit_code == 2
    help_text = _invoke("scan", "--help").output
    assert "0 clean, 1 warnings only, 2 errors" in " ".join(help_text.split())


def test_scan_json_target_that_cannot_be_written(tmp_path):
    data = _images(tmp_path / "data")
    _refused("scan", data, "--json", tmp_path / "missing" / "scan.json", expected="does not exist")
    _refused("scan", data, "--json", tmp_path, expected="is a folder; give a file name")


# --------------------------------------------------------------------------- data errors, item 7


def test_run_on_unreadable_images_stops_before_the_study_folder_exists(tmp_path):
    data = tmp_path / "data"
    for name in ("bare", "rusty"):
        (data / name).mkdir(parents=True)
        for i in range(3):
            (data / name / f"{i}.jpg").write_bytes(b"garbage")
    storage = tmp_path / "results"
    out = _refused("run", DEMO, "--set", f"data.path={data}", "--set", "params.positive_class=rusty", "--storage", storage,
                   expected="no usable image (6 unusable file(s) left out")
    assert "6 unreadable" in out  # the scan's report came first
    assert not storage.exists()  # the corrected run will not find an "existing" study


def test_run_on_a_segmentation_folder_names_the_layout(tmp_path):
    for sub in ("images", "masks"):
        (tmp_path / "seg" / sub).mkdir(parents=True)
        Image.new("L", (8, 8)).save(tmp_path / "seg" / sub / "a.png")
    _refused("run", DEMO, "--set", f"data.path={tmp_path / 'seg'}", "--set", "params.positive_class=null", "--storage",
             tmp_path / "r", expected="is a segmentation folder (segmentation: images/ + masks/)")
    assert not (tmp_path / "r").exists()


# -------------------------------------------------------------------------------------- --debug


def test_debug_shows_the_traceback(tmp_path):
    study = tmp_path / "study.yaml"
    study.write_bytes(bytes(range(256)))
    result = runner.invoke(app, ["--debug", "validate", str(study)])
    assert result.exit_code == 2 and "Traceback" in result.output and "not a text file" in result.output


def test_an_unexpected_failure_is_one_line_and_exit_70(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire\nsecond line")

    monkeypatch.setattr(cli, "load_study", broken)
    result = runner.invoke(app, ["validate", DEMO])
    assert result.exit_code == EXIT_INTERNAL == 70
    assert "corrotune failed unexpectedly: RuntimeError: disk on fire" in result.output
    assert "Traceback" not in result.output and "second line" not in result.output and "--debug" in result.output
    result = runner.invoke(app, ["--debug", "validate", DEMO])
    assert result.exit_code == 70 and "Traceback" in result.output
