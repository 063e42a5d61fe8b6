"""What using a trained model needs from its trainable: the network, its input, its output.

``corrotune export`` and ``corrotune predict`` know nothing about any one trainable. Each
trainable that can be used outside a study registers an :class:`InferenceAdapter` here, which
rebuilds its network from a trial's resolved config, says how images are prepared
(:class:`Preprocessing`, made of the data layer's own decode, resize and normalisation, so that
training and prediction cannot drift apart), and turns raw network outputs into predictions.

Example:
    >>> adapter = get_adapter("classifier", state["config"], state["classes"])  # doctest: +SKIP
    >>> network = adapter.build_network()  # doctest: +SKIP
    >>> network.load_state_dict(state["best_model"])  # doctest: +SKIP
    >>> x = adapter.preprocessing().to_input(images)  # (B, 3, S, S) float32  # doctest: +SKIP
    >>> adapter.decode(network(x).numpy())  # doctest: +SKIP
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

import numpy as np
import torch
from PIL import Image
from torch import nn

from corrotune.registry import Registry
from trainables.data.augment import CAFFE_BGR_MEAN, normalize_batch
from trainables.data.cache import resize_image
from trainables.data.tensors import IMAGENET_MEAN, IMAGENET_STD

__all__ = [
    "ADAPTERS",
    "ClassPredictions",
    "ClassifierAdapter",
    "EsgConvNeXtAdapter",
    "InferenceAdapter",
    "MaskPredictions",
    "Preprocessing",
    "SegmenterAdapter",
    "get_adapter",
    "register_adapter",
]

_NORMALIZATION_TEXT = {
    "imagenet": {"formula": "(x / 255 - mean) / std", "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)},
    "unit": {"formula": "x / 255"},
    "caffe": {"formula": "RGB -> BGR, then x - mean_bgr (no scaling)", "mean_bgr": list(CAFFE_BGR_MEAN)},
}


@dataclass(frozen=True)
class Preprocessing:
    """How a model's input is made from an image file, exactly as its trial made it.

    Decoding and resizing are :func:`trainables.data.cache.resize_image` (the decode cache's own
    function: Pillow bilinear, alpha on black, 16-bit scaled by 255/65535); normalisation is
    :func:`trainables.data.augment.normalize_batch`.

    Attributes:
        image_size: Square side in pixels.
        resize: ``stretch``, ``letterbox`` or ``center_crop``.
        normalization: ``imagenet``, ``unit`` or ``caffe``.
    """

    image_size: int
    resize: str
    normalization: str

    def load(self, image: Image.Image) -> np.ndarray:
        """One opened image → (S, S, 3) uint8 RGB."""
        return resize_image(image, self.image_size, self.resize)

    def to_input(self, images: np.ndarray | torch.Tensor) -> torch.Tensor:
        """(B, S, S, 3) uint8 from :meth:`load` → (B, 3, S, S) float32 network input."""
        batch = torch.as_tensor(images)
        return normalize_batch(batch.permute(0, 3, 1, 2).contiguous(), self.normalization)

    def to_json(self) -> dict[str, Any]:
        """The model card's ``preprocessing`` section: the three keys, spelled out for other runtimes."""
        return {
            "image_size": self.image_size,
            "resize": self.resize,
            "normalization": self.normalization,
            "normalization_detail": _NORMALIZATION_TEXT[self.normalization],
            "decode": "8-bit RGB (alpha composited on black, 16-bit scaled by 255/65535, EXIF orientation ignored)",
            "interpolation": "Pillow BILINEAR (antialiased when downscaling)",
            "layout": "NCHW float32, RGB channel order (BGR after caffe normalisation)",
        }

    @classmethod
    def from_json(cls, payload: dict[str, Any]) -> "Preprocessing":
        return cls(image_size=int(payload["image_size"]), resize=str(payload["resize"]),
                   normalization=str(payload["normalization"]))


