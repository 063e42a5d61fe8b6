"""Imports, in a background thread, what the driver needs once Ray is up, while ``ray.init`` waits.

``ray.init`` spends most of its seconds waiting for Ray's node processes (GCS, raylet, agents) to
start; the driver's main thread is idle meanwhile. What the driver imports right after it, on the
way to the first trial, is imported in that time instead: above all ``tensorboardX``, which the
TensorBoard logger ``Tuner.fit`` adds by default imports, and which imports torch (about 2 s of
CPU, spent before any trial starts), then W&B and Optuna (the callback and the searcher).

The thread only imports. A module that fails to import is left alone: the driver's own import
of it later raises the error where it always did. :func:`preloaded` waits for the thread before
it returns, so no import of the driver's ever runs beside it.
"""

from __future__ import annotations

import contextlib
import importlib
import threading
from typing import Iterable, Iterator

__all__ = ["DRIVER_MODULES", "preloaded"]

DRIVER_MODULES = (
    "tensorboardX",  # Tune's default TBXLoggerCallback: imports torch (ray.tune.utils.callback)
    "wandb",
    "optuna",
    "ray.air.integrations.wandb",
    "orchestrator.ablation",
    "orchestrator.ray_repairs.wandb_callback",
)
"""What ``build_tuner`` and ``Tuner.fit`` import before the first trial starts, slowest first."""


def _import_all(modules: tuple[str, ...]) -> None:
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - the driver's own import raises it again, where it belongs
            pass


@contextlib.contextmanager
def preloaded(modules: Iterable[str] = DRIVER_MODULES) -> Iterator[None]:
    """Imports ``modules`` in a background thread while the block runs; waits for it at the end.

    Meant around a block that mostly waits on other processes (``ray.init``).
    """
    thread = threading.Thread(target=_import_all, args=(tuple(modules),), name="corrotune-preload", daemon=True)
    thread.start()
    try:
        yield
    finally:
        thread.join()
