"""Ray's W&B logging actor, made continuous across driver sessions.

One actor serves one trial in one driver session. It logs each result at W&B step
``training_iteration`` and keeps the run's history whole across a crash and ``Tuner.restore``:

1. After ``wandb.init`` it finds the last step the W&B run already holds: offline, the highest
   ``_step`` in the run's earlier ``offline-run-*`` folders; online, ``run.step - 1``.
2. A result whose step is not above that is dropped (an epoch re-run after a resume from an
   older checkpoint; the resume is exact, so W&B already holds the same data).
3. A result that leaves a gap (the first one after a resume, when the crash lost W&B's
   buffered rows) is preceded by the missing steps, replayed from Ray's ``result.json``.

So a run's steps, across its folders in start order, are ``1, 2, ..., n`` with no repeats.

Private Ray names used: ``ray.air.integrations.wandb._WandbLoggingActor`` (subclassed: ``run``,
``_handle_result``, ``_handle_checkpoint``, ``_wandb``, ``_logdir``), ``_QueueItem``, ``_clean_log``,
``_run_wandb_process_run_info_hook``. Upstream: ray-project/ray#29916 (W&B runs overwritten or
duplicated on restore); #46897 fixed explicit steps for RLlib only.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from ray.air.constants import TRAINING_ITERATION
from ray.air.integrations.wandb import _clean_log, _QueueItem, _run_wandb_process_run_info_hook, _WandbLoggingActor

from orchestrator._wandb_history import Root, last_logged_step, results_by_step

__all__ = ["IMAGES", "ContinuousWandbLoggingActor", "redact_secrets"]

logger = logging.getLogger(__name__)

WANDB_API_KEY = "WANDB_API_KEY"

IMAGES = "corrotune/images"
"""Queue item type: ``{"step": int, "images": {key: wandb.Image}}``, merged into that step's row."""

SECRET_KEY_PARTS = ("api_key", "apikey", "token", "password")
"""A config key containing one of these (case-insensitive, ``-`` read as ``_``) never reaches W&B."""


def _is_secret(key: Any) -> bool:
    name = str(key).lower().replace("-", "_")
    return any(part in name for part in SECRET_KEY_PARTS)


def redact_secrets(config: Any) -> Any:
    """``config`` without any key that names a secret, at any depth (dicts inside lists too)."""
    if isinstance(config, dict):
        return {k: redact_secrets(v) for k, v in config.items() if not _is_secret(k)}
    if isinstance(config, (list, tuple)):
        return type(config)(redact_secrets(v) for v in config)
    return config


