"""Early-learning regularisation (Liu et al. 2020, "Early-Learning Regularization Prevents Memorization of
Noisy Labels")."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..law.losses import adjustment_prior, early_learning_regularized
from .base import WeightingMethod, register_method


@register_method
class EarlyLearningRegularization(WeightingMethod):
    """Uniform weights on CE + lambda log(1 - <t_i, p_i>) (their Eq. 6), where every training sample's target
    t_i <- beta t_i + (1 - beta) p_i follows the network's (clamped, renormalised) predictions on it (their
    Eq. 9, temporal ensembling). The targets are per sample, kept in checkpoints, and identical on every
    data-parallel rank (each step's updates are gathered): N x C floats, for CIFAR-sized data rather than
    ImageNet. The paper's CIFAR-10 values: beta 0.7, lambda 3."""

    name = "elr"

    @dataclass
    class Options:
        beta: float = 0.7
        """beta of the targets' running average."""
        lam: float = 3.0
        """lambda, the strength of the regulariser."""
        tau: float = 0.0
        """Logit adjustment of the cross-entropy term, -log softmax(z + tau log pi)_y (as methods.logit_adjusted):
        0 = the paper's ELR; 1 learns the balanced posterior on long-tailed classes. Balanced classes
        (law.losses.LONG_TAIL_RATIO): no change."""

    def __init__(self, train_size: int, num_classes: int, beta: float = 0.7, lam: float = 3.0, tau: float = 0.0,
                 class_counts=None):
        if not 0.0 <= beta < 1.0 or lam < 0:
            raise ValueError(f"elr needs 0 <= beta < 1 and lambda >= 0, got beta {beta}, lambda {lam}")
        self.beta, self.lam = float(beta), float(lam)
        self.targets = torch.zeros(train_size, num_classes)
        self.tau, self.log_prior = float(tau), adjustment_prior(class_counts, tau)  # None: plain ELR to the bit

    @classmethod
    def from_config(cls, cfg, data) -> "EarlyLearningRegularization":
        options = cls.options(cfg)
        return cls(int(data.train_label_counts.sum()), data.num_classes, options.beta, options.lam, options.tau,
                   data.train_label_counts)

    def per_sample_loss(self, logits, batch):
        index = batch.index.cpu()
        self.update_targets(index, logits.detach())
        return early_learning_regularized(logits, batch.labels, self.targets[index], self.lam, self.log_prior,
                                          self.tau)

    def update_targets(self, index: torch.Tensor, logits: torch.Tensor) -> None:
        """t_i <- beta t_i + (1 - beta) p_i for the batch of every rank (the same on each)."""
        probabilities = F.softmax(logits.float(), dim=1).clamp(1e-4, 1 - 1e-4)
        probabilities = (probabilities / probabilities.sum(dim=1, keepdim=True)).cpu()
        for ranks_index, ranks_probabilities in self.allgather((index.numpy(), probabilities.numpy())):
            rows = torch.from_numpy(np.asarray(ranks_index))
            predicted = torch.from_numpy(ranks_probabilities)
            self.targets[rows] = self.beta * self.targets[rows] + (1 - self.beta) * predicted

    def state_dict(self) -> dict:
        return {**super().state_dict(), "targets": self.targets.clone()}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.targets.copy_(state["targets"])
