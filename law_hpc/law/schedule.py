"""The stage schedule of 3SM (paper Sec. 3.2), shared by the search and the test phase.

An episode (a complete training) of `epochs` epochs is cut into `stages` stages of equal iteration
counts; the first `warmup_stages` are unweighted; the lr is set per stage (decays at 1-based stages,
as the paper writes them) with an optional linear warm-up over the first epochs.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StageSchedule:
    stages: int
    warmup_stages: int
    iterations_per_epoch: int
    epochs: int
    base_lr: float
    lr_decay_stages: tuple[int, ...] = ()
    lr_decay: float = 0.1
    warmup_epochs: float = 0.0

    @classmethod
    def from_config(cls, cfg, *, iterations_per_epoch: int, epochs: int, lr_scale: float = 1.0,
                    warmup_epochs: float | None = None) -> "StageSchedule":
        """The schedule of `cfg` (search.stages, search.warmup_stages, optim.*) for `epochs` epochs."""
        o = cfg.optim
        return cls(stages=cfg.search.stages, warmup_stages=cfg.search.warmup_stages,
                   iterations_per_epoch=iterations_per_epoch, epochs=epochs, base_lr=o.lr * lr_scale,
                   lr_decay_stages=tuple(o.lr_decay_stages), lr_decay=o.lr_decay,
                   warmup_epochs=o.warmup_epochs if warmup_epochs is None else warmup_epochs)

    @property
    def iterations_per_stage(self) -> int:
        return max(1, (self.epochs * self.iterations_per_epoch) // self.stages)

    def is_weighted(self, stage: int) -> bool:
        """Stages 0 .. warmup_stages-1 train unweighted and are not acted upon."""
        return stage >= self.warmup_stages

    def first_step(self, stage: int) -> int:
        return stage * self.iterations_per_stage

    def stage_steps(self, stage: int) -> range:
        """The global iteration numbers of `stage` (0-based)."""
        return range(self.first_step(stage), self.first_step(stage + 1))

    def epoch_steps(self, epoch: int) -> range:
        """The global iteration numbers of `epoch` (0-based)."""
        return range(epoch * self.iterations_per_epoch, (epoch + 1) * self.iterations_per_epoch)

    def stage_of_step(self, step: int) -> int:
        """The stage an iteration belongs to (iterations past the last full stage count to the last)."""
        return min(step // self.iterations_per_stage, self.stages - 1)

    def epoch_at_end(self, stage: int) -> float:
        """ce of Eq. 9: epochs completed when `stage` (0-based) ends."""
        return (stage + 1) * self.iterations_per_stage / self.iterations_per_epoch

    def stage_lr(self, stage: int) -> float:
        """lr0 x lr_decay^(number of decay stages reached); decay stages are 1-based as in the paper."""
        reached = sum(1 for boundary in self.lr_decay_stages if stage + 1 >= boundary)
        return self.base_lr * self.lr_decay ** reached

    def lr_at(self, step: int) -> float:
        """The lr of iteration `step` (from 0): its stage's lr, with a linear warm-up over `warmup_epochs`."""
        lr = self.stage_lr(self.stage_of_step(step))
        warmup_steps = self.warmup_epochs * self.iterations_per_epoch
        if warmup_steps > 0 and step < warmup_steps:
            lr *= (step + 1) / warmup_steps
        return lr


def set_lr(optimizers, lr: float) -> None:
    """Set the learning rate of every parameter group of every optimizer."""
    for optimizer in optimizers:
        for group in optimizer.param_groups:
            group["lr"] = lr


def schedule_difference(cfg) -> str:
    """A deliberate difference between a search episode and the final training (search.epochs vs
    optim.epochs), as a note for the user, or ""."""
    if cfg.search_epochs == cfg.optim.epochs:
        return ""
    return (f"search.epochs={cfg.search_epochs} differs from optim.epochs={cfg.optim.epochs}: "
            "episodes are not the final training; law_hpc.train will need train.allow_schedule_mismatch")