@dataclass(frozen=True)
class ClassPredictions:
    """Decoded classifier outputs.

    Attributes:
        probabilities: (N, K) per class, in class order.
        predicted: (N,) class index.
    """

    probabilities: np.ndarray
    predicted: np.ndarray


class InferenceAdapter(ABC):
    """A trainable's side of export and prediction.

    Args:
        config: The trial's resolved config (the checkpoint's ``config``).
        classes: Class names in label order (the checkpoint's ``classes``).
    """

    trainable: ClassVar[str]
    task: ClassVar[str]  # "classification" | "segmentation": which outputs predict writes

    def __init__(self, config: dict[str, Any], classes: Sequence[str]) -> None:
        self.config = dict(config)
        self.classes = tuple(classes)

    @abstractmethod
    def build_network(self) -> nn.Module:
        """The trial's network with fresh weights (never downloads pretrained ones)."""

    @abstractmethod
    def preprocessing(self) -> Preprocessing:
        """How images are prepared for this network."""

    @abstractmethod
    def describe(self, network: nn.Module) -> dict[str, Any]:
        """The card's ``architecture`` and ``output`` facts (and ``decision`` where one applies)."""

    @abstractmethod
    def decode(self, outputs: np.ndarray, threshold: float | None = None) -> Any:
        """Raw network outputs of a batch → the task's predictions."""

    def check_threshold(self, threshold: float | None) -> None:
        """Raises ValueError for a threshold outside [0, 1], or for a model of more than two classes
        (a threshold decides between the two)."""
        if threshold is None:
            return
        if len(self.classes) != 2:
            raise ValueError(f"--threshold applies to two-class models; this one has {len(self.classes)} classes")
        if not 0.0 <= float(threshold) <= 1.0:
            raise ValueError(f"--threshold must lie between 0 and 1, got {threshold}")

    def export_limits(self, network: nn.Module) -> dict[str, str]:
        """Formats this network is known not to export to, with why (checked before trying)."""
        return {}


ADAPTERS: Registry[type[InferenceAdapter]] = Registry("inference adapter")


def register_adapter(cls: type[InferenceAdapter]) -> type[InferenceAdapter]:
    """Class decorator: registers an adapter under its ``trainable`` name."""
    return ADAPTERS.register(cls.trainable)(cls)


def get_adapter(trainable: str, config: dict[str, Any], classes: Sequence[str]) -> InferenceAdapter:
    """The adapter of ``trainable`` for one trial.

    Raises:
        KeyError: ``trainable`` has no adapter (the message lists those that have one).
    """
    if trainable not in ADAPTERS:
        raise KeyError(
            f"trainable {trainable!r} cannot be exported or used for prediction: it has no inference "
            f"adapter (trainables/inference.py). Trainables that have one: {', '.join(ADAPTERS.names())}"
        )
    return ADAPTERS.get(trainable)(config, classes)


def _parameter_count(network: nn.Module) -> int:
    return sum(p.numel() for p in network.parameters())


