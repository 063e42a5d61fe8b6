"""``corrotune export``: the best epoch's weights, rebuilt from the stored config, checked against PyTorch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from typer.testing import CliRunner

from orchestrator.cli import app
from orchestrator.deploy import DeployError, export_study, select_trials
from tests.conftest import shared_dataset
from tests.orchestrator.conftest import copy_real_photos
from trainables.classifier_build import build_model
from trainables import get_trainable
from trainables.classifier_config import ClassifierConfig
from trainables.inference import Preprocessing

CLASSES = ["corroded", "non_corroded"]
QUIET = {"log": lambda _: None}


def _network(config: dict, weights: dict) -> torch.nn.Module:
    """The reference: the classifier's own builder, not the adapter under test."""
    network = build_model(ClassifierConfig.model_validate(config), len(CLASSES))
    network.load_state_dict(weights)
    return network.eval()


def _real_inputs(size: int, count: int) -> torch.Tensor:
    """Real photos the trial never saw (the shared dataset's val split, from its end)."""
    root = shared_dataset("fastener_corrosion") / "val"
    return _model_inputs([p for cls in CLASSES for p in sorted((root / cls).glob("*.jpg"))[-count:]][:count], size)


def _model_inputs(paths: list, size: int) -> torch.Tensor:
    """``paths`` preprocessed as a model trained at ``size`` px (stretch, imagenet) reads them."""
    prep = Preprocessing(size, "stretch", "imagenet")
    images = []
    for path in paths:
        with Image.open(path) as image:
            images.append(prep.load(image))
    return prep.to_input(np.stack(images))


# --- a study folder as Ray leaves it, with checkpoints of small random networks (no Ray) ----------


def _classifier(config: dict) -> torch.nn.Module:
    return build_model(ClassifierConfig.model_validate(config), len(CLASSES))


def _esg_convnext(config: dict) -> torch.nn.Module:
    from trainables.esg_convnext import EsgConvNeXtTask
    from trainables.esg_convnext_config import EsgConvNeXtConfig

    task = EsgConvNeXtTask(EsgConvNeXtConfig.model_validate(config))
    task.classes = tuple(CLASSES)
    return task.build_model()


def _fabricate(root: Path, trials: list[tuple[str, str, list[float]]], trainable: str = "classifier", **params) -> Path:
    """``trials``: (trial id, cell, val/accuracy per epoch). Each checkpoint's best weights differ
    from its last ones."""
    photos = copy_real_photos(root / "photos")
    study = root / "fab"
    study.mkdir()
    (study / "corrotune_study.yaml").write_text(yaml.safe_dump(
        {"name": "fab", "trainable": trainable, "objective": {"metric": "val/accuracy", "mode": "max"}}))
    entry = get_trainable(trainable)
    build = {"classifier": _classifier, "esg_convnext": _esg_convnext}[trainable]
    defaults = {"classifier": {"backbone": "test_resnet", "image_size": 32, "dense_units": 8}}.get(trainable, {})
    for number, (trial_id, cell, scores) in enumerate(trials):
        config = entry.config_model.model_validate({"data": {"path": str(photos)}, **defaults, **params})
        config = config.model_dump(mode="json")
        torch.manual_seed(number)
        last = build(config).state_dict()
        torch.manual_seed(1000 + number)
        best = build(config).state_dict()
        folder = study / f"{trainable}_{trial_id}"
        (folder / "checkpoint_000001").mkdir(parents=True)
        (folder / "params.json").write_text(json.dumps({**config, "corrotune": {"cell": cell, "phase": "search"}}))
        results = [{"trial_id": trial_id, "training_iteration": e, "epoch": e, "val/accuracy": s}
                   for e, s in enumerate(scores, 1)]
        results[-1].update({"test/accuracy": 0.75, "done": True})
        (folder / "result.json").write_text("".join(json.dumps(r) + "\n" for r in results))
        best_epoch = int(np.argmax(scores)) + 1
        torch.save({
            "model": last, "best_model": best, "config": config, "classes": CLASSES, "epoch": len(scores),
            "best_epoch": best_epoch, "history": [{"epoch": e, "val/accuracy": s} for e, s in enumerate(scores, 1)],
        }, folder / "checkpoint_000001" / "state.pt")
    return study


@pytest.fixture(scope="module")
def fabricated(tmp_path_factory) -> Path:
    return _fabricate(tmp_path_factory.mktemp("fab"), [
        ("aaa00001", "attention=none", [0.5, 0.6]),
        ("bbb00002", "attention=none", [0.7, 0.65]),
        ("ccc00003", "attention=eca", [0.55, 0.58]),
    ])


