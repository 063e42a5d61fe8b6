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
import shlex
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.markup import escape

from orchestrator._trial_errors import TrialError, group_errors, print_errors, quiet_ray_trial_errors, summarize_error
from orchestrator.exit_status import interrupted_exit_status, study_exit_status
from orchestrator.heartbeat import driver_state, record_stop_signal
from orchestrator.interrupt import DriverInterrupt, signal_name
from orchestrator.leaderboard import build_leaderboard, cell_summary, print_cell_summary, print_leaderboard, write_leaderboard
from orchestrator.quiet import quiet_environment, tune_verbosity
from orchestrator.spec import Study, StudyError, read_yaml_mapping, validate_study
from orchestrator.storage import DEFAULT_STORAGE, StudyPlace, split_study_uri
from orchestrator.tracking import configure_wandb_env, sync_command, wandb_callback
from orchestrator.trials_table import TRIALS_FILE
from trainables import get_trainable

__all__ = ["STUDY_FILE", "StudyOutcome", "build_tuner", "load_saved_study", "resume_study", "run_study"]

STUDY_FILE = "corrotune_study.yaml"


@dataclass
class StudyOutcome:
    """How a ``run`` or ``resume`` ended.

    Attributes:
        study_dir: The local study directory.
        rows: The leaderboard rows, best first (errored trials after every finished one).
        num_errors: How many trials errored.
        errors: Each distinct trial error once, with the ids of the trials it hit.
        interrupted_by: The signal (SIGINT, SIGTERM) that stopped the study before its end, if any.
        resume_command: What continues an interrupted study.
    """

    study_dir: Path
    rows: list[dict[str, Any]]
    num_errors: int
    errors: list[tuple[TrialError, list[str]]] = field(default_factory=list)
    interrupted_by: int | None = None
    resume_command: str = ""

    @property
    def exit_status(self) -> int:
        """``EXIT_OK``, ``EXIT_SOME_ERRORED``, ``EXIT_ALL_ERRORED`` or 128 + the interrupting signal
        (see :mod:`orchestrator.exit_status`)."""
        if self.interrupted_by is not None:
            return interrupted_exit_status(self.interrupted_by)
        return study_exit_status(len(self.rows), self.num_errors)

    def last_line(self) -> str:
        """The line a command ends with: how many trials finished and errored, or how to resume."""
        if self.interrupted_by is not None:
            return (f"Study interrupted by {signal_name(self.interrupted_by)}: its state and every running trial's "
                    f"current batch are saved. Continue it with: {self.resume_command}")
        finished = len(self.rows) - self.num_errors
        if not self.num_errors:
            return f"Study finished: {finished} trial{'s' if finished != 1 else ''} finished, none errored."
        what = "all" if not finished else f"{self.num_errors} of"
        return (f"Study finished with errors: {what} {len(self.rows)} trials errored"
                f"{f', {finished} finished' if finished else ''} (errors above; exit status {self.exit_status}).")


def _trainable(study: Study):
    from ray import tune

    resources = {"cpu": study.resources.cpu, "gpu": study.resources.gpu}
    return tune.with_resources(get_trainable(study.trainable).as_trainable(), resources)


def _trial_dirname(trial) -> str:
    """Short trial folder names (Ray's default embeds the whole config)."""
    return f"{trial.trainable_name}_{trial.trial_id}"


