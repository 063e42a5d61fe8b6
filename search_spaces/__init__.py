"""Define-by-run Optuna search spaces, one module each, looked up by name.

Example:
    >>> from search_spaces import get_space
    >>> space = get_space("classifier_basic")   # def space(trial) -> dict | None
"""

from search_spaces import classifier_basic, classifier_full, classifier_p002, esg_convnext, noop, segmenter_basic  # noqa: F401  (registers them)
from search_spaces._registry import SPACES, SpaceFn, get_space, parameter_names, register_space

__all__ = ["SPACES", "SpaceFn", "get_space", "parameter_names", "register_space"]