@register_adapter
class ClassifierAdapter(InferenceAdapter):
    """The ``classifier`` trainable: logits (N, 1) for two classes with a sigmoid head, else (N, K).

    The decision mirrors the trial's scoring (``trainables/metrics.py``): with two classes, class
    index 1 is predicted when P(class 1) >= 0.5; a ``threshold`` applies to the positive class
    (``positive_class``, default the second class). More classes: the most probable one.
    """

    trainable = "classifier"
    task = "classification"

    def __init__(self, config: dict[str, Any], classes: Sequence[str]) -> None:
        super().__init__(config, classes)
        from trainables import get_trainable

        self.cfg = get_trainable(self.trainable).config_model.model_validate(self.config)
        from trainables.classifier_build import positive_index

        self.positive = positive_index(self.cfg, self.classes) if len(self.classes) == 2 else None

    def build_network(self) -> nn.Module:
        from trainables.classifier_build import build_model

        return build_model(self.cfg.model_copy(update={"pretrained": False}), len(self.classes))

    def preprocessing(self) -> Preprocessing:
        return Preprocessing(self.cfg.image_size, self.cfg.resize, self.cfg.normalization)

    def num_outputs(self) -> int:
        """1 (sigmoid) or K (softmax) logits, as the trial's head has."""
        from trainables.classifier_build import num_outputs

        return num_outputs(self.cfg, len(self.classes))

    def architecture(self, network: nn.Module) -> dict[str, Any]:
        """The card's ``architecture``: what the network is made of."""
        from trainables._backbones import resolve_backbone_name

        return {
            "network": "ClassifierNet (trainables/models/classifier.py)",
            "backbone": resolve_backbone_name(self.cfg.backbone),
            "attention": self.cfg.attention,
            "attention_placement": self.cfg.attention_placement,
            "projection_channels": self.cfg.projection_channels,
            "pooling": self.cfg.pooling,
            "dense_units": self.cfg.hidden_units,
            "num_outputs": self.num_outputs(),
            "parameters": _parameter_count(network),
        }

    def describe(self, network: nn.Module) -> dict[str, Any]:
        outputs = self.num_outputs()
        meaning = "P(class index 1) = sigmoid(logits[:, 0])" if outputs == 1 else "P(class k) = softmax(logits)[:, k]"
        card: dict[str, Any] = {
            "architecture": self.architecture(network),
            "output": {"name": "logits", "shape": ["batch", outputs], "activation": "sigmoid" if outputs == 1 else "softmax",
                       "meaning": meaning},
        }
        if len(self.classes) == 2:
            card["decision"] = {
                "positive_class": self.classes[self.positive],
                "threshold": 0.5,
                "rule": "the positive class when its probability >= threshold (at 0.5: exactly the trial's scoring)",
            }
        else:
            card["decision"] = {"positive_class": None, "threshold": None, "rule": "argmax of the class probabilities"}
        return card

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        """(N, 1) or (N, K) logits → (N, K) class probabilities, computed as the trial's metrics do."""
        x = torch.as_tensor(np.asarray(logits, dtype=np.float32))
        if x.shape[1] == 1:
            one = torch.sigmoid(x[:, 0])
            return torch.stack([1.0 - one, one], dim=1).numpy()
        return torch.softmax(x, dim=1).numpy()

    def decode(self, outputs: np.ndarray, threshold: float | None = None) -> ClassPredictions:
        """Class probabilities and the predicted class of each image.

        Args:
            outputs: (N, 1) or (N, K) logits.
            threshold: Two classes only: the positive class is predicted when its probability
                reaches it (default 0.5, the trial's own rule).

        Raises:
            ValueError: a threshold for a model of more than two classes, or outside [0, 1].
        """
        self.check_threshold(threshold)
        probabilities = self.probabilities(outputs)
        if len(self.classes) != 2:
            return ClassPredictions(probabilities, probabilities.argmax(axis=1))
        threshold = 0.5 if threshold is None else float(threshold)
        # the trial's rule is "class 1 when P(class 1) >= 0.5"; a threshold t on the positive class 0
        # is the same rule on class 1 at 1 - t
        cut = threshold if self.positive == 1 else 1.0 - threshold
        predicted = (probabilities[:, 1] >= np.float32(cut)).astype(np.int64)
        return ClassPredictions(probabilities, predicted)


@register_adapter
class EsgConvNeXtAdapter(ClassifierAdapter):
    """The ``esg_convnext`` trainable (P004): the classifier's input and decisions, its own network.

    Its head always has K logits (softmax, cross-entropy); with two classes the trial's scoring
    predicts class index 1 when softmax(logits)[:, 1] >= 0.5, which the classifier's rule is.
    """

    trainable = "esg_convnext"

    def build_network(self) -> nn.Module:
        from trainables.esg_convnext import EsgConvNeXtTask

        task = EsgConvNeXtTask(self.cfg)
        task.classes = self.classes  # what its load_data sets; building needs only the class count
        return task.build_model()

    def num_outputs(self) -> int:
        return len(self.classes)

    def architecture(self, network: nn.Module) -> dict[str, Any]:
        return {
            "network": "EsgConvNeXtClassifier (trainables/models/esg_convnext.py)",
            "backbone": f"esg_convnext_{self.cfg.size}",
            **{k: (list(v) if isinstance(v, tuple) else v) for k, v in self.cfg.network_kwargs.items()},
            "num_outputs": self.num_outputs(),
            "parameters": _parameter_count(network),
        }