def test_best_is_the_best_objective_and_best_per_cell_one_per_cell(fabricated):
    assert [t.trial_id for t in select_trials(fabricated)] == ["bbb00002"]
    assert [t.trial_id for t in select_trials(fabricated, best=True)] == ["bbb00002"]
    per_cell = {t.cell: t.trial_id for t in select_trials(fabricated, best_per_cell=True)}
    assert per_cell == {"attention=none": "bbb00002", "attention=eca": "ccc00003"}
    assert select_trials(fabricated, trial="aaa00001")[0].folder.name == "classifier_aaa00001"


def test_an_unknown_trial_lists_the_known_ones_best_first(fabricated):
    with pytest.raises(DeployError, match="no trial 'zzz'.*bbb00002, aaa00001, ccc00003"):
        select_trials(fabricated, trial="zzz")
    with pytest.raises(DeployError, match="one of"):
        select_trials(fabricated, trial="aaa00001", best=True)


def test_the_export_holds_the_best_epochs_weights_not_the_last(fabricated, tmp_path):
    from safetensors.torch import load_file

    [result] = export_study(fabricated, trial="bbb00002", fmt="safetensors", out=tmp_path / "m", **QUIET)
    state = torch.load(fabricated / "classifier_bbb00002" / "checkpoint_000001" / "state.pt", weights_only=False)
    exported = load_file(str(result.out_dir / "model.safetensors"))
    weights = {k: v for k, v in state["best_model"].items() if k in exported}
    assert weights and all(torch.equal(exported[k], v) for k, v in weights.items())
    assert any(not torch.equal(exported[k], state["model"][k]) for k in weights)  # not the last epoch's
    card = json.loads((result.out_dir / "model.json").read_text())
    assert card["weights"]["best_epoch"] == 1 and card["weights"]["epochs_trained"] == 2
    assert card["metrics"]["val"]["val/accuracy"] == 0.7 and card["metrics"]["test"]["test/accuracy"] == 0.75
    assert card["study"] == {"name": "fab", "dir": str(fabricated), "trial_id": "bbb00002", "cell": "attention=none",
                             "objective": {"metric": "val/accuracy", "mode": "max"}}
    assert card["verification"]["images"] >= 2 and card["verification"]["max_abs_diff"] == 0.0


def test_best_per_cell_writes_one_model_folder_per_cell(fabricated, tmp_path):
    results = export_study(fabricated, best_per_cell=True, fmt="safetensors", out=tmp_path, **QUIET)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["attention=eca", "attention=none"]
    assert {r.trial_id for r in results} == {"bbb00002", "ccc00003"}


def test_a_model_of_one_input_size_is_exported_with_that_size_and_says_why(tmp_path):
    # timm's ViT resamples its position embedding in eager mode, but tracing bakes in the token count
    study = _fabricate(tmp_path, [("vit00001", "base", [0.5])], backbone="test_vit", image_size=160)
    [result] = export_study(study, fmt="torchscript", out=tmp_path / "vit", **QUIET)
    card = json.loads((result.out_dir / "model.json").read_text())
    assert not result.dynamic_hw and card["input"]["shape"] == ["batch", 3, 160, 160]
    assert "the exported graph refuses another size" in card["input"]["fixed_size_reason"]
    assert result.max_abs_diff <= 1e-4


def test_a_check_above_the_tolerance_writes_nothing(fabricated, tmp_path):
    with pytest.raises(DeployError, match="disagrees with PyTorch on .* real images.*nothing was written"):
        export_study(fabricated, fmt="safetensors", out=tmp_path / "m", tolerance=-1.0, **QUIET)
    assert list(tmp_path.iterdir()) == []  # no model folder, no staging folder


