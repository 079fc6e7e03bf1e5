"""SIGUSR1/SIGTERM set a flag; the ranks act on it together at the next stage boundary.

A handler only sets the flag: stopping mid-collective would hang the other ranks. The search checks
`dist.any_flag(stop.requested)` after each stage's checkpoint and exits with EXIT_PREEMPTED.
"""
from __future__ import annotations

import signal

EXIT_PREEMPTED = 75  # EX_TEMPFAIL: the Slurm scripts requeue the job on this code


class StopFlag:
    def __init__(self, signals=(signal.SIGUSR1, signal.SIGTERM)):
        self.requested = False
        self.signal_name = ""
        for sig in signals:
            signal.signal(sig, self._handle)

    def _handle(self, signum, frame) -> None:
        self.requested = True
        self.signal_name = signal.Signals(signum).name
