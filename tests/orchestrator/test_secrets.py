"""No secret reaches a log, a config, a checkpoint, a W&B config or a runtime_env.

With ``WANDB_API_KEY`` set, a study is run and everything it wrote is grepped for the key: the
study folder (results, checkpoints, tuner.pkl, the offline W&B runs) and Ray's session folder
(``RAY_TMPDIR``: the logs of every Ray process, runtime_env_agent.log included).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

from orchestrator.ray_repairs.wandb_actor import ContinuousWandbLoggingActor
from orchestrator.ray_repairs.wandb_callback import TrialWandbLoggerCallback
from tests.integration.helpers import cli

pytestmark = pytest.mark.slow

FAKE_KEY = "ct-fake-wandb-key-5e3c1a9b7d2f4e6a8c0b"


def _files_holding(secret: str, *roots: Path) -> list[str]:
    """Every file under ``roots`` whose bytes contain ``secret``."""
    hits = []
    for root in roots:
        for path in root.rglob("*"):
            try:
                if path.is_file() and not path.is_symlink() and secret.encode() in path.read_bytes():
                    hits.append(str(path))
            except OSError:
                continue  # a socket or a file Ray removed meanwhile
    return hits


def test_a_study_run_with_an_api_key_set_writes_it_nowhere():
    root = Path(tempfile.mkdtemp(prefix="ct-key-"))  # short: Ray's socket paths are length-limited
    try:
        study = {
            "name": "keyed", "trainable": "noop", "data": {"path": "synthetic:corrosion"},
            "params": {"epochs": 2}, "search": {"space": "noop", "num_samples": 1},
            "objective": {"metric": "score", "mode": "max"}, "scheduler": {"name": "fifo"},
            "tracking": {"wandb": {"mode": "offline"}}, "ray": {"num_cpus": 1},
        }
        (root / "keyed.yaml").write_text(yaml.safe_dump(study))
        env = {**os.environ, "WANDB_API_KEY": FAKE_KEY, "RAY_TMPDIR": str(root / "ray"), "WANDB_MODE": "offline"}
        env.update({k: str(root / k.lower()) for k in ("WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR")})
        (root / "ray").mkdir()
        done = subprocess.run(cli("run", "keyed.yaml", "--storage", "results"), cwd=root, env=env,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        study_dir = root / "results" / "keyed"
        assert list(study_dir.glob("noop_*/wandb/offline-run-*/run-*.wandb")), "no W&B run was written"
        assert list(study_dir.glob("noop_*/checkpoint_*")) and list((root / "ray").glob("*/session_*/logs/*"))  # $RAY_TMPDIR/ray/
        assert _files_holding(FAKE_KEY, root) == []
        assert FAKE_KEY not in done.stdout + done.stderr
    finally:
        shutil.rmtree(root, ignore_errors=True)


class _KeyProbe(ContinuousWandbLoggingActor):
    """A logging actor that reports what it was given instead of starting a W&B run."""

    def run(self):
        import ray

        return os.environ.get("WANDB_API_KEY"), ray.get_runtime_context().runtime_env


class _ProbeCallback(TrialWandbLoggerCallback):
    _logger_actor_cls = _KeyProbe


class _Trial:
    def __init__(self, path: Path):
        self.local_path = str(path)


@pytest.mark.parametrize(("mode", "delivered"), [("online", FAKE_KEY), ("offline", None)])
def test_an_online_run_gets_the_key_without_a_runtime_env_and_an_offline_one_never(tmp_path, monkeypatch, mode, delivered):
    import ray
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        monkeypatch.setenv("WANDB_API_KEY", FAKE_KEY)  # after ray.init: the raylet does not inherit it
        callback = _ProbeCallback(project="p", mode=mode)
        trial = _Trial(tmp_path)
        callback._start_logging_actor(trial, [], id="t1", dir=str(tmp_path))
        key, runtime_env = ray.get(callback._trial_logging_futures[trial], timeout=120)
        assert key == delivered
        assert FAKE_KEY not in repr(dict(runtime_env))
        assert FAKE_KEY.encode() not in cloudpickle.dumps(callback)  # tuner.pkl holds the callbacks
        session = Path(ray._private.worker._global_node.get_session_dir_path())
        assert _files_holding(FAKE_KEY, session) == []
        ray.kill(callback._trial_logging_actors[trial])
        callback._trial_queues[trial].shutdown()
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
        if started:
            ray.shutdown()
