"""Apply a learned policy in any training loop: `LAWLoss` (a loss), or per-sample weights from (logits, labels, stage).

    law_loss = LAWLoss.from_policy("runs/search-x/policy.h5", class_counts, steps_per_epoch, epochs)
    loss = law_loss(logits, labels, step)               # step counted over the whole training

or, step by step:

    weighter = PolicyWeighter.from_file("runs/search-x/policy.h5", class_counts=train_label_counts)
    total_steps = epochs * steps_per_epoch                       # the whole training, in optimiser steps
    for step, (images, labels) in enumerate(batches):           # counted over the whole training
        logits = model(images)
        weights = weighter.weights(logits, labels, weighter.stage_of_step(step, total_steps))
        loss = weighter.loss(F.cross_entropy(logits, labels, reduction="none"), weights)
        ...
        if (step + 1) % weighter.schedule(total_steps).iterations_per_stage == 0:   # each stage end, as the search
            weighter.observe_validation(validation_accuracy(model))     # + losses: see below

The stage state s_T = [e_T, l_smooth, acc_smooth] is kept here as in the search: l_smooth follows the
mean loss of the batches seen in each stage, acc_smooth the validation accuracies reported through
`observe_validation` (without it acc_smooth stays at chance level, which the policy never saw after its
first stage). A policy searched with strategy.feature_norm "val_rank" ranks each training loss among the clean
validation set's per-sample losses: give them too, `observe_validation(accuracy, losses)` (the policy's base loss,
e.g. F.cross_entropy(model(x_val), y_val, reduction="none") in eval mode); `weighter.needs_validation_losses` says
whether a policy needs them. `loss` normalises as the search did (settings.weight_norm: sum_w, i.e.
sum_i w_i l_i / sum_i w_i, for every shipped policy; a plain mean would scale the learning rate by the mean weight).
"""
from __future__ import annotations

import warnings

import numpy as np
import torch

from .law.schedule import StageSchedule
from .io.policy_file import load_policy
from .law.settings import PolicySettings
from .law.features import log_class_frequencies
from .law.losses import base_loss, cross_entropy
from .law.weighting import StageLoss, WeightingRule, initial_stage_scalars, smoothed


class LAWLoss:
    """A searched policy as a loss: `law_loss(logits, labels, step)` is the weighted batch loss of optimiser step
    `step` (counted over the whole training), with the policy's stage and normalisation handled.

        law_loss = LAWLoss.from_policy("fmnist_noisy_mlp", class_counts, steps_per_epoch, epochs)
        loss = law_loss(logits, labels, step)       # then loss.backward() as usual
        law_loss.observe_validation(val_accuracy)   # at each stage end (law_loss.stage_ends(step) says when)
    """

    def __init__(self, weighter: "PolicyWeighter", total_steps: int, base_loss=cross_entropy):
        self.weighter, self.total_steps, self.base_loss = weighter, int(total_steps), base_loss

    @classmethod
    def from_policy(cls, name_or_path, class_counts, steps_per_epoch: int, epochs: int) -> "LAWLoss":
        """A shipped policy's name or a policy.h5 path; the class counts of YOUR training labels; the schedule.
        The per-sample loss is the one the policy was searched on (its base_loss: cross-entropy unless recorded)."""
        weighter = PolicyWeighter.from_file(name_or_path, class_counts=class_counts)
        return cls(weighter, steps_per_epoch * epochs, base_loss(weighter.settings.base_loss, class_counts))

    def __call__(self, logits: torch.Tensor, labels: torch.Tensor, step: int) -> torch.Tensor:
        per_sample_loss = self.base_loss(logits, labels)
        stage = self.weighter.stage_of_step(step, self.total_steps)
        return self.weighter.loss(per_sample_loss, self.weighter.weights(logits, labels, stage, per_sample_loss))

    def stage_ends(self, step: int) -> bool:
        """Whether step `step` is the last of a stage: report a validation accuracy then, as the search did."""
        return (step + 1) % self.weighter.schedule(self.total_steps).iterations_per_stage == 0

    def observe_validation(self, accuracy: float, losses: torch.Tensor | None = None) -> None:
        """A clean validation accuracy (fraction) at a stage end; without it acc_smooth stays at chance. `losses`:
        the validation set's per-sample losses, which a "val_rank" policy needs (PolicyWeighter.observe_validation)."""
        self.weighter.observe_validation(accuracy, losses)


