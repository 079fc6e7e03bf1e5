"""The run directory: config.yaml and run.json fix what a resume must match."""
from __future__ import annotations

import json
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


def prepare_run_dir(run_dir: Path, config_yaml: str, world_size: int, force: bool = False) -> bool:
    """Create or check `run_dir`. Returns True when it already held a run (a resume).

    A different config or world size is a RunDirError unless `force` (then the new config is kept).
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    config_path, info_path = run_dir / "config.yaml", run_dir / "run.json"
    existed = config_path.is_file()
    if existed and not force:
        if config_path.read_text() != config_yaml:
            raise RunDirError(f"{run_dir} holds a run with a different config ({config_path}); use another "
                              "--run-dir, or --force to resume it with the new config")
        info = json.loads(info_path.read_text()) if info_path.is_file() else {}
        if info.get("world_size", world_size) != world_size:
            raise RunDirError(f"{run_dir} was run with {info['world_size']} ranks, this job has {world_size}: "
                              "every searcher has its own checkpoint, so the rank count must match")
    config_path.write_text(config_yaml)
    info_path.write_text(json.dumps({"world_size": world_size}))
    return existed


def logged_results(run_dir: Path, log_name: str) -> str:
    """What a run directory holds that starting afresh would overwrite ("" if nothing): the log's rows, policy.h5."""
    rows = logged_rows(run_dir / log_name)
    found = [f"{log_name} (unreadable)" if rows is None else f"{log_name} with {rows} rows" if rows else "",
             "policy.h5" if (run_dir / "policy.h5").exists() else ""]
    return " and ".join(text for text in found if text)
