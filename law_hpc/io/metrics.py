"""DIR/metrics.h5: one row per (episode, stage, rank), written by rank 0, readable live (SWMR).

Layout (docs/interfaces.md): group /stages with equal-length 1-D datasets, /stages/action
(N x 5: theta_T, b), /class_weight_mean (N x C) in the same row order, /events (NaN losses, resumes), /data_report
(noise and class counts of the data), and file attributes (config YAML, world size, versions, git commit,
and `status`: running, done, failed or preempted, kept current by rank 0 for tools/watch.py).
"""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import typing
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch

from ..config import to_yaml
from ..law.policy import ACTION_DIM, ACTION_TERMS
from .checkpoint import fsync_dir

MAGIC = "law_hpc.metrics/1"
STATUSES = ("running", "done", "failed", "preempted")
_STATUS_DTYPE = f"S{max(map(len, STATUSES))}"  # fixed size: SWMR allows rewriting it in place, not recreating it


@dataclass
class StageRow:
    """One row of a search's metrics.h5: what one searcher measured in one stage. The HDF5 columns are
    derived from these fields (the contract's columns first, then extras)."""

    episode: int
    stage: int
    rank: int
    lr: float
    weighted: int
    reward: float
    acc_target: float
    acc_reference: float
    loss_target: float
    loss_reference: float
    weight_mean: float
    weight_std: float
    stage_seconds: float
    samples_per_second: float
    strategy_checksum: int
    evaluation: int
    """1 in an evaluation episode (the deterministic actor, no exploration noise)."""
    epoch: float
    l_smooth: float
    acc_smooth: float
    fdu_minibatches: int
    critic_loss: float
    actor_loss: float
    checkpoint_seconds: float
    action: np.ndarray
    """[ACTION_DIM] theta_T then b (zeros in warm-up stages): /stages/action."""
    class_weight_mean: np.ndarray
    """[C] mean weight per observed label: /class_weight_mean."""
    train_seconds: float = 0.0
    """Of stage_seconds: training the pair (both nets' steps, the target's features and weights included)."""
    weights_seconds: float = 0.0
    """Of train_seconds: the item features, weights K_T and weighted loss (host time; asynchronous on CUDA)."""
    evaluate_seconds: float = 0.0
    """Of stage_seconds: both nets' validation (one pass over the clean batches)."""
    learn_seconds: float = 0.0
    """Of stage_seconds: the strategy update (Full Data Update) with its gradient allreduce."""


@dataclass
class EpochRow:
    """One row of a test-phase train.h5 /epochs: one epoch of one training."""

    epoch: int
    lr: float
    train_loss: float
    test_acc: float
    val_acc: float
    weight_mean: float
    weight_std: float
    seconds: float
    samples_per_second: float


def scalar_columns(row_type) -> dict[str, type]:
    """Column name -> numpy dtype of a row dataclass' scalar fields, in field order."""
    hints = typing.get_type_hints(row_type)
    return {f.name: np.int64 if hints[f.name] is int else np.float64 for f in dataclasses.fields(row_type)
            if hints[f.name] in (int, float)}


STAGE_COLUMNS = scalar_columns(StageRow)
EVENT_COLUMNS = {"episode": np.int64, "stage": np.int64, "rank": np.int64, "kind": "S32"}


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=5)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def run_attributes(cfg, dist, **extra) -> dict:
    """The attributes every log file (metrics.h5, train.h5) carries: config, world, versions, commit."""
    return {"config_yaml": to_yaml(cfg), "world_size": dist.size, "controller": dist.controller,
            "device": str(dist.device), "versions": package_versions(), "git_commit": git_commit(), **extra}


def search_layout(num_classes: int) -> dict:
    """Dataset path -> (dtype, per-row shape) of a search's metrics.h5: one row per (episode, stage, rank)."""
    layout = {f"stages/{name}": (dtype, ()) for name, dtype in STAGE_COLUMNS.items()}
    layout["stages/action"] = (np.float64, (ACTION_DIM,))
    layout["class_weight_mean"] = (np.float64, (num_classes,))
    return layout


