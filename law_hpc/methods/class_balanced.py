"""Class-balanced loss (Cui et al. 2019, "Class-Balanced Loss Based on Effective Number of Samples")."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .base import WeightingMethod, register_method


def class_balanced_weights(class_counts, beta: float) -> np.ndarray:
    """alpha_c = (1 - beta) / (1 - beta^n_c), the inverse effective number (Eq. 3/4),
    normalised so that sum_c alpha_c = C. An unseen class counts as one sample."""
    counts = np.maximum(np.asarray(class_counts, dtype=np.float64), 1.0)
    inverse_effective_number = (1.0 - beta) / (1.0 - np.power(beta, counts))
    return inverse_effective_number * len(counts) / inverse_effective_number.sum()


@register_method
class ClassBalanced(WeightingMethod):
    """Softmax CE on the observed label, weighted by that label's class-balanced weight."""

    name = "class_balanced"
    weight_norm = "mean"  # CB_softmax = mean_i alpha_{y_i} CE_i
    told = "the class counts"

    @dataclass
    class Options:
        beta: float = 0.9999
        """beta of the effective number of samples (1 - beta^n) / (1 - beta)."""

    def __init__(self, class_counts, beta: float = 0.9999):
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"class-balanced beta must be in [0, 1), got {beta}")
        self.beta = float(beta)
        self.class_weights = torch.as_tensor(class_balanced_weights(class_counts, self.beta), dtype=torch.float32)

    @classmethod
    def from_config(cls, cfg, data) -> "ClassBalanced":
        return cls(data.train_label_counts, beta=cls.options(cfg).beta)

    def setup(self, model_factory, optimizer_factory, device) -> None:
        super().setup(model_factory, optimizer_factory, device)
        self.class_weights = self.class_weights.to(device)

    def sample_weights(self, logits, batch, epoch) -> torch.Tensor:
        return self.class_weights.to(logits.device)[batch.labels]
