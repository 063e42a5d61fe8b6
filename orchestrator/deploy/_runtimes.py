"""Runs a model on prepared input: PyTorch eager, TorchScript or ONNX Runtime, one interface.

A runner maps a (B, 3, H, W) float32 tensor to the network's raw output as a NumPy array.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from orchestrator.deploy.trials import DeployError, StudyTrial
from trainables.inference import InferenceAdapter, get_adapter

__all__ = [
    "FORMATS", "MODEL_FILES", "LoadedModel", "load_torchscript", "load_trial_network", "onnx_runner", "open_model_dir",
    "save_torchscript", "torch_runner", "trace",
]

FORMATS = ("onnx", "torchscript", "safetensors")
MODEL_FILES = {"onnx": "model.onnx", "torchscript": "model.torchscript.pt", "safetensors": "model.safetensors"}

Runner = Callable[[torch.Tensor], np.ndarray]


@dataclass
class LoadedModel:
    """A model ready to predict: its card, adapter and runner (``engine`` names the runtime)."""

    card: dict[str, Any]
    adapter: InferenceAdapter
    run: Runner
    engine: str


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise DeployError("--device cuda: no CUDA device is visible; use --device cpu")
    if name not in ("cpu", "cuda"):
        raise DeployError(f"--device must be cpu, cuda or auto, not {name!r}")
    return torch.device(name)


def torch_runner(network: nn.Module, device: str = "cpu") -> Runner:
    """PyTorch eager (or a TorchScript module) in fp32 on ``device``."""
    target = _device(device)
    network = network.to(target).eval()

    @torch.no_grad()
    def run(x: torch.Tensor) -> np.ndarray:
        return network(x.to(target)).float().cpu().numpy()

    return run


def onnx_runner(path: Path, device: str = "cpu") -> Runner:
    """ONNX Runtime on the CPU (``cuda`` takes its CUDA provider when this onnxruntime has one)."""
    import onnxruntime

    providers = ["CPUExecutionProvider"]
    if device in ("cuda", "auto") and "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    elif device == "cuda":
        raise DeployError("--device cuda: this onnxruntime has no CUDA provider (pip install onnxruntime-gpu)")
    session = onnxruntime.InferenceSession(str(path), providers=providers)
    name = session.get_inputs()[0].name

    def run(x: torch.Tensor) -> np.ndarray:
        return session.run(None, {name: x.detach().cpu().numpy()})[0]

    return run


def load_torchscript(path: Path) -> nn.Module:
    with warnings.catch_warnings():  # torch.jit is deprecated; tracing still works and is what we use
        warnings.simplefilter("ignore", FutureWarning)
        return torch.jit.load(str(path), map_location="cpu")


def save_torchscript(module: torch.jit.ScriptModule, path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(module, str(path))


def load_trial_network(trial: StudyTrial) -> tuple[InferenceAdapter, nn.Module]:
    """The trial's adapter and network with the best epoch's weights, in eval mode, on the CPU.

    Raises:
        DeployError: the trainable has no adapter, or the weights do not fit the rebuilt network.
    """
    state = trial.best_state()
    adapter = _adapter(trial.trainable, state["config"], state["classes"])
    network = adapter.build_network()
    try:
        network.load_state_dict(state["best_model"])
    except RuntimeError as err:
        raise DeployError(
            f"trial {trial.trial_id}: its best weights do not fit the network rebuilt from its config "
            f"(was it trained by another corrotune version?): {str(err).splitlines()[0]}"
        ) from None
    return adapter, network.eval()


def _adapter(trainable: str, config: dict[str, Any], classes: Any) -> InferenceAdapter:
    try:
        return get_adapter(trainable, config, classes)
    except KeyError as err:
        raise DeployError(err.args[0]) from None


def open_model_dir(model_dir: Path, card: dict[str, Any], device: str = "cpu") -> LoadedModel:
    """The runner of an exported model folder, by its card's ``format``."""
    adapter = _adapter(card["trainable"], card["config"], card["classes"])
    fmt = card["format"]
    path = model_dir / card["files"]["model"]
    if not path.is_file():
        raise DeployError(f"{model_dir}: {path.name} is missing (the card names it); export the model again")
    if fmt == "onnx":
        return LoadedModel(card, adapter, onnx_runner(path, device), "onnxruntime")
    if fmt == "torchscript":
        return LoadedModel(card, adapter, torch_runner(load_torchscript(path), device), "torchscript")
    if fmt == "safetensors":
        from safetensors.torch import load_model

        network = adapter.build_network()
        load_model(network, str(path))
        return LoadedModel(card, adapter, torch_runner(network, device), "pytorch")
    raise DeployError(f"{model_dir}: unknown format {fmt!r} in its card; formats: {', '.join(FORMATS)}")


def trace(network: nn.Module, example: torch.Tensor) -> torch.jit.ScriptModule:
    """TorchScript by tracing (``torch.jit.script`` is deprecated; its deprecation warning is muted,
    and so are tracer warnings: the export checks the trace at a second input size instead)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        with torch.no_grad():
            return torch.jit.trace(network, example, check_trace=False)
