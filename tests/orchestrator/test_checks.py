"""Checks beyond types: every name and path a study holds fails before anything starts, with a hint."""

import pytest
import yaml
from PIL import Image

from orchestrator._known_names import (
    attention_names, augmentation_names, module_literal, smp_encoder_names, timm_model_names, timm_pretrained_tags,
)
from orchestrator.spec import StudyError, validate_study
from orchestrator.storage import storage_problem
from tests.conftest import REPO
from trainables import TRAINABLES

DEMO = REPO / "studies" / "demo.yaml"


def _raw(**params) -> dict:
    raw = yaml.safe_load(DEMO.read_text())
    raw["params"].update(params)
    return raw


def _problems(raw: dict) -> str:
    with pytest.raises(StudyError) as err:
        validate_study(raw, "study.yaml")
    return "\n".join(err.value.problems)


def _folder(root, classes=("bare", "rusty"), per_class=2):
    for name in classes:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            Image.new("RGB", (8, 8), (40 * i, 90, 120)).save(root / name / f"{i}.png")
    return root


# ------------------------------------------------------------------ names read from the sources


def test_timm_names_read_from_the_source_are_timm_list_models():
    timm = pytest.importorskip("timm")
    from timm.models._registry import _deprecated_models

    import trainables.models  # noqa: F401  (registers corrotune's own timm models: esg_convnext_<size>)

    deprecated = set(_deprecated_models)  # {old name: current name}
    assert timm_model_names() == set(timm.list_models()) | deprecated


def test_pretrained_tags_read_from_the_source_are_all_of_timms_where_a_model_lists_any():
    timm = pytest.importorskip("timm")
    listed: dict[str, set[str]] = {}
    for name in timm.list_pretrained():
        model, tag = name.split(".", 1)
        listed.setdefault(model, set()).add(tag)
    tags = timm_pretrained_tags()
    assert sum(1 for model in listed if model in tags) > 0.9 * len(listed)
    assert {model: listed[model] - tags[model] for model in listed if tags.get(model) and listed[model] - tags[model]} == {}


@pytest.mark.parametrize(
    ("params", "message"),
    [({"backbone": "resnet18.a1_in1k"}, None),
     ({"backbone": "resnet18.a1_in1kk"}, "params.backbone: backbone 'resnet18.a1_in1kk': timm has no pretrained tag "
                                         "'a1_in1kk' for resnet18; did you mean 'a1_in1k'?")],
)
def test_a_pretrained_tag_timm_does_not_have_fails_validate(params, message):
    raw = {"name": "t", "trainable": "classifier", "data": {"path": "synthetic:corrosion"}, "params": params}
    if message is None:
        validate_study(raw, "study.yaml")
    else:
        assert message in _problems(raw)


def test_smp_encoder_names_read_from_the_source_are_smps():
    smp = pytest.importorskip("segmentation_models_pytorch")
    assert set(smp_encoder_names()) == set(smp.encoders.get_encoder_names())


@pytest.mark.parametrize(
    ("encoder", "message"),
    [("mobilenet_v3", "unknown encoder 'mobilenet_v3'; did you mean 'mobilenet_v2'?"),
     ("tu-resnet18x", "'resnet18x' is not a timm model; did you mean 'resnet18'?"),
     ("tu-resnet18.tv_in1kk", "encoder 'tu-resnet18.tv_in1kk': timm has no pretrained tag 'tv_in1kk' for resnet18; did you mean 'tv_in1k'?")],
)
def test_a_segmenter_encoder_that_does_not_exist_fails_validate_with_a_hint(encoder, message):
    raw = yaml.safe_load((REPO / "studies" / "examples" / "segmenter.yaml").read_text())
    raw["params"]["encoder"] = encoder
    assert message in _problems(raw)
    raw["params"]["encoder"] = "tu-resnet18"
    validate_study(raw, "study.yaml")  # any timm backbone is an encoder


def test_registered_names_read_from_the_source_are_the_registries():
    from trainables.data.augment import AUGMENTATIONS
    from trainables.models.attention import ATTENTION

    assert augmentation_names() == tuple(AUGMENTATIONS.names())
    assert attention_names() == tuple(ATTENTION.names())


def test_paper_backbones_read_from_the_source_are_the_module_constant():
    from trainables._backbones import PAPER_BACKBONES

    assert module_literal("trainables._backbones", "PAPER_BACKBONES") == PAPER_BACKBONES


# ---------------------------------------------------------------------------- unknown names


