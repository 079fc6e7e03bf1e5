"""The run directory: config.yaml and run.json fix what a resume must match."""
from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path

from .metrics import logged_rows


class RunDirError(ValueError):
    """The run directory belongs to a different run (config or world size)."""


def new_run_dir(base: str | Path = "runs", tag: str = "search") -> Path:
    """runs/<tag>-<UTC timestamp>, unique."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    path = Path(base) / f"{tag}-{stamp}"
    suffix = 1
    while path.exists():
        suffix += 1
        path = Path(base) / f"{tag}-{stamp}-{suffix}"
    return path


_HELD_LOCKS: dict[Path, object] = {}  # run dir -> its open lock file, held until the process ends (even by kill -9)


def lock_run_dir(run_dir: Path) -> None:
    """Hold an exclusive lock on run_dir/.lock for the rest of this process's life: two jobs on one run
    directory would overwrite each other's checkpoints and logs. A file system without locks gets a warning."""
    run_dir = run_dir.resolve()
    if run_dir in _HELD_LOCKS:
        return
    handle = open(run_dir / ".lock", "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise RunDirError(f"{run_dir} is in use by another job ({holder}); wait for it to end, or use another "
                          "--run-dir") from None
    except OSError as err:  # e.g. ENOLCK on a file system without locks
        print(f"[law] WARNING: cannot lock {run_dir} ({err}); make sure no other job uses it", file=sys.stderr,
              flush=True)
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
    handle.flush()
    _HELD_LOCKS[run_dir] = handle


def prepare_run_dir(run_dir: Path, config_yaml: str, world_size: int, force: bool = False,
                    resizable: bool = False) -> bool:
    """Create, lock (`lock_run_dir`) and check `run_dir`. Returns True when it already held a run (a resume).

    A different config is a RunDirError unless `force` (then the new config is kept); so is a different world
    size, unless also `resizable` (a search with search.allow_resize). A directory without a checkpoint (a start
    that failed early) takes the new config.
    """
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirError(f"--run-dir {run_dir} is a file, not a directory")
    run_dir.mkdir(parents=True, exist_ok=True)
    lock_run_dir(run_dir)
    config_path, info_path = run_dir / "config.yaml", run_dir / "run.json"
    # a start that failed before its first checkpoint (bad input, since fixed) left nothing to resume
    existed = config_path.is_file() and (any(run_dir.glob("checkpoints/*/*.h5")) or any(
        logged_results(run_dir, log) for log in ("metrics.h5", "train.h5")))
    if existed and not force:
        if config_path.read_text() != config_yaml:
            raise RunDirError(f"{run_dir} holds a run with a different config ({config_path}); use another "
                              "--run-dir, or --force to resume it with the new config")
        info = json.loads(info_path.read_text()) if info_path.is_file() else {}
        if info.get("world_size", world_size) != world_size and not resizable:
            raise RunDirError(f"{run_dir} was run with {info['world_size']} ranks, this job has {world_size}: "
                              "every rank has its own checkpoint, so the rank count must match (a search resumes "
                              "on another number of searchers with search.allow_resize=true)")
    config_path.write_text(config_yaml)
    info_path.write_text(json.dumps({"world_size": world_size}))
    return existed


def logged_results(run_dir: Path, log_name: str) -> str:
    """What a run directory holds that starting afresh would overwrite ("" if nothing): the log's rows, policy.h5."""
    rows = logged_rows(run_dir / log_name)
    found = [f"{log_name} (unreadable)" if rows is None else f"{log_name} with {rows} rows" if rows else "",
             "policy.h5" if (run_dir / "policy.h5").exists() else ""]
    return " and ".join(text for text in found if text)