@dataclass(frozen=True)
class MaskPredictions:
    """Decoded segmenter outputs.

    Attributes:
        predicted: (N, H, W) uint8 class index per pixel (binary: 0 background, 1 foreground).
        foreground: (N, H, W) float32 foreground probability (binary models), else None.
    """

    predicted: np.ndarray
    foreground: np.ndarray | None


@register_adapter
class SegmenterAdapter(InferenceAdapter):
    """The ``segmenter`` trainable (smp): logits (N, 1, H, W) for binary masks, else (N, K, H, W).

    The decision mirrors the trial's scoring (``trainables/metrics.py: segmentation_stats``): a
    pixel is foreground when its sigmoid probability >= ``threshold`` (the trial's
    ``threshold``, default 0.5; smp's ``get_stats`` rule); more classes: the most probable one.
    """

    trainable = "segmenter"
    task = "segmentation"

    def __init__(self, config: dict[str, Any], classes: Sequence[str]) -> None:
        super().__init__(config, classes)
        from trainables import get_trainable

        self.cfg = get_trainable(self.trainable).config_model.model_validate(self.config)

    def build_network(self) -> nn.Module:
        from trainables.segmenter_build import build_model

        return build_model(self.cfg.model_copy(update={"encoder_weights": None}), len(self.classes))

    def preprocessing(self) -> Preprocessing:
        return Preprocessing(self.cfg.image_size, self.cfg.resize, self.cfg.normalization)

    def describe(self, network: nn.Module) -> dict[str, Any]:
        from trainables.segmenter_build import num_outputs

        outputs = num_outputs(len(self.classes))
        binary = outputs == 1
        return {
            "architecture": {
                "network": f"smp.create_model({self.cfg.arch!r})", "arch": self.cfg.arch, "encoder": self.cfg.encoder,
                "encoder_depth": self.cfg.encoder_depth, "num_outputs": outputs, "parameters": _parameter_count(network),
            },
            "output": {
                "name": "logits", "shape": ["batch", outputs, "height", "width"],
                "activation": "sigmoid" if binary else "softmax",
                "meaning": "P(foreground) = sigmoid(logits[:, 0]) per pixel" if binary else "class = argmax(logits, dim=1)",
            },
            "decision": {
                "positive_class": self.classes[1] if binary else None,
                "threshold": self.cfg.threshold if binary else None,
                "rule": "foreground where P(foreground) >= threshold (the trial's scoring)" if binary
                else "the most probable class per pixel",
            },
        }

    def decode(self, outputs: np.ndarray, threshold: float | None = None) -> MaskPredictions:
        """Per-pixel classes (and the foreground probability of binary models) of a batch.

        Args:
            outputs: (N, 1, H, W) or (N, K, H, W) logits.
            threshold: Binary models: foreground from this probability on (default: the trial's).
        """
        self.check_threshold(threshold)
        x = torch.as_tensor(np.asarray(outputs, dtype=np.float32))
        if x.shape[1] == 1:
            foreground = torch.sigmoid(x[:, 0])
            cut = self.cfg.threshold if threshold is None else float(threshold)
            return MaskPredictions((foreground >= cut).to(torch.uint8).numpy(), foreground.numpy())
        return MaskPredictions(x.argmax(dim=1).to(torch.uint8).numpy(), None)

    def export_limits(self, network: nn.Module) -> dict[str, str]:
        if getattr(network, "_is_torch_exportable", True) is False:
            return {"onnx": f"segmentation-models-pytorch marks {type(network).__name__} as not exportable with "
                    "torch.export (its _is_torch_exportable flag), which the ONNX exporter uses; use --format "
                    "torchscript or safetensors"}
        return {}
