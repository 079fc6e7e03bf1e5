"""A searcher's position and memory between stages, and its per-stage checkpoint.

What a stage boundary must carry for an exact resume: counters (episode, stage), the stage state's
smoothed scalars, the metrics cursor, the classifier pair with its optimizers, the strategy model
with its optimizers and target copies, the replay buffer, the OU noise value and the RNG states.
Batches, augmentation, exploration and FDU shuffles draw from generators seeded by their coordinates
(seed, rank, episode, stage, step), so they need no saved state.
"""
from __future__ import annotations

import hashlib
import math
import random
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch

from ..io.checkpoint import checkpoint_dir, checkpoint_path, complete_positions, read_checkpoint, save_checkpoint
from .pair import ClassifierPair


def strategy_checksum(model: torch.nn.Module) -> int:
    """A signed 64-bit digest of every parameter and buffer: equal on all ranks iff bit-identical."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return int.from_bytes(digest.digest()[:8], "little", signed=True)


@dataclass
class SearchState:
    episode: int = 0
    stage: int = 0
    """The next stage to run in `episode`."""
    l_smooth: float = 0.0
    acc_smooth: float = 0.0
    metrics_cursor: int = 0
    """Rows metrics.h5 holds once the last checkpointed stage is logged."""
    episode_over: bool = False
    last_row: dict = field(default_factory=dict)

    @classmethod
    def fresh(cls, num_classes: int) -> "SearchState":
        state = cls()
        state.start_episode(num_classes)
        return state

    def start_episode(self, num_classes: int) -> None:
        """Before any training the loss is that of a uniform guess and accuracy is chance."""
        self.stage, self.episode_over = 0, False
        self.l_smooth, self.acc_smooth = math.log(num_classes), 1.0 / num_classes

    def smooth(self, loss: float, acc: float, beta: float) -> tuple[float, float]:
        """The EMAs l_smooth and acc_smooth after a stage with training loss `loss` and accuracy `acc`."""
        return beta * self.l_smooth + (1 - beta) * loss, beta * self.acc_smooth + (1 - beta) * acc

    def advance(self, stage: int, scalars: tuple[float, float], episode_over: bool) -> None:
        self.stage = stage + 1
        self.l_smooth, self.acc_smooth = float(scalars[0]), float(scalars[1])
        self.episode_over = episode_over

    def next_episode(self) -> None:
        self.episode += 1
        self.stage = 0

    # --- checkpoints ----------------------------------------------------------------------------------
    def save(self, run_dir, dist, search, row: dict) -> float:
        """Write this rank's checkpoint of the stage just finished; returns the seconds it took."""
        started = time.perf_counter()
        self.metrics_cursor += dist.size
        self.last_row = row
        arrays = {f"buffer/{name}": array for name, array in search.buffer.state_dict().items()}
        arrays["ou_state"] = search.noise.ou_state
        objects = {
            "strategy": search.strategy.state_dict(),
            "strategy_optimizers": search.ddpg.optimizer_state(),
            "rng": {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()},
            "row": row,
        }
        if not self.episode_over:
            objects["pair"] = search.pair.state_dict()
        attrs = {"l_smooth": self.l_smooth, "acc_smooth": self.acc_smooth, "metrics_cursor": self.metrics_cursor,
                 "episode_over": int(self.episode_over), "rank": dist.rank, "world_size": dist.size}
        save_checkpoint(checkpoint_dir(run_dir, dist.rank), self.episode, self.stage - 1, arrays, objects, attrs)
        return time.perf_counter() - started

    def restore(self, run_dir, rank: int, position: tuple[int, int], search) -> ClassifierPair | None:
        """Load this rank's checkpoint at `position`; returns the pair to continue, or None for a new episode."""
        checkpoint = read_checkpoint(checkpoint_path(checkpoint_dir(run_dir, rank), *position))
        attrs, objects, arrays = checkpoint["attrs"], checkpoint["torch"], checkpoint["arrays"]
        search.strategy.load_state_dict(objects["strategy"])
        search.ddpg.load_optimizer_state(objects["strategy_optimizers"])
        search.buffer.load_state_dict({name.split("/", 1)[1]: array for name, array in arrays.items()
                                       if name.startswith("buffer/")})
        search.noise.ou_state[:] = arrays["ou_state"]
        random.setstate(objects["rng"]["python"])
        np.random.set_state(objects["rng"]["numpy"])
        torch.set_rng_state(objects["rng"]["torch"])
        self.episode, self.stage = position[0], position[1] + 1
        self.l_smooth, self.acc_smooth = float(attrs["l_smooth"]), float(attrs["acc_smooth"])
        self.metrics_cursor = int(attrs["metrics_cursor"])
        self.episode_over = bool(attrs["episode_over"])
        self.last_row = objects["row"]
        if self.episode_over or self.stage >= search.cfg.search.stages:
            self.next_episode()
            return None
        cfg = search.cfg
        pair = ClassifierPair.create(search.model_factory, 0, search.dist.device, cfg.optim.lr, cfg.optim.momentum,
                                     cfg.optim.weight_decay, cfg.search.pair_mode)
        pair.load_state_dict(objects["pair"])
        return pair


def agree_on_resume(run_dir, dist) -> tuple[int, int] | None:
    """The newest (episode, stage) that EVERY rank has a complete checkpoint of, or None."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mine = complete_positions(checkpoint_dir(run_dir, dist.rank))
    for warning in caught:
        print(f"[law] rank {dist.rank}: WARNING: {warning.message}", flush=True)
    everyone = dist.allgather_object(mine)
    common = set(everyone[0]).intersection(*map(set, everyone[1:]))
    if not common:
        if any(everyone):
            print(f"[law] rank {dist.rank}: WARNING: ranks share no complete checkpoint; starting over", flush=True)
        return None
    return max(common)
