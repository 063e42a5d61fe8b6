"""Work a Ray Tune callback hands off so that the driver's event loop never waits on it.

Ray Tune runs every callback hook on its driver loop: while one blocks, no trial's result is
processed. :class:`Background` runs such work on one daemon thread, in the order it was
submitted (a W&B run's rows must arrive in order), and a small pool for waits that may take
long (a trial's artifacts reaching the study folder) whose follow-up joins the ordered lane
when the wait is over.

Example:
    >>> background = Background("wandb")
    >>> background.submit(lambda: queue.put(item))        # returns at once
    >>> background.after(wait_for_images, send_images)    # wait in the pool, send in order
    >>> background.drain(timeout_s=60)                    # at experiment end
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable

__all__ = ["Background"]

logger = logging.getLogger(__name__)


class Background:
    """One ordered lane (a thread) plus a pool for slow waits; both start on first use.

    Args:
        name: Thread name prefix (shows in stack dumps).
        wait_workers: Threads of the pool that runs :meth:`after`'s waits.
    """

    def __init__(self, name: str, wait_workers: int = 4) -> None:
        self.name = name
        self.wait_workers = wait_workers
        self._lane: queue.Queue[Callable[[], Any] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._waits: set[Future] = set()
        self._lock = threading.Lock()

    def submit(self, work: Callable[[], Any]) -> None:
        """Runs ``work()`` on the lane after everything submitted before it; an error is logged, not raised."""
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._serve, name=f"corrotune-{self.name}", daemon=True)
                self._thread.start()
        self._lane.put(work)

    def after(self, wait: Callable[[], Any], then: Callable[[Any], Any]) -> None:
        """Runs ``wait()`` in the pool, then ``then(its result)`` on the lane.

        Work submitted to the lane before this call still runs first; work submitted after it
        may run before ``then``.
        """
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.wait_workers, thread_name_prefix=f"corrotune-{self.name}-wait")
            future = self._pool.submit(wait)
            self._waits.add(future)

        def hand_over(done: Future) -> None:
            try:
                result = done.result()
            except Exception:  # noqa: BLE001 - a failed wait must not lose the follow-up's caller
                logger.exception("%s: background wait failed", self.name)
                result = None
            self.submit(lambda: then(result))
            with self._lock:
                self._waits.discard(done)

        future.add_done_callback(hand_over)

    def _serve(self) -> None:
        while True:
            work = self._lane.get()
            try:
                if work is not None:
                    work()
            except Exception:  # noqa: BLE001 - one failed send must not stop the ones after it
                logger.exception("%s: background work failed", self.name)
            finally:
                self._lane.task_done()

    def pending(self) -> int:
        """Waits still running plus lane items not done yet."""
        with self._lock:
            waits = len(self._waits)
        return waits + self._lane.unfinished_tasks

    def drain(self, timeout_s: float | None = None) -> bool:
        """Blocks until every wait and lane item submitted so far is done; False on timeout."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while self.pending():
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(0.02)
        return True
