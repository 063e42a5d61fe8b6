"""Test isolation: W&B offline, and Ray, W&B, matplotlib and the dataset cache in temp dirs."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATASETS = REPO.parent / "shared" / "datasets"

# Set at import, before any test imports ray or wandb: the values reach subprocesses too.
_SESSION_TMP = Path(tempfile.mkdtemp(prefix="ct-"))  # short: Ray's socket paths are length-limited
os.environ.update(
    {
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        "WANDB_CACHE_DIR": str(_SESSION_TMP / "wandb-cache"),
        "WANDB_CONFIG_DIR": str(_SESSION_TMP / "wandb-config"),
        "WANDB_DATA_DIR": str(_SESSION_TMP / "wandb-data"),
        "MPLCONFIGDIR": str(_SESSION_TMP / "mpl"),
        "RAY_TMPDIR": str(_SESSION_TMP / "ray"),
        "CORROTUNE_CACHE_DIR": str(_SESSION_TMP / "cache"),
    }
)
os.environ.pop("WANDB_API_KEY", None)
os.environ.pop("WANDB_DIR", None)
(_SESSION_TMP / "ray").mkdir(exist_ok=True)


@pytest.fixture(autouse=True)
def _environment_restored():
    """Code under test may set variables for Ray workers (``configure_wandb_env`` sets
    ``WANDB_MODE`` when a study runs in-process); later tests must not inherit them."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(scope="session")
def session_tmp() -> Path:
    return _SESSION_TMP


def shared_dataset(name: str) -> Path:
    """A real dataset from ../shared/datasets, or a skip when this checkout has none."""
    path = SHARED_DATASETS / name
    if not path.is_dir():
        pytest.skip(f"real dataset {path} is not available")
    return path


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op thread for a module's tests: on a shared 2-core machine more threads only spin
    against each other. Use with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