def test_an_exporter_failure_names_the_architecture_and_the_way_out(fabricated, tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise RuntimeError("Unsupported operator aten::weird\nlong trace")

    monkeypatch.setattr(torch.onnx, "export", refuse)
    with pytest.raises(DeployError, match=r"test_resnet cannot be exported to ONNX: RuntimeError: Unsupported operator "
                                          r"aten::weird\. Try another --format \(safetensors always works"):
        export_study(fabricated, fmt="onnx", out=tmp_path / "m", **QUIET)
    assert list(tmp_path.iterdir()) == []


def test_an_existing_folder_is_replaced_only_with_force(fabricated, tmp_path):
    export_study(fabricated, fmt="safetensors", out=tmp_path / "m", **QUIET)
    with pytest.raises(DeployError, match="already exists; pass --force"):
        export_study(fabricated, fmt="safetensors", out=tmp_path / "m", **QUIET)
    export_study(fabricated, fmt="safetensors", out=tmp_path / "m", force=True, **QUIET)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_bad_requests_fail_with_the_fix_and_no_traceback(fabricated, tmp_path):
    runner = CliRunner()
    cases = [
        ([str(fabricated), "--trial", "nope"], "no trial 'nope'"),
        ([str(fabricated), "--format", "tflite"], "--format 'tflite' is not one of onnx, torchscript, safetensors"),
        ([str(tmp_path)], "not a corrotune study directory"),
    ]
    for args, message in cases:
        result = runner.invoke(app, ["export", *args])
        assert result.exit_code == 2, result.output
        assert message in " ".join(result.output.split()) and "Traceback" not in result.output
    result = runner.invoke(app, ["export", str(fabricated), "--format", "safetensors", "--out", str(tmp_path / "ok")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "ok" / "model.json").is_file()


def test_a_trial_without_checkpoint_or_adapter_says_so(fabricated, tmp_path):
    study = _fabricate(tmp_path, [("noop0001", "base", [0.5])])
    for path in study.glob("*/checkpoint_*/state.pt"):
        path.unlink()
    with pytest.raises(DeployError, match="has no checkpoint"):
        export_study(study, fmt="safetensors", out=tmp_path / "m", **QUIET)
    (study / "corrotune_study.yaml").write_text(yaml.safe_dump({"name": "n", "trainable": "noop",
                                                                "objective": {"metric": "val/accuracy", "mode": "max"}}))
    state = torch.load(fabricated / "classifier_aaa00001" / "checkpoint_000001" / "state.pt", weights_only=False)
    torch.save(state, next(study.glob("*/checkpoint_*")) / "state.pt")
    with pytest.raises(DeployError, match="trainable 'noop' cannot be exported.*Trainables that have one: classifier"):
        export_study(study, fmt="safetensors", out=tmp_path / "m", **QUIET)


# --- a real trial, trained through Ray ---------------------------------------------------------------


def _best_state(study: Path) -> dict:
    [trial] = select_trials(study)
    return trial.best_state()


@pytest.mark.slow
def test_onnx_runtime_agrees_with_pytorch_on_real_images(tiny_study, onnx_model):
    import onnxruntime

    state = _best_state(tiny_study)
    reference = _network(state["config"], state["best_model"])
    session = onnxruntime.InferenceSession(str(onnx_model / "model.onnx"), providers=["CPUExecutionProvider"])
    for size, count in ((32, 1), (32, 5), (64, 3)):  # a dynamic batch axis, and dynamic height and width
        x = _real_inputs(size, count)
        with torch.no_grad():
            expected = reference(x).numpy()
        got = session.run(None, {"images": x.numpy()})[0]
        assert got.shape == expected.shape == (count, 1)
        assert np.abs(got - expected).max() <= 1e-4, (size, count)
    card = json.loads((onnx_model / "model.json").read_text())
    assert card["format"] == "onnx" and card["files"] == {"model": "model.onnx"}
    assert card["input"]["dynamic_batch"] and card["input"]["dynamic_height_width"]
    assert card["verification"]["max_abs_diff"] <= 1e-4 and card["verification"]["images"] == 6
    assert card["trainable"] == "classifier" and card["architecture"]["backbone"] == "resnet10t"
    assert card["classes"] == CLASSES
    assert card["decision"] == {"positive_class": "non_corroded", "threshold": 0.5, "rule": card["decision"]["rule"]}
    assert card["preprocessing"]["image_size"] == 32 and card["preprocessing"]["resize"] == "stretch"
    assert card["preprocessing"]["normalization"] == "imagenet"
    assert card["weights"]["best_epoch"] == state["best_epoch"]
    assert {"val/accuracy", "val/loss"} <= card["metrics"]["val"].keys()
    assert {"test/accuracy", "test/loss"} <= card["metrics"]["test"].keys()
    assert card["study"]["name"] == "tiny" and card["study"]["trial_id"] == select_trials(tiny_study)[0].trial_id
    assert card["versions"]["corrotune"] and card["versions"]["torch"] == torch.__version__.split("+")[0]
    assert card["versions"]["onnxruntime"] == onnxruntime.__version__ and card["onnx"]["opset"] >= 17


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
def test_torchscript_agrees_with_pytorch_on_real_images(tiny_study, tmp_path):
    [result] = export_study(tiny_study, fmt="torchscript", out=tmp_path / "ts", **QUIET)
    state = _best_state(tiny_study)
    reference = _network(state["config"], state["best_model"])
    traced = torch.jit.load(str(result.out_dir / "model.torchscript.pt"))
    for size, count in ((32, 1), (32, 5), (64, 3)):
        x = _real_inputs(size, count)
        with torch.no_grad():
            assert (traced(x) - reference(x)).abs().max().item() <= 1e-4
    assert result.dynamic_hw and result.max_abs_diff <= 1e-4 and result.images == 6


def _segmenter_reference(state: dict) -> torch.nn.Module:
    from trainables.segmenter_build import build_model as build_segmenter
    from trainables.segmenter_config import SegmenterConfig

    network = build_segmenter(SegmenterConfig.model_validate(state["config"]), len(state["classes"]))
    network.load_state_dict(state["best_model"])
    return network.eval()


def _real_corrosion_inputs(size: int, count: int) -> torch.Tensor:
    """Real corrosion photos the segmenter trial never saw (the end of the shared set)."""
    return _model_inputs(sorted((shared_dataset("corrosion_seg") / "images").glob("*.jpg"))[-count:], size)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
def test_segmenter_exports_agree_with_pytorch_on_real_images(tiny_seg_study, seg_onnx_model, tmp_path):
    import onnxruntime

    state = _best_state(tiny_seg_study)
    reference = _segmenter_reference(state)
    [traced] = export_study(tiny_seg_study, fmt="torchscript", out=tmp_path / "ts", **QUIET)
    session = onnxruntime.InferenceSession(str(seg_onnx_model / "model.onnx"), providers=["CPUExecutionProvider"])
    scripted = torch.jit.load(str(traced.out_dir / "model.torchscript.pt"))
    for size, count in ((32, 1), (32, 3), (64, 2)):
        x = _real_corrosion_inputs(size, count)
        with torch.no_grad():
            expected = reference(x).numpy()
            assert np.abs(scripted(x).numpy() - expected).max() <= 1e-4, (size, count)
        got = session.run(None, {"images": x.numpy()})[0]
        assert got.shape == expected.shape == (count, 1, size, size)
        assert np.abs(got - expected).max() <= 1e-4, (size, count)
    card = json.loads((seg_onnx_model / "model.json").read_text())
    assert card["trainable"] == "segmenter" and card["task"] == "segmentation"
    assert card["architecture"]["arch"] == "unet" and card["architecture"]["encoder"] == "resnet18"
    assert card["decision"]["threshold"] == state["config"]["threshold"] and card["input"]["dynamic_height_width"]
    assert {"val/iou"} <= card["metrics"]["val"].keys() and {"test/iou"} <= card["metrics"]["test"].keys()


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
def test_esg_convnext_exports_agree_with_pytorch_on_real_images(tmp_path):
    import onnxruntime

    # the network of P004's trainable (its registered tiny size); the weights need no training to be checked
    study = _fabricate(tmp_path, [("esg00001", "base", [0.5, 0.6])], trainable="esg_convnext",
                       **{k: v for k, v in get_trainable("esg_convnext").tiny_config.items() if k != "data"})
    state = torch.load(next(study.glob("*/checkpoint_*/state.pt")), weights_only=False)
    reference = _esg_convnext(state["config"])
    reference.load_state_dict(state["best_model"])
    reference.eval()
    [onnx] = export_study(study, fmt="onnx", out=tmp_path / "onnx", **QUIET)
    [traced] = export_study(study, fmt="torchscript", out=tmp_path / "ts", **QUIET)
    session = onnxruntime.InferenceSession(str(onnx.out_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    scripted = torch.jit.load(str(traced.out_dir / "model.torchscript.pt"))
    for size, count in ((64, 1), (64, 3), (96, 2)):
        x = _real_inputs(size, count)
        with torch.no_grad():
            expected = reference(x).numpy()
            assert np.abs(scripted(x).numpy() - expected).max() <= 1e-4
        assert np.abs(session.run(None, {"images": x.numpy()})[0] - expected).max() <= 1e-4
    card = json.loads((onnx.out_dir / "model.json").read_text())
    assert card["trainable"] == "esg_convnext" and card["architecture"]["backbone"] == "esg_convnext_atto"
    assert card["output"]["shape"] == ["batch", 2] and card["output"]["activation"] == "softmax"
    assert onnx.max_abs_diff <= 1e-4 and traced.max_abs_diff <= 1e-4
