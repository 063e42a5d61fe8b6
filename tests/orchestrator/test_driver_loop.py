"""The driver's loop never waits on W&B: queue puts and the artifact wait run in the background, in order."""

from __future__ import annotations

import pickle
import threading

import pytest
from ray.air.integrations.wandb import _QueueItem

from orchestrator._background import Background
from orchestrator.ray_repairs.wandb_actor import IMAGES
from orchestrator._wandb_artifacts import ARTIFACT_COUNT_KEY
from orchestrator.ray_repairs.wandb_callback import TrialWandbLoggerCallback
from tests.ray_session import local_ray


class GatedQueue:
    """A Ray queue stand-in whose ``put`` blocks until the gate opens (as a queue actor still starting)."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.items: list[tuple] = []

    def put(self, item: tuple) -> None:
        assert self.gate.wait(30), "the gate never opened"
        self.items.append(item)


def test_lane_runs_work_in_order_and_after_runs_its_follow_up_once_the_wait_ends():
    background, seen = Background("test"), []
    release = threading.Event()
    background.submit(lambda: seen.append(1))
    background.after(lambda: release.wait(30) and "waited", lambda result: seen.append(result))
    background.submit(lambda: seen.append(2))
    lane_passed = threading.Event()
    background.submit(lane_passed.set)
    assert lane_passed.wait(30)  # the wait holds only its follow-up, not the lane
    assert seen == [1, 2] and background.pending() >= 1
    release.set()
    assert background.drain(timeout_s=30)
    assert seen == [1, 2, "waited"] and background.pending() == 0


def test_a_failing_item_is_logged_and_the_ones_after_it_still_run(caplog):
    background, seen = Background("test"), []
    background.submit(lambda: 1 / 0)
    background.after(lambda: 1 / 0, lambda result: seen.append(result))
    background.submit(lambda: seen.append("after"))
    assert background.drain(timeout_s=30)
    assert "after" in seen and None in seen  # a failed wait still hands over (nothing gathered)
    assert "background work failed" in caplog.text


class FakeTrial:
    """What the callback reads of a Ray ``Trial`` (hashable, as Ray's is)."""

    def __init__(self, last_result: dict) -> None:
        self.trial_id, self.last_result, self.config = "t1", last_result, {}
        self.path = self.local_path = "/nonexistent"


def _trial(last_result: dict) -> FakeTrial:
    return FakeTrial(last_result)


def _callback_with(trial, queue) -> TrialWandbLoggerCallback:
    callback = TrialWandbLoggerCallback(project="p", mode="offline")
    callback._trial_logging_actors = {trial: object()}
    callback._trial_queues = {trial: queue}
    callback._cleanup_logging_actors = lambda *a, **k: None  # no Ray here
    return callback


def test_results_and_the_end_reach_the_queue_in_order_while_the_hooks_return_at_once():
    queue, trial = GatedQueue(), _trial({"training_iteration": 2})
    callback = _callback_with(trial, queue)
    callback.log_trial_result(1, trial, {"training_iteration": 1, "score": 0.1})
    callback.log_trial_result(2, trial, {"training_iteration": 2, "score": 0.2})
    callback.log_trial_end(trial)  # all three returned with the queue still blocked
    assert queue.items == [] and callback._background.pending() > 0
    queue.gate.set()
    assert callback._background.drain(timeout_s=30)
    kinds = [kind for kind, _ in queue.items]
    assert kinds == [_QueueItem.RESULT, _QueueItem.RESULT, _QueueItem.END]
    assert [item["training_iteration"] for kind, item in queue.items if kind == _QueueItem.RESULT] == [1, 2]
    assert queue.items[-1][1] == {"failed": False, "last_step": 2}
    callback._trial_logging_actors = {}


def test_the_artifact_wait_runs_off_the_loop_and_images_come_before_the_end(monkeypatch):
    import orchestrator.ray_repairs.wandb_callback as module

    arrived = threading.Event()
    monkeypatch.setattr(module, "artifact_images", lambda trial, wait_s: arrived.wait(30) and {"artifacts/plot": [[[0, 0, 0]]]})
    queue, trial = GatedQueue(), _trial({"training_iteration": 3, ARTIFACT_COUNT_KEY: 1})
    queue.gate.set()
    callback = _callback_with(trial, queue)
    callback.log_trial_end(trial, failed=True)  # returns while the artifacts are still on their way
    assert "t1" in callback._ended and queue.items == []
    arrived.set()
    assert callback._background.drain(timeout_s=30)
    assert [kind for kind, _ in queue.items] == [IMAGES, _QueueItem.END]
    assert queue.items[0][1]["step"] == 3 and "artifacts/plot" in queue.items[0][1]["images"]
    assert queue.items[1][1] == {"failed": True, "last_step": 3}
    del callback._cleanup_logging_actors  # the stand-in above
    assert pickle.loads(pickle.dumps(callback))._background is None  # no thread in tuner.pkl
    callback._trial_logging_actors = {}


@pytest.fixture(scope="module")
def ray_session():
    with local_ray(__name__, num_cpus=1):
        yield


def test_every_trials_queue_shares_one_actor_class_and_delivers_in_order(ray_session):
    """Ray's Queue makes (and exports, disassembling its code) a new actor class per queue, per trial start."""
    from orchestrator.ray_repairs.wandb_callback import _OneClassQueue

    first = _OneClassQueue(actor_options={"num_cpus": 0})
    actor_class = _OneClassQueue._actor_class
    second = _OneClassQueue(maxsize=2, actor_options={"num_cpus": 0})
    assert actor_class is not None and _OneClassQueue._actor_class is actor_class and second.maxsize == 2
    for item in ("a", "b", "c"):
        first.put(item)
    second.put("x")
    assert [first.get(timeout=30) for _ in range(3)] == ["a", "b", "c"] and second.get(timeout=30) == "x"
    for queue in (first, second):
        queue.shutdown()
