"""Installed as ``sitecustomize`` by ``time_to_first_result.py``: timestamps of start-up phases.

Every Python process of the run (the CLI driver and Ray's workers) imports it at start-up.
With ``CORROTUNE_PHASES_DIR`` set it appends ``{"t", "pid", "name"}`` lines to
``<dir>/<pid>.jsonl``: the process start, when named modules finish importing, and the start
and end of the driver's and the trial's steps (wrapped after their modules import). Nothing
else changes: each wrapper calls the original.
"""

import importlib.abc
import importlib.machinery
import json
import os
import sys
import time

_DIR = os.environ.get("CORROTUNE_PHASES_DIR")


def _mark(name: str) -> None:
    with open(os.path.join(_DIR, f"{os.getpid()}.jsonl"), "a") as out:
        out.write(json.dumps({"t": time.time(), "pid": os.getpid(), "name": name}) + "\n")


def _timed(owner, attribute: str, name: str, once: bool = False) -> None:
    original = getattr(owner, attribute)
    done = []

    def wrapper(*args, **kwargs):
        if once and done:
            return original(*args, **kwargs)
        done.append(True)
        _mark(f"{name}:start")
        try:
            return original(*args, **kwargs)
        finally:
            _mark(f"{name}:end")

    setattr(owner, attribute, wrapper)


def _runner(module) -> None:
    for attribute in ("run_study", "_prepare_data", "_start_runtime", "_init_ray", "build_tuner", "_fit"):
        _timed(module, attribute, f"driver.{attribute}")


def _loop(module) -> None:
    original_fit = module.fit

    def fit(task):
        _mark("trial.fit:start")
        _timed(task, "load_data", "trial.load_data")
        _timed(task, "build_model", "trial.build_model")
        return original_fit(task)

    module.fit = fit
    _timed(module, "train_one_epoch", "trial.train_one_epoch", once=True)
    _timed(module, "evaluate", "trial.evaluate", once=True)
    _timed(module, "report_with_checkpoint", "trial.first_report", once=True)


def _runtime(module) -> None:
    _timed(module.torch, "save", "trial.checkpoint_save", once=True)
    _timed(module.tune, "report", "trial.tune_report", once=True)  # returns once the driver asks for more


def _json_logger(module) -> None:
    _timed(module.JsonLoggerCallback, "log_trial_result", "driver.first_result", once=True)


_PATCHES = {"orchestrator.runner": _runner, "trainables.loop": _loop, "trainables._runtime": _runtime, "ray.tune.logger.json": _json_logger}
_IMPORTED = ("orchestrator.cli", "trainables", "trainables.classifier", "torch", "ray.tune")


class _Hook(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name not in _PATCHES and name not in _IMPORTED:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        original = spec.loader.exec_module

        def exec_module(module):
            _mark(f"import.{name}:start")
            original(module)
            _mark(f"import.{name}:end")
            if name in _PATCHES:
                _PATCHES[name](module)

        spec.loader.exec_module = exec_module
        return spec


if _DIR:
    _mark("process:start")
    sys.meta_path.insert(0, _Hook())
