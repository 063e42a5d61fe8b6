"""Every place where corrotune works around Ray: its crash behaviour, and each private Ray name it uses.

Outside this package no corrotune module imports or touches a private Ray name
(``tests/test_ray_boundary.py`` checks it); each private name used here has a test that fails
when a Ray upgrade changes it (``tests/orchestrator/test_ray_private_names.py``), and
``docs/ray_repairs.md`` lists every repair with its upstream issue. Each module's docstring says which Ray behaviour it repairs, how data is lost without it, and the private names
it uses:

* :mod:`~orchestrator.ray_repairs.atomic_fs`: a storage filesystem whose writes replace files
  whole (a killed driver's sync cuts no file short).
* :mod:`~orchestrator.ray_repairs.driver_files`: before a resume, puts back or sets aside the
  driver files a kill cut short.
* :mod:`~orchestrator.ray_repairs.unrecorded_trials`: before a resume, sets aside the trial
  folders the restored state does not know (Ray runs their slots again as new trials).
* :mod:`~orchestrator.ray_repairs.experiment_state`: reads Ray's experiment-state snapshot
  without Ray.
* :mod:`~orchestrator.ray_repairs.search_state`: the search algorithm's layers restored to agree
  with the trials Ray restored.
* :mod:`~orchestrator.ray_repairs.checkpoints`: checkpoint pruning that never deletes what a
  resume needs.
* :mod:`~orchestrator.ray_repairs.trial_files`: a trial's ``result.json`` / ``progress.csv``
  whole and free of repeats across retries and resumes.
* :mod:`~orchestrator.ray_repairs.lost_results`: before a resume, puts back the rows of a trial's
  ``result.json`` that a kill during Ray's sync left out (the state was copied, the file not yet).
* :mod:`~orchestrator.ray_repairs.wandb_actor` and :mod:`~orchestrator.ray_repairs.wandb_callback`:
  one continuous W&B run per trial across crashes and ``Tuner.restore``.
* :mod:`~orchestrator.ray_repairs.cluster`: Ray's own address resolution, GPU detection, GCS
  probe and token switch, for checks before ``ray.init``.

Importing this package imports neither Ray nor torch; its modules import Ray as they need it.
"""
