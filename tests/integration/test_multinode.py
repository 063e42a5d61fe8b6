"""Two Ray nodes on loopback: a study's trials land on both, and survive losing one of them.

Each node is a ``ray start --block`` in a session of its own (``start_new_session``): its GCS,
raylet, agents and trial workers share its process group, so the test kills exactly the
processes it started, and checks that none is left. The nodes use token authentication with a
token made for the test (``RAY_AUTH_TOKEN``; ``~/.ray/auth_token`` is neither read nor written),
whatever ``RAY_AUTH_MODE`` the environment sets; the driver gets the token but no
``RAY_AUTH_MODE``, so joining relies on ``orchestrator.cluster.connect`` sending it.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO
from tests.integration.helpers import results

pytestmark = pytest.mark.slow

RAY = str(Path(sys.executable).with_name("ray"))
TOKEN = secrets.token_hex(32)
STUDY = {
    "name": "mn",
    "trainable": "noop",
    "data": {"path": "synthetic:corrosion"},
    "params": {"epochs": 4, "sleep_s": 1.0},
    "search": {"space": "noop", "sampler": "random", "num_samples": 6},
    "scheduler": {"name": "fifo"},
    "objective": {"metric": "score", "mode": "max"},
    "failure": {"max_failures": 3},
    "tracking": {"wandb": {"mode": "disabled"}},
}


def _free_ports(count: int) -> list[int]:
    with ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]


def _process_table() -> dict[int, tuple[int, int, int]]:
    """``pid -> (parent pid, process group, session)`` of every process (from /proc)."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if fields[0] != "Z":  # zombies hold no resources and cannot be killed
            table[int(entry.name)] = (int(fields[1]), int(fields[2]), int(fields[3]))
    return table


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


_WATCHDOG = """
import os, signal, sys, time
parent, group = int(sys.argv[1]), int(sys.argv[2])
while os.getppid() == parent:
    time.sleep(0.5)
try:
    os.killpg(group, signal.SIGKILL)
except ProcessLookupError:
    pass
"""
"""Kills a node's process group once the test process is gone, even SIGKILLed (then no teardown runs)."""


