"""Self-paced learning (Kumar et al. 2010, "Self-Paced Learning for Latent Variable Models")."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .base import WeightingMethod, register_method


def smallest_loss_mask(per_sample_loss: torch.Tensor, keep_fraction: float) -> torch.Tensor:
    """v_i = [l_i < lambda] with lambda between the k-th and (k+1)-th smallest loss, k = round(fraction B) >= 1."""
    keep = min(per_sample_loss.numel(), max(1, int(round(keep_fraction * per_sample_loss.numel()))))
    mask = torch.zeros_like(per_sample_loss)
    mask[torch.argsort(per_sample_loss.detach())[:keep]] = 1.0
    return mask


@register_method
class SelfPaced(WeightingMethod):
    """Hard 0/1 weights minimising sum_i v_i l_i - lambda sum_i v_i (Eq. 4 of Kumar et al.):
    the closed form is v_i = [l_i < lambda]. lambda grows so that the kept fraction rises linearly
    from start_fraction at epoch 0 to 1 at the last epoch."""

    name = "self_paced"
    weight_norm = "sum_w"  # mean loss over the kept samples

    @dataclass
    class Options:
        start_fraction: float = 0.5
        """Fraction of samples kept in the first epoch (rises linearly to 1)."""

    def __init__(self, total_epochs: float, start_fraction: float = 0.5):
        if not 0.0 < start_fraction <= 1.0:
            raise ValueError(f"self-paced start_fraction must be in (0, 1], got {start_fraction}")
        self.total_epochs, self.start_fraction = float(total_epochs), float(start_fraction)

    @classmethod
    def from_config(cls, cfg, data) -> "SelfPaced":
        return cls(cfg.optim.epochs, start_fraction=cls.options(cfg).start_fraction)

    def keep_fraction(self, epoch: float) -> float:
        progress = min(max(epoch / max(self.total_epochs, 1e-12), 0.0), 1.0)
        return self.start_fraction + (1.0 - self.start_fraction) * progress

    def sample_weights(self, logits, batch, epoch) -> torch.Tensor:
        per_sample_loss = F.cross_entropy(logits.detach(), batch.labels, reduction="none")
        return smallest_loss_mask(per_sample_loss, self.keep_fraction(epoch))