@pytest.mark.parametrize(
    "params, expected",
    [
        ({"backbone": "resnet10x"}, "params.backbone: unknown backbone 'resnet10x'; did you mean 'resnet10t'?"),
        ({"backbone": "ResNet5O"}, "did you mean 'ResNet50'?"),
        ({"augmentation": ["hflip", {"rotat": {"degrees": 3}}]}, "params.augmentation: unknown augmentation 'rotat'; did you mean 'rotate'?"),
        ({"augmentation": "p0002"}, "did you mean 'p002'?"),
        ({"offline_augmentation": ["hfilp"]}, "params.offline_augmentation: unknown augmentation 'hfilp'; did you mean 'hflip'?"),
        ({"attention": "ecaa", "attention_placement": "head"}, "params.attention: unknown attention module 'ecaa'; did you mean 'eca'?"),
        ({"resize": "strech"}, "params.resize: unknown name 'strech'; did you mean 'stretch'? (valid: stretch, letterbox, center_crop)"),
        ({"positive_class": "corrosoin"}, "params.positive_class: 'corrosoin' is not a class of the dataset; did you mean 'corrosion'?"),
    ],
)
def test_unknown_names_in_params_fail_with_the_closest_name(params, expected):
    assert expected in _problems(_raw(**params))


def test_valid_names_pass():
    study = validate_study(_raw(backbone="ResNet18", augmentation=["hflip", {"rotate": {"degrees": 3}}], attention="eca",
                                attention_placement="head", positive_class="no_corrosion", resize="letterbox"))
    assert study.params["backbone"] == "ResNet18"


def test_names_in_ablation_levels_and_grids_are_checked_too():
    raw = _raw()
    del raw["params"]["backbone"]
    raw["ablation"] = {"factors": {"backbone": ["resnet10t", "resnt18"]}}
    assert "ablation.factors.backbone: unknown backbone 'resnt18'; did you mean 'resnet18'?" in _problems(raw)
    raw = _raw()
    raw["params"].pop("augmentation", None)
    raw["search"] = {"sampler": "grid", "grid": {"augmentation": ["hflip", "vflp"]}}
    assert "search.grid.augmentation: unknown augmentation 'vflp'; did you mean 'vflip'?" in _problems(raw)


def test_an_objective_the_trainable_never_reports():
    raw = _raw()
    raw["objective"] = {"metric": "val/acuracy", "mode": "max"}
    problem = _problems(raw)
    assert "objective.metric: the classifier trainable never reports 'val/acuracy'; did you mean 'val/accuracy'?" in problem
    raw["objective"] = {"metric": "val/f1/rusty"}  # a per-class pattern the classifier declares
    validate_study(raw)
    assert all(entry.metrics for entry in map(TRAINABLES.get, TRAINABLES))  # every trainable declares them


# ------------------------------------------------------------------------------ values and paths


@pytest.mark.parametrize(
    "params, expected",
    [
        ({"seed": -1}, "params.seed: seed -1 is outside 0..4294967295"),
        ({"seed": 2**32}, "params.seed: seed 4294967296 is outside"),
        ({"epochs": True}, "params.epochs: expected a number, got True"),
        ({"dropout": False}, "params.dropout: expected a number, got False"),
        ({"dense_units": [True, 8]}, "params.dense_units: expected a number"),
        ({"lr": float("inf")}, "params.lr: expected a finite number, got inf"),
        ({"image_size": 100_000}, "params.image_size: 100000 is beyond any sensible image_size (at most 4096)"),
        ({"batch_size": 10**12}, "params.batch_size: 1000000000000 is beyond any sensible batch_size"),
        ({"pretrained": "/no/such/weights.pth"}, "params.pretrained: weights file '/no/such/weights.pth' does not exist"),
        ({"pretrained": "weights.pth"}, "params.pretrained: 'weights.pth' is a relative path"),
    ],
)
def test_values_the_trial_would_reject_fail_here(params, expected):
    assert expected in _problems(_raw(**params))


def test_an_existing_weights_file_passes(tmp_path):
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(b"x")
    assert validate_study(_raw(pretrained=str(weights))).params["pretrained"] == str(weights)