class ContinuousWandbLoggingActor(_WandbLoggingActor):
    """Logs one trial's results to its W&B run with explicit, gap-free, non-repeating steps.

    Args:
        logdir: The trial's driver staging folder (Ray's actor ``chdir``s there).
        queue: Items from the callback: ``(RESULT, result)``, ``(CHECKPOINT, path)``,
            ``(IMAGES, {"step", "images"})`` and last ``(END, {"failed", "last_step"})``.
        exclude: Result keys not to log.
        to_config: Result keys logged into the run's config instead.
        history_roots: Where the run's earlier ``offline-run-*`` folders are: local folders, or
            ``(pyarrow filesystem, path)`` in remote storage.
        result_files: The trial's ``result.json`` files (stored, then local; later ones win).
        api_key: The W&B API key of an online run (set in this process's environment only; it
            never reaches a runtime_env, a log or the run's config).
        **kwargs: ``wandb.init`` keyword arguments.
    """

    def __init__(
        self,
        logdir: str,
        queue: Any,
        exclude: list[str],
        to_config: list[str],
        *args: Any,
        history_roots: tuple[Root, ...] = (),
        result_files: tuple[Root, ...] = (),
        api_key: str | None = None,
        **kwargs: Any,
    ):
        super().__init__(logdir, queue, exclude, to_config, *args, **kwargs)
        if api_key:
            os.environ[WANDB_API_KEY] = api_key
        self._history_roots = tuple(history_roots)
        self._result_files = tuple(result_files)
        self._run: Any = None
        self._held = 0  # the last step the W&B run holds
        self._open: int | None = None  # the last step this session logged (its row is still open)
        self._gap_warned = False

    def run(self) -> None:
        os.environ["WANDB_START_METHOD"] = "thread"
        if self.kwargs.get("dir"):
            os.makedirs(self.kwargs["dir"], exist_ok=True)
        self._run = run = self._wandb.init(*self.args, **self.kwargs)
        exit_code = 1
        try:
            run.config.update({"trial_log_path": self._logdir}, allow_val_change=True)
            _run_wandb_process_run_info_hook(run)
            self._held = self._held_step()
            exit_code = self._serve()
        finally:
            run.finish(exit_code=exit_code)
            # Ray kills this actor (WandbLoggerCallback._cleanup_logging_actor: ray.kill) as soon as
            # run() returns, so wandb's own atexit teardown never runs; finish() can return before
            # wandb-core has written the run's last records (an offline run then has no history and
            # no exit record: seen in 2 of 20 runs of benchmarks/sigkill_resume_loop.py). teardown()
            # waits for the service to finish writing, and is wandb's documented end of a session.
            teardown = getattr(self._wandb, "teardown", None)
            if callable(teardown):
                teardown(exit_code=exit_code)

    def _held_step(self) -> int:
        run = self._run
        if run.offline:
            return last_logged_step(self._history_roots, run.id, exclude=[run.settings.sync_dir])
        return max(int(run.step) - 1, 0)

    def _serve(self) -> int:
        """Handles queue items until END; returns the run's exit code."""
        while True:
            kind, content = self.queue.get()
            if kind == _QueueItem.END:
                content = content or {}
                if content.get("last_step"):
                    self._catch_up(int(content["last_step"]))
                return 1 if content.get("failed") else 0
            if kind == _QueueItem.CHECKPOINT:
                self._handle_checkpoint(content)
            elif kind == IMAGES:
                self._log_images(int(content["step"]), content["images"])
            else:
                self._log_result(content)

    def _handle_result(self, result: dict) -> tuple[dict, dict]:
        log, config_update = super()._handle_result(result)
        return log, redact_secrets(config_update)

    def _log_result(self, result: dict, replayed: bool = False) -> None:
        step = result.get(TRAINING_ITERATION)
        if not isinstance(step, int):
            logger.warning("result without an integer %s not logged to W&B", TRAINING_ITERATION)
            return
        if not replayed:
            self._catch_up(step - 1)
        if step <= self._held:
            return
        log, config_update = self._handle_result(result)
        if not replayed:
            self._wandb.config.update(config_update, allow_val_change=True)
        self._run.log(log, step=step)
        self._held = self._open = step

    def _catch_up(self, through: int) -> None:
        """Logs the steps ``held + 1 .. through`` the run lacks, from Ray's ``result.json``."""
        if through <= self._held:
            return
        saved = results_by_step(self._result_files)
        missing = [s for s in range(self._held + 1, through + 1) if s not in saved]
        if missing and not self._gap_warned:
            self._gap_warned = True
            logger.warning("W&B run %s: steps %s are neither in W&B nor in result.json", self._run.id, missing)
        for step in range(self._held + 1, through + 1):
            if step in saved:
                self._log_result(_clean_log(saved[step]), replayed=True)

    def _log_images(self, step: int, images: dict[str, Any]) -> None:
        """Images join the row of ``step`` while it is open; a row closed in an earlier session stays as it is."""
        self._catch_up(step)
        if step == self._open:
            self._run.log(images, step=step)
        else:
            logger.warning("W&B run %s: step %d was logged in an earlier session; %d images not logged", self._run.id, step, len(images))

