"""A local Ray for the test modules that run their own trainables through Tune."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Iterator


@contextmanager
def local_ray(module_name: str, num_cpus: int = 2) -> Iterator[None]:
    """Ray for the test module ``module_name`` (use as ``with local_ray(__name__): yield``).

    Workers cannot import ``tests/``, so the module's trainables and helpers travel by value.
    Ray is started here, and shut down at the end, unless it was already up.
    """
    import ray
    from ray import cloudpickle

    module = sys.modules[module_name]
    cloudpickle.register_pickle_by_value(module)
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        if started:
            ray.shutdown()
        cloudpickle.unregister_pickle_by_value(module)
