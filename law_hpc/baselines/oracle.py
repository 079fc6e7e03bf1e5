"""Oracle: train only on the samples whose observed label is still the clean one (an upper reference)."""
from __future__ import annotations

import numpy as np
import torch

from ..engine.law_method import UniformMethod


class Oracle(UniformMethod):
    """w_i = clean_mask[index_i]; loss = sum_i w_i l_i / max(sum_i w_i, 1)."""

    name = "oracle"
    # For 0/1 weights sum_w equals sum(w l) / max(sum w, 1): sum w >= 1 unless it is 0, then the loss is 0.
    weight_norm = "sum_w"

    def __init__(self, clean_mask):
        self.clean_mask = np.asarray(clean_mask, dtype=bool)

    def train_step(self, images, labels, index, epoch, step, val_batch_fn) -> dict:
        positions = torch.as_tensor(index).cpu().numpy()
        self._batch_weights = torch.as_tensor(self.clean_mask[positions], dtype=torch.float32, device=labels.device)
        return super().train_step(images, labels, index, epoch, step, val_batch_fn)

    def sample_weights(self, logits, labels, epoch) -> torch.Tensor:
        return self._batch_weights.to(logits.dtype)
