"""Ray's ``WandbLoggerCallback`` with one continuous W&B run per trial.

Extends Ray's callback where it falls short for a study that is killed and resumed:

* the run is described by the trial's metadata (:data:`trainables.TRIAL_META_KEY`): group =
  study, job type = phase, tags = study tags + ``factor=value`` + phase, name = trial folder
  + cell; its config is the resolved trial config with secrets removed;
* its history is continuous across driver sessions (see :mod:`orchestrator.ray_repairs.wandb_actor`);
  with local (or NFS) storage, offline runs are written straight into the study's trial
  folder, so a crash cannot leave them behind in Ray's session staging folder; with remote
  storage they are written to staging and reach storage with Ray's syncs;
* a trial that finished in a session killed before W&B wrote its last rows is not restarted
  by ``Tuner.restore``; the restored session completes its offline run from ``result.json``;
* a trial that ends always finishes its run (exit code 1 when it failed), and a trial that
  starts again in the same session gets a new logging actor instead of a queue nobody reads;
* the driver's loop never waits on W&B: queue items (each a blocking round trip to a queue
  actor, the first one until that actor's process has started: seconds) are sent from a
  background thread in order, and a trial's images are gathered there once its artifacts
  reached the study folder (see :mod:`orchestrator._background`);
* ``WANDB_API_KEY`` never reaches a ``runtime_env`` (Ray's session logs print those in plain
  text): an online run's actor gets the key as a Ray object and sets it in its own
  environment; an offline or disabled one never gets it. The callback never pickles it, and
  its clean-up at interpreter exit stays quiet when Ray has already been torn down.

Private Ray names used: ``ray.air.util.node._force_on_current_node``, ``_clean_log``, ``_QueueItem``
and ``WandbLoggerCallback``'s ``_logger_actor_cls``, ``_remote_logger_class``,
``_trial_logging_actors``, ``_trial_logging_futures``, ``_logging_future_to_trial``,
``_trial_queues``, ``_exclude_results``, ``_start_logging_actor``, ``_cleanup_logging_actor(s)``.
Upstream: none found for the finished-trial and key-in-runtime_env cases.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import pyarrow.fs
import ray
from ray.air.integrations.wandb import WANDB_ENV_VAR, WandbLoggerCallback, _clean_log, _QueueItem
from ray.air.util.node import _force_on_current_node
from ray.util.queue import Queue, _QueueActor

from orchestrator._background import Background
from orchestrator._wandb_artifacts import ARTIFACT_COUNT_KEY, SYNC_WAIT_S, artifact_images
from orchestrator._wandb_history import Root, last_logged_step
from orchestrator.ray_repairs.atomic_fs import trial_is_local, upload
from orchestrator.ray_repairs.wandb_actor import IMAGES, ContinuousWandbLoggingActor, redact_secrets
from trainables import TRIAL_META_KEY

__all__ = ["TrialWandbLoggerCallback", "run_tags"]

logger = logging.getLogger(__name__)

MAX_TAG_LEN = 64
"""W&B rejects longer tags."""


def run_tags(study_tags: list[str], meta: dict[str, Any]) -> list[str]:
    """Study tags, then ``factor=value`` per factor, then the phase; unique, each at most 64 chars."""
    factors = meta.get("factors") or {}
    tags = [*study_tags, *(f"{k}={v}" for k, v in factors.items()), *([meta["phase"]] if meta.get("phase") else [])]
    return list(dict.fromkeys(str(t)[:MAX_TAG_LEN] for t in tags))


class _OneClassQueue(Queue):
    """``ray.util.queue.Queue`` whose actor class is made once per driver.

    Ray's makes a new actor class for every queue, and exporting a new class disassembles its
    code for an identifier (``function_manager.compute_collision_identifier``): 0.1-0.5 s on the
    driver's loop at every trial start. The queue actor itself is Ray's, unchanged.
    """

    _actor_class: Any = None

    def __init__(self, maxsize: int = 0, actor_options: dict[str, Any] | None = None) -> None:  # noqa: D107
        if _OneClassQueue._actor_class is None:
            _OneClassQueue._actor_class = ray.remote(_QueueActor)
        self.maxsize = maxsize
        self.actor = _OneClassQueue._actor_class.options(**(actor_options or {})).remote(maxsize)


class TrialWandbLoggerCallback(WandbLoggerCallback):
    """One W&B run per trial (id = trial id), continuous across ``Tuner.restore``.

    Takes ``WandbLoggerCallback``'s arguments; ``job_type`` and ``tags`` are the defaults a
    trial's metadata refines. A trial's ``<trial>/artifacts/*.png`` are logged as images at
    its last step.

    Args:
        restart_wait_s: How long a trial starting again in the same session waits for its
            previous run to finish.
        flush_interval_s: How often wandb writes an offline run's buffered rows to disk
            (wandb's default, 15 s, loses more rows to a crash; they are replayed either way).
        **kwargs: ``WandbLoggerCallback`` and ``wandb.init`` arguments.
    """

    _logger_actor_cls = ContinuousWandbLoggingActor

    def __init__(self, *, restart_wait_s: float = 60.0, flush_interval_s: float = 2.0, **kwargs: Any):
        super().__init__(**kwargs)
        self.restart_wait_s = restart_wait_s
        self.flush_interval_s = flush_interval_s
        self._ended: set[str] = set()  # trial ids whose actor was sent END
        self._checked_finished = False  # this session looked for finished trials' lost rows
        self._api_key_object: Any = None  # ray.put(WANDB_API_KEY) for online runs
        self._background: Background | None = None  # sends queue items off the driver's loop

    def __getstate__(self) -> dict[str, Any]:
        # Ray handles and the API key stay in this process (tuner.pkl is written to the study folder)
        state = self.__dict__.copy()
        state.update(
            _api_key_object=None,
            _background=None,
            _remote_logger_class=None,
            _trial_logging_actors={},
            _trial_logging_futures={},
            _logging_future_to_trial={},
            _trial_queues={},
            _ended=set(),
            _checked_finished=False,
            api_key=None,
        )
        return state

    def __del__(self) -> None:
        # Ray's __del__ stops leftover logging actors; at interpreter exit ``ray`` may already be
        # torn down (its module global None), which printed "Exception ignored in ... __del__"
        if not self.__dict__.get("_trial_logging_actors"):
            return
        try:
            super().__del__()
        except (AttributeError, TypeError):  # a module global of Ray's already None
            pass

    def init_kwargs(self, trial: Any) -> dict[str, Any]:
        """``wandb.init`` arguments of a trial's run."""
        meta = trial.config.get(TRIAL_META_KEY) or {}
        config = _clean_log({k: v for k, v in trial.config.items() if k != "callbacks" and k not in self.excludes})
        folder = Path(self._folders(trial)[0])
        name = f"{folder.name} ({meta['cell']})" if meta.get("cell") else folder.name
        settings = {"x_transaction_log_flush_interval": self.flush_interval_s, **(self.kwargs.get("settings") or {})}
        return {
            **self.kwargs,
            "id": trial.trial_id,
            "name": name,
            "group": self.group or trial.experiment_dir_name,
            "project": self.project,
            "job_type": meta.get("phase") or self.kwargs.get("job_type") or "search",
            "tags": run_tags(list(self.kwargs.get("tags") or []), meta),
            "config": redact_secrets(config),
            "resume": "allow",  # online: continue the run; offline: a new folder for the same id
            "reinit": "finish_previous",
            "allow_val_change": True,
            "dir": str(folder),
            "settings": settings,
        }

    def _folders(self, trial: Any) -> tuple[str, ...]:
        """The trial's local folders: the study's (where W&B writes) when storage is local, and staging."""
        return tuple(dict.fromkeys([trial.path if trial_is_local(trial) else trial.local_path, trial.local_path]))

    def _trial_files(self, trial: Any, name: str) -> tuple[Root, ...]:
        """``name`` in the trial's folders: for remote storage the stored copy (a new session's
        staging folder lacks it) comes first, then the local ones."""
        stored = () if trial_is_local(trial) else ((trial.storage.storage_filesystem, f"{trial.path}/{name}"),)
        return (*stored, *(str(Path(f) / name) for f in self._folders(trial)))

    def log_trial_start(self, trial: Any) -> None:
        self._retire_ended_logger(trial)
        if trial in self._trial_logging_futures:
            return  # a paused trial goes on: same actor, same run
        exclude = [*self._exclude_results, *self.excludes, *([] if self.log_config else ["config"])]
        self._start_logging_actor(
            trial,
            exclude,
            history_roots=self._trial_files(trial, "wandb"),
            result_files=self._trial_files(trial, "result.json"),
            **self.init_kwargs(trial),
        )

    def _start_logging_actor(self, trial: Any, exclude_results: list[str], **kwargs: Any) -> None:
        """Ray's ``_start_logging_actor`` with its queue's actor class made once (:class:`_OneClassQueue`)."""
        if trial in self._trial_logging_futures:
            return
        if not self._remote_logger_class:
            # Ray's own class passes WANDB_API_KEY in the actor's runtime_env, which
            # runtime_env_agent.log in Ray's session folder prints in plain text; the same
            # options otherwise (an empty env_vars, as Ray's has without a key: own workers)
            self._remote_logger_class = ray.remote(
                num_cpus=0, **_force_on_current_node(), runtime_env={"env_vars": {}}, max_restarts=-1, max_task_retries=-1
            )(self._logger_actor_cls)
        queue = self._trial_queues[trial] = _OneClassQueue(
            actor_options={"num_cpus": 0, **_force_on_current_node(), "max_restarts": -1, "max_task_retries": -1}
        )
        actor = self._trial_logging_actors[trial] = self._remote_logger_class.remote(
            logdir=trial.local_path, queue=queue, exclude=exclude_results, to_config=self.AUTO_CONFIG_KEYS,
            api_key=self._api_key(), **kwargs,
        )
        future = self._trial_logging_futures[trial] = actor.run.remote()
        self._logging_future_to_trial[future] = trial

    def _api_key(self) -> Any:
        """The API key as a Ray object (the actor receives its value), for online runs only."""
        mode = self.kwargs.get("mode") or os.environ.get("WANDB_MODE")
        if mode in ("offline", "disabled") or not os.environ.get(WANDB_ENV_VAR):
            return None
        if self._api_key_object is None:
            self._api_key_object = ray.put(os.environ[WANDB_ENV_VAR])
        return self._api_key_object

    def _retire_ended_logger(self, trial: Any) -> None:
        """Waits for (then removes) the actor of a trial that ended and now starts again."""
        if trial.trial_id not in self._ended or trial not in self._trial_logging_futures:
            return
        future = self._trial_logging_futures[trial]
        done, _ = ray.wait([future], timeout=self.restart_wait_s)
        if not done:
            logger.warning("W&B run of trial %s did not finish in %.0f s; starting its next session anyway", trial, self.restart_wait_s)
        self._logging_future_to_trial.pop(future, None)
        self._cleanup_logging_actor(trial)

    def _cleanup_logging_actor(self, trial: Any) -> None:
        super()._cleanup_logging_actor(trial)
        self._ended.discard(trial.trial_id)

    def _lane(self) -> Background:
        if self._background is None:
            self._background = Background("wandb")
        return self._background

    def _send(self, trial: Any, *items: tuple[Any, Any]) -> None:
        """Puts ``items`` into the trial's queue from the background lane, after the items sent before."""
        target = self._trial_queues[trial]  # this session's queue, even if the trial starts again later
        self._lane().submit(lambda: [target.put(item) for item in items])

    def log_trial_result(self, iteration: int, trial: Any, result: dict) -> None:
        if trial not in self._trial_logging_actors or trial.trial_id in self._ended:
            self.log_trial_start(trial)
        if isinstance(result.get("config"), dict):
            result = {**result, "config": redact_secrets(result["config"])}
        result = _clean_log(result, video_kwargs=self.video_kwargs, image_kwargs=self.image_kwargs)
        self._send(trial, (_QueueItem.RESULT, result))

    def log_trial_save(self, trial: Any) -> None:
        if self.upload_checkpoints and trial.checkpoint and trial in self._trial_queues:
            if isinstance(trial.checkpoint.filesystem, pyarrow.fs.LocalFileSystem):
                self._send(trial, (_QueueItem.CHECKPOINT, trial.checkpoint.path))

    def log_trial_end(self, trial: Any, failed: bool = False) -> None:
        self._end_run(trial, failed, SYNC_WAIT_S)

    def _end_run(self, trial: Any, failed: bool, artifacts_wait_s: float) -> None:
        """Queues the trial's images and END; its actor then finishes the run.

        The wait for the artifacts to reach the study folder runs in the background; the
        images and END follow the trial's results into its queue.
        """
        if trial not in self._trial_queues or trial.trial_id in self._ended:
            return
        step = (trial.last_result or {}).get("training_iteration")
        target, end = self._trial_queues[trial], (_QueueItem.END, {"failed": failed, "last_step": step})

        def send(images: dict[str, Any] | None) -> None:
            if images:
                target.put((IMAGES, {"step": step, "images": _clean_log(images, image_kwargs=self.image_kwargs)}))
            target.put(end)

        if step and (trial.last_result or {}).get(ARTIFACT_COUNT_KEY):
            self._lane().after(lambda: artifact_images(trial, artifacts_wait_s), send)
        else:
            self._lane().submit(lambda: send(None))
        self._ended.add(trial.trial_id)
        self._cleanup_logging_actors()

    def _complete_finished_runs(self, trials: list[Any]) -> None:
        """Once a session: offline runs of trials that will not run again get their lost last rows.

        ``Tuner.restore`` restarts unfinished trials only; a trial that finished just before the
        driver was killed may have lost the rows W&B had not written yet. Its run is completed
        from ``result.json`` by a short-lived actor (online runs are left as they are).
        """
        if self._checked_finished:
            return
        self._checked_finished = True
        if (self.kwargs.get("mode") or os.environ.get("WANDB_MODE")) != "offline":
            return
        for trial in trials:
            last = (trial.last_result or {}).get("training_iteration")
            if trial.status not in ("TERMINATED", "ERROR") or trial in self._trial_queues or not last:
                continue
            if last_logged_step(self._trial_files(trial, "wandb"), trial.trial_id) < last:
                logger.info("W&B run of finished trial %s lacks steps up to %d; completing it from result.json", trial, last)
                self.log_trial_start(trial)
                self._end_run(trial, failed=trial.status == "ERROR", artifacts_wait_s=0.0)

    def on_step_begin(self, iteration: int, trials: list[Any], **info: Any) -> None:
        self._complete_finished_runs(trials)

    def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
        self._complete_finished_runs(trials)  # a restore with nothing left to run has no step
        if self._background is not None and not self._background.drain(timeout_s=self._upload_timeout):
            logger.warning("W&B: %d queued items not sent within %.0f s; some runs may lack their last rows",
                           self._background.pending(), self._upload_timeout)
        super().on_experiment_end(trials, **info)  # waits for the runs to finish
        for trial in trials:
            if not trial_is_local(trial):
                _upload_offline_runs(trial)


def _upload_offline_runs(trial: Any) -> None:
    """Copies a trial's offline runs from staging to remote storage.

    Ray's last sync of the staging folder comes before the callbacks' ``on_experiment_end``,
    so without this a run's last rows and its exit record would stay on the driver.
    """
    for folder in sorted(Path(trial.local_path, "wandb").glob("offline-run-*")):
        if folder.is_dir() and not folder.is_symlink() and any(folder.glob("run-*.wandb")):
            upload(trial.storage.storage_filesystem, folder, f"{trial.path}/wandb")
