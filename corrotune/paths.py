"""Where corrotune keeps its node-local caches."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_dir"]


def cache_dir(kind: str) -> Path:
    """``$CORROTUNE_CACHE_DIR/<kind>``, else ``~/.cache/corrotune/<kind>`` (keep it on a local disk)."""
    env = os.environ.get("CORROTUNE_CACHE_DIR")
    return (Path(env) if env else Path.home() / ".cache" / "corrotune") / kind
