"""What a job prints: rank 0's lines, with the job's prefix ([law] search, [law-train] test phase).

Progress and notes go to stdout, WARNINGs to stderr, each line whole and flushed at once (a launcher that
merges the ranks' streams then never splits one). Other ranks print only what concerns them alone
(`rank_warning`).
"""
from __future__ import annotations

import sys


class Console:
    def __init__(self, prefix: str = "[law]", rank: int = 0):
        self.prefix, self.rank = prefix, rank

    @property
    def is_root(self) -> bool:
        return self.rank == 0

    def info(self, text: str) -> None:
        """A progress line or a note, from rank 0, to stdout."""
        if self.is_root:
            _write(sys.stdout, f"{self.prefix} {text}")

    def warning(self, text: str) -> None:
        """A WARNING from rank 0, to stderr."""
        if self.is_root:
            _write(sys.stderr, f"{self.prefix} WARNING: {text}")

    def rank_warning(self, text: str) -> None:
        """A WARNING that only this rank can give (its own files), from any rank, naming it."""
        _write(sys.stderr, f"{self.prefix} rank {self.rank}: WARNING: {text}")


def _write(stream, line: str) -> None:
    stream.write(line + "\n")  # one write: the line and its newline reach the launcher together
    stream.flush()
