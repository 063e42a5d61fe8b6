"""Joining a Ray cluster, and the checks a study needs before it runs on one.

``corrotune run STUDY --address auto|HOST:PORT`` runs the driver on a node of an existing Ray
cluster (its head, usually: ``ray attach`` / ``ray exec``); trials then run on every node, so
their results and checkpoints must go to storage that every node reaches. Both checks return
``None`` when all is well, else one sentence that says what to change; nothing here imports
torch, and Ray only inside the functions that need it.

Token authentication (Ray 2.60, see docs/cluster.md): Ray sends this machine's token only in
token mode, which it switches on for ``auto`` but never for an explicit ``HOST:PORT``;
:func:`connect` switches it on when the cluster asks for a token and one is available here.

Example:
    >>> storage_problem("s3://bucket/corrotune", address="auto") is None
    True
    >>> gpu_problem(1.5, address=None)
    'resources.gpu: 1.5 GPUs per trial: ...'
    >>> connect("127.0.0.1:6379", num_cpus=None)  # or connect(None, num_cpus=2): a local Ray
"""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from orchestrator.quiet import ray_init_options, ray_starting
from orchestrator.ray_repairs import cluster as ray_cluster
from orchestrator.spec import StudyError

__all__ = [
    "NETWORK_FILESYSTEMS", "REMOTE_SCHEMES", "ClusterError", "Mount",
    "check_tested_ray", "connect", "gpu_problem", "mount_of", "storage_problem", "target_problems",
]

REMOTE_SCHEMES = frozenset({"s3", "gs", "gcs", "abfs", "abfss", "hdfs", "viewfs"})
"""URI schemes of storage every node reaches (those ``pyarrow.fs.FileSystem.from_uri`` opens)."""

NETWORK_FILESYSTEMS = frozenset({
    "nfs", "nfs4", "cifs", "smb3", "smbfs", "ncpfs", "afs", "9p",  # network file systems
    "lustre", "gpfs", "beegfs", "glusterfs", "ceph", "cephfs", "ocfs2", "gfs2",  # cluster / parallel
    "panfs", "orangefs", "pvfs2", "wekafs", "quobyte", "moosefs", "lizardfs",
    # FUSE clients of the above and of object stores ("fuse.<subtype>" in /proc/mounts)
    "fuse.sshfs", "fuse.glusterfs", "fuse.ceph", "fuse.ceph-fuse", "fuse.cephfs", "fuse.s3fs", "fuse.gcsfuse",
    "fuse.goofys", "fuse.juicefs", "fuse.rclone", "fuse.mountpoint-s3", "fuse.blobfuse", "fuse.blobfuse2",
    "fuse.beegfs", "fuse.lizardfs", "fuse.mfs", "fuse.seaweedfs", "fuse.alluxio-fuse", "fuse.quobyte",
})
"""File system types (``/proc/mounts``) whose folders other machines can mount too.

``9p`` is a host folder shared into a VM or WSL: shared only if every node mounts the same host.
"""

_PROBE_TIMEOUT_S = 10.0
_CONNECT_TIMEOUT_S = 5.0


class ClusterError(StudyError):
    """A Ray cluster that cannot be joined; a :class:`StudyError`, so the CLI exits with 2."""

    def __init__(self, source: str, problems: list[str]) -> None:
        super().__init__(source, problems)
        self.args = (f"{source}: cannot join the Ray cluster\n" + "\n".join(f"  - {p}" for p in problems),)


@dataclass(frozen=True)
class Mount:
    """One line of ``/proc/mounts``."""

    point: str
    fstype: str
    device: str = ""


def _read_mounts(table: str = "/proc/mounts") -> list[Mount]:
    """The mount table (empty where there is none, as on macOS)."""
    try:
        lines = Path(table).read_text().splitlines()
    except OSError:
        return []
    mounts = []
    for line in lines:
        fields = line.split()
        if len(fields) >= 3:
            mounts.append(Mount(point=_unescape(fields[1]), fstype=fields[2], device=_unescape(fields[0])))
    return mounts


def _unescape(field: str) -> str:
    """``/proc/mounts`` writes spaces, tabs and backslashes as octal escapes (``\\040``)."""
    return re.sub(r"\\([0-7]{3})", lambda match: chr(int(match.group(1), 8)), field)


