"""corrotune's orchestrator: study files → Ray Tune + Optuna + W&B.

Example:
    >>> from orchestrator import load_study, run_study
    >>> run_study(load_study("studies/demo.yaml"))
"""

import importlib

_EXPORTS = {
    "Registry": "corrotune.registry",
    "Study": "orchestrator.spec",
    "StudyError": "orchestrator.spec",
    "load_study": "orchestrator.spec",
    "run_study": "orchestrator.runner",
    "resume_study": "orchestrator.runner",
}


def __getattr__(name: str):
    # Lazy: the CLI must not pay for the spec or Ray before it needs them.
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'orchestrator' has no attribute {name!r}")


__all__ = list(_EXPORTS)
