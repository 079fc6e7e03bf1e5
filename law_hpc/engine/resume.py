"""Where a job resumes: the newest checkpoint position that every rank holds complete."""
from __future__ import annotations

import warnings

from ..io.checkpoint import CheckpointStore


def agree_on_resume(store: CheckpointStore, dist, prefix: str = "[law]") -> tuple[int, int] | None:
    """The newest position that EVERY rank has a complete checkpoint of, or None (start afresh).

    Every rank takes part (one allgather); skipped corrupt files are reported, not hidden.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mine = store.positions()
    for warning in caught:
        print(f"{prefix} rank {dist.rank}: WARNING: {warning.message}", flush=True)
    everyone = dist.allgather_object(mine)
    common = set(everyone[0]).intersection(*map(set, everyone[1:]))
    if not common:
        if any(everyone):
            print(f"{prefix} rank {dist.rank}: WARNING: ranks share no complete checkpoint; starting over", flush=True)
        return None
    return max(common)
