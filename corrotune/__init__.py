"""corrotune's base package: the small helpers every layer uses, below all of them.

``orchestrator``, ``trainables`` and ``search_spaces`` import from here; this package imports
none of them, nor torch or Ray (``tests/test_layers.py`` checks both), so the arrows between the
packages point one way: study file → orchestrator → trainables/search spaces → corrotune.

* :mod:`corrotune.registry`: one named registry per kind of thing, with a did-you-mean lookup.
* :mod:`corrotune.files`: a file replaced whole or not at all (temporary name, fsync, ``os.replace``).
* :mod:`corrotune.paths`: where the node-local caches live.
"""
