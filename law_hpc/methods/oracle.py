"""Oracle: train only on the samples whose observed label is still the clean one (an upper reference)."""
from __future__ import annotations

import numpy as np
import torch

from .base import WeightingMethod, register_method


@register_method
class Oracle(WeightingMethod):
    """w_i = clean_mask[index_i]; loss = sum_i w_i l_i / max(sum_i w_i, 1)."""

    name = "oracle"
    told = "which labels are clean"
    # For 0/1 weights sum_w equals sum(w l) / max(sum w, 1): sum w >= 1 unless it is 0, then the loss is 0.
    weight_norm = "sum_w"

    def __init__(self, clean_mask):
        self.clean_mask = torch.as_tensor(np.asarray(clean_mask, dtype=bool))

    @classmethod
    def from_config(cls, cfg, data) -> "Oracle":
        return cls(data.train_clean_mask)

    def sample_weights(self, logits, batch, epoch) -> torch.Tensor:
        """The batch's positions in the training split say which observed labels are still clean."""
        return self.clean_mask[batch.index.cpu()].to(device=logits.device, dtype=logits.dtype)
