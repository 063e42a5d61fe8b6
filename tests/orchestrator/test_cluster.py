"""Checks before a study joins a Ray cluster: shared storage, GPUs there, and a clear refusal to
connect where no Ray head listens (fast: no Ray cluster is started)."""

from __future__ import annotations

import socket
import time

import pytest

from orchestrator import cluster
from orchestrator.cluster import ClusterError, Mount, connect, gpu_problem, mount_of, storage_problem
from orchestrator.spec import StudyError

ROOT_DISK = [Mount("/", "ext4", "/dev/vda1"), Mount("/tmp", "tmpfs", "tmpfs")]


@pytest.fixture
def mounts(monkeypatch):
    """Replaces the mount table; returns the list to extend."""
    table = list(ROOT_DISK)
    monkeypatch.setattr(cluster, "_read_mounts", lambda: table)
    return table


CLOUD = ["s3://bucket/corrotune", "gs://b/x", "gcs://b/x", "abfs://c@a.dfs.core.windows.net/x", "hdfs://nn:8020/x"]


@pytest.mark.parametrize("storage", CLOUD)
def test_cloud_storage_is_shared(storage):
    assert storage_problem(storage, "auto") is None


def test_file_uri_declares_a_shared_path(tmp_path):
    assert storage_problem(f"file://{tmp_path}", "10.0.0.1:6379") is None
    assert "absolute path" in storage_problem("file://results", "auto")


def test_unknown_scheme_is_refused():
    problem = storage_problem("ftp://host/results", "auto")
    assert "ftp://" in problem and "s3://" in problem


def test_anything_goes_without_an_address(tmp_path):
    assert storage_problem(str(tmp_path), None) is None
    assert storage_problem("relative/results", None) is None


def test_a_local_folder_with_an_address_is_refused(tmp_path, mounts):
    problem = storage_problem(str(tmp_path / "results"), "auto")
    assert problem is not None
    assert "every node shares" in problem and "s3://" in problem and "NFS" in problem
    assert f"file://{tmp_path / 'results'}" in problem  # the way to say "I know it is shared"
    assert f"{mount_of(tmp_path).fstype} mounted at" in problem


def test_a_folder_on_a_network_mount_is_shared(tmp_path, mounts):
    mounts.append(Mount(str(tmp_path), "nfs4", "fs-1.efs.eu-west-1.amazonaws.com:/"))
    assert storage_problem(str(tmp_path / "not" / "created" / "yet"), "auto") is None
    mounts.append(Mount(str(tmp_path / "sub"), "fuse.sshfs", "me@host:/data"))
    assert storage_problem(str(tmp_path / "sub" / "x"), "auto") is None


def test_the_innermost_mount_decides(tmp_path, mounts):
    mounts.append(Mount(str(tmp_path), "nfs", "server:/export"))
    mounts.append(Mount(str(tmp_path / "scratch"), "ext4", "/dev/nvme1n1"))
    (tmp_path / "scratch").mkdir()
    assert mount_of(tmp_path / "scratch" / "run").fstype == "ext4"
    assert storage_problem(str(tmp_path / "scratch" / "run"), "auto") is not None
    assert storage_problem(str(tmp_path / "elsewhere"), "auto") is None


def test_mount_table_escapes_are_decoded(tmp_path):
    table = tmp_path / "mounts"
    table.write_text("server:/x /mnt/my\\040share nfs4 rw,relatime 0 0\n/dev/vda1 / ext4 rw 0 0\n")
    assert cluster._read_mounts(str(table)) == [
        Mount("/mnt/my share", "nfs4", "server:/x"), Mount("/", "ext4", "/dev/vda1"),
    ]


def test_no_gpu_request_needs_no_check():
    assert gpu_problem(0, None) is None
    assert gpu_problem(0.0, "auto") is None  # not even a connection


@pytest.mark.parametrize("gpus", [1.5, 2.25])
def test_fractions_above_one_gpu_are_refused(gpus):
    problem = gpu_problem(gpus, None)
    assert "below 1" in problem and "whole GPUs" in problem


def test_gpu_request_on_a_machine_without_gpu(monkeypatch):
    monkeypatch.setattr(cluster, "_local_gpus", lambda: 0)
    problem = gpu_problem(0.5, None)
    assert "no GPU" in problem and "resources.gpu: 0" in problem
    monkeypatch.setattr(cluster, "_local_gpus", lambda: 1)
    assert gpu_problem(0.5, None) is None and gpu_problem(1, None) is None
    assert "only 1 GPU" in gpu_problem(2, None)


def test_gpu_request_on_a_cluster(monkeypatch):
    monkeypatch.setattr(cluster, "_cluster_gpus", lambda address: (0.0, 0.0))
    problem = gpu_problem(1, "10.0.0.1:6379")
    assert "has no GPU now" in problem and "10.0.0.1:6379" in problem
    monkeypatch.setattr(cluster, "_cluster_gpus", lambda address: (0.0, 1.0))  # autoscaler can add GPU nodes
    assert gpu_problem(1, "auto") is None
    monkeypatch.setattr(cluster, "_cluster_gpus", lambda address: (1.0, 1.0))
    assert "on one node" in gpu_problem(2, "auto")


def test_launchable_gpus_from_the_bootstrap_config(monkeypatch, tmp_path):
    (tmp_path / "ray_bootstrap_config.yaml").write_text(
        "available_node_types:\n"
        "  head: {resources: {CPU: 0}}\n"
        "  gpu_spot: {max_workers: 8, resources: {CPU: 4, GPU: 1}}\n"
        "  big_but_off: {max_workers: 0, resources: {GPU: 8}}\n"
    )
    monkeypatch.setattr(cluster.Path, "home", classmethod(lambda cls: tmp_path))
    assert cluster._launchable_gpus() == 1.0


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def no_ray(monkeypatch):
    """connect() returns early when this process already runs Ray (another test's)."""
    import ray

    monkeypatch.setattr(ray, "is_initialized", lambda: False)


def test_connect_where_nothing_listens_fails_fast_and_clearly(no_ray):
    port = _closed_port()
    started = time.monotonic()
    with pytest.raises(ClusterError) as raised:
        connect(f"127.0.0.1:{port}", None)
    assert time.monotonic() - started < 5
    message = str(raised.value)
    assert "nothing answers" in message and f"ray start --head --port {port}" in message
    assert isinstance(raised.value, StudyError)  # the CLI exits with 2


def test_connect_to_a_malformed_address(no_ray):
    with pytest.raises(ClusterError, match="HOST:PORT"):
        connect("not-an-address", None)
