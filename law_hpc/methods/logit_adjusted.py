"""Logit-adjusted loss (Menon et al. 2021, "Long-Tail Learning via Logit Adjustment")."""
from __future__ import annotations

from dataclasses import dataclass

from ..law.losses import log_prior, logit_adjusted
from .base import WeightingMethod, register_method


@register_method
class LogitAdjusted(WeightingMethod):
    """Uniform weights on the logit-adjusted loss -log softmax(z + tau log pi)_y (their Eq. 11): the network
    learns the balanced posterior; at test time the raw logits are used, without the prior."""

    name = "logit_adjusted"
    told = "the class counts"

    @dataclass
    class Options:
        tau: float = 1.0
        """tau, the strength of the adjustment (1 = the Bayes-optimal one for the balanced error)."""

    def __init__(self, class_counts, tau: float = 1.0):
        self.tau, self.log_prior = float(tau), log_prior(class_counts)

    @classmethod
    def from_config(cls, cfg, data) -> "LogitAdjusted":
        return cls(data.train_label_counts, tau=cls.options(cfg).tau)

    def per_sample_loss(self, logits, batch):
        return logit_adjusted(logits, batch.labels, self.log_prior, self.tau)