def build_tuner(study: Study, place: StudyPlace, wandb_mode: str, console: Console):
    """Builds the ``ray.tune.Tuner`` of a study (Ray must be initialised).

    One ``AblationSearcher`` hands out every trial (search trials per cell, then confirm
    runs); the scheduler runs per cell; the callbacks print progress and log to W&B.
    """
    from ray import tune

    from orchestrator.ray_repairs.checkpoints import CheckpointPruner
    from orchestrator._failures import StopRepeatedFailures
    from orchestrator.ray_repairs.trial_files import DropRepeatedResults, SettleEndedTrials, UploadBeforeRetry
    from orchestrator.ablation import search_algorithm
    from orchestrator.progress import LOG_FILE, ProgressPrinter
    from orchestrator.schedulers import build_scheduler, build_stopper
    from orchestrator.trials_table import TrialsTableCallback

    objective = study.objective
    objectives = [(o.metric, o.mode) for o in study.objectives]
    # the table goes to the local study folder (for remote storage: published at the end)
    trials_table = TrialsTableCallback(place.local_dir, objectives)
    callbacks = [
        trials_table,  # first: the progress lines read its table
        ProgressPrinter(objectives, console, epochs_per_trial=study.epochs(), time_budget_s=study.stop.time_budget_s,
                        log_path=place.local_dir / LOG_FILE,  # the progress lines, plain, in <study>/corrotune.log
                        table=trials_table.table),
        UploadBeforeRetry(),  # a retried trial keeps the epochs it reported before failing
        DropRepeatedResults(),  # ... and a resumed one does not list an epoch twice
        SettleEndedTrials(),  # Ray's snapshots stop rewriting the files of trials that ended
        # keeps the best checkpoints, never the one a resume from the stored state needs
        CheckpointPruner(study.checkpoints.num_to_keep, objective.metric, objective.mode),
        # Ray's retries stop for a trial that fails again before it reports anything
        StopRepeatedFailures(study.failure.max_failures, lambda line: console.print(line, markup=False, highlight=False, soft_wrap=True)),
    ]
    wandb = wandb_callback(study, wandb_mode)
    if wandb is not None:
        callbacks.append(wandb)
    from orchestrator.tensorboard import tensorboard_logger

    tensorboard = tensorboard_logger()  # Ray's TensorBoard logger, its writes off the driver's loop
    if tensorboard is not None:
        callbacks.append(tensorboard)
    return tune.Tuner(
        _trainable(study),
        param_space=study.trial_param_space(),
        tune_config=tune.TuneConfig(
            metric=objective.metric,
            mode=objective.mode,
            search_alg=search_algorithm(study),  # max_concurrent_trials applied inside
            scheduler=build_scheduler(study),
            num_samples=study.num_samples,
            time_budget_s=study.stop.time_budget_s,
            # one worker process serves many trials: no 1.5 s process start per trial, and the
            # decoded dataset stays in memory; trainables rebuild all per-trial state on start
            reuse_actors=True,
            trial_dirname_creator=_trial_dirname,
        ),
        run_config=tune.RunConfig(
            name=place.name,
            storage_path=place.storage_path,
            storage_filesystem=place.storage_filesystem,
            callbacks=callbacks,
            stop=build_stopper(study),
            checkpoint_config=tune.CheckpointConfig(
                # every K checkpoints of a trial Ray snapshots the experiment state (resume stays
                # close); CheckpointPruner, not Ray, deletes them (Ray would delete too early)
                num_to_keep=study.checkpoints.num_to_keep,
                checkpoint_score_attribute=objective.metric,
                checkpoint_score_order=objective.mode,
            ),
            failure_config=tune.FailureConfig(max_failures=study.failure.max_failures),
            # files a trial writes into its directory (artifacts/) reach the study directory
            sync_config=tune.SyncConfig(sync_artifacts=True),
            verbose=tune_verbosity(),  # Ray's status tables with --verbose only
        ),
    )


def _prepare_data(study: Study, place: StudyPlace, console: Console) -> Study:
    """Scans and splits the data once in the driver; trials then read the study's manifest.

    Raises:
        StudyError: the data cannot be used (the scan report stays in ``<study>/data/``).
    """
    from trainables.data.prepare import DataPreparationError, prepare_dataset

    task = get_trainable(study.trainable).task
    try:
        with console.status("Scanning and splitting the dataset..."):
            data = prepare_dataset(study.data, task, place.local_dir, log=lambda line: console.print(line, markup=False, highlight=False))
    except DataPreparationError as err:
        raise StudyError(place.uri, [str(err), f"then start it again with `corrotune resume {place.uri}`"]) from None
    if place.remote:  # trials on every node read the manifest from the study's storage
        place.publish("data")
        data = data.model_copy(update={"manifest": place.remote_path("data/manifest.json")})
    return study.model_copy(update={"data": data})


def _finish(study: Study, place: StudyPlace, results, console: Console) -> StudyOutcome:
    objectives = [(o.metric, o.mode) for o in study.objectives]
    metric, mode = study.objective.metric, study.objective.mode
    rows = build_leaderboard(results, metric, mode, objectives)
    print_leaderboard(rows, metric, console)
    print_cell_summary(cell_summary(rows), metric, mode, console)
    paths = write_leaderboard(rows, place.local_dir, metric, mode)
    # trials.csv: written by TrialsTableCallback at the experiment's end (rebuilding it from every
    # trial's files once more cost 150 MB of peak memory at 3,000 trials)
    for name in (*(p.name for p in paths), TRIALS_FILE):
        place.publish(name)
    console.print(f"Leaderboard written to {place.remote_path(paths[0].name)} and {paths[1].name}", markup=False)
    from orchestrator.report import report_after_run  # scipy.stats and matplotlib: imported when the run ends, not at start-up

    report_after_run(place, console)  # statistics and plots; a failing report never fails the run
    if os.environ.get("WANDB_MODE") == "offline":
        command = sync_command(place.local_dir)
        if command:
            console.print(f"W&B ran offline; to upload: [bold]{escape(command)}[/bold]")
        elif place.remote:
            console.print(f"W&B ran offline; the runs are in {place.uri}/*/wandb/: copy them here, then `wandb sync` them", markup=False)
    errors = _trial_errors(results, place)
    print_errors(errors, console)
    return StudyOutcome(study_dir=place.local_dir, rows=rows, num_errors=sum(r["status"] == "ERROR" for r in rows), errors=errors)


