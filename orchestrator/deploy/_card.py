"""``model.json``, the model card: everything needed to use an exported model, and where it came from."""

from __future__ import annotations

import importlib.metadata
import json
import platform
import time
from pathlib import Path
from typing import Any

from torch import nn

from orchestrator.deploy.trials import DeployError, StudyTrial
from trainables.inference import InferenceAdapter

__all__ = ["CARD_FILE", "CARD_VERSION", "build_card", "read_card"]

CARD_FILE = "model.json"
CARD_VERSION = 1

_LIBRARIES = (
    "corrotune", "torch", "torchvision", "timm", "segmentation-models-pytorch", "onnx", "onnxscript",
    "onnxruntime", "safetensors", "numpy", "pillow",
)


def _versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in _LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def build_card(trial: StudyTrial, adapter: InferenceAdapter, network: nn.Module) -> dict[str, Any]:
    """The card of ``trial``'s best weights (without the export's ``format``/``files``/``verification``).

    Args:
        trial: The trial (its checkpoint gives config, classes and epochs).
        adapter: Its inference adapter.
        network: The rebuilt network (for the parameter count).
    """
    state = trial.best_state()
    described = adapter.describe(network)
    metrics = trial.metrics()
    return {
        "card_version": CARD_VERSION,
        "trainable": trial.trainable,
        "task": adapter.task,
        "classes": list(adapter.classes),
        **described,
        "preprocessing": adapter.preprocessing().to_json(),
        "metrics": {
            "val": metrics["val"],
            "test": metrics["test"],
            "note": "val: the best epoch's validation scores; test: the trial's end-of-trial test pass with "
            "the best epoch's weights (absent when the trial stopped early)",
        },
        "weights": {"best_epoch": state.get("best_epoch"), "epochs_trained": state.get("epoch"),
                    "selected_by": state["config"].get("select_metric")},
        "study": {"name": trial.study, "dir": str(trial.study_dir), "trial_id": trial.trial_id, "cell": trial.cell,
                  "objective": {"metric": trial.objective[0], "mode": trial.objective[1]}},
        "versions": _versions(),
        "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "config": state["config"],
    }


def read_card(model_dir: Path) -> dict[str, Any]:
    """The card of an exported model folder.

    Raises:
        DeployError: no card, an unreadable one, or one of a newer card version.
    """
    path = model_dir / CARD_FILE
    try:
        card = json.loads(path.read_text())
    except FileNotFoundError:
        raise DeployError(
            f"{model_dir}: not a model folder ({CARD_FILE} is missing); make one with "
            "`corrotune export STUDY_DIR`, or pass a study directory"
        ) from None
    except (OSError, ValueError) as err:
        raise DeployError(f"{path}: cannot be read ({err}); export the model again") from None
    if card.get("card_version") != CARD_VERSION:
        raise DeployError(f"{path}: card version {card.get('card_version')!r}; this corrotune reads {CARD_VERSION}")
    for key in ("trainable", "classes", "config", "preprocessing", "format", "files"):
        if key not in card:
            raise DeployError(f"{path}: the key {key!r} is missing; export the model again")
    return card
