"""What every trainable needs around its loop: a clean start, seeds, RNG state, device, checkpoints.

Trials share worker processes (the runner sets ``reuse_actors=True``: no process start per
trial, and the decoded dataset stays in memory), so a trainable starts with
:func:`begin_trial`, which undoes what an earlier trial in the same process may have changed.
"""

from __future__ import annotations

import gc
import io
import logging
import os
import posixpath
import random
import sys
import tempfile
import warnings
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from ray import tune

__all__ = [
    "BEST_REF_KEY",
    "autocast",
    "begin_trial",
    "best_weights",
    "slim_final_checkpoint",
    "load_trial_checkpoint",
    "quiet_ray_logs",
    "report_with_checkpoint",
    "reported_checkpoint_name",
    "rng_state",
    "seed_everything",
    "select_device",
    "set_rng_state",
    "trial_dir",
]

_STATE_FILE = "state.pt"

BEST_REF_KEY = "best_checkpoint"
"""Checkpoint key naming the sibling checkpoint folder (same trial) whose ``best_model`` holds
the best weights, when this checkpoint does not hold them itself: the best weights are stored
once, in the checkpoint of the epoch that became best (where they alias ``model`` and cost no
bytes), not copied into every later checkpoint."""

_FINAL_KEYS = ("best_model", "best_score", "best_epoch", "epoch", "phase", "history", "elapsed_s", "config")
"""What a finished trial's checkpoint keeps: what export and the report read (plus task extras)."""

logger = logging.getLogger(__name__)


def quiet_ray_logs() -> None:
    """Silences Ray's per-checkpoint INFO lines in the worker (errors still show)."""
    logging.getLogger("ray.train").setLevel(logging.WARNING)
    logging.getLogger("ray.tune").setLevel(logging.WARNING)


def seed_everything(seed: int) -> None:
    """Seeds Python, NumPy and torch (CPU and CUDA) in this process."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def begin_trial(seed: int) -> None:
    """Starts a trial as if in a fresh process, then seeds it; call it before any other work.

    A reused worker keeps what earlier trials left behind. This puts back the process-wide
    torch settings a trial may change (intra-op threads, default dtype, float32 matmul
    precision, deterministic algorithms, anomaly detection, ``torch.backends.cudnn`` flags) to
    their values before the first trial, finishes a W&B run left open in this process, frees
    the CUDA memory cached for earlier trials (and warns if tensors of theirs are still
    alive), and seeds Python, NumPy and torch. Process-level caches are kept on purpose: the
    decoded dataset (``trainables.data.tensors``) and the imported modules.

    Args:
        seed: The trial's seed (:func:`seed_everything`).
    """
    _restore_torch_settings()
    _finish_stray_wandb_run()
    _release_cuda_memory()
    seed_everything(seed)


def _set_deterministic(enabled: bool) -> None:
    torch.use_deterministic_algorithms(enabled, warn_only=torch.is_deterministic_algorithms_warn_only_enabled())


def _set_deterministic_warn_only(warn_only: bool) -> None:
    torch.use_deterministic_algorithms(torch.are_deterministic_algorithms_enabled(), warn_only=warn_only)


def _set_cudnn(flag: str) -> Callable[[bool], None]:
    return lambda value: setattr(torch.backends.cudnn, flag, value)


_TORCH_SETTINGS: dict[str, tuple[Callable[[], Any], Callable[[Any], None]]] = {
    "num_threads": (torch.get_num_threads, torch.set_num_threads),
    "default_dtype": (torch.get_default_dtype, torch.set_default_dtype),
    "float32_matmul_precision": (torch.get_float32_matmul_precision, torch.set_float32_matmul_precision),
    "deterministic_algorithms": (torch.are_deterministic_algorithms_enabled, _set_deterministic),
    "deterministic_warn_only": (torch.is_deterministic_algorithms_warn_only_enabled, _set_deterministic_warn_only),
    "anomaly_detection": (torch.is_anomaly_enabled, torch.autograd.set_detect_anomaly),
    **{
        f"cudnn.{flag}": ((lambda flag=flag: getattr(torch.backends.cudnn, flag)), _set_cudnn(flag))
        for flag in ("enabled", "benchmark", "deterministic", "allow_tf32")
    },
}
"""Process-wide torch settings (not per thread: Ray runs each trial in a new thread) that a
trial may change, as ``name: (getter, setter)``."""

_baseline: dict[str, Any] | None = None
"""The settings before the first trial of this process changed any (read by its begin_trial)."""


def _read_setting(name: str) -> Any:
    try:
        return _TORCH_SETTINGS[name][0]()
    except RuntimeError:  # e.g. torch refuses legacy TF32 getters after the new fp32_precision API was used
        return None


def _restore_torch_settings() -> None:
    global _baseline
    if _baseline is None:
        _baseline = {name: _read_setting(name) for name in _TORCH_SETTINGS}
        return
    for name, value in _baseline.items():
        current = _read_setting(name)
        if value is None or current is None or current == value:
            continue
        logger.info("torch setting %s was %r, left by an earlier trial in this process; restoring %r", name, current, value)
        _TORCH_SETTINGS[name][1](value)


def _finish_stray_wandb_run() -> None:
    """Trainables never log to W&B (the driver's callback does), but a run left open would
    collect the next trial's logs."""
    wandb = sys.modules.get("wandb")  # never imported here: only a process that imported it can have a run
    if wandb is not None and getattr(wandb, "run", None) is not None:
        logger.warning("W&B run %s was left open in this worker by an earlier trial; finishing it", wandb.run.id)
        wandb.finish()


def _release_cuda_memory() -> None:
    """Frees the CUDA cache of earlier trials (for the other processes sharing the GPU) and
    resets the peak-memory counters, so they measure this trial alone."""
    if not (torch.cuda.is_available() and torch.cuda.is_initialized()):
        return  # a CPU-only process: nothing to free (and gc.collect would cost ~0.1 s)
    gc.collect()  # tensors of the last trial that only reference cycles still hold
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    leftover = torch.cuda.memory_allocated()
    if leftover:
        logger.warning(
            "%.1f MiB of CUDA tensors from earlier trials are still referenced in this worker "
            "(a module-level cache or global holds them)", leftover / 2**20,
        )


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def select_device(preference: str) -> torch.device:
    """``auto`` → CUDA when available, else CPU; ``cuda`` without a GPU is an error."""
    if preference == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device: cuda was requested but no CUDA device is visible to this trial")
    if preference == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda")


def autocast(device: torch.device, enabled: bool):
    """Mixed-precision context on CUDA; a no-op elsewhere."""
    if enabled and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.float16)
    return nullcontext()


