"""Rank 0's progress lines: a time stamp in front, elapsed time and an ETA behind."""
from __future__ import annotations

import time


def clock_text(seconds: float) -> str:
    """H:MM:SS (days as hours)."""
    seconds = max(int(round(seconds)), 0)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class Progress:
    """Units done of `total` (stages of a search, epochs of a training). The ETA extrapolates this process's
    own rate: a resumed job counts from where it resumed."""

    def __init__(self, total: int, done: int = 0, clock=time.monotonic):
        self.total, self.first, self.clock = total, done, clock
        self.started = clock()

    @staticmethod
    def stamp() -> str:
        """The local wall-clock time, to the second."""
        return time.strftime("%Y-%m-%d %H:%M:%S")

    def elapsed(self) -> str:
        """H:MM:SS since this process started the job."""
        return clock_text(self.clock() - self.started)

    def suffix(self, done: int) -> str:
        """'elapsed H:MM:SS ETA H:MM:SS' after `done` units (ETA '?' before the first unit of this process)."""
        elapsed = self.clock() - self.started
        finished = done - self.first
        eta = clock_text(elapsed / finished * (self.total - done)) if finished > 0 else "?"
        return f"elapsed {clock_text(elapsed)} ETA {eta}"
