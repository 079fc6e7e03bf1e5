"""What the entry points (law_hpc.search, law_hpc.train) share: config loading and the agreed start.

Every rank uses the same run directory (rank 0 names a new one), rank 0 prepares it, and a setup
error on ANY rank (bad path, wrong config for the directory, missing data) stops EVERY rank with exit
code 2 before training starts, so no rank waits forever in a collective.
"""
from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from . import dist as distributed
from .config import ConfigError, load_config, to_yaml
from .config_help import keys_help
from .engine.preemption import EXIT_PREEMPTED, StopFlag
from .io.rundir import RunDirError, new_run_dir, prepare_run_dir
from .registry import checked

EXIT_BAD_INPUT = 2


# The shipped configs: package data of law_hpc (a link to the repository's configs/ in a checkout).
PACKAGED_CONFIGS = Path(__file__).resolve().parent / "configs"


def default_config_path() -> Path | None:
    """configs/fmnist_noisy_mlp.yaml; without it, the built-in defaults (the same search)."""
    path = PACKAGED_CONFIGS / "fmnist_noisy_mlp.yaml"
    return path if path.is_file() else None


def resolve_config(name: str | None) -> Path | None:
    """--config: a file, else a shipped config by name (`smoke`, `smoke.yaml`), so an installed package
    needs no checkout; None = the default config."""
    if not name:
        return default_config_path()
    path = Path(name)
    if path.is_file() or path.parent != Path("."):
        return path
    shipped = PACKAGED_CONFIGS / (name if name.endswith((".yaml", ".yml")) else f"{name}.yaml")
    return shipped if shipped.is_file() else path


def add_config_options(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """--print-config, and every config key with its default and docstring in --help."""
    parser.add_argument("--print-config", action="store_true",
                        help="print the resolved config (YAML) and exit; nothing is run or written")
    parser.epilog = keys_help()
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    return parser


def run_entry_point(args, tag: str, build, adjust=lambda cfg: cfg) -> int:
    """What `main` of an entry point does: the config of --config/--set adjusted by the entry point's own options
    and checked (exit 2 on a bad one), printed (--print-config) or run by `run_job` with
    `build(cfg, dist, run_dir, resumed)`."""
    cfg = load_config_or_report(args, adjust)
    if cfg is None:
        return EXIT_BAD_INPUT
    if getattr(args, "print_config", False):
        print(to_yaml(cfg), end="")
        return 0
    return run_job(args, cfg, tag, lambda dist, run_dir, resumed: build(cfg, dist, run_dir, resumed))


def load_config_or_report(args, adjust=lambda cfg: cfg):
    """The config of `--config`/`--set`, `adjust`ed and checked against the registries, or None after printing
    the one-line error."""
    try:
        return checked(adjust(load_config(resolve_config(args.config), args.set)))
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return None


def run_job(args, cfg, tag: str, build) -> int:
    """Start Horovod, agree on the run directory, `build(dist, run_dir, resumed)` the job, run it."""
    StopFlag.install()  # already done by `python -m`; a console script gets here after its imports
    try:
        dist = distributed.init(cfg.threads_per_rank, cfg.allow_cpu)
    except distributed.LaunchError as err:  # every rank sees it: each stops before any file is written
        print(f"error: {err}", file=sys.stderr, flush=True)
        return EXIT_BAD_INPUT
    job, status = None, "failed"  # unless run() returns: a setup error on another rank, an exception
    try:
        message = ""
        try:
            run_dir = Path(args.run_dir) if args.run_dir else Path(
                dist.allgather_object(str(new_run_dir(tag=tag)) if dist.is_root else None)[0])
            error, resumed = None, False
            if dist.is_root:
                try:
                    resumed = prepare_run_dir(run_dir, to_yaml(cfg), dist.size, args.force,
                                              resizable=tag == "search" and cfg.search.allow_resize)
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
        code = job.run()
        status = {0: "done", EXIT_PREEMPTED: "preempted"}.get(code, "failed")
        return code
    finally:
        if job is not None:
            job.close(status)
        dist.shutdown()
        # From here the process only exits, and while Python finalizes it restores the default action (death)
        # of the signals it handled: a stop request now (the time limit's USR1 as a done job ends) would turn
        # its exit code into -10. Ignored signals stay ignored.
        for sig in (signal.SIGUSR1, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)
