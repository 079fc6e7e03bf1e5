"""Top-1 accuracy of one or more networks on a clean evaluation set, in one pass over its batches; or of one
network over a set sharded across ranks (the data-parallel test phase); the validation split as a method choosing
among its networks sees it."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch

from ..data.types import EvalSet


@torch.no_grad()
def top1_counts(models: Sequence[torch.nn.Module], eval_set: EvalSet) -> tuple[list[int], int]:
    """(correct predictions of each model, images seen): counts, so shards of a set can be summed."""
    for model in models:
        model.eval()
    correct, total = [0] * len(models), 0
    for images, labels in eval_set.batches():
        for i, model in enumerate(models):
            correct[i] = correct[i] + (model(images).argmax(1) == labels).sum()  # kept on the device: no sync
        total += labels.numel()
    return [int(count) for count in correct], total


def top1_accuracies(models: Sequence[torch.nn.Module], eval_set: EvalSet) -> list[float]:
    """Accuracy (fraction) of each model; every batch is decoded and normalised once for all of them."""
    correct, total = top1_counts(models, eval_set)
    return [count / max(total, 1) for count in correct]


def sharded_accuracy(model: torch.nn.Module, shard: EvalSet, allgather) -> float:
    """Top-1 accuracy over a set split across ranks: each rank counts its `shard`, `allgather` (one collective)
    brings every rank's counts; the same value on every rank, equal to evaluating the whole set in one place."""
    (correct,), total = top1_counts([model], shard)
    everyone = allgather((correct, total))
    return sum(c for c, _ in everyone) / max(sum(t for _, t in everyone), 1)


@torch.no_grad()
def per_sample_losses(model: torch.nn.Module, eval_set: EvalSet, loss_fn) -> torch.Tensor:
    """[N] `loss_fn(logits, labels)` of every image of a clean set (eval mode), in the set's order, on the device:
    what feature_norm "val_rank" ranks training losses among."""
    model.eval()
    return torch.cat([loss_fn(model(images), labels).float() for images, labels in eval_set.batches()])


def sharded_losses(model: torch.nn.Module, shard: EvalSet, loss_fn, allgather) -> torch.Tensor:
    """per_sample_losses over a set split across ranks: every rank gets the whole set's, in rank order (one
    collective), so data-parallel ranks weight their samples alike."""
    return torch.cat(allgather(per_sample_losses(model, shard, loss_fn).cpu()))


@dataclass
class ShardedValidation:
    """The validation split as a method that chooses among its networks sees it (LAW's guard): every rank holds a
    shard, and `accuracy` and `accuracies` are collectives (every rank calls them at the same point)."""

    shard: EvalSet
    allgather: Callable
    prepare: Callable[[torch.nn.Module], None] = lambda model: None
    """Called on a network before it is evaluated: the ranks' BatchNorm statistics averaged."""
    _labels: torch.Tensor | None = field(default=None, repr=False)

    def accuracy(self, model: torch.nn.Module) -> float:
        """Top-1 accuracy of `model` over the whole split."""
        self.prepare(model)
        return sharded_accuracy(model, self.shard, self.allgather)

    @torch.no_grad()
    def probabilities(self, model: torch.nn.Module) -> torch.Tensor:
        """[n, C] softmax of `model` (eval mode) on this rank's shard, in its order."""
        self.prepare(model)
        model.eval()
        return torch.cat([torch.softmax(model(images).float(), 1) for images, _ in self.shard.batches()])

    def accuracies(self, scores: Sequence[torch.Tensor]) -> list[float]:
        """Top-1 accuracy over the whole split of each [n, C] score of this rank's shard (summed softmaxes of an
        ensemble, say); one collective for all of them."""
        if self._labels is None:
            self._labels = torch.cat([labels for _, labels in self.shard.batches()])
        labels = self._labels.to(scores[0].device)
        correct = [int((score.argmax(1) == labels).sum()) for score in scores]
        everyone = self.allgather((correct, labels.numel()))
        total = max(sum(count for _, count in everyone), 1)
        return [sum(counts[i] for counts, _ in everyone) / total for i in range(len(scores))]
