"""Where a job resumes: the newest checkpoint position that every rank holds complete and can load."""
from __future__ import annotations

import warnings

from ..io.checkpoint import CheckpointStore
from ..io.rundir import RunDirError


def load_agreed(store: CheckpointStore, dist, run_dir, results: str, console) -> tuple[tuple[int, int, int], dict] | None:
    """(position, this rank's state) of the newest position that EVERY rank has a complete checkpoint of and
    loads, or None: nothing to resume, start afresh. Every rank takes part (collectives in lock-step).

    A checkpoint that verifies but does not load on some rank (a pickle payload) is reported, naming the
    file, and the previous common position is tried. Checkpoints on any rank, or `results` (what rank 0
    found in the run directory, e.g. "metrics.h5 with 12 rows"), but no position to resume from: a
    RunDirError on every rank, so a run is never silently started over its results.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mine = store.positions()
    for warning in caught:
        console.rank_warning(str(warning.message))
    everyone = dist.allgather_object((mine, store.directory.name if store.has_files() else "", results))
    candidates = sorted(set(everyone[0][0]).intersection(*(set(positions) for positions, _, _ in everyone[1:])))
    while candidates:
        position = candidates.pop()
        try:
            state, error = store.load(position), ""
        except ValueError as err:
            state, error = None, str(err)
        errors = [error for error in dist.allgather_object(error) if error]
        if not errors:
            return position, state
        fallback = f"the previous checkpoint, {store.path(candidates[-1]).name}" if candidates else "no other checkpoint"
        for error in errors:
            console.warning(f"{error}; using {fallback}")
    found = [everyone[0][2]] if everyone[0][2] else []
    with_files = sorted({directory for _, directory, _ in everyone if directory})
    if with_files:
        found.append(f"checkpoint files ({', '.join(with_files)})")
    if found:
        raise RunDirError(f"{run_dir} holds {' and '.join(found)} but no checkpoint that every rank can resume from; "
                          "nothing was changed: move it aside or use another --run-dir to start again")
    return None