def mount_of(path: str | os.PathLike) -> Optional[Mount]:
    """The mount holding ``path``, or its nearest existing ancestor (None without a mount table)."""
    path = Path(path).expanduser().absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    resolved = str(path.resolve())
    best: Optional[Mount] = None
    for mount in _read_mounts():  # the longest mount point wins; a later mount on the same point hides earlier ones
        point = mount.point.rstrip("/") or "/"
        inside = resolved == point or resolved.startswith(point if point == "/" else point + "/")
        if inside and (best is None or len(point) >= len(best.point.rstrip("/") or "/")):
            best = mount
    return best


def _scheme(storage: str) -> Optional[str]:
    match = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://", storage)
    return match.group(1).lower() if match else None


def storage_problem(storage: str | os.PathLike, address: str | None) -> str | None:
    """Why ``storage`` cannot hold a study whose trials run on the cluster at ``address``.

    Without an address (Ray started on this machine) any storage goes. With one, trials on other
    nodes write their checkpoints and results to the storage themselves, so it must be shared:
    a cloud URI (``s3://``, ``gs://``, ``abfs://``, ``hdfs://``), a path on a network file system
    (:data:`NETWORK_FILESYSTEMS`), or ``file:///abs/path`` — the user's statement that the path
    is mounted at the same place on every node.

    Args:
        storage: The ``--storage`` value: a path or a URI.
        address: The ``--address`` value, or None.

    Returns:
        None if fine, else the problem and what to use instead.
    """
    if address is None:
        return None
    storage = str(storage)
    scheme = _scheme(storage)
    if scheme == "file":
        path = storage[len("file://"):]
        if not path.startswith("/"):
            return f"--storage {storage}: a file:// URI needs an absolute path, as in file:///mnt/shared/corrotune"
        return None
    if scheme is not None:
        if scheme in REMOTE_SCHEMES:
            return None
        return (
            f"--storage {storage}: Ray cannot write to {scheme}:// storage; use "
            f"{', '.join(f'{s}://' for s in sorted(REMOTE_SCHEMES))}, a network mount, or file:///shared/path"
        )
    path = Path(storage).expanduser().absolute()
    mount = mount_of(path)
    if mount is not None and mount.fstype in NETWORK_FILESYSTEMS:
        return None
    where = f" ({mount.fstype} mounted at {mount.point})" if mount else ""
    return (
        f"--storage {storage} is a folder on this machine's own disk{where}, but with --address trials "
        "also run on other nodes, which would write their checkpoints and results to their own disks "
        "(a retried trial could not find its checkpoint, and the leaderboard would miss trials). "
        "Use storage that every node shares: s3://bucket/corrotune, gs://bucket/corrotune, a folder on an "
        f"NFS mount, or file://{path} if you know that {path} is the same shared folder on every node"
    )


def gpu_problem(gpus_per_trial: float, address: str | None) -> str | None:
    """Why trials asking for ``gpus_per_trial`` GPUs would never start.

    Without an address, looks at this machine with Ray's own accelerator detection (NVML for
    NVIDIA; honours ``CUDA_VISIBLE_DEVICES``; no torch). With one, joins the cluster
    (:func:`connect`; left connected if Ray was already up) and reads its nodes' GPUs; a cluster
    with no GPU now passes if its autoscaler can launch GPU nodes (``ray up``'s bootstrap config
    on the head, or the cluster config that KubeRay/Anyscale report), since queued trials make it
    launch them.

    Args:
        gpus_per_trial: The study's ``resources.gpu``.
        address: The ``--address`` value, or None.

    Returns:
        None if fine, else the problem and what to change.

    Raises:
        ClusterError: ``address`` cannot be joined (see :func:`connect`).
    """
    if gpus_per_trial <= 0:
        return None
    need = f"resources.gpu: {gpus_per_trial:g} GPU{'s' if gpus_per_trial != 1 else ''} per trial"
    if gpus_per_trial > 1 and not float(gpus_per_trial).is_integer():
        return (
            f"{need}: Ray shares a GPU between trials only in fractions below 1 (0.5 packs two trials "
            f"on one GPU); above 1, ask for whole GPUs ({int(gpus_per_trial)} or {int(gpus_per_trial) + 1})"
        )
    if address is None:
        found = _local_gpus()
        if found >= gpus_per_trial:
            return None
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        mask = f" (CUDA_VISIBLE_DEVICES={visible!r})" if visible is not None else ""
        have = "no GPU" if found == 0 else f"only {found} GPU{'s' if found != 1 else ''}"
        return (
            f"{need}, but this machine has {have} that Ray can use{mask}; set resources.gpu: 0 to train "
            "on the CPU, or run on a cluster with GPUs (--address)"
        )
    largest_now, largest_launchable = _cluster_gpus(address)
    if max(largest_now, largest_launchable) >= gpus_per_trial:
        return None
    if largest_now == 0 and largest_launchable == 0:
        return (
            f"{need}, but the Ray cluster at {address} has no GPU now and its autoscaler lists no GPU "
            "node type; set resources.gpu: 0, or add GPU workers (see ray.worker.gpu_spot in cluster.yaml)"
        )
    return (
        f"{need}, but no node of the Ray cluster at {address} has that many (the largest has "
        f"{max(largest_now, largest_launchable):g}); a trial's GPUs must all be on one node"
    )


