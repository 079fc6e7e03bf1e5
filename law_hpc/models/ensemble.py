"""An ensemble of networks of one architecture, and the greedy selection that builds one on validation.

LAW's guard trains several candidate networks side by side (the policy's, its base loss unweighted, peers); with
`methods.law.guard_ensemble` the evaluated and exported model is the average of some of them, chosen by forward
selection with replacement (Caruana et al., "Ensemble selection from libraries of models", ICML 2004): start from
the best network on validation, add the one that raises the validation accuracy of the average most, stop when
none does. A repeated network counts twice in the average.
"""
from __future__ import annotations

from collections import Counter
from typing import Callable, Sequence

import torch
from torch import nn


class Ensemble(nn.Module):
    """The weighted mean of its members' softmax; forward returns its log (log-probabilities, used as logits)."""

    def __init__(self, members: Sequence[nn.Module], weights: Sequence[float]):
        super().__init__()
        if len(members) != len(weights) or not members:
            raise ValueError("an ensemble needs one weight per member, and at least one member")
        self.members = nn.ModuleList(members)
        self.member_weights = [float(weight) for weight in weights]  # as given: a file rebuilds it bit for bit

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        total = sum(self.member_weights)
        mean = sum(weight / total * torch.softmax(member(images).float(), 1)
                   for weight, member in zip(self.member_weights, self.members))
        return torch.log(mean.clamp_min(1e-12))


def greedy_ensemble(probabilities: dict[str, torch.Tensor], accuracies: list[float],
                    accuracies_of: Callable[[list[torch.Tensor]], list[float]], max_size: int) -> tuple[list[str], float]:
    """Forward selection with replacement: (the chosen names, repeats included, in the order chosen; the
    validation accuracy of their mean). `probabilities`: each candidate's [n, C] softmax on the validation split
    (this rank's shard); `accuracies`: theirs alone; `accuracies_of(scores)`: the accuracy of each [n, C] score
    (a collective: every rank runs the same rounds). At most `max_size` entries; the first of equals is taken."""
    names = list(probabilities)
    best = max(range(len(names)), key=accuracies.__getitem__)
    chosen, accuracy = [names[best]], accuracies[best]
    total = probabilities[names[best]].clone()
    while len(chosen) < max_size:
        trial = accuracies_of([total + probabilities[name] for name in names])
        best = max(range(len(names)), key=trial.__getitem__)
        if trial[best] <= accuracy:
            break
        chosen.append(names[best])
        total += probabilities[names[best]]
        accuracy = trial[best]
    return chosen, accuracy


def describe(chosen: Sequence[str]) -> str:
    """'elr' for one network; 'elr x2 + coteaching' for an ensemble (in the order first chosen)."""
    counts = Counter(chosen)
    return " + ".join(name if count == 1 else f"{name} x{count}" for name, count in counts.items())
