"""The driver's signal handling (orchestrator.interrupt) without Ray: Tune's SIGUSR1 stop stands in."""

from __future__ import annotations

import io
import json
import signal
import subprocess
import sys
import textwrap

from rich.console import Console

from orchestrator.exit_status import EXIT_INTERRUPTED, EXIT_TERMINATED
from orchestrator.interrupt import DriverInterrupt
from orchestrator.runner import StudyOutcome
from orchestrator.storage import StudyPlace
from trainables.preemption import STOP_FILE


def test_sigterm_asks_the_trials_to_stop_and_hands_over_to_tunes_graceful_stop(tmp_path):
    place = StudyPlace.create(tmp_path, "s")
    place.local_dir.mkdir()
    (place.local_dir / STOP_FILE).write_text("{}")  # left by an earlier interrupted driver
    tune_stops: list[int] = []
    previous = signal.signal(signal.SIGUSR1, lambda signum, frame: tune_stops.append(signum))
    try:
        with DriverInterrupt(place, Console(file=io.StringIO())) as interrupt:
            assert not (place.local_dir / STOP_FILE).exists()  # the new run's trials must not stop
            signal.raise_signal(signal.SIGTERM)
            request = json.loads((place.local_dir / STOP_FILE).read_text())
    finally:
        signal.signal(signal.SIGUSR1, previous)
    assert interrupt.signum == signal.SIGTERM and request["signal"] == "SIGTERM" and tune_stops == [signal.SIGUSR1]
    assert not (place.local_dir / STOP_FILE).exists()  # removed once the trials stopped
    assert signal.getsignal(signal.SIGTERM) != interrupt._handle  # the handler before it is back
    outcome = StudyOutcome(place.local_dir, [], 0, interrupted_by=signal.SIGTERM, resume_command=f"corrotune resume {place.uri}")
    assert outcome.exit_status == EXIT_TERMINATED and f"Continue it with: corrotune resume {place.uri}" in outcome.last_line()
    assert StudyOutcome(place.local_dir, [], 0, interrupted_by=signal.SIGINT).exit_status == EXIT_INTERRUPTED


def test_a_second_ctrl_c_exits_at_once_with_130(tmp_path):
    script = textwrap.dedent(f"""
        import signal, time
        from rich.console import Console
        from orchestrator.interrupt import DriverInterrupt
        from orchestrator.storage import StudyPlace
        place = StudyPlace.create({str(tmp_path)!r}, "s")
        place.local_dir.mkdir()
        signal.signal(signal.SIGUSR1, lambda *a: None)  # Tune listening, but slow to stop
        with DriverInterrupt(place, Console(stderr=True)):
            signal.raise_signal(signal.SIGINT)
            time.sleep(0.1)
            signal.raise_signal(signal.SIGINT)
            time.sleep(30)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 130, done.stderr
    assert "SIGINT again: exiting now" in done.stderr and "Traceback" not in done.stderr


def test_a_signal_before_tune_listens_ends_the_study_the_same_way(tmp_path):
    place = StudyPlace.create(tmp_path, "s")
    place.local_dir.mkdir()
    previous = signal.signal(signal.SIGUSR1, signal.SIG_DFL)  # no Tuner.fit yet: SIGUSR1 would kill us
    try:
        with DriverInterrupt(place, Console(file=io.StringIO())) as interrupt:
            signal.raise_signal(signal.SIGINT)
    finally:
        signal.signal(signal.SIGUSR1, previous)
    assert interrupt.signum == signal.SIGINT