def _trial_errors(results, place: StudyPlace) -> list[tuple[TrialError, list[str]]]:
    """Each distinct error of the errored trials once (Ray's own per-retry tracebacks are off)."""
    errored = []
    for result in results:
        if result.error is not None:
            folder = Path(result.path).name
            trial_id = (result.metrics or {}).get("trial_id") or folder  # as the leaderboard names it
            errored.append((trial_id, summarize_error(result.error, place.remote_path(f"{folder}/error.txt"))))
    return group_errors(errored)


def run_study(
    study: Study,
    storage: str | os.PathLike | None = None,
    console: Console | None = None,
    address: str | None = None,
) -> StudyOutcome:
    """Runs a study to completion and writes its leaderboard.

    Args:
        storage: Results root (a path or a URI); default: the study's ``storage``, else
            ``corrotune-results``. The study goes to ``<storage>/<name>/``.
        address: Join this Ray cluster (``auto`` or ``HOST:PORT``) instead of starting Ray.

    Raises:
        StudyError: the study directory already exists (resume it, or pick another
            name/storage), or the cluster cannot run it.
    """
    console = console or Console(stderr=True)
    _check_tested_ray(console)
    place = StudyPlace.create(storage or study.storage or DEFAULT_STORAGE, study.name)
    _check_target(study, str(storage or study.storage or DEFAULT_STORAGE), address)
    if place.exists():
        raise StudyError(
            place.uri,
            [f"the study directory already exists; continue it with `corrotune resume {place.uri}` "
             "or choose another --storage or name (nothing was changed)"],
        )
    if place.remote and place.local_dir.exists():
        shutil.rmtree(place.local_dir)  # a cache of an earlier study of that name, gone from storage
    place.local_dir.mkdir(parents=True, exist_ok=True)
    (place.local_dir / STUDY_FILE).write_text(yaml.safe_dump(study.model_dump(mode="json"), sort_keys=False))
    place.publish(STUDY_FILE)
    return _launch(study, place, console, address)


def _check_tested_ray(console: Console) -> None:
    from orchestrator.cluster import check_tested_ray

    check_tested_ray(console)


def _check_target(study: Study, storage: str, address: str | None) -> None:
    """Refuses, before anything starts, storage the cluster's nodes cannot share or GPUs it lacks.

    Raises:
        StudyError: with each problem and what to use instead.
    """
    from orchestrator.cluster import target_problems

    problems = target_problems(study, storage, address)
    if problems:
        raise StudyError(study.name, problems)


def _launch(study: Study, place: StudyPlace, console: Console, address: str | None) -> StudyOutcome:
    study = _prepare_data(study, place, console)
    mode = _start_runtime(study, address)
    tuner = build_tuner(study, place, mode, console)
    if not place.remote:  # Ray rewrites tuner.pkl in place with every snapshot of a resumed study
        from orchestrator.ray_repairs.driver_files import back_up_tuner

        back_up_tuner(place.local_dir)
    console.print(f"Study [bold]{study.name}[/bold]: {_plan(study)} -> {escape(place.uri)}")
    _tensorboard_hint(place, console)
    return _fit(study, place, tuner, console)


def _tensorboard_hint(place: StudyPlace, console: Console) -> None:
    """Points TensorBoard at the study folder (each trial folder holds its event file)."""
    console.print(f"TensorBoard: tensorboard --logdir {place.uri}", markup=False, highlight=False, soft_wrap=True)


def _plan(study: Study) -> str:
    """``"2 cells x (3 search + 2 confirm) = 10 trials"``."""
    cells = len(study.cells)
    parts = [f"{n} {what}" for n, what in ((study.trials_per_cell, "search"), (study.repeats, "confirm")) if n]
    return f"{cells} cell{'s' if cells != 1 else ''} x ({' + '.join(parts)}) = {study.num_samples} trials"


def _start_runtime(study: Study, address: str | None = None) -> str:
    """Environment, then Ray (workers inherit the environment); returns the W&B mode."""
    # checkpoints force experiment-state snapshots (that keeps resume exact); don't warn about it
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    quiet_ray_trial_errors()  # the study's end shows each trial error once (print_errors)
    quiet_environment()  # Ray's console output only with --verbose (orchestrator.quiet)
    mode = configure_wandb_env(study)
    _init_ray(study, address)
    return mode


def _init_ray(study: Study, address: str | None) -> None:
    from orchestrator.cluster import connect

    # a local Ray, or the cluster at ``address`` (with its login token when it asks for one)
    connect(address, study.ray.num_cpus)


