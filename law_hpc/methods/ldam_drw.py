"""LDAM-DRW (Cao et al. 2019, "Learning Imbalanced Datasets with Label-Distribution-Aware Margin Loss")."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..law.losses import ldam, ldam_margins
from .base import WeightingMethod, register_method
from .class_balanced import class_balanced_weights


@register_method
class LdamDrw(WeightingMethod):
    """The LDAM loss (their Eq. 13, margins Delta_c ~ n_c^(-1/4)) with deferred re-weighting (their Alg. 1):
    uniform weights until `drw_fraction` of the epochs, then the class-balanced weights of the effective number
    (beta = 0.9999), the paper's LDAM-DRW. Margins act on raw logits with scale s (the paper: s = 30 on cosine
    logits of a normalised last layer; our networks keep their linear heads)."""

    name = "ldam_drw"
    weight_norm = "mean"
    told = "the class counts"

    @dataclass
    class Options:
        max_margin: float = 0.5
        """The largest margin, of the rarest class (the paper's C gives 0.5)."""
        scale: float = 1.0
        """s, the logits' scale inside the loss (1 for raw logits)."""
        drw_fraction: float = 0.8
        """Fraction of the epochs trained unweighted before the deferred re-weighting (the paper: 160 of 200)."""

    def __init__(self, class_counts, total_epochs: float, max_margin: float = 0.5, scale: float = 1.0,
                 drw_fraction: float = 0.8):
        if not 0.0 <= drw_fraction <= 1.0:
            raise ValueError(f"ldam_drw drw_fraction must be in [0, 1], got {drw_fraction}")
        self.margins, self.scale = ldam_margins(class_counts, max_margin), float(scale)
        self.drw_epoch = float(total_epochs) * float(drw_fraction)
        self.class_weights = torch.as_tensor(class_balanced_weights(class_counts, 0.9999), dtype=torch.float32)

    @classmethod
    def from_config(cls, cfg, data) -> "LdamDrw":
        options = cls.options(cfg)
        return cls(data.train_label_counts, cfg.optim.epochs, options.max_margin, options.scale, options.drw_fraction)

    def per_sample_loss(self, logits, batch):
        return ldam(logits, batch.labels, self.margins, self.scale)

    def sample_weights(self, logits, batch, epoch):
        if epoch < self.drw_epoch:
            return None
        return self.class_weights.to(logits.device)[batch.labels]
