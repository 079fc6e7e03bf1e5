"""What a rank has logged, kept in its checkpoints: the log file is rebuilt from it on every resume.

metrics.h5 and train.h5 are written by rank 0 in SWMR mode. A writer killed by SIGKILL leaves the file
flagged as open (HDF5 then refuses to open it for writing) and may die between a checkpoint and the rows
of that stage. So the checkpoints are the record: each holds every row its rank produced, the
skipped-image counts behind the log's events and the job's resumes, and a resumed job writes the log
anew from them (`MetricsLog.create(rows=, events=)`): the same rows and events as an uninterrupted run.
"""
from __future__ import annotations

import dataclasses
import typing

import numpy as np

from .metrics import MetricsLog

_SKIPPED, _RESUMES, _RESIZES = "_skipped_images", "_resumes", "_resizes"


class RowHistory:
    """The rows (a row dataclass: StageRow, EpochRow) this rank logged, as a state dict of arrays."""

    def __init__(self, row_type):
        self.row_type = row_type
        self.rows: list = []
        self.skipped: list[int] = []
        """Unreadable images this rank had skipped when each row was logged (data.on_corrupt_image=skip)."""
        self.resumes: list[tuple[int, int, int, int]] = []
        """(rows logged before it, episode, stage, iteration) of each resume of the job."""
        self.resizes: list[tuple[int, int, int]] = []
        """(rows logged before it, ranks before, ranks after) of each resume on another number of searchers."""

    def add(self, row, skipped_images: int = 0) -> None:
        """A row this rank logged, with the unreadable images it had skipped by then."""
        self.rows.append(row)
        self.skipped.append(int(skipped_images))

    def add_resume(self, position: tuple[int, int, int], ranks_before: int = 0, ranks_after: int = 0) -> None:
        """A resume at `position`; with a different number of ranks before and after, a resize too."""
        self.resumes.append((len(self.rows), *position))
        if ranks_before != ranks_after:
            self.resizes.append((len(self.rows), ranks_before, ranks_after))

    def state_dict(self) -> dict[str, np.ndarray]:
        hints = typing.get_type_hints(self.row_type)
        state = {}
        for field in dataclasses.fields(self.row_type):
            values = [getattr(row, field.name) for row in self.rows]
            if hints[field.name] in (int, float):
                state[field.name] = np.asarray(values, dtype=np.int64 if hints[field.name] is int else np.float64)
            else:  # per-row arrays: action, class_weight_mean
                state[field.name] = np.stack(values).astype(np.float64) if values else np.zeros((0,))
        state[_SKIPPED] = np.asarray(self.skipped, dtype=np.int64)
        state[_RESUMES] = np.asarray(self.resumes, dtype=np.int64).reshape(-1, 4)
        if self.resizes:  # absent unless resized: the checkpoints of every other run stay as they were
            state[_RESIZES] = np.asarray(self.resizes, dtype=np.int64).reshape(-1, 3)
        return state

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        names = [field.name for field in dataclasses.fields(self.row_type) if field.name in state]  # older: defaults
        self.rows = [self.row_type(**{name: state[name][i] if state[name].ndim > 1 else state[name][i].item()
                                      for name in names}) for i in range(len(state[_SKIPPED]))]
        self.skipped = [int(count) for count in state[_SKIPPED]]
        self.resumes = [tuple(int(value) for value in resume) for resume in state[_RESUMES]]
        self.resizes = [tuple(int(value) for value in resize) for resize in state.get(_RESIZES, ())]

    @classmethod
    def from_state(cls, row_type, state: dict) -> "RowHistory":
        history = cls(row_type)
        history.load_state_dict(state)
        return history


def resume_event(resume: tuple[int, int, int, int], iterations_per_stage: int) -> tuple[int, int, int, str]:
    """The /events entry of a resume: after a stage's end ("resume"), or inside a stage."""
    _, episode, stage, iteration = resume
    if iteration >= iterations_per_stage:
        return episode, stage, 0, "resume"
    return episode, stage, 0, f"resume_mid_stage:{iteration}"


def stage_events(rows: list, skipped: list[int], reported: dict[int, int]) -> list[tuple[int, int, int, str]]:
    """The /events entries of one stage's rows (one per rank, in rank order): images newly skipped by a rank
    (`reported` holds the counts already logged, and is updated), then non-finite losses."""
    events = []
    for row, count in zip(rows, skipped):
        if count > reported.get(row.rank, 0):
            events.append((row.episode, row.stage, row.rank, f"skipped_images:{count}"))
            reported[row.rank] = count
    for row in rows:
        if not np.isfinite([row.loss_target, row.loss_reference, row.reward]).all():
            events.append((row.episode, row.stage, row.rank, "non_finite_loss"))
    return events


def _unit(row) -> tuple:
    """What a row is of: (episode, stage) of a search, the epoch of a training."""
    return tuple(getattr(row, name) for name in ("episode", "stage", "epoch") if hasattr(row, name))


def replay(histories: list[RowHistory], iterations_per_stage: int, events_of=stage_events):
    """(rows, events, reported skip counts) of the log the ranks' histories describe: per stage, the row of
    every rank that ran it, in rank order, as the job appended them. Rank 0 ran every stage and holds the
    resumes; after a resize the other histories cover part of the run (a searcher that left, one that came)."""
    rows, events, reported = [], [], {}
    lead = histories[0]
    where = [{_unit(row): i for i, row in enumerate(history.rows)} for history in histories]
    for i in range(len(lead.rows) + 1):
        for resume in (resume for resume in lead.resumes if resume[0] == i):
            events.append(resume_event(resume, iterations_per_stage))
            events += [(resume[1], resume[2], 0, f"searchers:{before}->{after}")
                       for rows_before, before, after in lead.resizes if rows_before == i]
        if i == len(lead.rows):
            break
        held = [(history, index[_unit(lead.rows[i])]) for history, index in zip(histories, where)
                if _unit(lead.rows[i]) in index]
        stage_rows = [history.rows[j] for history, j in held]
        rows += stage_rows
        if events_of is not None:
            events += events_of(stage_rows, [history.skipped[j] for history, j in held], reported)
    return rows, events, reported


def open_log(path, layout: dict, attributes: dict, data_report: dict, row_type, histories: list[dict],
             iterations_per_stage: int, events_of=stage_events) -> tuple[MetricsLog, dict[int, int]]:
    """(log, skip counts it reports) of rank 0: a new file, or one written anew from every rank's history
    state (a resume): the rows and events of the run so far, as an uninterrupted run wrote them."""
    rows, events, reported = replay([RowHistory.from_state(row_type, state) for state in histories],
                                    iterations_per_stage, events_of) if histories else ([], [], {})
    return MetricsLog.create(path, layout, attributes, data_report, rows, events), reported


def position_text(position: tuple[int, int, int], iterations_per_stage: int, unit: str = "episode") -> str:
    """Where a checkpoint stands, as the progress lines count (from 1)."""
    major, stage, iteration = position
    if iteration >= iterations_per_stage:
        return f"after {unit} {major + 1}" + (f" stage {stage + 1}" if unit == "episode" else "")
    return f"in {unit} {major + 1}" + (f" stage {stage + 1}" if unit == "episode" else "") + f" at iteration {iteration}"