class RayNode:
    """One ``ray start --block`` and every process it spawned (its session and descendants)."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log: Path) -> None:
        self.name, self.log = name, log
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                [RAY, "start", "--block", *args], env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.watchdog = subprocess.Popen(
            [sys.executable, "-c", _WATCHDOG, str(os.getpid()), str(self.process.pid)], start_new_session=True
        )

    def wait_started(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "Ray runtime started" in self.log.read_text(errors="replace") and self.node_id():
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.5)
        raise AssertionError(f"ray node {self.name} did not start:\n{self.log.read_text(errors='replace')[-3000:]}")

    def processes(self) -> set[int]:
        leader, table = self.process.pid, _process_table()
        mine = {pid for pid, (_, group, session) in table.items() if leader in (group, session)}
        frontier = {leader}
        while frontier:  # descendants that left the session
            frontier = {pid for pid, (parent, _, _) in table.items() if parent in frontier and pid not in mine}
            mine |= frontier
        return mine - {os.getpid()}

    def node_id(self) -> str | None:
        for pid in self.processes():
            for arg in _cmdline(pid):
                if arg.startswith("--node_id="):
                    return arg.partition("=")[2]
        return None

    def kill(self) -> None:
        """SIGKILLs every process of the node (a spot instance reclaimed), then reaps the leader."""
        for _ in range(50):
            alive = self.processes()
            if not alive:
                break
            for pid in alive:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.2)
        self.process.wait(timeout=10)
        self.watchdog.kill()
        self.watchdog.wait()
        assert not self.processes(), f"processes of ray node {self.name} survived: {self.processes()}"


@dataclass
class Cluster:
    address: str
    head: RayNode
    worker: RayNode
    root: Path


def _node_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_TOKEN_PATH")}
    env.update({
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": TOKEN,
        # a killed node is declared dead in ~3 s, not ~30 s
        "RAY_health_check_initial_delay_ms": "1000",
        "RAY_health_check_period_ms": "1000",
        "RAY_health_check_timeout_ms": "1000",
        "RAY_health_check_failure_threshold": "3",
    })
    return env


def _node_args(ports: list[int]) -> list[str]:
    """Ports of the per-node agents: the defaults (52365, ...) would collide between the nodes."""
    return [
        "--node-ip-address", "127.0.0.1", "--num-cpus", "1", "--object-store-memory", str(100 * 1024**2),
        "--disable-usage-stats", "--dashboard-agent-listen-port", str(ports[0]),
        "--dashboard-agent-grpc-port", str(ports[1]), "--runtime-env-agent-port", str(ports[2]),
        "--metrics-export-port", str(ports[3]),
    ]


@pytest.fixture(scope="module")
def cluster():
    root = Path(tempfile.mkdtemp(prefix="ctmn-", dir="/tmp"))  # short: Unix socket paths max ~107 chars
    ports = _free_ports(10)
    nodes: list[RayNode] = []
    try:
        head = RayNode("head", [
            "--head", "--port", str(ports[0]), "--temp-dir", str(root / "ray"), "--include-dashboard=false",
            "--dashboard-port", str(ports[1]), *_node_args(ports[2:6]),
        ], _node_env(), root / "head.log")
        nodes.append(head)
        head.wait_started()
        address = f"127.0.0.1:{ports[0]}"
        worker = RayNode("worker", ["--address", address, *_node_args(ports[6:10])], _node_env(), root / "worker.log")
        nodes.append(worker)
        worker.wait_started()
        yield Cluster(address=address, head=head, worker=worker, root=root)
    finally:
        for node in reversed(nodes):
            node.kill()
        shutil.rmtree(root, ignore_errors=True)


def _driver_env() -> dict[str, str]:
    """The token but not the mode: corrotune must switch token auth on for an explicit address."""
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH")}
    env["RAY_AUTH_TOKEN"] = TOKEN
    return env


def _run_command(cluster: Cluster, study: dict, storage: Path) -> list[str]:
    path = cluster.root / f"{study['name']}.yaml"
    path.write_text(yaml.safe_dump(study))
    return [
        sys.executable, "-m", "orchestrator.cli", "run", str(path),
        "--address", cluster.address, "--storage", f"file://{storage}",
    ]


def _trial_dirs(study_dir: Path) -> list[Path]:
    return sorted(p for p in study_dir.glob("noop_*") if (p / "result.json").is_file())


def _leaderboard(study_dir: Path) -> list[dict]:
    return json.loads((study_dir / "leaderboard.json").read_text())["trials"]


def _fail_message(completed, cluster: Cluster) -> str:
    return f"{completed.stderr[-4000:]}\n--- head log:\n{cluster.head.log.read_text(errors='replace')[-2000:]}"


def test_trials_run_on_both_nodes(cluster):
    storage = cluster.root / "results"
    completed = subprocess.run(
        _run_command(cluster, STUDY, storage), cwd=cluster.root, env=_driver_env(),
        capture_output=True, text=True, timeout=180,
    )
    assert completed.returncode == 0, _fail_message(completed, cluster)
    study_dir = storage / "mn"
    trials = _trial_dirs(study_dir)
    assert len(trials) == 6
    assert {r["status"] for r in _leaderboard(study_dir)} == {"TERMINATED"}
    for trial in trials:
        assert [r["epoch"] for r in results(trial)] == [1, 2, 3, 4]
    nodes = {r["node_id"] for trial in trials for r in results(trial)}
    assert nodes == {cluster.head.node_id(), cluster.worker.node_id()}


def _join(cluster: Cluster, env: dict[str, str]) -> subprocess.CompletedProcess:
    code = (
        "import sys, ray; from orchestrator.cluster import connect; from orchestrator.spec import StudyError\n"
        "try:\n    connect(sys.argv[1], None)\nexcept StudyError as error:\n    print(error); sys.exit(2)\n"
        "print('joined', ray.get_runtime_context().get_node_id())"
    )
    return subprocess.run(
        [sys.executable, "-c", code, cluster.address], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )


def test_joining_needs_the_cluster_token(cluster, tmp_path):
    env = {**_driver_env(), "HOME": str(tmp_path)}  # no ~/.ray/auth_token either
    del env["RAY_AUTH_TOKEN"]
    missing = _join(cluster, env)
    assert missing.returncode == 2 and "requires an authentication token and none was found" in missing.stdout
    wrong = _join(cluster, {**env, "RAY_AUTH_TOKEN": secrets.token_hex(32)})
    assert wrong.returncode == 2 and "rejected the authentication token from RAY_AUTH_TOKEN" in wrong.stdout
    right = _join(cluster, {**env, "RAY_AUTH_TOKEN": TOKEN})
    assert right.returncode == 0 and "joined" in right.stdout, right.stdout + right.stderr[-2000:]


def test_validate_refuses_what_the_cluster_cannot_run(cluster):
    path = cluster.root / "mn_validate.yaml"
    path.write_text(yaml.safe_dump({**STUDY, "name": "mn_validate"}))
    validate = [sys.executable, "-m", "orchestrator.cli", "validate", str(path), "--address", cluster.address]
    shared = ["--storage", f"file://{cluster.root / 'results'}"]

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*validate, *args], cwd=cluster.root, env=_driver_env(), capture_output=True, text=True, timeout=60
        )

    gpu = run(*shared, "--set", "resources.gpu=1")
    assert gpu.returncode == 2 and "has no GPU now" in gpu.stderr, gpu.stderr[-2000:]
    local = run("--storage", str(cluster.root / "results"))
    assert local.returncode == 2 and "every node shares" in local.stderr, local.stderr[-2000:]
    fine = run(*shared)
    assert fine.returncode == 0, fine.stderr[-2000:]


# last in the module: it kills the worker node of the module's cluster
def test_a_lost_node_s_trials_finish_on_the_other(cluster):
    head_id, worker_id = cluster.head.node_id(), cluster.worker.node_id()
    storage = cluster.root / "results"
    study = {**STUDY, "name": "mn_lost", "search": {**STUDY["search"], "num_samples": 4}}
    with (cluster.root / "mn_lost.log").open("w+") as log:
        driver = subprocess.Popen(
            _run_command(cluster, study, storage), cwd=cluster.root, env=_driver_env(),
            stdout=log, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        )
        try:
            victim = _wait_for_checkpointed_trial_on(storage / "mn_lost", worker_id, driver)
            cluster.worker.kill()  # the spot instance is gone, with the trial running on it
            returncode = driver.wait(timeout=180)
        finally:
            if driver.poll() is None:
                os.killpg(driver.pid, signal.SIGKILL)
                driver.wait()
        log.seek(0)
        output = log.read()
    assert returncode == 0, output[-4000:]
    study_dir = storage / "mn_lost"
    trials = _trial_dirs(study_dir)
    assert len(trials) == 4
    assert {r["status"] for r in _leaderboard(study_dir)} == {"TERMINATED"}
    for trial in trials:
        assert results(trial)[-1]["epoch"] == 4
    after_loss = results(victim)
    worker_epochs = [r["epoch"] for r in after_loss if r["node_id"] == worker_id]
    head_reports = [r for r in after_loss if r["node_id"] == head_id]
    assert worker_epochs and head_reports, "the victim trial should have run on both nodes"
    # retried on the head from its last checkpoint, not from scratch
    assert head_reports[0]["resumed_from_epoch"] >= 1
    assert head_reports[0]["epoch"] == head_reports[0]["resumed_from_epoch"] + 1


def _wait_for_checkpointed_trial_on(
    study_dir: Path, node_id: str, driver: subprocess.Popen, timeout: float = 120
) -> Path:
    """A trial that reported (and checkpointed) an epoch on ``node_id`` and has more to go."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert driver.poll() is None, "the study ended before a trial ran on the worker node"
        for trial in _trial_dirs(study_dir) if study_dir.is_dir() else []:
            try:
                reports = results(trial)
            except (OSError, ValueError):
                continue  # mid-write
            last = reports[-1] if reports else {}
            if last.get("node_id") == node_id and last["epoch"] < STUDY["params"]["epochs"] - 1:
                return trial
        time.sleep(0.2)
    raise AssertionError(f"no trial reported from node {node_id} within {timeout} s")
