"""Restores the search algorithm's layers to agree with the experiment state Ray restored.

Ray behaviour repaired: ``Tuner.restore`` reads ``search_gen_state-*.json``,
``searcher-state-*.pkl`` and ``experiment_state-*.json``, which Ray's driver writes one by one in
no set order with each snapshot. A driver killed in between (SIGKILL, a preempted node) leaves
the search layers ahead of the trials Ray restores, and trials are lost for good: the
``SearchGenerator``'s counter of created trials reaches ``num_samples`` early (the study ends
short), the ``ConcurrencyLimiter`` keeps trials Ray never restores as live (its slots stay taken)
and forgets ones Ray does resume (their completion never reaches the searcher, so a cell's confirm
runs wait for ever). No Ray issue tracks this; Ray has no hook to reconcile a searcher with the
restored trials.

Private Ray names used: ``SearchGenerator._counter`` and ``SearchGenerator._finished`` (set),
``ConcurrencyLimiter.live_trials`` and ``ConcurrencyLimiter.num_unfinished_live_trials``
(public attributes, but Ray's internal bookkeeping, reset here).
"""

from __future__ import annotations

import logging
from pathlib import Path

from ray.tune.search import ConcurrencyLimiter, SearchGenerator

from orchestrator.ray_repairs.experiment_state import newest_experiment_state, recorded_trials

__all__ = ["RecordedStateSearchGenerator"]

logger = logging.getLogger(__name__)


class RecordedStateSearchGenerator(SearchGenerator):
    """Ray's ``SearchGenerator`` whose restore agrees with the experiment state Ray restored.

    Ray stores a snapshot's state files (``search_gen_state``, ``searcher-state``,
    ``experiment_state``) one by one in no set order; a driver killed in between can leave the
    searcher layers ahead of the trials Ray restores. Left alone, that loses trials for good:
    the generator's counter reaches ``num_samples`` early, the ``ConcurrencyLimiter`` forgets a
    trial Ray resumes (and then never passes on its completion, so its cell's confirm runs wait
    for ever), and the innermost searcher (:class:`~orchestrator.ablation.AblationSearcher`)
    keeps budget for trials that never run. After restoring, every layer is set from the newest experiment state: the counter is its number
    of trials, the limiter's live trials its unfinished ones, and the searcher takes back the rest.
    """

    def restore_from_dir(self, dirpath: str) -> None:
        super().restore_from_dir(dirpath)
        state = newest_experiment_state(Path(dirpath))
        if state is None:
            return
        statuses = {trial["trial_id"]: trial["status"] for trial, _ in recorded_trials(state.get("trial_data", []))}
        self._counter = len(statuses)
        self._finished = False  # set again when the searcher says so
        layer = self.searcher
        while isinstance(layer, ConcurrencyLimiter):
            layer.live_trials = {t for t, status in statuses.items() if status not in ("TERMINATED", "ERROR")}
            layer.num_unfinished_live_trials = len(layer.live_trials)
            layer = layer.searcher
        take_back = getattr(layer, "take_back", None)  # AblationSearcher's (this package sits below it)
        if take_back is not None and (taken := take_back(set(statuses))):
            logger.warning("the searcher had handed out %d trial(s) Ray never recorded (%s); they are handed out again",
                           len(taken), ", ".join(taken))
