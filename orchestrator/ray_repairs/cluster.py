"""Ray's own cluster helpers that corrotune's pre-flight checks need and Ray does not make public.

Before a study starts, :mod:`orchestrator.cluster` checks that the cluster can be joined and has
the GPUs the study asks for, so a bad ``--address`` or ``resources.gpu`` costs a second, not a
failed run. Public Ray answers these questions only after ``ray.init`` has joined (``ray.nodes()``,
``ray.cluster_resources()``), and ``ray.init`` on a wrong address waits ~40 s and then raises a
message naming none of the fixes. So, without joining:

* :func:`local_gpus`: the GPUs ``ray.init`` would detect on this machine (its accelerator
  manager: NVML for NVIDIA, honouring ``CUDA_VISIBLE_DEVICES``; no torch);
* :func:`canonical_address`: ``auto`` / ``HOST:PORT`` resolved as ``ray.init`` resolves it;
* :func:`probe_gcs`: whether a Ray GCS answers there, with a timeout of our own;
* :func:`has_local_token` / :func:`enable_token_auth`: Ray 2.60 sends this machine's auth token
  only in token mode, which it switches on for ``auto`` but never for an explicit ``HOST:PORT``
  (docs/cluster.md), so joining a token-protected head by address fails with an authentication
  error although the token is here; token mode is switched on as Ray's own
  ``_enable_token_auth`` does;
* :func:`reported_launchable_gpus`: the GPU node groups a KubeRay / autoscaler-v2 cluster
  reports (queued GPU trials make it launch them).

Private Ray names used: ``ray._private.accelerators.get_accelerator_manager_for_resource``
(``get_current_node_num_accelerators``, ``get_current_process_visible_accelerator_ids``),
``ray._private.services.canonicalize_bootstrap_address``, ``ray._private.state.state.get_cluster_config``
(``node_group_configs``: ``max_count``, ``resources``), ``ray._raylet.GcsClient``,
``ray._raylet.AuthenticationTokenLoader`` (``instance``, ``has_token(ignore_auth_mode=)``,
``reset_cache``), ``ray._raylet.Config.initialize``. Ray is imported inside each function only.
"""

from __future__ import annotations

import os
import threading
from typing import Optional

__all__ = ["canonical_address", "enable_token_auth", "has_local_token", "local_gpus", "probe_gcs", "reported_launchable_gpus"]


def local_gpus() -> int:
    """GPUs Ray would find on this machine (``ray start``/``ray.init`` use the same detection)."""
    from ray._private.accelerators import get_accelerator_manager_for_resource

    manager = get_accelerator_manager_for_resource("GPU")
    found = manager.get_current_node_num_accelerators()
    visible = manager.get_current_process_visible_accelerator_ids()
    return min(found, len(visible)) if visible is not None else found


def reported_launchable_gpus() -> float:
    """Most GPUs on one node group the cluster config reports as launchable (0 when none or unknown).

    Needs a joined Ray (``ray.init``); read by KubeRay / autoscaler v2 setups only.
    """
    largest = 0.0
    try:
        from ray._private.state import state

        config = state.get_cluster_config()  # reported by KubeRay / autoscaler v2 setups
        for group in config.node_group_configs if config else []:
            if group.max_count != 0:
                largest = max(largest, float(group.resources.get("GPU", 0)))
    except Exception:  # noqa: BLE001 - an optional hint; a cluster without it is still usable
        pass
    return largest


def canonical_address(address: str) -> Optional[str]:
    """``HOST:PORT`` of the GCS that ``address`` names, looked up as ``ray.init`` does.

    Raises:
        ConnectionError: ``auto`` and no cluster runs on this machine.
        ValueError: not ``auto`` or ``HOST:PORT``.
    """
    from ray._private.services import canonicalize_bootstrap_address

    return canonicalize_bootstrap_address(address)


def probe_gcs(target: str, timeout_s: float) -> Optional[BaseException]:
    """Opens a GCS client to ``target`` (what ray.init does first): None if it answered, else the
    error; a :class:`TimeoutError` after ``timeout_s``."""
    from ray._raylet import GcsClient

    outcome: dict[str, Optional[BaseException]] = {}

    def probe() -> None:
        try:
            GcsClient(address=target)
            outcome["error"] = None
        except BaseException as err:  # noqa: BLE001 - handed to the caller
            outcome["error"] = err

    thread = threading.Thread(target=probe, name="corrotune-gcs-probe", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if "error" not in outcome:
        return TimeoutError(f"no answer from a Ray GCS within {timeout_s:g} s")
    return outcome["error"]


def has_local_token() -> bool:
    """Whether Ray finds an auth token on this machine, whatever ``RAY_AUTH_MODE`` says."""
    from ray._raylet import AuthenticationTokenLoader

    return AuthenticationTokenLoader.instance().has_token(ignore_auth_mode=True)


def enable_token_auth() -> None:
    """Token mode for this process and the Ray it starts (as Ray's own ``_enable_token_auth``)."""
    from ray._raylet import AuthenticationTokenLoader, Config

    os.environ["RAY_AUTH_MODE"] = "token"
    Config.initialize("")  # RayConfig caches the mode: re-read it
    AuthenticationTokenLoader.instance().reset_cache()
