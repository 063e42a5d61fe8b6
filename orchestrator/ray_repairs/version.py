"""The Ray versions the repairs in this package were tested with, checked when a study starts.

Every module here leans on Ray internals that Ray changes without notice between minor versions
(private names, the layout of its experiment-state files, the order of its snapshot writes); a
repair that silently stops matching Ray loses results on the next crash instead of failing.
``tests/orchestrator/test_ray_private_names.py`` checks the names against the installed Ray; this
module keeps a user from running on a Ray those tests never saw.

:data:`TESTED_RAY` is ``>=2.60,<2.61``: the test suite runs on ray 2.60.0 (``constraints.txt``),
and Ray's patch releases (2.60.x) only carry fixes, while every minor release so far has moved
some of the internals used here (``ray.train._internal`` to ``ray.train.v2``, the W&B logging
actor's queue protocol, the auth-token API new in 2.60). Widen it after the suite passes on the
new version. ``CORROTUNE_ALLOW_UNTESTED_RAY=1`` runs anyway, with a warning.

The version is read from the installed package's metadata, so checking does not import Ray.
"""

from __future__ import annotations

import os
from importlib import metadata

from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version

__all__ = ["ALLOW_UNTESTED_ENV", "TESTED_RAY", "UntestedRayError", "check_ray_version", "installed_ray_version"]

TESTED_RAY = SpecifierSet(">=2.60,<2.61")
"""Ray versions the repairs were tested with (see the module docstring before changing it)."""

ALLOW_UNTESTED_ENV = "CORROTUNE_ALLOW_UNTESTED_RAY"
"""Set to ``1`` to run on a Ray outside :data:`TESTED_RAY` (with a warning)."""


class UntestedRayError(RuntimeError):
    """The installed Ray is outside :data:`TESTED_RAY` and running anyway was not asked for."""


def installed_ray_version() -> str:
    """The installed Ray's version string (from its package metadata, without importing it)."""
    return metadata.version("ray")


def check_ray_version(version: str | None = None) -> str | None:
    """Checks ``version`` (default: the installed Ray's) against :data:`TESTED_RAY`.

    Returns:
        None when it is in the tested range; else the warning to show, when
        ``CORROTUNE_ALLOW_UNTESTED_RAY=1`` forces running anyway.

    Raises:
        UntestedRayError: outside the tested range and not forced; the message names the
            installed and tested versions and both ways on.
    """
    version = version or installed_ray_version()
    try:
        tested = Version(version) in TESTED_RAY
    except InvalidVersion:
        tested = False
    if tested:
        return None
    what = f"ray {version} is installed, but corrotune's repairs of Ray's crash behaviour were tested with ray{TESTED_RAY}"
    if os.environ.get(ALLOW_UNTESTED_ENV) == "1":
        return f"warning: {what}; running anyway ({ALLOW_UNTESTED_ENV}=1): a crash or resume may lose results"
    raise UntestedRayError(
        f"{what}; install a tested one (pip install -c constraints.txt 'ray[tune]{TESTED_RAY}'), "
        f"or set {ALLOW_UNTESTED_ENV}=1 to run anyway (see docs/ray_repairs.md for what may break)"
    )
