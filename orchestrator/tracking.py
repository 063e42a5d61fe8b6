"""W&B tracking through Ray's ``WandbLoggerCallback``: offline by default, never a login prompt.

Each trial logs to one W&B run (id = trial id) whose history stays whole when the study is
killed and resumed: every result is logged at step ``training_iteration``, a resumed trial
first replays the steps its run lost from Ray's ``result.json``, and never logs a step twice.
:func:`logged_steps` reads back what the offline runs of a study hold.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from orchestrator._wandb_history import OfflineRun, logged_steps, read_offline_run
from orchestrator.spec import Study

__all__ = [
    "OfflineRun",
    "configure_wandb_env",
    "logged_steps",
    "offline_runs",
    "read_offline_run",
    "resolve_wandb_mode",
    "sync_command",
    "wandb_callback",
]


def resolve_wandb_mode(mode: str) -> str:
    """``auto`` → ``online`` when ``WANDB_API_KEY`` is set, else ``offline``."""
    if mode != "auto":
        return mode
    return "online" if os.environ.get("WANDB_API_KEY") else "offline"


def configure_wandb_env(study: Study) -> str:
    """Sets the W&B environment for the driver and the Ray workers it starts; returns the mode.

    Must run before ``ray.init`` so that workers inherit it. ``WANDB_MODE`` set by the user
    wins over ``auto``; an explicit mode in the study wins over both.
    """
    spec = study.tracking.wandb
    mode = spec.mode if spec.mode != "auto" else os.environ.get("WANDB_MODE") or resolve_wandb_mode("auto")
    os.environ["WANDB_MODE"] = mode
    os.environ.setdefault("WANDB_SILENT", "true")
    os.environ.setdefault("WANDB_DISABLE_GIT", "true")
    return mode


def wandb_callback(study: Study, mode: str, job_type: str = "search", flush_interval_s: float = 2.0) -> Any | None:
    """One W&B run per trial (id = trial id), grouped by study; ``None`` when disabled.

    A trial's metadata (``trainables.TRIAL_META_KEY``) sets its run's job type (the phase;
    ``job_type`` when it has none), tags (the study's, ``factor=value`` and the phase) and name
    (trial folder + cell). The run's config is the trial config without keys that name a
    secret (``api_key``, ``token``, ``password``). A trial's end-of-trial plots and Grad-CAM
    overlays (``<trial>/artifacts/*.png``) are logged as images at its last step.

    Args:
        study: The study (project, entity and tags come from ``tracking.wandb``).
        mode: ``offline``, ``online`` or ``disabled`` (see :func:`configure_wandb_env`).
        job_type: Job type of runs whose trial carries no phase.
        flush_interval_s: How often an offline run's rows are written to disk.

    Example:
        >>> tune.RunConfig(callbacks=[wandb_callback(study, configure_wandb_env(study))])
    """
    if mode == "disabled":
        return None

    spec = study.tracking.wandb
    kwargs: dict[str, Any] = dict(
        project=spec.project,
        group=study.name,
        job_type=job_type,
        tags=list(spec.tags),
        mode=mode,
        excludes=["time_this_iter_s", "timestamp", "pid", "hostname", "node_ip", "time_since_restore"],
    )
    if spec.entity:
        kwargs["entity"] = spec.entity
    from orchestrator.ray_repairs.wandb_callback import TrialWandbLoggerCallback

    return TrialWandbLoggerCallback(flush_interval_s=flush_interval_s, **kwargs)


def offline_runs(study_dir: str | os.PathLike) -> list[Path]:
    """Offline W&B run folders written for a study (in its trial folders or ``WANDB_DIR``)."""
    roots = [Path(study_dir)]
    if os.environ.get("WANDB_DIR"):
        roots.append(Path(os.environ["WANDB_DIR"]))
    return sorted({p for root in roots for p in root.glob("**/wandb/offline-run-*") if p.is_dir()})


def sync_command(study_dir: str | os.PathLike) -> str | None:
    """The ``wandb sync`` command that uploads a study's offline runs, if there are any."""
    runs = offline_runs(study_dir)
    if not runs:
        return None
    study_dir = Path(study_dir)
    if all(study_dir in run.parents for run in runs):
        return f"wandb sync {study_dir}/*/wandb/offline-run-*"
    return "wandb sync " + " ".join(sorted({f"{run.parent}/offline-run-*" for run in runs}))