def _local_gpus() -> int:
    """GPUs Ray would find on this machine (``ray start``/``ray.init`` use the same detection)."""
    return ray_cluster.local_gpus()


def _cluster_gpus(address: str) -> tuple[float, float]:
    """``(most GPUs on one alive node, most GPUs on one node type the autoscaler can launch)``."""
    import ray

    joined_here = not ray.is_initialized()
    if joined_here:
        connect(address, None)
    try:
        alive = [node for node in ray.nodes() if node.get("Alive")]
        largest_now = max((node.get("Resources", {}).get("GPU", 0.0) for node in alive), default=0.0)
        return largest_now, _launchable_gpus()
    finally:
        if joined_here:
            ray.shutdown()


def _launchable_gpus() -> float:
    """Most GPUs on one node type the cluster's autoscaler may launch (0 when unknown)."""
    largest = ray_cluster.reported_launchable_gpus()  # KubeRay / autoscaler v2 setups report it
    bootstrap = Path.home() / "ray_bootstrap_config.yaml"  # written by `ray up` on the head
    if bootstrap.is_file():
        import yaml

        try:
            node_types = (yaml.safe_load(bootstrap.read_text()) or {}).get("available_node_types") or {}
        except yaml.YAMLError:
            node_types = {}
        for node_type in node_types.values():
            if (node_type or {}).get("max_workers", 1) != 0:
                largest = max(largest, float(((node_type or {}).get("resources") or {}).get("GPU", 0)))
    return largest


def connect(address: str | None, num_cpus: int | None = None) -> None:
    """Starts Ray on this machine, or joins the cluster at ``address``; no-op if Ray is up.

    Args:
        address: None for a local Ray (``RAY_ADDRESS`` is ignored: ``--address`` is the way to
            join); ``auto`` for the cluster this machine belongs to (``RAY_ADDRESS``, else the
            latest one started here); ``HOST:PORT`` for the GCS of a head (``ray start --head
            --port``, 6379 by default). The driver must run on a node of that cluster.
        num_cpus: CPUs of a local Ray (None: all); ignored when joining a cluster.

    Raises:
        ClusterError: nothing listens at ``address``, it is not a Ray head, or it refused this
            machine's token; each with what to do.
    """
    import ray

    if ray.is_initialized():
        return
    # Ray's logs and worker output reach the console with --verbose only (orchestrator.quiet)
    console = ray_init_options()
    if address is None:
        with ray_starting():
            ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, **console)
        return
    target = _resolve(address)
    _check_listening(address, target)
    _check_token(address, target)
    try:
        with ray_starting():
            ray.init(address=target, **console)
    except (ConnectionError, RuntimeError) as err:
        raise ClusterError(f"--address {address}", [
            f"could not join the Ray cluster at {target}: {str(err).splitlines()[0]}",
            "run corrotune on a node of that cluster (its head: `ray attach cluster.yaml`, or "
            "`ray exec cluster.yaml 'corrotune run ...'`); Ray cannot drive a cluster from outside it",
        ]) from None


