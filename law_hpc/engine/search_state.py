"""A searcher's position between stages: the counters and the smoothed scalars of the stage state.

Everything else a resume needs (nets, optimizers, strategy model, replay buffer, noise, RNG) is the
state dict of the object that owns it; batches, augmentation, exploration and FDU shuffles draw from
generators seeded by their coordinates (seed, rank, episode, stage, step), so they need no saved state.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from ..law.weighting import initial_stage_scalars, smoothed


@dataclass
class SearchState:
    """(episode, stage): the next stage to run; l_smooth, acc_smooth: EMAs of the target's training loss and
    validation accuracy (the stage state's measured part, Eq. 5); episode_over: the last stage run ended its episode."""

    episode: int = 0
    stage: int = 0
    l_smooth: float = 0.0
    acc_smooth: float = 0.0
    episode_over: bool = False

    @classmethod
    def fresh(cls, num_classes: int) -> "SearchState":
        """The state before the first episode."""
        state = cls()
        state.start_episode(num_classes)
        return state

    def start_episode(self, num_classes: int) -> None:
        """Before any training the loss is that of a uniform guess and accuracy is chance."""
        self.stage, self.episode_over = 0, False
        self.l_smooth, self.acc_smooth = initial_stage_scalars(num_classes)

    @property
    def scalars(self) -> tuple[float, float]:
        """(l_smooth, acc_smooth): the stage state's measured part."""
        return self.l_smooth, self.acc_smooth

    def smoothed(self, loss: float, acc: float, beta: float) -> tuple[float, float]:
        """The EMAs l_smooth and acc_smooth after a stage with training loss `loss` and accuracy `acc`."""
        return smoothed(self.l_smooth, loss, beta), smoothed(self.acc_smooth, acc, beta)

    def advance(self, stage: int, scalars: tuple[float, float], episode_over: bool) -> None:
        self.stage = stage + 1
        self.l_smooth, self.acc_smooth = float(scalars[0]), float(scalars[1])
        self.episode_over = episode_over

    def next_episode(self) -> None:
        self.episode += 1
        self.stage = 0

    def state_dict(self) -> dict:
        return asdict(self)

    def load_state_dict(self, state: dict) -> None:
        for key, value in state.items():
            if hasattr(self, key):  # a checkpoint of an earlier version may hold more
                setattr(self, key, type(getattr(self, key))(value))