class PolicyWeighter:
    """The deterministic actor mu(s_T) of a search, turned into K_T(f) = 1 + tanh(theta_T f + b) (Eq. 3-4)."""

    def __init__(self, model, settings: PolicySettings, log_class_freq: np.ndarray, smoothing: float | None = None,
                 outcome: dict | None = None):
        smoothing = settings.smoothing if smoothing is None else smoothing  # the search's
        self.model, self.settings, self.smoothing = model, settings, smoothing
        self.outcome = outcome or {}
        """How the policy did in its search (policy_file.OUTCOME's keys it records)."""
        self.stages, self.warmup_stages = settings.stages, settings.warmup_stages
        self.log_class_freq = torch.as_tensor(log_class_freq, dtype=torch.float32)
        self.rule = WeightingRule.from_settings(settings, self.log_class_freq)  # the search's target uses it too
        self.l_smooth, self.acc_smooth = initial_stage_scalars(len(log_class_freq))
        self._stage, self._stage_loss, self._action = -1, StageLoss(), None
        self._schedule: StageSchedule | None = None

    @classmethod
    def from_file(cls, path, class_counts=None, smoothing: float | None = None) -> "PolicyWeighter":
        """Load policy.h5; `class_counts` (observed labels of YOUR training set, one count per class) sets the
        label feature; `smoothing` of the stage state defaults to the search's."""
        policy = load_policy(path)
        classes = policy.settings.num_classes
        if class_counts is not None and len(class_counts) != classes:
            raise ValueError(f"{path} was searched with {classes} classes; class_counts has {len(class_counts)}")
        gap = policy.validation_gap
        if gap is not None and gap <= 0:
            warnings.warn(f"{path}: this policy did not beat uniform training on its search's validation split "
                          f"(final accuracy gap {100 * gap:+.2f} points); it is likely to hurt", stacklevel=2)
        log_class_freq = policy.log_class_freq if class_counts is None else log_class_frequencies(class_counts)
        return cls(policy.model, policy.settings, log_class_freq, smoothing, policy.outcome)

    def schedule(self, total_steps: int) -> StageSchedule:
        """The search's stage schedule over a training of `total_steps` optimiser steps (law/schedule.py); kept,
        since every batch asks for it."""
        if self._schedule is None or self._schedule.iterations_per_epoch != total_steps:
            self._schedule = StageSchedule(self.stages, self.warmup_stages, iterations_per_epoch=total_steps, epochs=1,
                                           base_lr=0.0)
        return self._schedule

    def stage_of_step(self, step: int, total_steps: int) -> int:
        """The policy stage (0-based) of optimiser step `step` of a training of `total_steps`, cut into the
        search's stages of equal step counts by the search's own schedule object."""
        return self.schedule(total_steps).stage_of_step(step)

    @property
    def weight_norm(self) -> str:
        """How the search combined weights and losses: "sum_w" or "mean" (law.policy.weighted_mean_loss)."""
        return self.rule.weight_norm

    def loss(self, per_sample_loss: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """The weighted loss of a batch, normalised as in the search (Eq. 7)."""
        return self.rule.loss(per_sample_loss, weights)

    @property
    def needs_validation_losses(self) -> bool:
        """Whether this policy ranks training losses among the validation set's (strategy.feature_norm "val_rank")."""
        return self.rule.needs_validation_losses

    def observe_validation(self, accuracy: float, losses: torch.Tensor | None = None) -> None:
        """Report a validation accuracy (fraction); it enters acc_smooth as in the search. `losses`: the clean
        validation set's per-sample losses (the policy's base loss, eval mode), required by a "val_rank" policy:
        the next stage ranks each training loss among them."""
        if self.needs_validation_losses and losses is None:
            raise ValueError("this policy ranks each training loss among the clean validation set's losses "
                             f"(feature_norm {self.settings.feature_norm}): observe_validation(accuracy, losses) "
                             "needs the validation set's per-sample losses")
        self.acc_smooth = smoothed(self.acc_smooth, accuracy, self.smoothing)
        if losses is not None:
            self.rule.observe_validation_losses(torch.as_tensor(losses))

    def pool_stage_loss(self, allgather) -> None:
        """Data-parallel ranks (a collective, at every stage end and before every checkpoint): every rank takes the
        ranks' mean stage-loss sum and sample count, so l_smooth follows the loss of all of the stage's batches, as
        one process training on them would, every rank acts alike, and rank 0's checkpoint holds what every rank
        holds. A mean, not a sum: pooling again later counts nothing twice."""
        everyone = allgather((float(self._stage_loss.sum), self._stage_loss.samples))
        self._stage_loss.sum.fill_(sum(total for total, _ in everyone) / len(everyone))
        self._stage_loss.samples = sum(samples for _, samples in everyone) / len(everyone)

    def action(self, stage: int) -> torch.Tensor:
        """a_T = [theta_T, b] for `stage`; the stage state is updated when the stage changes."""
        if stage != self._stage:
            if self._stage_loss.samples:
                self.l_smooth = smoothed(self.l_smooth, self._stage_loss.mean(), self.smoothing)
            self._stage, self._stage_loss = stage, StageLoss(self._stage_loss.sum.device)
            self._action = self.model.act(stage, (self.l_smooth, self.acc_smooth))
        return self._action

    def state_dict(self) -> dict:
        """The stage state a resumed training continues from (the actor itself comes from policy.h5)."""
        return {"l_smooth": self.l_smooth, "acc_smooth": self.acc_smooth, "stage": self._stage,
                "stage_loss_sum": self._stage_loss.sum.cpu(), "stage_samples": self._stage_loss.samples,
                "action": self._action, "validation_losses": self.rule.validation_losses}

    def load_state_dict(self, state: dict) -> None:
        self.l_smooth, self.acc_smooth = state["l_smooth"], state["acc_smooth"]
        self._stage, self._action = state["stage"], state["action"]
        self.rule.observe_validation_losses(state.get("validation_losses"))
        self._stage_loss = StageLoss()
        if "stage_loss_sum" in state:
            self._stage_loss.sum.copy_(state["stage_loss_sum"])
            self._stage_loss.samples = float(state["stage_samples"])  # a mean over ranks once pooled
        else:  # a checkpoint of an earlier version: a sum of batch means
            self._stage_loss.sum.fill_(float(state["loss_sum"]))
            self._stage_loss.samples = int(state["loss_count"])

    @torch.no_grad()
    def weights(self, logits: torch.Tensor, labels: torch.Tensor, stage: int,
                per_sample_loss: torch.Tensor | None = None) -> torch.Tensor:
        """Per-sample weights [B] for a batch; 1 during the search's warm-up stages. `per_sample_loss`: the batch's
        training loss (the policy's base_loss; cross-entropy of `logits` if not given): the loss feature and l_smooth."""
        if labels.numel() and int(labels.max()) >= len(self.log_class_freq):
            raise ValueError(f"label {int(labels.max())} is beyond this policy's {len(self.log_class_freq)} classes")
        action = self.action(stage)
        if per_sample_loss is None:
            per_sample_loss = cross_entropy(logits.detach().float(), labels)
        per_sample_loss = per_sample_loss.detach()
        if self._stage_loss.sum.device != per_sample_loss.device:
            self._stage_loss.sum = self._stage_loss.sum.to(per_sample_loss.device)
        self._stage_loss.add(per_sample_loss.mean(), labels.numel())  # as the search's StageProgress
        if stage < self.warmup_stages:
            return torch.ones(labels.shape[0], device=logits.device)
        return self.rule.to(logits.device).weights(logits, labels, action.to(logits.device), per_sample_loss)
