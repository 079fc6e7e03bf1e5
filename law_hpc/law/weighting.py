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

from .features import FEATURE_NAMES, item_features
from .losses import cross_entropy
from .policy import sample_weights, weighted_mean_loss
from .settings import PolicySettings


@dataclass
class WeightingRule:
    """The settings a policy was searched with: which item features (Eq. 6), how they are normalised, how the
    weights enter the loss (Eq. 7), and the per-sample loss both nets of a search pair train on."""

    log_class_freq: torch.Tensor
    """[C] log frequency of each observed label in the training set (the label feature)."""
    weight_norm: str = "mean"
    feature_norm: str = "zscore"
    base_loss: Callable = cross_entropy
    """loss(logits, labels) -> [B], the per-sample loss the weights multiply (train.base_loss)."""
    terms: tuple[str, ...] = FEATURE_NAMES
    """The features the policy's actor sets (strategy.action_terms); the others have theta = 0 and are not computed."""
    validation_losses: torch.Tensor | None = None
    """feature_norm "val_rank": the clean validation set's per-sample losses (sorted) at the last stage end, among
    which each training loss is ranked; None before the first measurement."""

    @classmethod
    def from_settings(cls, settings: PolicySettings, log_class_freq: torch.Tensor, base_loss: Callable = cross_entropy):
        """The rule of a policy.h5's (or a search's) settings."""
        return cls(log_class_freq, settings.weight_norm, settings.feature_norm, base_loss, settings.action_terms)

    @property
    def num_classes(self) -> int:
        return len(self.log_class_freq)

    @property
    def needs_validation_losses(self) -> bool:
        """Whether the loss feature is ranked among the validation set's losses (measure them at every stage end)."""
        return self.feature_norm == "val_rank" and "loss" in self.terms

    def observe_validation_losses(self, losses: torch.Tensor | None) -> None:
        """The clean validation set's per-sample losses (this rule's base loss) at a stage end; None forgets them."""
        self.validation_losses = None if losses is None else losses.detach().float().flatten().sort().values

    def state_dict(self) -> dict:
        """What a checkpoint holds of the rule: the validation losses it ranks against, once measured."""
        return {} if self.validation_losses is None else {"validation_losses": self.validation_losses.cpu()}

    def load_state_dict(self, state: dict) -> None:
        """The rule's part of a checkpoint (a state without it: nothing measured yet), on the rule's device."""
        self.observe_validation_losses(state.get("validation_losses"))
        self.to(self.log_class_freq.device)

    def to(self, device) -> "WeightingRule":
        """The rule's tensors on `device` (a no-op where they are)."""
        for name in ("log_class_freq", "validation_losses"):
            tensor = getattr(self, name)
            if tensor is not None and tensor.device != torch.device(device):
                setattr(self, name, tensor.to(device))
        return self

    @torch.no_grad()
    def weights(self, logits: torch.Tensor, labels: torch.Tensor, action: torch.Tensor,
                per_sample_loss: torch.Tensor) -> torch.Tensor:
        """K_T(f, theta_T) = 1 + tanh(theta_T . f + b) (Eq. 3) on the features of the net's own forward pass."""
        features = item_features(logits, labels, self.log_class_freq, self.feature_norm, per_sample_loss, self.terms,
                                 self.validation_losses)
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
