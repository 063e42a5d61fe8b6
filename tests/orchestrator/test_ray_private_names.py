"""Every private Ray name ``orchestrator/ray_repairs/`` relies on still exists with the shape it uses.

A Ray upgrade that renames or reshapes one fails here, naming the repair module to revisit
(docs/ray_repairs.md says what each repairs), instead of breaking a resume silently. Nothing here
starts Ray.
"""

from __future__ import annotations

import enum
import importlib
import inspect
import json

import pytest

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _params(func) -> list[str]:
    return list(inspect.signature(func).parameters)


# (repair module, "module:qualified.name", the parameters it is called with, or None for a non-callable)
NAMES = [
    ("checkpoints", "ray.tune.execution.experiment_state:_find_newest_experiment_checkpoint", ["experiment_path", "fs"]),
    ("checkpoints", "ray.tune.trainable.metadata:_TrainingRunMetadata.from_json_state", ["json_state"]),
    ("checkpoints", "ray.tune.trainable.metadata:_TrainingRunMetadata.invalidate_cache", ["self"]),
    ("wandb_actor", "ray.air.integrations.wandb:_clean_log", ["obj", "video_kwargs", "image_kwargs"]),
    ("wandb_actor", "ray.air.integrations.wandb:_run_wandb_process_run_info_hook", ["run"]),
    ("wandb_actor", "ray.air.integrations.wandb:_WandbLoggingActor.__init__",
     ["self", "logdir", "queue", "exclude", "to_config", "args", "kwargs"]),
    ("wandb_actor", "ray.air.integrations.wandb:_WandbLoggingActor.run", ["self"]),
    ("wandb_actor", "ray.air.integrations.wandb:_WandbLoggingActor._handle_result", ["self", "result"]),
    ("wandb_actor", "ray.air.integrations.wandb:_WandbLoggingActor._handle_checkpoint", ["self", "checkpoint_path"]),
    ("wandb_callback", "ray.air.util.node:_force_on_current_node", ["remote_func_or_actor_class"]),
    ("wandb_callback", "ray.air.integrations.wandb:WandbLoggerCallback._start_logging_actor",
     ["self", "trial", "exclude_results"]),
    ("wandb_callback", "ray.air.integrations.wandb:WandbLoggerCallback._cleanup_logging_actor", ["self", "trial"]),
    ("wandb_callback", "ray.air.integrations.wandb:WandbLoggerCallback._cleanup_logging_actors",
     ["self", "timeout", "kill_on_timeout"]),
    ("cluster", "ray._private.accelerators:get_accelerator_manager_for_resource", ["resource_name"]),
    ("cluster", "ray._private.accelerators:AcceleratorManager.get_current_node_num_accelerators", []),
    ("cluster", "ray._private.accelerators:AcceleratorManager.get_current_process_visible_accelerator_ids", []),
    ("cluster", "ray._private.services:canonicalize_bootstrap_address", ["addr", "temp_dir"]),
    ("cluster", "ray._private.state:state.get_cluster_config", []),
    ("cluster", "ray._raylet:GcsClient", None),
    ("cluster", "ray._raylet:AuthenticationTokenLoader.instance", None),
    ("cluster", "ray._raylet:AuthenticationTokenLoader.has_token", None),
    ("cluster", "ray._raylet:AuthenticationTokenLoader.reset_cache", None),
    ("cluster", "ray._raylet:Config.initialize", None),
]


def _resolve(target: str):
    module, _, qualified = target.partition(":")
    obj = importlib.import_module(module)
    for part in qualified.split("."):
        obj = getattr(obj, part)
    return obj


@pytest.mark.parametrize("repair, target, params", NAMES, ids=[t for _, t, _ in NAMES])
def test_private_name_has_the_shape_we_use(repair, target, params):
    try:
        obj = _resolve(target)
    except (ImportError, AttributeError) as err:
        pytest.fail(f"Ray no longer has {target} ({err}): revisit orchestrator/ray_repairs/{repair}.py")
    if params is None:
        assert callable(obj), f"{target} is no longer callable: revisit orchestrator/ray_repairs/{repair}.py"
        return
    assert _params(obj)[: len(params)] == params, (
        f"{target} now takes {_params(obj)}, we call it with {params}: revisit orchestrator/ray_repairs/{repair}.py")


