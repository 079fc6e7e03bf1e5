"""Duplicate Networks Reward (Eq. 8-9) and the stage schedule of 3SM (warm-up, lr by stage)."""
from __future__ import annotations

import math
from dataclasses import dataclass


def reward_weight(current_epoch: float, total_epochs: float, scale: float, k: float) -> float:
    """r_w = s * exp(k * ce / ne) (Eq. 9): later stages count more."""
    return scale * math.exp(k * current_epoch / total_epochs)


def stage_reward(acc_target: float, acc_reference: float, current_epoch: float, total_epochs: float,
                 scale: float, k: float) -> float:
    """r_T = r_w * (acc_target - acc_reference) (Eq. 8), accuracies as fractions on clean validation."""
    return reward_weight(current_epoch, total_epochs, scale, k) * (acc_target - acc_reference)


@dataclass(frozen=True)
class StageSchedule:
    """An episode of `epochs` epochs cut into `stages` stages of equal iteration counts (3SM)."""

    stages: int
    warmup_stages: int
    iterations_per_epoch: int
    epochs: int
    base_lr: float
    lr_decay_stages: tuple[int, ...] = ()
    lr_decay: float = 0.1
    warmup_epochs: float = 0.0

    @property
    def iterations_per_stage(self) -> int:
        return max(1, (self.epochs * self.iterations_per_epoch) // self.stages)

    def is_weighted(self, stage: int) -> bool:
        """Stages 0 .. warmup_stages-1 train unweighted and are not acted upon."""
        return stage >= self.warmup_stages

    def first_step(self, stage: int) -> int:
        return stage * self.iterations_per_stage

    def epoch_at_end(self, stage: int) -> float:
        """ce of Eq. 9: epochs completed when `stage` (0-based) ends."""
        return (stage + 1) * self.iterations_per_stage / self.iterations_per_epoch

    def stage_lr(self, stage: int) -> float:
        """lr0 x lr_decay^(number of decay stages reached); decay stages are 1-based as in the paper."""
        reached = sum(1 for boundary in self.lr_decay_stages if stage + 1 >= boundary)
        return self.base_lr * self.lr_decay ** reached

    def lr_at(self, stage: int, step: int) -> float:
        """The stage's lr with a linear warm-up over the first `warmup_epochs` (step counts from 0)."""
        lr = self.stage_lr(stage)
        warmup_steps = self.warmup_epochs * self.iterations_per_epoch
        if warmup_steps > 0 and step < warmup_steps:
            lr *= (step + 1) / warmup_steps
        return lr
