"""Item features f = [loss, entropy, density, label] (paper Eq. 6), normalised per batch.

The label feature is a property of the data set, not of the batch: log(C * freq) of the sample's observed label,
0 for every class of a balanced set. It is left as it is: normalised per batch, the few-percent count differences
of nearly balanced classes would become an arbitrary class order of unit variance (docs/experiments.md).

Normalisation (FEATURE_NORMS): "zscore" (the paper: mean 0, std 1 over the batch) or "rank" (each feature replaced
by its within-batch rank, ties averaged, then z-scored). Losses on noisy labels are heavy-tailed: a z-score puts a
weight's threshold where the few largest losses drag the mean and std, a rank puts it at a fixed fraction of the
batch whatever the tail. "val_rank": the loss is ranked among the per-sample losses of the clean validation set,
measured at the last stage end (the other features as "rank"): a threshold among clean losses drops what is out
of place among clean samples, a fraction that follows the noise rate (docs/experiments.md).
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

FEATURE_NAMES = ("loss", "entropy", "density", "label")
NUM_FEATURES = len(FEATURE_NAMES)
FEATURE_NORMS = ("zscore", "rank", "val_rank")
"""strategy.feature_norm: how the item features are normalised."""


def log_class_frequencies(counts) -> np.ndarray:
    """float32 [C]: log of each observed label's training-set frequency (the label feature, logit adjustment's
    log prior); an unseen class counts as one sample."""
    counts = np.maximum(np.asarray(counts, dtype=np.float64), 1.0)
    return np.log(counts / counts.sum()).astype(np.float32)


def batch_density(logits: torch.Tensor) -> torch.Tensor:
    """density_i = sum_{j != i} S_ij / (B - 1), S the cosine similarity of logit vectors. The paper writes
    S = Lo^T Lo, a dot product, which grows with the logits' scale as the network trains (docs/experiments.md)."""
    vectors = F.normalize(logits, dim=1)
    sim = vectors @ vectors.T
    batch = logits.shape[0]
    return (sim.sum(dim=1) - sim.diagonal()) / max(batch - 1, 1)


def batch_ranks(columns: torch.Tensor) -> torch.Tensor:
    """Per-column rank within the batch, from 0, ties sharing their average rank: [B, F] -> [B, F]."""
    values = columns.T.contiguous()  # [F, B]
    ordered = values.sort(dim=1).values
    first = torch.searchsorted(ordered, values, right=False)  # entries smaller than each entry
    after = torch.searchsorted(ordered, values, right=True)  # ... plus those equal to it
    return ((first + after - 1).to(columns.dtype) / 2.0).T


def validation_ranks(losses: torch.Tensor, sorted_validation_losses: torch.Tensor) -> torch.Tensor:
    """sqrt(12) (u - 1/2), u the fraction of clean validation losses below each loss (ties count half): the
    scale of a z-scored batch rank, so a loss typical of the validation set sits near 0."""
    reference = sorted_validation_losses.to(losses)
    below_twice = torch.searchsorted(reference, losses, right=False) + torch.searchsorted(reference, losses, right=True)
    fraction = below_twice.to(torch.float32) / (2.0 * max(len(reference), 1))
    return (math.sqrt(12.0) * (fraction - 0.5)).to(losses.dtype)


def zscore(columns: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Per-column (mean 0, std 1) over the batch; a constant column becomes 0."""
    mean = columns.mean(dim=0, keepdim=True)
    std = columns.std(dim=0, unbiased=False, keepdim=True)
    return (columns - mean) / std.clamp_min(eps)


@torch.no_grad()
def item_features(
    logits: torch.Tensor,
    labels: torch.Tensor,
    log_class_freq: torch.Tensor,
    norm: str = "zscore",
    per_sample_loss: torch.Tensor | None = None,
    terms=FEATURE_NAMES,
    validation_losses: torch.Tensor | None = None,
) -> torch.Tensor:
    """[B, 4] features of a batch from the target net's logits (no gradient), normalised per batch (`norm`).
    `per_sample_loss`: the per-sample training loss of these logits (train.base_loss) if the caller has it; else
    their cross-entropy. `terms`: the features to compute (a policy's action terms); the others stay 0 (every
    feature is normalised on its own, so leaving one out changes no other).

    log_class_freq[c] = log(frequency of observed label c in the training set); the label feature is
    log(C * freq), not normalised. `validation_losses`: the sorted per-sample losses of the clean validation set,
    which "val_rank" needs.
    """
    if norm not in FEATURE_NORMS:
        raise ValueError(f"unknown feature normalisation '{norm}' (known: {', '.join(FEATURE_NORMS)})")
    if norm == "val_rank" and "loss" in terms and validation_losses is None:
        raise ValueError("feature normalisation 'val_rank' ranks each loss among the clean validation set's losses, "
                         "and none were measured (PolicyWeighter.observe_validation(accuracy, losses))")
    logits = logits.detach().float()
    wanted = [name for name in FEATURE_NAMES if name in terms]
    columns = []
    if "loss" in wanted:
        loss = F.cross_entropy(logits, labels, reduction="none") if per_sample_loss is None else per_sample_loss
        columns.append(loss.detach().float())
    if "entropy" in wanted:
        log_probs = F.log_softmax(logits, dim=1)
        columns.append(-(log_probs.exp() * log_probs).sum(dim=1))
    if "density" in wanted:
        columns.append(batch_density(logits))
    features = torch.zeros(logits.shape[0], NUM_FEATURES, device=logits.device)
    normalised = [name for name in wanted if name != "label"]  # the label feature is a data-set property
    if normalised:
        computed = torch.stack(columns, dim=1)
        if norm != "zscore":
            computed = batch_ranks(computed)
        features[:, [FEATURE_NAMES.index(name) for name in normalised]] = zscore(computed)
        if norm == "val_rank" and "loss" in wanted:
            features[:, FEATURE_NAMES.index("loss")] = validation_ranks(columns[0], validation_losses)
    if "label" in wanted:
        features[:, FEATURE_NAMES.index("label")] = log_class_freq.to(logits.device)[labels] + math.log(
            len(log_class_freq))
    return features
