"""Per-sample classification losses [B] that a weighting multiplies (Eq. 7's l_i).

Cross-entropy is the paper's. The others correct the loss itself for a long tail (logit adjustment,
Balanced Softmax, LDAM) or for noisy labels (GCE); methods/ runs each as a peer, and a weighting composes
with any of them because every one is a per-sample loss.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .features import log_class_frequencies


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """l_i = -log softmax(z_i)_{y_i}."""
    return F.cross_entropy(logits, labels, reduction="none")


def log_prior(class_counts) -> torch.Tensor:
    """log pi_c of the training label frequencies (the label feature's log_class_frequencies)."""
    return torch.from_numpy(log_class_frequencies(class_counts))


def logit_adjusted(logits: torch.Tensor, labels: torch.Tensor, log_prior: torch.Tensor, tau: float = 1.0):
    """Logit-adjusted loss (Menon et al. 2021, Eq. 11): -log softmax(z_i + tau log pi)_{y_i}. Balanced classes
    shift every logit equally, which leaves the softmax unchanged: cross-entropy."""
    return F.cross_entropy(logits + tau * log_prior.to(logits), labels, reduction="none")


LONG_TAIL_RATIO = 2.0
"""Classes whose label counts lie within this factor of each other count as balanced: a random subset or symmetric
noise leaves counts a few percent apart, which is not the long tail a logit adjustment is for."""


def adjustment_prior(class_counts, tau: float) -> torch.Tensor | None:
    """log pi for an optional logit adjustment of strength `tau` (ELR's and GCE's tau), or None where it is not
    applied: tau 0, or balanced classes (LONG_TAIL_RATIO), so that such a run is the unadjusted loss to the bit."""
    counts = None if class_counts is None else np.maximum(np.asarray(class_counts, dtype=np.float64), 1.0)
    balanced = counts is None or counts.max() < LONG_TAIL_RATIO * counts.min()
    return None if tau == 0 or balanced else log_prior(class_counts)


def generalized_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, q: float = 0.7,
                              log_prior: torch.Tensor | None = None, tau: float = 1.0) -> torch.Tensor:
    """GCE / L_q loss (Zhang & Sabuncu 2018, Eq. 6): (1 - p_{y_i}^q) / q; cross-entropy as q -> 0, MAE
    (1 - p_y) at q = 1. Computed as -expm1(q log p) / q, exact for small q. With `log_prior`, p is the
    logit-adjusted softmax(z_i + tau log pi) (Menon et al. 2021's adjustment of the loss, applied to L_q)."""
    if log_prior is not None:
        logits = logits + tau * log_prior.to(logits)
    log_p_true = F.log_softmax(logits, dim=1).gather(1, labels[:, None]).squeeze(1)
    return -torch.expm1(q * log_p_true) / q


def ldam_margins(class_counts, max_margin: float = 0.5) -> torch.Tensor:
    """Delta_c proportional to n_c^(-1/4) (Cao et al. 2019, Eq. 12), the largest equal to `max_margin`."""
    counts = np.maximum(np.asarray(class_counts, dtype=np.float64), 1.0)
    margins = counts ** -0.25
    return torch.as_tensor(margins * (max_margin / margins.max()), dtype=torch.float32)


def ldam(logits: torch.Tensor, labels: torch.Tensor, margins: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """LDAM loss (Cao et al. 2019, Eq. 13): cross-entropy of s * z with the true class's logit lowered by
    Delta_{y_i}. The paper applies it to cosine logits with s = 30; on the raw logits of our networks s = 1."""
    shifted = logits - F.one_hot(labels, logits.shape[1]).to(logits) * margins.to(logits)[labels][:, None]
    return F.cross_entropy(scale * shifted, labels, reduction="none")


def early_learning_regularized(logits: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor, lam: float,
                               log_prior: torch.Tensor | None = None, tau: float = 1.0):
    """ELR loss (Liu et al. 2020, Eq. 6): CE + lambda log(1 - <t_i, p_i>), t_i the running average of the
    network's own predictions (the targets, detached). The term pulls p_i towards t_i, what the network
    predicted while it was still learning clean patterns, and away from memorising a wrong label.
    With `log_prior` the CE term is the logit-adjusted loss (its tau); the regulariser keeps the raw predictions."""
    probabilities = F.softmax(logits, dim=1).clamp(1e-4, 1 - 1e-4)
    probabilities = probabilities / probabilities.sum(dim=1, keepdim=True)
    agreement = (targets.to(logits) * probabilities).sum(dim=1)
    ce = cross_entropy(logits, labels) if log_prior is None else logit_adjusted(logits, labels, log_prior, tau)
    return ce + lam * torch.log1p(-agreement)


BASE_LOSSES = ("ce", "logit_adjusted", "balanced_softmax", "gce")
"""The per-sample losses a LAW search and its test phase can weight (train.base_loss)."""


def base_loss(name: str, class_counts=None, *, tau: float = 1.0, q: float = 0.7, gce_tau: float = 0.0):
    """loss(logits, labels) -> [B] of `name` (BASE_LOSSES); the long-tail ones (and GCE with `gce_tau`, its logit
    adjustment) need the training class counts."""
    if name == "ce":
        return cross_entropy
    if name in ("logit_adjusted", "balanced_softmax"):
        prior, scale = log_prior(class_counts), tau if name == "logit_adjusted" else 1.0
        return lambda logits, labels: logit_adjusted(logits, labels, prior, scale)
    if name == "gce":
        prior = adjustment_prior(class_counts, gce_tau)
        return lambda logits, labels: generalized_cross_entropy(logits, labels, q, prior, gce_tau)
    raise ValueError(f"unknown base loss '{name}' (known: {', '.join(BASE_LOSSES)})")

