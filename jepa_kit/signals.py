"""SIGTERM/SIGUSR1 as a flag (SLURM preemption, or the walltime warning of ``--signal=USR1@N``).

No torch here: the CLI holds a ``StopSignal`` from its first line, while torch imports, and hands
it to training (``jepa_kit.train.train(pending_signal=...)``), so a job preempted during start-up
still ends in a checkpoint and exit code 75.
"""
from __future__ import annotations

import signal
import threading


class StopSignal:
    """SIGTERM/SIGUSR1 set a flag; the loop checkpoints at the end of the current step.

    ``pending``: a signal caught before (an int, or an object whose ``signum`` is read when the
    handlers are installed: the CLI's own StopSignal, held while torch imports): it counts as
    already received."""

    SIGNALS = tuple(s for s in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGUSR1", None)) if s)

    def __init__(self, pending=0):
        self.signum = 0
        self.pending = pending
        self._old = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for s in self.SIGNALS:
                self._old[s] = signal.signal(s, self.handler)
        self.signum = self.signum or int(getattr(self.pending, "signum", self.pending) or 0)
        return self

    def handler(self, signum, frame) -> None:
        self.signum = signum

    def __exit__(self, *exc):
        for s, old in self._old.items():
            signal.signal(s, old)