def _fit(study: Study, place: StudyPlace, tuner, console: Console) -> StudyOutcome:
    with DriverInterrupt(place, console) as interrupt:  # Ctrl-C, SIGTERM: see orchestrator.interrupt
        results = tuner.fit()  # the live table closes itself at the experiment's end
    del tuner  # finalise the W&B callback while Ray is still up
    if interrupt.signum is not None:
        record_stop_signal(place.local_dir, signal_name(interrupt.signum))
        if (place.local_dir / TRIALS_FILE).is_file():
            place.publish(TRIALS_FILE)
        return StudyOutcome(study_dir=place.local_dir, rows=[], num_errors=0, interrupted_by=interrupt.signum,
                            resume_command=f"corrotune resume {shlex.quote(place.uri)}")
    return _finish(study, place, results, console)


def load_saved_study(study_dir: str | os.PathLike) -> Study:
    """Reads the resolved study that ``run_study`` saved in a study directory (or URI)."""
    place = StudyPlace.of_study(study_dir)
    path = place.local_dir / STUDY_FILE
    if not place.fetch(STUDY_FILE) or not path.is_file():
        raise StudyError(str(study_dir), [f"not a corrotune study directory: {STUDY_FILE} is missing"])
    return validate_study(read_yaml_mapping(path, f"saved study ({STUDY_FILE})"), str(path))


def _set_aside_unrecorded_trials(place: StudyPlace, trainable: str, console: Console) -> None:
    """Local studies: trial folders Ray's last saved state does not know go to ``unrecorded_trials/``
    (see :mod:`orchestrator.ray_repairs.unrecorded_trials`)."""
    from orchestrator.ray_repairs.unrecorded_trials import set_aside_unrecorded_trials

    if not place.remote:
        set_aside_unrecorded_trials(place.local_dir, f"{trainable}_",  # see _trial_dirname
                                    lambda line: console.print(line, markup=False))


def _repair_driver_files(place: StudyPlace, trainable: str, console: Console) -> bool:
    """Local studies: driver files a kill cut short are put back or set aside (see :mod:`orchestrator.ray_repairs.driver_files`).

    Returns False when no readable experiment state is left.

    Raises:
        StudyError: ``tuner.pkl`` is lost, or the newest state is and trials with results
            depend on it (then nothing was changed and the message says how to repair it).
    """
    from orchestrator.ray_repairs.driver_files import StateLostError, repair_driver_files

    if place.remote:
        return True
    try:
        return repair_driver_files(place.local_dir, lambda line: console.print(line, markup=False, highlight=False),
                                   trial_prefix=f"{trainable}_")  # see _trial_dirname
    except StateLostError as err:
        raise StudyError(place.uri, str(err).splitlines()) from None
    except ValueError as err:
        raise StudyError(place.uri, [str(err), "the study cannot be resumed; run it again under another name"]) from None


def resume_study(study_dir: str | os.PathLike, console: Console | None = None, address: str | None = None) -> StudyOutcome:
    """Restores a crashed or interrupted study and finishes it.

    Finished trials are kept, unfinished and errored ones continue from their last checkpoint,
    the searcher (every cell's Optuna study) and the per-cell schedulers are restored. A study
    killed before Ray wrote any experiment state starts from the beginning.
    """
    from ray import tune

    console = console or Console(stderr=True)
    _check_tested_ray(console)
    place = StudyPlace.of_study(study_dir)
    study = load_saved_study(study_dir)
    _check_target(study, split_study_uri(str(study_dir))[0], address)
    driver = driver_state(place.local_dir)
    if driver.state == "running":  # two drivers on one study would corrupt its state
        raise StudyError(place.uri, [f"the study is still running ({driver.detail}); stop that driver first"])
    if not tune.Tuner.can_restore(place.uri):
        console.print("No trial had started before the interruption; starting the study now.")
        return _launch(study, place, console, address)
    if not _repair_driver_files(place, study.trainable, console):
        _set_aside_unrecorded_trials(place, study.trainable, console)  # all of them: none was recorded
        console.print("No experiment state was saved before the interruption; starting the study again.")
        return _launch(study, place, console, address)
    _set_aside_unrecorded_trials(place, study.trainable, console)
    if not place.remote:  # rows a kill left out of result.json, from Ray's state and checkpoints (ray_repairs.lost_results)
        from orchestrator.ray_repairs.lost_results import restore_lost_rows

        restore_lost_rows(place.local_dir, lambda line: console.print(line, markup=False, highlight=False, soft_wrap=True))
    _start_runtime(_prepare_data(study, place, console), address)
    tuner = tune.Tuner.restore(place.uri, trainable=_trainable(study), resume_unfinished=True, resume_errored=True,
                               storage_filesystem=place.storage_filesystem)
    console.print(f"Resuming study [bold]{study.name}[/bold] from {escape(place.uri)}")
    _tensorboard_hint(place, console)
    return _fit(study, place, tuner, console)
