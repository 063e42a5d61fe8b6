"""W&B tracking through Ray's ``WandbLoggerCallback``: offline by default, never a login prompt."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from orchestrator.spec import Study

__all__ = ["configure_wandb_env", "offline_runs", "resolve_wandb_mode", "sync_command", "wandb_callback"]


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


def wandb_callback(study: Study, mode: str, job_type: str = "search") -> Any | None:
    """One W&B run per trial (id = trial id), grouped by study; ``None`` when disabled.

    A trial's end-of-trial plots and Grad-CAM overlays (``<trial>/artifacts/*.png``) are
    logged as images at its last step.
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
    from orchestrator._wandb_artifacts import ArtifactWandbLoggerCallback

    return ArtifactWandbLoggerCallback(**kwargs)


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
