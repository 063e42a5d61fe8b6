"""corrotune's orchestrator: study files → Ray Tune + Optuna + W&B.

Example:
    >>> from orchestrator import load_study, run_study
    >>> run_study(load_study("studies/demo.yaml"))
"""

import importlib

_EXPORTS = {
    "Registry": "orchestrator.registry",
    "Study": "orchestrator.spec",
    "StudyError": "orchestrator.spec",
    "load_study": "orchestrator.spec",
    "run_study": "orchestrator.runner",
    "resume_study": "orchestrator.runner",
}


def __getattr__(name: str):
    # Lazy: `import orchestrator.registry` must not pull in the spec (trainables and
    # search_spaces import the registry), and the CLI must not pay for Ray before it needs it.
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'orchestrator' has no attribute {name!r}")


__all__ = list(_EXPORTS)