@pytest.mark.parametrize(
    "change, expected",
    [
        ({"search": {"space": "classifier_basic", "seed": -3}}, "search.seed: Input should be greater than or equal to 0"),
        ({"ablation": {"repeats": 2, "first_seed": 2**32 - 1}}, "first_seed + repeats - 1 = 4294967296 exceeds"),
        ({"data": {"path": "synthetic:corrosion", "split_seed": 2**40}}, "data.split_seed: Input should be less than or equal to 4294967295"),
        ({"search": {"space": "classifier_basic", "num_samples": True}}, "search.num_samples: expected a number, got True"),
        ({"search": {"space": "classifier_basic", "num_samples": 10**9}}, "search.num_samples: Input should be less than or equal to 100000"),
        ({"name": "x" * 200}, "name: String should have at most 128 characters"),
    ],
)
def test_study_values_out_of_range_fail(change, expected):
    assert expected in _problems({**_raw(), **change})


@pytest.mark.parametrize(
    "levels, expected",
    [
        ([0.5, 0.5000], "factor 'dropout' lists a value twice"),
        ([0, 0.0], "factor 'dropout': levels '0' and '0.0' are the same value (0 == 0.0), so their cells would be duplicates"),
        ({"low": {"dropout": 0.1}, "also_low": {"dropout": 0.1}}, "levels 'low' and 'also_low' are the same value"),
    ],
)
def test_ablation_levels_equal_as_values_are_refused(levels, expected):
    raw = _raw()
    raw["params"].pop("dropout", None)
    raw["search"] = None
    raw["ablation"] = {"factors": {"dropout": levels}}
    assert expected in _problems(raw)


# --------------------------------------------------------------------------------------- data


def test_a_segmentation_folder_given_to_the_classifier_names_the_layout(tmp_path):
    for sub in ("images", "masks"):
        (tmp_path / sub).mkdir()
        Image.new("L", (8, 8)).save(tmp_path / sub / "a.png")
    raw = _raw()
    raw["data"] = {"path": str(tmp_path)}
    raw["params"].pop("positive_class", None)
    problem = _problems(raw)
    assert "is a segmentation folder (segmentation: images/ + masks/), but the classifier trainable classifies" in problem
    assert "segmentation trainable" in problem


def test_positive_class_is_checked_against_the_folder(tmp_path):
    _folder(tmp_path)
    raw = _raw(positive_class="rusy")
    raw["data"] = {"path": str(tmp_path)}
    assert "'rusy' is not a class of the dataset; did you mean 'rusty'? (classes: bare, rusty)" in _problems(raw)
    raw["params"]["positive_class"] = "rusty"
    assert validate_study(raw).params["positive_class"] == "rusty"


def test_missing_coco_annotations_file(tmp_path):
    raw = _raw()
    raw["data"] = {"path": str(tmp_path), "format": "coco", "annotations": str(tmp_path / "nope.json")}
    assert "data.annotations: " in _problems(raw)


# ------------------------------------------------------------------------------------ storage


def test_storage_that_cannot_be_written(tmp_path):
    (tmp_path / "file").write_text("x")
    assert "is a file" in storage_problem(tmp_path / "file", "demo")
    assert f"cannot be created: {tmp_path / 'file'} is a file" in storage_problem(tmp_path / "file" / "sub", "demo")
    assert "unsupported scheme foo://" in storage_problem("foo://bucket/x", "demo")
    assert "too long for a folder name" in storage_problem(tmp_path, "x" * 300)
    assert storage_problem(tmp_path / "new" / "deeper", "demo") is None
    assert storage_problem(f"file://{tmp_path}", "demo") is None


def test_read_only_storage(tmp_path):
    import os

    if os.geteuid() == 0:
        pytest.skip("root writes anywhere")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    assert "permission denied" in storage_problem(locked, "demo")


def test_validate_imports_neither_torch_nor_timm(tmp_path):
    """The checks read names from source files: a bad study costs a second, not a torch import."""
    import subprocess
    import sys

    script = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from orchestrator.cli import app\n"
        f"args = ['validate', {str(DEMO)!r}, '--set', 'params.attention=eca', '--set', 'params.attention_placement=head',\n"
        "        '--set', 'params.augmentation=[hflip, rotate]', '--set', 'params.backbone=ResNet18']\n"
        "result = CliRunner().invoke(app, args)\n"
        "assert result.exit_code == 0, result.output\n"
        "print(sorted(m for m in ('torch', 'timm', 'ray') if m in sys.modules))\n"
    )
    completed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "[]"


@pytest.mark.parametrize("value", [[1], {"a": 1}, ["classifier"]])
def test_a_trainable_that_is_no_string_is_a_type_error_not_a_crash(value):
    assert "trainable: Input should be a valid string" in _problems({**_raw(), "trainable": value})
