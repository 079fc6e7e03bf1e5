"""Focal loss (Lin et al. 2017, "Focal Loss for Dense Object Detection")."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .base import WeightingMethod, register_method


@register_method
class FocalLoss(WeightingMethod):
    """FL(p_t) = -(1 - p_t)^gamma log p_t (Eq. 5, without the alpha_t balance); gamma = 0 is cross-entropy."""

    name = "focal"
    weight_norm = "mean"  # mean_i (1 - p_t,i)^gamma * CE_i = mean focal loss

    @dataclass
    class Options:
        gamma: float = 2.0
        """gamma of the modulating factor (1 - p_t)^gamma; 0 = cross-entropy."""

    def __init__(self, gamma: float = 2.0):
        if gamma < 0:
            raise ValueError(f"focal gamma must be >= 0, got {gamma}")
        self.gamma = float(gamma)

    def sample_weights(self, logits, batch, epoch) -> torch.Tensor:
        # The modulating factor (1 - p_t)^gamma keeps its gradient, as in the focal loss itself;
        # the harness reports it detached.
        log_p_true = F.log_softmax(logits, dim=1).gather(1, batch.labels[:, None]).squeeze(1)
        return (1.0 - log_p_true.exp()).clamp_min(0.0).pow(self.gamma)
