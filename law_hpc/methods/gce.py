"""Generalized cross-entropy (Zhang & Sabuncu 2018, "Generalized Cross Entropy Loss for Training Deep Neural
Networks with Noisy Labels")."""
from __future__ import annotations

from dataclasses import dataclass

from ..law.losses import generalized_cross_entropy
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

    def __init__(self, q: float = 0.7):
        if not 0.0 < q <= 1.0:
            raise ValueError(f"gce q must be in (0, 1], got {q}")
        self.q = float(q)

    def per_sample_loss(self, logits, batch):
        return generalized_cross_entropy(logits, batch.labels, self.q)
