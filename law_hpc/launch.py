"""What the entry points (law_hpc.search, law_hpc.train) share: config loading and the agreed start.

Every rank uses the same run directory (rank 0 names a new one), rank 0 prepares it, and a setup
error on ANY rank (bad path, wrong config for the directory, missing data) stops EVERY rank with exit
code 2 before training starts, so no rank waits forever in a collective.
"""
from __future__ import annotations

import sys
from pathlib import Path

from . import dist as distributed
from .config import ConfigError, load_config, to_yaml
from .io.metrics import git_commit, package_versions
from .io.rundir import RunDirError, new_run_dir, prepare_run_dir

EXIT_BAD_INPUT = 2


def default_config_path() -> Path | None:
    """configs/fmnist_noisy_mlp.yaml of the repository; without it, the built-in defaults (the same search)."""
    path = Path(__file__).resolve().parent.parent / "configs" / "fmnist_noisy_mlp.yaml"
    return path if path.is_file() else None


def run_entry_point(args, tag: str, build, adjust=lambda cfg: cfg) -> int:
    """What `main` of an entry point does: the config of --config/--set (exit 2 on a bad one), adjusted by
    the entry point's own options, then `run_job` with `build(cfg, dist, run_dir, resumed)`."""
    cfg = load_config_or_report(args)
    if cfg is None:
        return EXIT_BAD_INPUT
    cfg = adjust(cfg)
    return run_job(args, cfg, tag, lambda dist, run_dir, resumed: build(cfg, dist, run_dir, resumed))


def load_config_or_report(args):
    """The config of `--config`/`--set`, or None after printing the one-line error."""
    try:
        return load_config(args.config or default_config_path(), args.set)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return None


def run_attributes(cfg, dist, **extra) -> dict:
    """The attributes every log file (metrics.h5, train.h5) carries: config, world, versions, commit."""
    return {"config_yaml": to_yaml(cfg), "world_size": dist.size, "controller": dist.controller,
            "device": str(dist.device), "versions": package_versions(), "git_commit": git_commit(), **extra}


def run_job(args, cfg, tag: str, build) -> int:
    """Start Horovod, agree on the run directory, `build(dist, run_dir, resumed)` the job, run it."""
    dist = distributed.init(cfg.threads_per_rank)
    job = None
    try:
        message = ""
        try:
            run_dir = Path(args.run_dir) if args.run_dir else Path(
                dist.allgather_object(str(new_run_dir(tag=tag)) if dist.is_root else None)[0])
            error, resumed = None, False
            if dist.is_root:
                try:
                    resumed = prepare_run_dir(run_dir, to_yaml(cfg), dist.size, args.force)
                except (RunDirError, OSError) as err:
                    error = str(err)
            error, resumed = dist.allgather_object((error, resumed))[0]
            if error:
                raise RunDirError(error)
            job = build(dist, run_dir, resumed)
        except (RunDirError, ConfigError, FileNotFoundError, ValueError, ImportError) as err:
            message = str(err)
        if dist.any_flag(bool(message)):
            print(f"error: {message or 'setup failed on another rank'}", file=sys.stderr, flush=True)
            return EXIT_BAD_INPUT
        return job.run()
    finally:
        if job is not None:
            job.close()
        dist.shutdown()
