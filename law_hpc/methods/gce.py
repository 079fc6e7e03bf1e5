"""Generalized cross-entropy (Zhang & Sabuncu 2018, "Generalized Cross Entropy Loss for Training Deep Neural
Networks with Noisy Labels")."""
from __future__ import annotations

from dataclasses import dataclass

from ..law.losses import base_loss
from .base import WeightingMethod, register_method


@register_method
class GeneralizedCrossEntropy(WeightingMethod):
    """Uniform weights on L_q = (1 - p_y^q) / q (their Eq. 6), between cross-entropy (q -> 0) and the
    noise-robust MAE (q = 1). The truncated variant of their Eq. 9 is not run."""

    name = "gce"

    @dataclass
    class Options:
        q: float = 0.7
        """q of L_q, in (0, 1]; the paper's CIFAR setting is 0.7."""
        tau: float = 0.0
        """Logit adjustment: L_q of softmax(z + tau log pi) (as methods.logit_adjusted); 0 = the paper's GCE. Also
        the base loss gce's (train.base_loss). Balanced classes (law.losses.LONG_TAIL_RATIO): no change."""

    def __init__(self, q: float = 0.7, tau: float = 0.0, class_counts=None):
        if not 0.0 < q <= 1.0:
            raise ValueError(f"gce q must be in (0, 1], got {q}")
        self.q, self.tau = float(q), float(tau)
        self.loss = base_loss("gce", class_counts, q=self.q, gce_tau=self.tau)  # as train.base_loss=gce

    @classmethod
    def from_config(cls, cfg, data) -> "GeneralizedCrossEntropy":
        options = cls.options(cfg)
        return cls(options.q, options.tau, data.train_label_counts)

    def per_sample_loss(self, logits, batch):
        return self.loss(logits, batch.labels)
