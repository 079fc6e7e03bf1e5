"""Balanced Softmax (Ren et al. 2020, "Balanced Meta-Softmax for Long-Tailed Visual Recognition")."""
from __future__ import annotations

from ..law.losses import log_prior, logit_adjusted
from .base import WeightingMethod, register_method


@register_method
class BalancedSoftmax(WeightingMethod):
    """-log( n_y e^{z_y} / sum_c n_c e^{z_c} ) (their Eq. 4): the softmax of z + log n, which is the
    logit-adjusted loss at tau = 1. Without the paper's Meta Sampler (not run here) the two rows train the
    same network; both are kept because users look for either name."""

    name = "balanced_softmax"
    told = "the class counts"

    def __init__(self, class_counts):
        self.log_prior = log_prior(class_counts)

    @classmethod
    def from_config(cls, cfg, data) -> "BalancedSoftmax":
        return cls(data.train_label_counts)

    def per_sample_loss(self, logits, batch):
        return logit_adjusted(logits, batch.labels, self.log_prior, 1.0)
