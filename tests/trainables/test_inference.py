"""The inference adapters: the same input as training, the same decisions as the trial's scoring."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import shared_dataset
from trainables import TRAINABLES, get_trainable
from trainables.data.augment import normalize_batch
from trainables.data.index import Sample, SampleIndex
from trainables.data.tensors import load_split_tensors
from trainables.inference import ADAPTERS, ClassifierAdapter, Preprocessing, get_adapter
from trainables.metrics import classification_metrics


def _config(**overrides):
    values = {"data": {"path": "/nowhere"}, "backbone": "test_resnet", "image_size": 32, "dense_units": 8}
    values.update(overrides)
    return values


def _real_images(count: int = 6) -> list[str]:
    root = shared_dataset("fastener_corrosion") / "val"
    return [str(p) for cls in ("corroded", "non_corroded") for p in sorted((root / cls).glob("*.jpg"))[: count // 2]]


@pytest.mark.parametrize("resize, normalization", [("stretch", "imagenet"), ("letterbox", "unit"), ("center_crop", "caffe")])
def test_preprocessing_gives_exactly_the_training_input(resize, normalization):
    paths = _real_images()
    index = SampleIndex(root="/", task="classification", layout="presplit", classes=("a", "b"),
                        samples=tuple(Sample(path=p, label=i % 2, split="test") for i, p in enumerate(paths)))
    trained = normalize_batch(load_split_tensors(index, 48, resize)["test"].images, normalization)  # the trial's path
    prep = Preprocessing(48, resize, normalization)
    images = []
    for path in paths:
        with Image.open(path) as image:
            images.append(prep.load(image))
    assert torch.equal(prep.to_input(np.stack(images)), trained)


def test_preprocessing_round_trips_through_the_model_card():
    prep = Preprocessing(64, "letterbox", "caffe")
    card = prep.to_json()
    assert Preprocessing.from_json(card) == prep
    assert card["normalization_detail"]["mean_bgr"] == [103.939, 116.779, 123.68]


@pytest.mark.parametrize("positive_class", [None, "a"])
def test_binary_decisions_are_the_trials_own(positive_class):
    adapter = ClassifierAdapter(_config(positive_class=positive_class), ("a", "b"))
    logits = torch.tensor([[-3.0], [-0.01], [0.0], [0.01], [4.0]])
    decoded = adapter.decode(logits.numpy())
    targets = torch.tensor([0, 0, 1, 1, 1])
    assert decoded.predicted.tolist() == [0, 0, 1, 1, 1]  # class 1 from P(class 1) >= 0.5, as metrics.py
    ours = float((torch.from_numpy(decoded.predicted) == targets).float().mean())
    theirs = classification_metrics(logits, targets, 2, positive_index=adapter.positive)["val/accuracy"]
    assert ours == pytest.approx(theirs)
    np.testing.assert_allclose(decoded.probabilities.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(decoded.probabilities[:, 1], torch.sigmoid(logits[:, 0]).numpy(), rtol=1e-6)


def test_a_threshold_moves_the_positive_class():
    positive_b = ClassifierAdapter(_config(), ("a", "b"))  # positive: b (index 1)
    positive_a = ClassifierAdapter(_config(positive_class="a"), ("a", "b"))
    logits = np.array([[0.0], [1.0], [2.0]], np.float32)  # P(b) = 0.5, 0.73, 0.88
    assert positive_b.decode(logits, threshold=0.8).predicted.tolist() == [0, 0, 1]
    assert positive_a.decode(logits, threshold=0.2).predicted.tolist() == [0, 0, 1]  # P(a) = 0.5, 0.27, 0.12
    assert positive_a.decode(logits, threshold=0.3).predicted.tolist() == [0, 1, 1]
    assert positive_a.decode(logits, threshold=0.6).predicted.tolist() == [1, 1, 1]
    with pytest.raises(ValueError, match="between 0 and 1"):
        positive_b.decode(logits, threshold=1.5)


def test_more_than_two_classes_take_the_most_probable_and_refuse_a_threshold():
    adapter = ClassifierAdapter(_config(), ("a", "b", "c"))
    logits = np.array([[0.0, 2.0, 1.0], [3.0, 0.0, 0.0]], np.float32)
    decoded = adapter.decode(logits)
    assert decoded.predicted.tolist() == [1, 0]
    np.testing.assert_allclose(decoded.probabilities, torch.softmax(torch.from_numpy(logits), 1).numpy(), rtol=1e-6)
    with pytest.raises(ValueError, match="two-class"):
        adapter.check_threshold(0.5)


@pytest.mark.parametrize("name", ADAPTERS.names())
def test_every_adapter_rebuilds_a_network_that_runs_on_its_preprocessed_input(name):
    assert name in TRAINABLES, f"adapter {name!r} has no registered trainable"
    entry = get_trainable(name)
    config = entry.config_model.model_validate(entry.tiny_config).model_dump(mode="json")
    adapter = get_adapter(name, config, ("a", "b"))
    network = adapter.build_network().eval()
    prep = adapter.preprocessing()
    images = np.random.default_rng(0).integers(0, 256, (3, prep.image_size, prep.image_size, 3), dtype=np.uint8)
    with torch.no_grad():
        outputs = network(prep.to_input(images)).numpy()
    card = adapter.describe(network)
    assert {"architecture", "output"} <= card.keys()
    assert outputs.shape[:2] == (3, card["output"]["shape"][1])
    assert adapter.task == entry.task
    decoded = adapter.decode(outputs)
    assert len(decoded.predicted) == 3  # one prediction per image (a class, or a mask)


def test_a_trainable_without_an_adapter_is_named_with_those_that_have_one():
    with pytest.raises(KeyError, match="noop.*no inference adapter.*classifier"):
        get_adapter("noop", {}, ("a", "b"))


def test_rebuilding_never_downloads_pretrained_weights():
    adapter = ClassifierAdapter(_config(pretrained=True), ("a", "b"))
    assert adapter.build_network() is not None  # would fail offline (and slowly) if it tried the hub


def _segmenter(num_classes: int = 2, **overrides):
    from trainables.inference import SegmenterAdapter

    classes = ("background", "rust", "paint")[:num_classes]
    config = {"data": {"path": "/nowhere"}, "encoder": "resnet18", "encoder_depth": 3, "image_size": 32, **overrides}
    return SegmenterAdapter(config, classes)


def test_segmenter_pixels_are_foreground_as_the_trial_scored_them():
    from trainables.metrics import segmentation_stats

    adapter = _segmenter(threshold=0.7)
    logits = torch.randn(4, 1, 16, 16, generator=torch.Generator().manual_seed(0)) * 2
    decoded = adapter.decode(logits.numpy())
    assert decoded.predicted.shape == (4, 16, 16) and set(np.unique(decoded.predicted)) <= {0, 1}
    tp, fp, _, _ = segmentation_stats(logits, torch.zeros(4, 16, 16, dtype=torch.long), 2, threshold=0.7)
    np.testing.assert_array_equal(decoded.predicted.reshape(4, -1).sum(1), (tp + fp)[:, 0].numpy())  # smp's own count
    assert adapter.decode(logits.numpy(), threshold=0.0).predicted.all()
    assert adapter.describe(adapter.build_network())["decision"]["threshold"] == 0.7


def test_segmenter_with_more_classes_takes_the_most_probable_per_pixel():
    adapter = _segmenter(num_classes=3)
    logits = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    np.testing.assert_array_equal(adapter.decode(logits.numpy()).predicted, logits.argmax(1).numpy())
    with pytest.raises(ValueError, match="two-class"):
        adapter.check_threshold(0.5)


def test_an_architecture_smp_marks_not_exportable_is_refused_for_onnx_with_why():
    adapter = _segmenter(arch="unetplusplus")
    network = adapter.build_network()
    network._is_torch_exportable = False  # smp 0.6 sets it on DPT-like models; the flag is what is read
    assert "not exportable with torch.export" in adapter.export_limits(network)["onnx"]
    assert "torchscript" not in adapter.export_limits(network)
