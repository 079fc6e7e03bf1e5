"""What a search (law_hpc.search) and a test-phase training (law_hpc.train) share: the job skeleton.

A `Job` owns the run directory's contents for one rank: the data, the checkpoint store and the resume from
it, the stop request handling, the log file (metrics.h5 or train.h5, rank 0) rebuilt from the checkpoints on
a resume, the progress lines and `close`. A subclass builds its own objects (`build`), says how its state is
saved and loaded (`state_dict`, `load_state_dict`) and runs (`run`).
"""
from __future__ import annotations

from pathlib import Path

import torch

from .engine.preemption import Preemption
from .engine.resume import load_agreed
from .io.checkpoint import CheckpointStore
from .io.console import Console
from .io.history import RowHistory, open_log, position_text
from .io.metrics import MetricsLog, run_attributes
from .io.progress import Progress
from .io.rundir import logged_results
from .io.tensorboard import open_scalars


class Job:
    purpose = "search"
    """The data a job trains on: "search" (the search subset, unsharded) or "train" (sharded by rank)."""
    log_name = "metrics.h5"
    """Rank 0's log file in the run directory."""
    row_type: type = None
    """The log's row dataclass (io/metrics.py)."""
    prefix = "[law]"
    """Of the job's console lines."""
    unit = "episode"
    """What a checkpoint position counts first: episode (search) or epoch (test phase)."""
    shared_checkpoint = False
    """True: the ranks hold one state and rank 0's checkpoint stands for all (the data-parallel test phase);
    False: every rank checkpoints its own (the searchers)."""
    iterations_per_unit = 0
    """Iterations of a stage (search) or an epoch (test phase), set by `build`: a checkpoint position with fewer is
    mid-way."""

    def __init__(self, cfg, dist, run_dir: Path, resumed: bool):
        from .data import CorruptionSpec, Screening, build_data  # pulls in DALI/torchvision: import when needed

        self.cfg, self.dist, self.run_dir = cfg, dist, run_dir
        self.console = Console(self.prefix, dist.rank)
        if cfg.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
        data_cfg = self.data_config()
        self.data = build_data(data_cfg, purpose=self.purpose, seed=cfg.seed, rank=dist.rank, world_size=dist.size,
                               device=dist.device, screening=Screening(run_dir / "screened.h5", dist.rank, dist.size,
                                                                       dist.allgather_object))
        self.corruption = corruption = CorruptionSpec.from_config(data_cfg)  # what this rank's labels went through
        self.console.info(f"data: {data_cfg.dataset} at {data_cfg.root}; {corruption.describe()}; validation: "
                          f"{data_cfg.val_root or 'carved out of the training labels'}")
        if not data_cfg.val_root and corruption.noise_mode == "none" and data_cfg.dataset == "imagenet":
            self.console.warning("the validation split is carved out of the folder's own labels, and LAW assumes "
                                 "them clean (its reward and the choice of the policy rest on them): give a trusted "
                                 "folder as data.val_root")
        self.build()
        self.history = RowHistory(self.row_type)  # the log's rows: a resume rewrites the log from them
        self.preemption = Preemption(dist, cfg.stop_check_seconds, cfg.stop_check_iterations, self.console)
        self.checkpoints = CheckpointStore(run_dir, 0 if self.shared_checkpoint else dist.rank)
        self.position = self.resume() if resumed else None
        """Where the job resumed: the checkpoint position, or None for a fresh start."""
        self.scalars = open_scalars(cfg, run_dir, dist.is_root)
        self.log = self.open_log()
        self.progress = Progress(*self.progress_units())

    # --- what a job type provides ----------------------------------------------------------------------
    def data_config(self):
        """The data section this rank trains on."""
        return self.cfg.data

    def build(self) -> None:
        """The job's own objects (schedule, networks, strategy, ...), before a resume loads their state."""

    def state_dict(self) -> dict:
        """Everything a checkpoint of this job holds (the log's rows included)."""
        raise NotImplementedError

    def load_state_dict(self, state: dict) -> None:
        raise NotImplementedError

    def progress_units(self) -> tuple[int, int]:
        """(units of the whole job, units done): stages of a search, epochs of a training."""
        raise NotImplementedError

    def log_layout(self) -> dict:
        raise NotImplementedError

    def log_attributes(self) -> dict:
        """Attributes of the log beyond the config, world and versions."""
        return {}

    def run(self) -> int:
        raise NotImplementedError

    def release(self) -> None:
        """Free what the job holds besides its files (threads)."""

    # --- the skeleton ----------------------------------------------------------------------------------
    def resume(self) -> tuple[int, int, int] | None:
        """Load the newest checkpoint position every rank holds (a collective); None: nothing to resume."""
        results = logged_results(self.run_dir, self.log_name) if self.dist.is_root else ""
        agreed = load_agreed(self.checkpoints, self.dist, self.run_dir, results, self.console)
        if agreed is None:
            return None
        position, state = agreed
        self.load_state_dict(state)
        self.history.add_resume(position)
        return position

    def log_histories(self) -> list[dict]:
        """The row histories the log is rebuilt from on a resume, one per rank that logs rows."""
        return [self.history.state_dict()]

    def open_log(self) -> MetricsLog | None:
        """Rank 0's log: new, or on a resume written anew from the rows in the checkpoints (a killed writer leaves
        the file unopenable, and may die between a checkpoint and its rows). None on the other ranks."""
        histories = self.log_histories() if self.position is not None else []
        self.skips_reported: dict[int, int] = {}  # rank 0: skipped-image counts the log holds (io/history.py)
        if not self.dist.is_root:
            return None
        if self.position is None:
            self.data.save_split(self.run_dir / "split.h5")
        else:
            where = position_text(self.position, self.iterations_per_unit, self.unit)
            self.console.info(f"resumed {self.run_dir} {where}; {self.log_name} rewritten from the checkpoints")
        attributes = run_attributes(self.cfg, self.dist, **self.log_attributes())
        log, self.skips_reported = open_log(self.run_dir / self.log_name, self.log_layout(), attributes,
                                            self.data.report, self.row_type, histories, self.iterations_per_unit,
                                            self.log_events)
        return log

    log_events = None
    """events_of(rows, skipped, reported) of io/history.replay: the log's events besides resumes, or None."""

    def save_checkpoint(self, position: tuple[int, int, int], state: dict) -> None:
        """This rank's checkpoint at `position` (rank 0's alone when the ranks share one)."""
        if self.dist.is_root or not self.shared_checkpoint:
            self.checkpoints.save(position, state, {"rank": self.dist.rank, "world_size": self.dist.size})

    def stop_mid_unit(self, position: tuple[int, int, int], state: dict, where: str) -> None:
        """A stop agreed inside a stage (epoch): checkpoint it as it stands, then every rank exits for requeue."""
        self.save_checkpoint(position, state)
        self.preemption.stopped_mid_stage(where)

    def close(self, status: str | None = None) -> None:
        """Free the job's threads and rank 0's files; the log records `status` (how the run ended)."""
        self.release()
        if self.log is not None:
            self.log.close(status)
        if self.scalars is not None:
            self.scalars.close()
