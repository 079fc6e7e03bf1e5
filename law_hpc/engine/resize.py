"""A search resumed on another number of searchers than wrote its checkpoints (search.allow_resize).

After a node failure a requeued job may get fewer nodes; a user may also add some. The ranks that wrote the
checkpoints (N_a before) and the ranks that resume (N_a after) differ, so no rank can simply load its own file:

- the strategy model, its optimiser and the policy selection are identical on every searcher (Eq. 10, 13 average
  their gradients), so any one rank's copy serves: rank 0's;
- the replay buffers are pooled (every searcher's transitions, in rank order) and dealt out again round-robin,
  so the Full Data Update still sees every transition across the new searchers;
- the episode under way is given up: each new searcher starts the next episode with a fresh pair (its nets,
  exploration noise and stage state belong to a rank that may be gone);
- the rows the old ranks logged stay in metrics.h5: a searcher that left hands its history to rank 0.
"""
from __future__ import annotations

import numpy as np

from ..io.checkpoint import CheckpointStore, list_checkpoints
from ..io.history import RowHistory, position_text
from ..io.metrics import StageRow
from ..io.rundir import RunDirError

RETIRED_LOG = "retired_log"
"""State parts of rank 0 holding the histories of searchers that left: retired_log0, retired_log1, ..."""


def checkpoint_world_size(run_dir, rank: int = 0) -> int | None:
    """How many ranks wrote the newest checkpoint of `rank` (its world_size attribute); None without one."""
    import h5py

    for path in list_checkpoints(CheckpointStore(run_dir, rank).directory):
        try:
            with h5py.File(path, "r") as file:
                return int(file.attrs["world_size"])
        except (OSError, KeyError):
            continue  # a torn or foreign file: the next one
    return None


def common_position(run_dir, ranks: int) -> tuple[int, int, int]:
    """The newest position that every one of the `ranks` old searchers holds a verified checkpoint of."""
    held = [set(CheckpointStore(run_dir, rank).positions()) for rank in range(ranks)]
    common = set.intersection(*held)
    if not common:
        raise RunDirError(f"{run_dir}: its {ranks} searchers hold no checkpoint position in common; nothing was "
                          "changed: move it aside or use another --run-dir to start again")
    return max(common)


def pooled_buffer(buffers: list[dict], rank: int, size: int) -> dict:
    """Rank `rank` of `size`'s share of every old searcher's transitions: the pool (in old rank order, each
    oldest first) dealt out round-robin."""
    pool = {name: np.concatenate([buffer[name] for buffer in buffers]) for name in buffers[0]}
    return {name: array[rank::size].copy() for name, array in pool.items()}


def share_of(states: list[dict], rank: int, size: int) -> dict:
    """The state new searcher `rank` of `size` resumes from, given every old searcher's state at one position
    (Search.state_dict): shared parts from rank 0, its share of the pooled buffers, its own log (an empty one
    for a new rank), no pair and no stage under way; rank 0 also takes the logs of the searchers that left."""
    shared, own = states[0], states[rank] if rank < len(states) else None
    state = {part: value for part, value in shared.items()
             if part not in ("pair", "stage", "log") and not part.startswith(RETIRED_LOG)}
    state["search"] = {**(own or shared)["search"], "episode_over": True}  # the next episode starts afresh
    state["selection"] = {**shared["selection"], "candidate": None}  # an evaluation under way is given up
    state["buffer"] = pooled_buffer([old["buffer"] for old in states], rank, size)
    state["noise"] = {name: np.zeros_like(value) for name, value in shared["noise"].items()}
    state["log"] = own["log"] if own is not None else RowHistory(StageRow).state_dict()
    if rank == 0:
        state.update(retired_logs(retired_logs(shared) + [states[old]["log"] for old in range(size, len(states))]))
    return state


def resized_state(run_dir, before: int, rank: int, size: int) -> tuple[tuple[int, int, int], dict]:
    """(position, state) that searcher `rank` of `size` resumes from, out of the checkpoints of `before` searchers:
    every rank reads every old rank's state at the newest position they all hold and takes its part (`share_of`)."""
    position = common_position(run_dir, before)
    states = [CheckpointStore(run_dir, old).load(position) for old in range(before)]
    return position, share_of(states, rank, size)


def resize_warning(position, before: int, size: int, iterations_per_stage: int, buffered: int) -> str:
    """What the job says on stderr when it resumes on `size` searchers from the checkpoints of `before`."""
    return (f"the checkpoints were written by {before} searchers, this job has {size}: resumed "
            f"{position_text(position, iterations_per_stage)} with the strategy model, the pooled replay buffers "
            f"({buffered} transitions on rank 0) and fresh pairs from the next episode on (search.allow_resize)")


def retired_logs(state_or_logs):
    """The retired histories held in a state (a list, in order), or the state parts that hold a list of them."""
    if isinstance(state_or_logs, list):
        return {f"{RETIRED_LOG}{i}": log for i, log in enumerate(state_or_logs)}
    count = sum(part.startswith(RETIRED_LOG) for part in state_or_logs)
    return [state_or_logs[f"{RETIRED_LOG}{i}"] for i in range(count)]