def train_layout() -> dict:
    """Dataset path -> (dtype, per-row shape) of a test-phase train.h5: one row per epoch."""
    return {f"epochs/{name}": (dtype, ()) for name, dtype in scalar_columns(EpochRow).items()}


def package_versions() -> dict:
    """Versions of the stack, for the log's attributes: read from the installed distributions' metadata, not by
    importing them (importing DALI and torchvision cost rank 0, which writes the log, 3.5 s of CPU at start here)."""
    from importlib import metadata
    versions = {"torch": torch.__version__}
    for name in ("horovod", "h5py", "numpy", "mpi4py", "torchvision"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "missing"
    # DALI's distribution is named for its flavour (nvidia-dali-cuda130, nvidia-dali-cpu, ...)
    dali = [dist.version for dist in metadata.distributions()
            if (dist.metadata["Name"] or "").lower().startswith("nvidia-dali")]
    versions["nvidia.dali"] = dali[0] if dali else "missing"
    return versions


class MetricsLog:
    """Append-only table of equal-length datasets (rank 0 only), readable live through SWMR.

    `layout` maps dataset paths to (dtype, per-row shape); a row is a dict keyed by the last path part.
    A resumed job does not reopen the file (a writer killed by SIGKILL leaves it flagged as open, and may
    have died between a checkpoint and its rows): it writes it anew from the rows the checkpoints hold.
    """

    def __init__(self, path: str | Path, file: h5py.File, layout: dict):
        self.path, self.file, self.layout = Path(path), file, layout

    @classmethod
    def create(cls, path, layout: dict, attrs: dict, data_report: dict, rows=(), events=()) -> "MetricsLog":
        """A file holding `rows` and `events` (episode, stage, rank, kind), in SWMR mode, put in place
        atomically (temp file, fsync, rename) over whatever was at `path`: a reader opening `path` finds
        the previous file or this one, whole; one holding the previous file open keeps its old rows."""
        path = Path(path)
        temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        file = h5py.File(temporary, "w", libver="latest")
        try:
            file.attrs["format"] = MAGIC
            for key, value in attrs.items():
                file.attrs[key] = json.dumps(value) if isinstance(value, dict) else value
            for name, (dtype, shape) in layout.items():  # attributes and datasets before SWMR mode
                file.create_dataset(name, shape=(0, *shape), maxshape=(None, *shape), dtype=dtype,
                                    chunks=(256, *shape))
            for name, dtype in EVENT_COLUMNS.items():
                file.create_dataset(f"events/{name}", shape=(0,), maxshape=(None,), dtype=dtype, chunks=(256,))
            report = file.create_group("data_report")
            for key, value in data_report.items():
                report.create_dataset(key, data=np.asarray(value))
            file.attrs.create("status", np.bytes_("running"), dtype=_STATUS_DTYPE)
            file.swmr_mode = True
            log = cls(path, file, layout)
            log.append(list(rows))
            for event in events:
                log.event(*event)
            with open(temporary, "rb+") as handle:
                os.fsync(handle.fileno())
            os.replace(temporary, path)
        except BaseException:
            file.close()
            temporary.unlink(missing_ok=True)
            raise
        fsync_dir(path.parent)
        return log

    @property
    def rows(self) -> int:
        return self.file[next(iter(self.layout))].shape[0]

    def append(self, rows: list) -> None:
        """Append rows (row dataclasses, or dicts with a value per dataset); flush so live readers see them."""
        if not rows:
            return
        rows = [dataclasses.asdict(row) if dataclasses.is_dataclass(row) else row for row in rows]
        start, count = self.rows, len(rows)
        for name in self.layout:
            dataset, key = self.file[name], name.rsplit("/", 1)[-1]
            dataset.resize(start + count, axis=0)
            dataset[start:start + count] = np.asarray([row[key] for row in rows], dtype=dataset.dtype)
        self.file.flush()

    def event(self, episode: int, stage: int, rank: int, kind: str) -> None:
        events = self.file["events"]
        start = events["episode"].shape[0]
        for name, value in (("episode", episode), ("stage", stage), ("rank", rank), ("kind", kind.encode())):
            events[name].resize(start + 1, axis=0)
            events[name][start] = value
        self.file.flush()

    def set_status(self, status: str) -> None:
        """running, done, failed or preempted: what tools/watch.py follows."""
        if status not in STATUSES:
            raise ValueError(f"unknown run status '{status}' (known: {', '.join(STATUSES)})")
        self.file.attrs.modify("status", np.bytes_(status))
        self.file.flush()

    def close(self, status: str | None = None) -> None:
        """Close the file, recording how the run ended (`status`) if given."""
        if status is not None:
            self.set_status(status)
        self.file.close()


def open_metrics(path: str | Path) -> h5py.File:
    """Open a metrics file for reading, also while a job writes it. Clear errors for foreign/truncated files."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no metrics file at {path}")
    try:
        # A SWMR open of a truncated file "succeeds" and then retries reads for minutes; a plain open
        # fails at once. It may also fail because a writer holds the file: then SWMR is the way in.
        h5py.File(path, "r", libver="latest").close()
    except OSError as err:
        if "truncated" in str(err) or "signature" in str(err):
            raise ValueError(f"{path} is not a readable HDF5 file (truncated or corrupt?): {err}") from None
    try:
        file = h5py.File(path, "r", libver="latest", swmr=True)
    except OSError as err:
        raise ValueError(f"{path} is not a readable HDF5 file (truncated or corrupt?): {err}") from None
    if file.attrs.get("format") != MAGIC:
        file.close()
        raise ValueError(f"{path} is not a law_hpc metrics file (no '{MAGIC}' format attribute)")
    return file


def read_stages(path: str | Path) -> dict[str, np.ndarray]:
    """All /stages columns plus 'action' and 'class_weight_mean' as arrays of equal length."""
    with open_metrics(path) as file:
        stages = file["stages"]
        n = min(stages[name].shape[0] for name in stages)  # a live file may be mid-append
        columns = {name: stages[name][:n] for name in stages}
        columns["class_weight_mean"] = file["class_weight_mean"][:n]
    return columns


def read_status(file: h5py.File) -> str:
    """The run status of an open metrics/train file ("" for a file written before statuses existed)."""
    value = file.attrs.get("status", b"")
    return (value.decode() if isinstance(value, bytes) else str(value)).strip()


def read_table(path: str | Path) -> tuple[dict[str, np.ndarray], str]:
    """(flat columns, status) of a metrics.h5 (/stages: action -> action_<term>, class_weight_mean ->
    class_weight_mean_<class>) or a train.h5 (/epochs): one 1-D array per column, all of equal length."""
    with open_metrics(path) as file:
        status = read_status(file)
        group = file["stages"] if "stages" in file else file["epochs"]
        n = min(group[name].shape[0] for name in group)  # a live file may be mid-append
        columns = {}
        for name in group:
            values = group[name][:n]
            if values.ndim == 1:
                columns[name] = values
            else:
                names = ACTION_TERMS if name == "action" else range(values.shape[1])
                columns.update({f"{name}_{term}": values[:, i] for i, term in enumerate(names)})
        if "class_weight_mean" in file:
            per_class = file["class_weight_mean"][:n]
            columns.update({f"class_weight_mean_{c}": per_class[:, c] for c in range(per_class.shape[1])})
    return columns, status


def to_dataframe(path: str | Path):
    """A metrics.h5 or train.h5 as a flat pandas DataFrame: one row per (episode, stage, rank) or epoch, the
    action as action_loss, action_entropy, action_density, action_label, action_bias and the per-class mean
    weights as class_weight_mean_0..C-1. Also while the job writes the file."""
    try:
        import pandas as pd
    except ImportError as err:
        raise ImportError(f"to_dataframe needs pandas (pip install 'law_hpc[plots]'): {err}") from None
    columns, _ = read_table(path)
    return pd.DataFrame(columns)


def logged_rows(path: str | Path) -> int | None:
    """Rows an existing metrics.h5 or train.h5 holds (0 if there is no file); None if it cannot be read."""
    if not Path(path).exists():
        return 0
    try:
        columns, _ = read_table(path)
    except (OSError, ValueError, KeyError):
        return None
    return len(next(iter(columns.values()), ()))
