"""create_backbone: unknown names, local weights files, and a fast clear hub failure."""

from __future__ import annotations

import time

import pytest
import timm
import torch
from safetensors.torch import save_file

from trainables._backbones import PretrainedWeightsError, create_backbone

NAME = "resnet10t"


@pytest.fixture(scope="module")
def reference_state() -> dict[str, torch.Tensor]:
    """A resnet10t backbone state dict with weights unlike any fresh initialisation."""
    torch.manual_seed(1234)
    model = timm.create_model(NAME, pretrained=False, num_classes=0, global_pool="")
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _assert_state_equal(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    loaded = model.state_dict()
    assert loaded.keys() == state.keys()
    for key, value in state.items():
        assert torch.equal(loaded[key], value), key


def test_backbone_has_no_classifier_and_returns_a_feature_map():
    model = create_backbone(NAME)
    assert model.num_features == 512
    assert isinstance(model.get_classifier(), torch.nn.Identity)
    features = model.forward_features(torch.randn(2, 3, 32, 32))
    assert features.shape == (2, 512, 1, 1)
    assert model(torch.randn(2, 3, 64, 64)).shape[:2] == (2, 512)  # no pooling, no head


def test_unknown_name_is_a_key_error_listing_close_names():
    with pytest.raises(KeyError) as info:
        create_backbone("efficientnet_b99")
    message = str(info.value)
    assert "efficientnet_b99" in message
    assert "efficientnet_b0" in message and "efficientnet_b1" in message


@pytest.mark.parametrize("typo,intended", [("resnt18", "resnet18"), ("resnet18x", "resnet18"), ("convnext-atto", "convnext_atto")])
def test_a_typo_lists_the_intended_name(typo, intended):
    with pytest.raises(KeyError) as info:
        create_backbone(typo)
    assert intended in str(info.value).split("Close names:")[1]


def test_missing_weights_file_names_the_path(tmp_path):
    missing = tmp_path / "missing.pth"
    with pytest.raises(PretrainedWeightsError) as info:
        create_backbone(NAME, str(missing))
    assert str(missing) in str(info.value)
    assert isinstance(info.value, RuntimeError)


def test_missing_relative_weights_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(PretrainedWeightsError, match="missing.pth"):
        create_backbone(NAME, "missing.pth")


def test_local_torch_weights_are_loaded(tmp_path, reference_state):
    path = tmp_path / "resnet10t.pth"
    torch.save(reference_state, path)
    _assert_state_equal(create_backbone(NAME, str(path)), reference_state)


def test_local_safetensors_weights_are_loaded(tmp_path, reference_state):
    path = tmp_path / "resnet10t.safetensors"
    save_file({k: v.contiguous() for k, v in reference_state.items()}, str(path))
    _assert_state_equal(create_backbone(NAME, str(path)), reference_state)


def test_local_weights_of_a_full_classifier_load_into_the_backbone(tmp_path, reference_state):
    """A file saved from ``timm.create_model(name)`` (with its fc layer) is the common case."""
    full = timm.create_model(NAME, pretrained=False)
    full.load_state_dict(reference_state, strict=False)
    path = tmp_path / "full.pth"
    torch.save(full.state_dict(), path)
    _assert_state_equal(create_backbone(NAME, str(path)), reference_state)


def test_local_weights_differ_from_a_fresh_model(tmp_path, reference_state):
    path = tmp_path / "w.pth"
    torch.save(reference_state, path)
    fresh = create_backbone(NAME).state_dict()
    loaded = create_backbone(NAME, str(path)).state_dict()
    key = "conv1.0.weight"
    assert not torch.equal(fresh[key], loaded[key])


def test_a_corrupt_weights_file_is_a_pretrained_weights_error(tmp_path):
    path = tmp_path / "broken.pth"
    path.write_bytes(b"this is not a checkpoint")
    with pytest.raises(PretrainedWeightsError) as info:
        create_backbone(NAME, str(path))
    assert str(path) in str(info.value) and NAME in str(info.value)


def test_weights_of_another_shape_are_a_pretrained_weights_error(tmp_path):
    other = timm.create_model("resnet18", pretrained=False, num_classes=0, global_pool="")
    path = tmp_path / "resnet18.pth"
    torch.save(other.state_dict(), path)
    with pytest.raises(PretrainedWeightsError, match="resnet18.pth"):
        create_backbone(NAME, str(path))


@pytest.mark.parametrize("prefix", ["backbone.", "module.", "model."])
def test_wrapper_prefixes_are_stripped(tmp_path, reference_state, prefix):
    """E.g. a trial's own ``best_model`` (ClassifierNet keys ``backbone.*`` + ``head.*``)."""
    state = {f"{prefix}{k}": v for k, v in reference_state.items()}
    state[f"{'head.' if prefix == 'backbone.' else prefix + 'fc.'}weight"] = torch.zeros(2, 512)
    path = tmp_path / "trial_best_model.pth"
    torch.save(state, path)
    _assert_state_equal(create_backbone(NAME, str(path)), reference_state)


def test_a_training_checkpoint_dict_is_unwrapped(tmp_path, reference_state):
    path = tmp_path / "checkpoint.pth"
    torch.save({"epoch": 3, "state_dict": reference_state}, path)
    _assert_state_equal(create_backbone(NAME, str(path)), reference_state)


def test_weights_of_another_architecture_are_refused_not_silently_ignored(tmp_path):
    other = timm.create_model("test_convnext", pretrained=False, num_classes=0, global_pool="")
    path = tmp_path / "convnext.pth"
    torch.save(other.state_dict(), path)
    with pytest.raises(PretrainedWeightsError, match="missing") as info:
        create_backbone(NAME, str(path))
    assert "convnext.pth" in str(info.value) and NAME in str(info.value)


def test_a_partial_weights_file_is_refused(tmp_path, reference_state):
    partial = {k: v for k, v in reference_state.items() if not k.startswith("layer4.")}
    path = tmp_path / "partial.safetensors"
    save_file({k: v.contiguous() for k, v in partial.items()}, str(path))
    with pytest.raises(PretrainedWeightsError, match="layer4"):
        create_backbone(NAME, str(path))


def test_hub_failure_is_fast_and_names_the_local_file_option(monkeypatch):
    real_create = timm.create_model
    calls = []

    def offline(name, pretrained=False, **kwargs):
        calls.append(pretrained)
        if pretrained:
            raise OSError("offline")
        return real_create(name, pretrained=False, **kwargs)

    monkeypatch.setattr(timm, "create_model", offline)
    monkeypatch.setattr("trainables._backbones._hub_unreachable", lambda: None)  # reachable, download fails
    started = time.perf_counter()
    with pytest.raises(PretrainedWeightsError) as info:
        create_backbone(NAME, True)
    assert time.perf_counter() - started < 5.0
    assert calls == [True]  # one try, no retry loop
    message = str(info.value)
    assert NAME in message
    assert "OSError" in message and "offline" in message
    assert "local" in message and ".safetensors" in message and ".pth" in message
    assert "pretrained: false" in message
    assert isinstance(info.value.__cause__, OSError)
    # pretrained=False never touches the hub
    assert create_backbone(NAME, False).num_features == 512
    assert calls == [True, False]


def test_paper_names_map_to_timm_models():
    from trainables._backbones import PAPER_BACKBONES, resolve_backbone_name

    assert all(timm.is_model(name) for name in PAPER_BACKBONES.values())
    assert resolve_backbone_name("NASNetMobile") == "mnasnet_100"
    assert resolve_backbone_name("resnet10t") == "resnet10t"
    assert create_backbone("ResNet18").num_features == 512


@pytest.mark.parametrize("how", ["dns", "offline_env"])
def test_unreachable_hub_fails_before_any_download(monkeypatch, how):
    import socket

    def no_network(*args, **kwargs):
        raise OSError("[Errno -2] Name or service not known")

    def never(*args, **kwargs):
        raise AssertionError("no download may be attempted")

    if how == "dns":
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.setattr(socket, "create_connection", no_network)
    else:
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(timm, "create_model", never)
    started = time.perf_counter()
    with pytest.raises(PretrainedWeightsError) as info:
        create_backbone(NAME, True)
    assert time.perf_counter() - started < 2.0
    message = str(info.value)
    assert NAME in message and "local .safetensors/.pth" in message
    assert ("unreachable" in message) if how == "dns" else ("HF_HUB_OFFLINE" in message)
