"""One weighting path: how a batch's logits become the weights K_T, and how the stage state follows the training.

The search's target net (engine/pair.py), the test phase (methods/law.py) and the drop-in API (weighter.py) all
call THIS code, so identical inputs give identical weights and stage states (tests/test_weighting.py checks that
a test-phase training reproduces a search's evaluation episode batch by batch).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from .features import FEATURE_NAMES, VALIDATION_NORMS, item_features, losses_by_class
from .losses import cross_entropy
from .policy import sample_weights, weighted_mean_loss


@dataclass
class WeightingRule:
    """The settings a policy was searched with: which item features (Eq. 6), how they are normalised, how the
    weights enter the loss (Eq. 7), and the per-sample loss both nets of a search pair train on."""

    log_class_freq: torch.Tensor
    """[C] log frequency of each observed label in the training set (the label feature)."""
    density: str = "cosine"
    label_feature: str = "log_freq"
    weight_norm: str = "mean"
    feature_norm: str = "zscore"
    base_loss: Callable = cross_entropy
    """loss(logits, labels) -> [B], the per-sample loss the weights multiply (train.base_loss)."""
    terms: tuple[str, ...] = FEATURE_NAMES
    """The features the policy's actor sets (strategy.action_terms); the others have theta = 0 and are not computed."""
    validation_losses: torch.Tensor | None = None
    """feature_norm "val_rank" / "class_val_rank": the clean validation set's per-sample losses (sorted) at the last
    stage end, among which each training loss is ranked; None before the first measurement."""
    validation_labels: torch.Tensor | None = None
    """"class_val_rank": the labels of validation_losses (aligned with them)."""
    validation_by_class: torch.Tensor | None = None
    """"class_val_rank": validation_losses per class ([C, M], losses_by_class), derived from the two above."""

    @classmethod
    def from_settings(cls, settings: dict, log_class_freq: torch.Tensor, base_loss: Callable = cross_entropy):
        """The rule of a policy.h5's (or a search's) settings."""
        return cls(log_class_freq, settings["density"], settings["label_feature"], settings["weight_norm"],
                   settings["feature_norm"], base_loss, tuple(settings["action_terms"]))

    @property
    def num_classes(self) -> int:
        return len(self.log_class_freq)

    @property
    def needs_validation_losses(self) -> bool:
        """Whether the loss feature is ranked among the validation set's losses (measure them at every stage end)."""
        return self.feature_norm in VALIDATION_NORMS and "loss" in self.terms

    @property
    def needs_validation_labels(self) -> bool:
        """Whether each loss is ranked among its own class's validation losses (their labels are needed too)."""
        return self.feature_norm == "class_val_rank" and "loss" in self.terms

    def observe_validation_losses(self, losses: torch.Tensor | None, labels: torch.Tensor | None = None) -> None:
        """The clean validation set's per-sample losses (this rule's base loss) at a stage end, and their labels
        ("class_val_rank" needs them); None forgets them."""
        if losses is None:
            self.validation_losses = self.validation_labels = self.validation_by_class = None
            return
        self.validation_losses, order = losses.detach().float().flatten().sort()
        self.validation_labels = None if labels is None else torch.as_tensor(labels).flatten().to(order.device)[order]
        self.validation_by_class = None
        if self.needs_validation_labels and self.validation_labels is not None:
            self.validation_by_class = losses_by_class(self.validation_losses, self.validation_labels,
                                                       self.num_classes)

    def to(self, device) -> "WeightingRule":
        """The rule's tensors on `device` (a no-op where they are)."""
        for name in ("log_class_freq", "validation_losses", "validation_labels", "validation_by_class"):
            tensor = getattr(self, name)
            if tensor is not None and tensor.device != torch.device(device):
                setattr(self, name, tensor.to(device))
        return self

    @torch.no_grad()
    def weights(self, logits: torch.Tensor, labels: torch.Tensor, action: torch.Tensor,
                per_sample_loss: torch.Tensor) -> torch.Tensor:
        """K_T(f, theta_T) = 1 + tanh(theta_T . f + b) (Eq. 3) on the features of the net's own forward pass."""
        features = item_features(logits, labels, self.log_class_freq, self.density, self.label_feature,
                                 self.feature_norm, per_sample_loss, self.terms, self.validation_losses,
                                 self.validation_by_class)
        return sample_weights(features, action)

    def loss(self, per_sample_loss: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """The weighted batch loss, normalised as the search did (Eq. 7; weight_norm)."""
        return weighted_mean_loss(per_sample_loss, weights, self.weight_norm)


def initial_stage_scalars(num_classes: int) -> tuple[float, float]:
    """(l_smooth, acc_smooth) before any training: the loss of a uniform guess and chance accuracy."""
    return math.log(num_classes), 1.0 / num_classes


def smoothed(previous: float, measured: float, beta: float) -> float:
    """The EMA of the stage state (Eq. 5): beta * previous + (1 - beta) * measured."""
    return beta * previous + (1 - beta) * measured


class StageLoss:
    """The per-sample mean training loss over a stage's batches (l_smooth's input), summed on the device in
    float64 (no host sync per batch)."""

    def __init__(self, device="cpu"):
        self.sum = torch.zeros((), device=device, dtype=torch.float64)
        self.samples = 0

    def add(self, batch_mean: torch.Tensor, size: int) -> None:
        self.sum += batch_mean * size
        self.samples += size

    def mean(self) -> float:
        return float(self.sum) / max(self.samples, 1)
