"""Where a run of training steps stands (a search stage, a test-phase epoch), and the loop that runs its rest.

A stop request may cut the run short between two steps; the progress is then a position that a checkpoint
holds and a resumed job continues from, bit-exactly (batches are a pure function of the step number).

For the tests, a stop request that arrives mid-stage by construction, whatever the load on the machine: with
LAW_HPC_PAUSE_AT_STEP=N and LAW_HPC_PAUSE_DIR=D set, a process that has run step N (a global iteration number of an
episode or of a training) writes D/paused-<pid> and waits until D/go exists (at most PAUSE_SECONDS); the test sends
its signals in between.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable

PAUSE_SECONDS = 600.0


class StepProgress:
    """`done` of `steps` (global iteration numbers), with the samples and seconds they took; subclasses add the
    sums of their row."""

    def __init__(self, steps: range):
        self.steps, self.done, self.samples, self.seconds = steps, 0, 0, 0.0

    @property
    def next_step(self) -> int:
        """The global iteration number (data position) the run continues at."""
        return self.steps.start + self.done

    def count(self, samples: int) -> None:
        """One step done, on `samples` samples."""
        self.done += 1
        self.samples += samples

    def state_dict(self) -> dict:
        return {"done": self.done, "samples": self.samples, "seconds": self.seconds}

    def load_state_dict(self, state: dict) -> None:
        self.done, self.samples, self.seconds = int(state["done"]), int(state["samples"]), float(state["seconds"])


def run_steps(progress: StepProgress, step: Callable[[int], None], stop: Callable[[], bool]) -> bool:
    """`step(n)` for every step of `progress` not done yet (each counts itself in `progress`), asking `stop()`
    after each but the last. True when the run is complete; False when `stop()` said stop before its end.
    The seconds it took are added to `progress`."""
    started, pause_at = time.perf_counter(), int(os.environ.get("LAW_HPC_PAUSE_AT_STEP", -1))
    try:
        for number in progress.steps[progress.done:]:
            step(number)
            if number == pause_at:
                pause(Path(os.environ["LAW_HPC_PAUSE_DIR"]))
            if progress.done < len(progress.steps) and stop():
                return False
        return True
    finally:
        progress.seconds += time.perf_counter() - started


def pause(folder: Path) -> None:
    """The tests' pause (module docstring): say so in `folder`, wait for its go file."""
    (folder / f"paused-{os.getpid()}").touch()
    deadline = time.monotonic() + PAUSE_SECONDS
    while not (folder / "go").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
