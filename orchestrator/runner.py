"""Turns a validated study into a Ray Tune experiment, runs it, and resumes it after a crash.

The study directory is ``<storage>/<study name>/`` in Ray Tune's own layout (readable by
``ray.tune.ExperimentAnalysis`` and TensorBoard), plus ``corrotune_study.yaml`` (the resolved
study, used by ``resume``) and ``leaderboard.{csv,json}``.

Example:
    >>> study = load_study("studies/demo.yaml")
    >>> outcome = run_study(study, storage="corrotune-results")
    >>> outcome.rows[0]["best"]
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console

from orchestrator.leaderboard import build_leaderboard, print_leaderboard, write_leaderboard
from orchestrator.spec import Study, StudyError, validate_study
from orchestrator.tracking import configure_wandb_env, sync_command, wandb_callback
from search_spaces import get_space
from trainables import get_trainable

__all__ = ["STUDY_FILE", "StudyOutcome", "build_tuner", "load_saved_study", "resume_study", "run_study"]

STUDY_FILE = "corrotune_study.yaml"
DEFAULT_STORAGE = "corrotune-results"


@dataclass
class StudyOutcome:
    study_dir: Path
    rows: list[dict[str, Any]]
    num_errors: int


def _sampler(study: Study):
    import optuna

    search = study.search
    if search.sampler == "tpe":
        # constant_liar keeps parallel workers from proposing the same point (optuna#4714)
        return optuna.samplers.TPESampler(seed=search.seed, constant_liar=True)
    if search.sampler == "random":
        return optuna.samplers.RandomSampler(seed=search.seed)
    if search.sampler == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=search.seed)
    if search.sampler == "gp":
        return optuna.samplers.GPSampler(seed=search.seed)
    return optuna.samplers.NSGAIISampler(seed=search.seed)


def _searcher(study: Study):
    if study.search is None:
        return None
    from ray.tune.search.optuna import OptunaSearch

    # metric and mode must reach the searcher itself, or max_concurrent_trials fails
    return OptunaSearch(
        space=get_space(study.search.space),
        metric=study.objective.metric,
        mode=study.objective.mode,
        sampler=_sampler(study),
    )


def _scheduler(study: Study):
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, HyperBandScheduler, MedianStoppingRule

    spec, max_t = study.scheduler, study.epochs()
    if spec.name == "asha":
        return ASHAScheduler(
            time_attr="training_iteration",
            max_t=max_t,
            grace_period=min(spec.grace_period, max_t),
            reduction_factor=spec.reduction_factor,
        )
    if spec.name == "hyperband":
        return HyperBandScheduler(time_attr="training_iteration", max_t=max_t, reduction_factor=spec.reduction_factor)
    if spec.name == "median":
        return MedianStoppingRule(time_attr="training_iteration", grace_period=spec.grace_period)
    return FIFOScheduler()


def _trainable(study: Study):
    from ray import tune

    resources = {"cpu": study.resources.cpu, "gpu": study.resources.gpu}
    return tune.with_resources(get_trainable(study.trainable).as_trainable(), resources)


def _trial_dirname(trial) -> str:
    """Short trial folder names (Ray's default embeds the whole config)."""
    return f"{trial.trainable_name}_{trial.trial_id}"


def build_tuner(study: Study, storage: str | os.PathLike, wandb_mode: str, console: Console):
    """Builds the ``ray.tune.Tuner`` of a study (Ray must be initialised)."""
    from ray import tune

    from orchestrator.progress import ProgressPrinter

    objective = study.objective
    callbacks = [ProgressPrinter(objective.metric, objective.mode, console)]
    wandb = wandb_callback(study, wandb_mode)
    if wandb is not None:
        callbacks.append(wandb)
    return tune.Tuner(
        _trainable(study),
        param_space=study.trial_param_space(),
        tune_config=tune.TuneConfig(
            metric=objective.metric,
            mode=objective.mode,
            search_alg=_searcher(study),
            scheduler=_scheduler(study),
            num_samples=study.num_samples,
            max_concurrent_trials=study.max_concurrent_trials,
            # one worker process serves many trials: no 1.5 s process start per trial, and the
            # decoded dataset stays in memory; trainables rebuild all per-trial state on start
            reuse_actors=True,
            trial_dirname_creator=_trial_dirname,
        ),
        run_config=tune.RunConfig(
            name=study.name,
            storage_path=str(Path(storage).expanduser().resolve()),
            callbacks=callbacks,
            checkpoint_config=tune.CheckpointConfig(
                num_to_keep=study.checkpoints.num_to_keep,
                checkpoint_score_attribute=objective.metric,
                checkpoint_score_order=objective.mode,
            ),
            failure_config=tune.FailureConfig(max_failures=study.failure.max_failures),
            # files a trial writes into its directory (artifacts/) reach the study directory
            sync_config=tune.SyncConfig(sync_artifacts=True),
            verbose=0,
        ),
    )


def _init_ray(study: Study) -> None:
    import ray

    if not ray.is_initialized():
        # worker output stays in the Ray session logs; trial errors reach the driver through
        # Tune (and each trial's error.txt), progress through ProgressPrinter
        ray.init(num_cpus=study.ray.num_cpus, include_dashboard=False, log_to_driver=False)


def _prepare_data(study: Study, study_dir: Path, console: Console) -> Study:
    """Scans and splits the data once in the driver; trials then read the study's manifest.

    Raises:
        StudyError: the data cannot be used (the scan report stays in ``<study>/data/``).
    """
    from trainables.data.prepare import DataPreparationError, prepare_dataset

    task = get_trainable(study.trainable).task
    try:
        with console.status("Scanning and splitting the dataset..."):
            data = prepare_dataset(study.data, task, study_dir, log=lambda line: console.print(line, highlight=False))
    except DataPreparationError as err:
        raise StudyError(str(study_dir), [str(err), f"then start it again with `corrotune resume {study_dir}`"]) from None
    return study.model_copy(update={"data": data})


def _finish(study: Study, study_dir: Path, results, console: Console) -> StudyOutcome:
    rows = build_leaderboard(results, study.objective.metric, study.objective.mode)
    print_leaderboard(rows, study.objective.metric, console)
    paths = write_leaderboard(rows, study_dir, study.objective.metric, study.objective.mode)
    console.print(f"Leaderboard written to {paths[0]} and {paths[1].name}")
    command = sync_command(study_dir)
    if command and os.environ.get("WANDB_MODE") == "offline":
        console.print(f"W&B ran offline; to upload: [bold]{command}[/bold]")
    return StudyOutcome(study_dir=study_dir, rows=rows, num_errors=sum(r["status"] == "ERROR" for r in rows))


def run_study(study: Study, storage: str | os.PathLike = DEFAULT_STORAGE, console: Console | None = None) -> StudyOutcome:
    """Runs a study to completion and writes its leaderboard.

    Raises:
        StudyError: the study directory already exists (resume it, or pick another name/storage).
    """
    console = console or Console(stderr=True)
    study_dir = Path(storage).expanduser().resolve() / study.name
    if study_dir.exists():
        raise StudyError(
            str(study_dir),
            [f"the study directory already exists; continue it with `corrotune resume {study_dir}` "
             "or choose another --storage or name (nothing was changed)"],
        )
    study_dir.mkdir(parents=True)
    (study_dir / STUDY_FILE).write_text(yaml.safe_dump(study.model_dump(mode="json"), sort_keys=False))
    return _launch(study, study_dir, console)


def _launch(study: Study, study_dir: Path, console: Console) -> StudyOutcome:
    study = _prepare_data(study, study_dir, console)
    mode = _start_runtime(study)
    tuner = build_tuner(study, study_dir.parent, mode, console)
    console.print(f"Study [bold]{study.name}[/bold]: {study.num_samples} trials -> {study_dir}")
    return _fit(study, study_dir, tuner, console)


def _start_runtime(study: Study) -> str:
    """Environment, then Ray (workers inherit the environment); returns the W&B mode."""
    # checkpoints force experiment-state snapshots (that keeps resume exact); don't warn about it
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    mode = configure_wandb_env(study)
    _init_ray(study)
    return mode


def _fit(study: Study, study_dir: Path, tuner, console: Console) -> StudyOutcome:
    results = tuner.fit()
    del tuner  # finalise the W&B callback while Ray is still up
    return _finish(study, study_dir, results, console)


def load_saved_study(study_dir: str | os.PathLike) -> Study:
    """Reads the resolved study that ``run_study`` saved in a study directory."""
    path = Path(study_dir) / STUDY_FILE
    if not path.is_file():
        raise StudyError(str(study_dir), [f"not a corrotune study directory: {STUDY_FILE} is missing"])
    return validate_study(yaml.safe_load(path.read_text()), str(path))


def resume_study(study_dir: str | os.PathLike, console: Console | None = None) -> StudyOutcome:
    """Restores a crashed or interrupted study and finishes it.

    Finished trials are kept, unfinished and errored ones continue from their last checkpoint.
    A study killed before Ray wrote any experiment state starts from the beginning.
    """
    from ray import tune

    console = console or Console(stderr=True)
    study_dir = Path(study_dir).expanduser().resolve()
    study = load_saved_study(study_dir)
    if not tune.Tuner.can_restore(str(study_dir)):
        console.print("No trial had started before the interruption; starting the study now.")
        return _launch(study, study_dir, console)
    _start_runtime(_prepare_data(study, study_dir, console))
    tuner = tune.Tuner.restore(
        str(study_dir), trainable=_trainable(study), resume_unfinished=True, resume_errored=True
    )
    console.print(f"Resuming study [bold]{study.name}[/bold] from {study_dir}")
    return _fit(study, study_dir, tuner, console)
