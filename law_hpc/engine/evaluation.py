"""Top-1 accuracy of one or more networks on a clean evaluation set, in one pass over its batches."""
from __future__ import annotations

from typing import Sequence

import torch

from ..data.types import EvalSet


@torch.no_grad()
def top1_accuracies(models: Sequence[torch.nn.Module], eval_set: EvalSet) -> list[float]:
    """Accuracy (fraction) of each model; every batch is decoded and normalised once for all of them."""
    for model in models:
        model.eval()
    correct, total = [0] * len(models), 0
    for images, labels in eval_set.batches():
        for i, model in enumerate(models):
            correct[i] += int((model(images).argmax(1) == labels).sum())
        total += labels.numel()
    return [count / max(total, 1) for count in correct]