def _read_state(path: str, filesystem: Any = None) -> dict[str, Any]:
    if filesystem is None:
        return torch.load(path, map_location="cpu", weights_only=False)
    with filesystem.open_input_file(path) as stream:
        return torch.load(io.BytesIO(stream.read()), map_location="cpu", weights_only=False)


def best_weights(state: dict[str, Any], checkpoint_dir: str, filesystem: Any = None) -> dict[str, Any] | None:
    """The best epoch's weights of the checkpoint ``state`` that lies in ``checkpoint_dir``.

    They are in ``state["best_model"]``, or in the sibling checkpoint ``state[BEST_REF_KEY]``
    names (same trial folder). This is the one place that reads them: the loop on resume, and
    ``corrotune export``.

    Args:
        state: A checkpoint's ``state.pt`` contents.
        checkpoint_dir: The checkpoint's folder (a local path, or a path on ``filesystem``).
        filesystem: The ``pyarrow.fs`` filesystem of ``checkpoint_dir``; None for a local path.

    Returns:
        The weights, or None when the checkpoint names none.

    Raises:
        FileNotFoundError: the referenced checkpoint is missing (deleted by hand).
    """
    if state.get("best_model") is not None:
        return state["best_model"]
    ref = state.get(BEST_REF_KEY)
    if not ref:
        return None
    path = posixpath.join(posixpath.dirname(str(checkpoint_dir).rstrip("/")), ref, _STATE_FILE)
    try:
        return _read_state(path, filesystem)["best_model"]
    except (FileNotFoundError, OSError) as err:
        raise FileNotFoundError(
            f"{path}: the checkpoint holding this trial's best weights is missing ({err}); "
            "it is kept while a later checkpoint refers to it, so it was deleted outside corrotune"
        ) from err


def checkpoint_history(checkpoint_dir: str, filesystem: Any = None) -> list[dict[str, Any]] | None:
    """The ``history`` a trial's checkpoint holds: its numeric metrics of each report, oldest first.

    Every trainable stores it (the shared loop and ``noop``), one entry per report, so the last
    entry is the checkpoint's own. corrotune's resume rebuilds from it the rows a killed driver
    left out of ``result.json`` (``orchestrator.ray_repairs.lost_results``).

    Args:
        checkpoint_dir: The checkpoint's folder (a local path, or a path on ``filesystem``).
        filesystem: The ``pyarrow.fs`` filesystem of ``checkpoint_dir``; None for a local path.

    Returns:
        The entries, or None when the checkpoint holds no history.

    Raises:
        OSError: the checkpoint cannot be read.
    """
    history = _read_state(posixpath.join(str(checkpoint_dir).rstrip("/"), _STATE_FILE), filesystem).get("history")
    return [dict(entry) for entry in history] if isinstance(history, list) else None


def _own_checkpoint_name(checkpoint: Any) -> str | None:
    """The folder name of ``checkpoint`` when it lies in this trial's own folder, else None
    (PBT resumes a trial from another trial's checkpoint)."""
    try:
        own = tune.get_context().get_storage().trial_fs_path
    except Exception:  # noqa: BLE001 - outside a Tune session: no storage to compare with
        return None
    parent, name = posixpath.split(str(checkpoint.path).rstrip("/"))
    return name if posixpath.normpath(parent) == posixpath.normpath(str(own)) else None


