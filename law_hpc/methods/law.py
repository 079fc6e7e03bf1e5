"""A learned LAW policy in the test phase: the searched actor weights a fresh network's training."""
from __future__ import annotations

from ..io.policy_file import resolve_policy, schedule_differences
from ..law.losses import base_loss_of, cross_entropy
from ..weighter import PolicyWeighter
from .base import WeightingMethod, register_method


@register_method
class LawPolicy(WeightingMethod):
    """Weights from a searched policy.h5 through the deterministic actor (no exploration noise)."""

    name = "law"
    told = "a clean validation set (in its search)"

    def __init__(self, policy_path, class_counts, total_epochs: float, iterations_per_epoch: int,
                 base_loss=cross_entropy):
        self.policy_path = str(resolve_policy(policy_path))  # a file, or a shipped policy's name
        self.base_loss = base_loss  # train.base_loss, the loss the policy was searched on (schedule_differences)
        self.weighter = PolicyWeighter.from_file(policy_path, class_counts=class_counts)
        self.weight_norm = self.weighter.weight_norm
        self.iterations_per_epoch = iterations_per_epoch
        self.total_steps = round(total_epochs * iterations_per_epoch)
        self.schedule_differences: list[str] = []

    @classmethod
    def from_config(cls, cfg, data) -> "LawPolicy":
        if not cfg.train.policy:
            raise ValueError("train.method=law needs a searched policy: --policy RUN/policy.h5 (or train.policy)")
        method = cls(cfg.train.policy, data.train_label_counts, cfg.optim.epochs, data.train.batches_per_epoch,
                     base_loss_of(cfg, data.train_label_counts))
        method.schedule_differences = schedule_differences(method.weighter.settings, cfg)
        if method.schedule_differences and not cfg.train.allow_schedule_mismatch:
            raise ValueError(f"{cfg.train.policy} was searched on another schedule ("
                             f"{'; '.join(method.schedule_differences)}): its stages would not be this training's. "
                             "Train on the policy's schedule, or set train.allow_schedule_mismatch=true")
        return method

    def log_attributes(self) -> dict:
        return {"policy": self.policy_path, "schedule_mismatch": "; ".join(self.schedule_differences),
                "policy_validation_gap": float(self.weighter.settings.get("validation_gap", float("nan")))}

    def sample_weights(self, logits, batch, epoch):
        # the step's stage, as the search's StageSchedule.stage_of_step cut its episodes
        stage = self.weighter.stage_of_step(round(epoch * self.iterations_per_epoch), self.total_steps)
        # the loss feature and l_smooth: the batch's base loss, computed once by per_sample_loss (train_step calls
        # it first), as the search's target step hands it on (law/weighting.py)
        return self.weighter.weights(logits, batch.labels, stage, self._batch_loss)

    def per_sample_loss(self, logits, batch):
        loss = self.base_loss(logits, batch.labels)
        self._batch_loss = loss.detach()
        return loss

    def end_stage(self, val_accuracy, val_losses) -> None:
        """acc_smooth of the stage state follows the validation accuracy, as in the search; a "val_rank" policy
        also ranks the next stage's losses among the validation set's (losses, labels)."""
        self.pool_ranks()  # data-parallel ranks: l_smooth over all ranks' batches
        accuracy = val_accuracy()  # first: it averages the ranks' BatchNorm statistics
        losses_and_labels = val_losses(self.base_loss) if self.weighter.needs_validation_losses else ()
        self.weighter.observe_validation(accuracy, *losses_and_labels)

    def pool_ranks(self) -> None:
        """The ranks' stage-loss sums pooled (a mean, linear: pooling inside a stage changes nothing at its end)."""
        self.weighter.pool_stage_loss(self.allgather)

    def stateful(self) -> dict:
        return {**super().stateful(), "weighter": self.weighter}