def test_gpu_manager():  # cluster.local_gpus asks it
    from ray._private.accelerators import AcceleratorManager, get_accelerator_manager_for_resource

    assert issubclass(get_accelerator_manager_for_resource("GPU"), AcceleratorManager), \
        "revisit orchestrator/ray_repairs/cluster.py"


def test_wandb_queue_items():  # wandb_actor / wandb_callback put and read these
    from ray.air.integrations.wandb import _QueueItem

    assert issubclass(_QueueItem, enum.Enum)
    assert {"END", "RESULT", "CHECKPOINT"} <= set(_QueueItem.__members__), "revisit orchestrator/ray_repairs/wandb_actor.py"


def test_wandb_callback_state():  # wandb_callback reads and resets these
    from ray.air.integrations.wandb import WandbLoggerCallback, _WandbLoggingActor

    assert WandbLoggerCallback._logger_actor_cls is _WandbLoggingActor
    callback = WandbLoggerCallback(project="p", mode="offline")
    for name in ("_remote_logger_class", "_trial_logging_actors", "_trial_logging_futures",
                 "_logging_future_to_trial", "_trial_queues", "_exclude_results"):
        assert hasattr(callback, name), f"WandbLoggerCallback.{name} is gone: revisit orchestrator/ray_repairs/wandb_callback.py"
    assert isinstance(callback._trial_queues, dict) and isinstance(callback._trial_logging_actors, dict)


def test_checkpoint_manager_state():  # checkpoints.py switches pruning off and forgets deleted checkpoints
    from ray.train import CheckpointConfig
    from ray.train._internal.checkpoint_manager import _CheckpointManager
    from ray.tune.trainable.metadata import _TrainingRunMetadata

    manager = _CheckpointManager(CheckpointConfig(num_to_keep=2))
    assert manager._checkpoint_config is manager.checkpoint_config, "revisit orchestrator/ray_repairs/checkpoints.py"
    assert manager._checkpoint_results == [], "revisit orchestrator/ray_repairs/checkpoints.py"
    assert manager.latest_checkpoint_result is None and list(manager.best_checkpoint_results) == []
    metadata = _TrainingRunMetadata()
    metadata.checkpoint_manager = manager
    restored = _TrainingRunMetadata.from_json_state(metadata.get_json_state())
    assert restored.checkpoint_manager.checkpoint_config.num_to_keep == 2


def test_search_generator_state():  # search_state.py resets these after a restore
    from ray.tune.search import ConcurrencyLimiter, SearchGenerator
    from ray.tune.search.basic_variant import BasicVariantGenerator  # noqa: F401 - Ray's own searchers load
    from ray.tune.search.searcher import Searcher

    limiter = ConcurrencyLimiter(Searcher(metric="m", mode="max"), max_concurrent=2)
    generator = SearchGenerator(limiter)
    assert generator._counter == 0 and generator._finished is False, "revisit orchestrator/ray_repairs/search_state.py"
    assert limiter.live_trials == set() and limiter.num_unfinished_live_trials == 0, \
        "revisit orchestrator/ray_repairs/search_state.py"
    assert "restore_from_dir" in vars(SearchGenerator)


def test_trial_json_state_keys():  # experiment_state.py reads Ray's snapshot without Ray
    from ray.tune.experiment import Trial

    from orchestrator.ray_repairs.experiment_state import UNRESOLVED_CONFIG_KEY

    trial = Trial("noop", config={"lr": 0.1}, stub=True, trial_id="abc_00000", experiment_tag="0_lr=0.1")
    state = json.loads(trial.get_json_state()[0])
    assert state[UNRESOLVED_CONFIG_KEY] == {"lr": 0.1}, "revisit orchestrator/ray_repairs/experiment_state.py"
    assert {"trial_id", "status", "relative_logdir", "experiment_tag", "config"} <= set(state)