def load_trial_checkpoint() -> dict[str, Any] | None:
    """Returns the state saved by the last ``report_with_checkpoint`` of this trial, if any.

    ``best_model`` is filled in (from the sibling checkpoint that holds it, when referenced) and
    ``BEST_REF_KEY`` names the checkpoint of this trial that holds them, or is None when they
    must be stored again (they came from another trial's folder).
    """
    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as directory:
        state = torch.load(Path(directory) / _STATE_FILE, map_location="cpu", weights_only=False)
    own_name = _own_checkpoint_name(checkpoint)
    # only the best epoch's own checkpoint may be referred to (the pruner keeps it by its epoch)
    inline = state.get("best_model") is not None and state.get("epoch") == state.get("best_epoch")
    state["best_model"] = best_weights(state, checkpoint.path, checkpoint.filesystem)
    state[BEST_REF_KEY] = (own_name if inline else state.get(BEST_REF_KEY)) if own_name else None
    return state


def reported_checkpoint_name() -> str | None:
    """The folder name of the checkpoint this trial reported last (None outside Tune)."""
    checkpoint = tune.get_checkpoint()  # after a report: the checkpoint as persisted in storage
    return posixpath.basename(str(checkpoint.path).rstrip("/")) if checkpoint is not None else None


def slim_final_checkpoint(extra_keys: tuple[str, ...] = ()) -> None:
    """Rewrites the trial's last reported checkpoint to what a finished trial needs.

    Keeps the best weights, config, history and ``extra_keys`` (task keys such as ``classes``):
    about the size of the weights instead of weights + optimiser state. Written next to the
    old file and moved over it, so a failure leaves the full checkpoint. A no-op outside Tune.
    PBT never clones a finished trial, so nothing a scheduler reads is lost.
    """
    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        return
    filesystem, folder = checkpoint.filesystem, str(checkpoint.path).rstrip("/")
    path = posixpath.join(folder, _STATE_FILE)
    state = _read_state(path, filesystem)
    slim = {k: state[k] for k in (*_FINAL_KEYS, *extra_keys) if k in state}
    slim["best_model"] = best_weights(state, folder, filesystem)
    buffer = io.BytesIO()
    torch.save(slim, buffer)
    temporary = posixpath.join(folder, f".{_STATE_FILE}.tmp")
    with filesystem.open_output_stream(temporary) as stream:
        stream.write(buffer.getvalue())
    filesystem.move(temporary, path)


def trial_dir() -> Path | None:
    """This trial's directory when running under Ray Tune, else None."""
    with warnings.catch_warnings():  # outside Tune, Ray warns and returns None
        warnings.simplefilter("ignore")
        directory = tune.get_context().get_trial_dir()
    return Path(directory) if directory else None


_MEMORY_STAGING = "/dev/shm"
"""Where checkpoints are staged before Ray copies them into the trial's storage, when it has room:
a RAM-backed folder saves one disk write and read of every checkpoint (a third of the checkpoint
cost measured by ``benchmarks/classifier_throughput.py``)."""


def _tensor_bytes(value: Any) -> int:
    """Bytes of the tensors in a nested state (dicts, lists, tuples)."""
    if isinstance(value, torch.Tensor):
        return value.nelement() * value.element_size()
    if isinstance(value, dict):
        return sum(_tensor_bytes(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(_tensor_bytes(v) for v in value)
    return 0


def _staging_dir(nbytes: int) -> str | None:
    """:data:`_MEMORY_STAGING` when it leaves twice the checkpoint plus 256 MiB free (Ray's object
    store lives there too; containers often give it 64 MB), else None: the default temp folder."""
    try:
        stat = os.statvfs(_MEMORY_STAGING)
    except OSError:  # no such folder (macOS, Windows)
        return None
    return _MEMORY_STAGING if stat.f_bavail * stat.f_frsize > 2 * nbytes + 2**28 else None


def report_with_checkpoint(metrics: dict[str, Any], state: dict[str, Any]) -> None:
    """Reports metrics to Tune together with a checkpoint holding ``state``.

    The checkpoint is staged in RAM when there is room (:func:`_staging_dir`), on disk otherwise
    or when the RAM folder fills up meanwhile; Ray then copies it into the trial's storage.
    """
    staging = _staging_dir(_tensor_bytes(state))
    for folder in dict.fromkeys((staging, None)):
        with tempfile.TemporaryDirectory(prefix="corrotune-ckpt-", dir=folder) as directory:
            try:
                torch.save(state, Path(directory) / _STATE_FILE)
            except OSError as err:
                if folder is None:
                    raise
                logger.info("staging the checkpoint in %s failed (%s); staging it on disk", folder, err)
                continue
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))
            return
