"""SIGUSR1/SIGTERM and a first ^C (SIGINT) set a flag; the ranks act on it together, within a bounded time
however long a stage.

A handler only sets the flag: stopping mid-collective would hang the other ranks. `StopPoll` asks every
so many iterations whether any rank got the request (one small allreduce, so all ranks must ask at the same
iteration: the interval is computed from values every rank shares), and the job then writes a mid-stage
(test phase: mid-epoch) checkpoint; the stage (epoch) ends check too. The job exits with EXIT_PREEMPTED.
"""
from __future__ import annotations

import signal
import time
from typing import Callable

EXIT_PREEMPTED = 75  # EX_TEMPFAIL: the Slurm scripts requeue the job on this code


class StopFlag:
    """Set by SIGUSR1/SIGTERM, or by a first ^C (SIGINT; a second one interrupts at once, as Python does). One
    per process (`install`): the entry points install it before their heavy imports, so a request that comes
    while a rank starts up is kept instead of killing it."""

    _installed: "StopFlag | None" = None

    @classmethod
    def install(cls) -> "StopFlag":
        """The process's flag; the handlers are installed by the first call."""
        if cls._installed is None:
            cls._installed = cls()
        return cls._installed

    def __init__(self, signals=(signal.SIGUSR1, signal.SIGTERM, signal.SIGINT)):
        self.requested = False
        self.signal_name = ""
        self.requested_at = 0.0
        """time.monotonic() of the first request."""
        for sig in signals:
            signal.signal(sig, self._handle)

    def _handle(self, signum, frame) -> None:
        if not self.requested:
            self.requested_at = time.monotonic()
        self.requested = True
        self.signal_name = signal.Signals(signum).name
        if signum == signal.SIGINT:  # a clean stop is under way; a second ^C means "now"
            signal.signal(signal.SIGINT, signal.default_int_handler)


class StopPoll:
    """Called after every training iteration; True on every rank once they agree that a stop was requested.

    The ranks poll the flag together (`reduce_max`: the elementwise maximum over ranks) every `interval`
    iterations: at most `iterations` (0 = no cap) and about `seconds` of the slowest rank's measured
    iteration time; the first poll comes after one iteration. seconds = iterations = 0: never (stage ends only).
    """

    def __init__(self, flag: StopFlag, reduce_max: Callable[[list[float]], list[float]], seconds: float,
                 iterations: int):
        self.flag, self.reduce_max = flag, reduce_max
        self.seconds, self.iterations = seconds, iterations
        self.enabled = seconds > 0 or iterations > 0
        self.interval, self.since, self.last = 1, 0, time.perf_counter()
        self.waited_iterations = 0
        """Iterations this rank trained between its stop request and the poll (0 without a request)."""
        self.latency = (0, 0.0)
        """After an agreed stop: the most iterations and seconds any rank waited between request and agreement."""

    def __call__(self) -> bool:
        if not self.enabled:
            return False
        self.since += 1
        self.waited_iterations += self.flag.requested
        if self.since < self.interval:
            return False
        now = time.perf_counter()
        waited = time.monotonic() - self.flag.requested_at if self.flag.requested else 0.0
        stop, per_iteration, iterations, seconds = self.reduce_max(
            [float(self.flag.requested), (now - self.last) / self.since, self.waited_iterations, waited])
        self.since, self.last = 0, now
        self.interval = self.iterations or 1 << 30
        if self.seconds > 0:
            self.interval = max(1, min(self.interval, int(self.seconds / max(per_iteration, 1e-9))))
        self.latency = (int(iterations), seconds)
        return stop > 0

    def describe(self) -> str:
        """How long the agreed stop took, for rank 0's message."""
        iterations, seconds = self.latency
        return f"{iterations} iteration(s), {seconds:.2f} s after the request"


class Preemption:
    """A job's stop handling: the signal flag, the poll inside stages (`poll`, for the training loop) and the
    agreement at stage or epoch ends (`agreed`), with rank 0's messages."""

    def __init__(self, dist, seconds: float, iterations: int, console):
        self.dist, self.console = dist, console
        self.flag = StopFlag.install()
        self.poll = StopPoll(self.flag, dist.reduce_max, seconds, iterations)

    def agreed(self) -> bool:
        """At a stage (epoch) end, after its checkpoint: True on every rank when any rank got a stop request."""
        if not self.dist.any_flag(self.flag.requested):
            return False
        self.announce("checkpoint written")
        return True

    def announce(self, what: str, latency: str = "") -> None:
        """Rank 0's line for the log (and the tests): why the job stops, what was written."""
        self.console.info(f"stop requested ({self.flag.signal_name or 'another rank'}){latency}: {what}, exiting with "
                          f"{EXIT_PREEMPTED} for requeue")

    def stopped_mid_stage(self, where: str) -> None:
        """After the mid-stage checkpoint: wait until every rank has written its own (a rank exiting first
        may make the launcher kill the others), then say so."""
        self.dist.allgather_object(None)
        self.announce(f"checkpoint written {where}", f", agreed {self.poll.describe()}")