def _resolve(address: str) -> str:
    """``HOST:PORT`` of the GCS that ``address`` names (``auto`` looked up as ``ray.init`` does)."""
    try:
        target = ray_cluster.canonical_address(address)
    except ConnectionError:
        raise ClusterError(f"--address {address}", [
            "no running Ray cluster was found on this machine; start one (`ray start --head`, or "
            "`ray up cluster.yaml` and run corrotune on its head), or pass the head's HOST:PORT"
        ]) from None
    except ValueError:
        raise ClusterError(f"--address {address}", [
            "expected auto or HOST:PORT of a Ray head (the --port of `ray start --head`, 6379 by default)"
        ]) from None
    if target is None:
        raise ClusterError(f"--address {address}", ["expected auto or HOST:PORT of a Ray head"])
    return target


def _check_listening(address: str, target: str) -> None:
    host, _, port = target.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=_CONNECT_TIMEOUT_S):
            return
    except OSError as err:
        reason = "timed out" if isinstance(err, socket.timeout) else (err.strerror or str(err))
    raise ClusterError(f"--address {address}", [
        f"nothing answers at {target} ({reason}): is the Ray head running there? "
        f"Start it with `ray start --head --port {port}` (check with `ray status --address {target}`), "
        "or pass the address `ray start --head` printed"
    ])


def _probe_gcs(target: str) -> Optional[BaseException]:
    """Opens a GCS client to ``target`` (what ray.init does first): None if it answered, else the
    error; a :class:`TimeoutError` after :data:`_PROBE_TIMEOUT_S` (Ray itself waits ~40 s)."""
    return ray_cluster.probe_gcs(target, _PROBE_TIMEOUT_S)


def _check_token(address: str, target: str) -> None:
    """Sends this machine's token if, and only if, the cluster asks for one; fails clearly if
    it has none or the wrong one."""
    from ray.exceptions import AuthenticationError

    error = _probe_gcs(target)
    if isinstance(error, TimeoutError):
        raise ClusterError(f"--address {address}", [
            f"{target} accepts connections but is not answering as a Ray head ({error}); pass the GCS "
            "port of the head (`ray start --head --port`, 6379 by default), not the dashboard's 8265"
        ])
    if not isinstance(error, AuthenticationError):
        return  # answered, or failed in a way ray.init reports itself
    mode = os.environ.get("RAY_AUTH_MODE")
    source = _token_source()
    if mode is None and ray_cluster.has_local_token():
        ray_cluster.enable_token_auth()
        if not isinstance(_probe_gcs(target), AuthenticationError):
            return
    copy_hint = (
        "copy the head's token (`ray get-auth-token` on the head prints it) into ~/.ray/auth_token here, "
        "or set RAY_AUTH_TOKEN (or RAY_AUTH_TOKEN_PATH), with RAY_AUTH_MODE=token"
    )
    if mode is not None and mode.lower() != "token":
        problem = f"the Ray cluster at {target} requires an authentication token, but RAY_AUTH_MODE={mode} here"
    elif source is None:
        problem = f"the Ray cluster at {target} requires an authentication token and none was found here"
    else:
        problem = f"the Ray cluster at {target} rejected the authentication token from {source}"
    raise ClusterError(f"--address {address}", [f"{problem}; {copy_hint}"])


def _token_source() -> Optional[str]:
    """Where Ray reads this machine's token from, for messages (Ray's loader decides)."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return "RAY_AUTH_TOKEN"
    if os.environ.get("RAY_AUTH_TOKEN_PATH"):
        return f"RAY_AUTH_TOKEN_PATH ({os.environ['RAY_AUTH_TOKEN_PATH']})"
    default = Path.home() / ".ray" / "auth_token"
    return str(default) if default.is_file() else None


def check_tested_ray(console: Any) -> None:
    """Refuses a Ray outside the range ``orchestrator.ray_repairs`` was tested with, unless forced.

    Args:
        console: A ``rich`` console for the warning.

    Raises:
        StudyError: naming the installed and tested versions, and ``CORROTUNE_ALLOW_UNTESTED_RAY=1``
            (with it, the warning is printed and the study runs).
    """
    from orchestrator.ray_repairs.version import UntestedRayError, check_ray_version

    try:
        warning = check_ray_version()
    except UntestedRayError as err:
        raise StudyError("ray", [str(err)], "untested version") from None
    if warning:
        console.print(warning, style="yellow", markup=False, highlight=False, soft_wrap=True)


def target_problems(study: Any, storage: str, address: str | None) -> list[str]:
    """Why ``study`` cannot run with ``storage`` on the Ray at ``address`` (local Ray: None)."""
    return [p for p in (storage_problem(storage, address), gpu_problem(study.resources.gpu, address)) if p]
