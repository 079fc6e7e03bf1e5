"""Item features f = [loss, entropy, density, label] (paper Eq. 6), normalised per batch.

The label feature (default `log_freq`) is a property of the data set, not of the batch: log(C * freq)
of the sample's observed label, 0 for every class of a balanced set. It is left as it is: normalising
it per batch would blow the few-percent count differences of nearly balanced classes up to unit
variance, an arbitrary class ordering that a policy can only be hurt by (`log_freq_batch` does that,
as earlier versions did).

Normalisation (`norm`): "zscore" (the paper: mean 0, std 1 over the batch) or "rank" (each feature
replaced by its within-batch rank, ties averaged, then z-scored). Losses on noisy labels are heavy-tailed:
a z-score puts a weight's threshold where the few largest losses drag the mean and std, a rank puts it at
a fixed fraction of the batch whatever the tail. "val_rank": the loss is ranked among the per-sample losses
of the clean validation set, measured at the last stage end (the other features as "rank"). A batch rank
drops the same fraction of every batch whatever the noise rate; a threshold among clean losses drops what
is out of place among clean samples, a fraction that follows the noise rate (README: transfer).
"class_val_rank": the loss is ranked among the validation losses of the sample's own observed class (a class
without validation samples: among all of them). On a clean long tail the rare classes' losses sit high among all
clean losses but not among their own class's, so they are not taken for noise.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

FEATURE_NAMES = ("loss", "entropy", "density", "label")
NUM_FEATURES = len(FEATURE_NAMES)
VALIDATION_NORMS = ("val_rank", "class_val_rank")
"""The normalisations that rank the loss among the clean validation set's losses (measured at stage ends)."""
FEATURE_NORMS = ("zscore", "rank") + VALIDATION_NORMS


def log_class_frequencies(counts) -> np.ndarray:
    """float32 [C]: log of each observed label's training-set frequency (the default label feature);
    an unseen class counts as one sample."""
    counts = np.maximum(np.asarray(counts, dtype=np.float64), 1.0)
    return np.log(counts / counts.sum()).astype(np.float32)


def batch_density(logits: torch.Tensor, similarity: str = "cosine") -> torch.Tensor:
    """density_i = sum_{j != i} S_ij / (B - 1), S = similarity of logit vectors.

    The paper writes S = Lo^T Lo (a dot product, `similarity="dot"`); cosine (default) removes the
    dependence on the logits' scale, which grows as the network trains.
    """
    if similarity == "cosine":
        vectors = F.normalize(logits, dim=1)
    elif similarity == "dot":
        vectors = logits
    else:
        raise ValueError(f"unknown density similarity '{similarity}'")
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


def _centred_rank(below_twice: torch.Tensor, count) -> torch.Tensor:
    """sqrt(12) (u - 1/2) from twice the count of references below (ties once): the scale of a z-scored batch rank."""
    fraction = below_twice.to(torch.float32) / (2.0 * count)
    return math.sqrt(12.0) * (fraction - 0.5)


def validation_ranks(losses: torch.Tensor, sorted_validation_losses: torch.Tensor) -> torch.Tensor:
    """sqrt(12) (u - 1/2), u the fraction of clean validation losses below each loss (ties count half): the
    scale of a z-scored batch rank, so a loss typical of the validation set sits near 0."""
    reference = sorted_validation_losses.to(losses)
    below = torch.searchsorted(reference, losses, right=False) + torch.searchsorted(reference, losses, right=True)
    return _centred_rank(below, max(len(reference), 1)).to(losses.dtype)


def losses_by_class(sorted_losses: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """[C, M]: each class's validation losses in ascending order, padded with +inf to the largest class's count M.
    `sorted_losses` ascending, `labels` aligned with them."""
    labels = labels.to(sorted_losses.device).long()
    counts = torch.bincount(labels, minlength=num_classes)
    table = torch.full((num_classes, max(int(counts.max()) if len(labels) else 0, 1)), math.inf,
                       device=sorted_losses.device)
    order = torch.argsort(labels, stable=True)  # grouped by class, each group still ascending
    grouped = labels[order]
    position = torch.arange(len(labels), device=labels.device) - (counts.cumsum(0) - counts)[grouped]
    table[grouped, position] = sorted_losses[order].float()
    return table


def class_validation_ranks(losses: torch.Tensor, labels: torch.Tensor, validation_by_class: torch.Tensor,
                           sorted_validation_losses: torch.Tensor) -> torch.Tensor:
    """As validation_ranks, but each loss among the validation losses of its own label's class (losses_by_class);
    a class with no validation sample is ranked among all of them."""
    reference = validation_by_class.to(losses.device)[labels]  # [B, M], +inf padding
    present = torch.isfinite(reference)
    value = losses.float()[:, None]
    below = ((reference < value) & present).sum(1) + ((reference <= value) & present).sum(1)
    count = present.sum(1)
    own_class = _centred_rank(below, count.clamp_min(1).to(torch.float32))
    return torch.where(count > 0, own_class.to(losses.dtype), validation_ranks(losses, sorted_validation_losses))


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
    density: str = "cosine",
    label_feature: str = "log_freq",
    norm: str = "zscore",
    per_sample_loss: torch.Tensor | None = None,
    terms=FEATURE_NAMES,
    validation_losses: torch.Tensor | None = None,
    validation_by_class: torch.Tensor | None = None,
) -> torch.Tensor:
    """[B, 4] features of a batch from the target net's logits (no gradient), normalised per batch.
    `per_sample_loss`: the per-sample training loss of these logits (train.base_loss) if the caller has it; else
    their cross-entropy. `terms`: the features to compute (a policy's action terms); the others stay 0 (every
    feature is normalised on its own, so leaving one out changes no other).

    log_class_freq[c] = log(frequency of observed label c in the training set). The label feature:
    "log_freq" = log(C * freq), not normalised; "log_freq_batch" = the same, normalised with the batch;
    "index" = the raw class index, normalised with the batch. `validation_losses`: the sorted per-sample losses
    of the clean validation set (norms "val_rank" and "class_val_rank" need them); `validation_by_class`: the
    same per class (losses_by_class; "class_val_rank" needs it).
    """
    if label_feature not in ("log_freq", "log_freq_batch", "index"):
        raise ValueError(f"unknown label feature '{label_feature}'")
    if norm not in FEATURE_NORMS:
        raise ValueError(f"unknown feature normalisation '{norm}'")
    if norm in VALIDATION_NORMS and "loss" in terms and validation_losses is None:
        raise ValueError(f"feature normalisation '{norm}' ranks each loss among the clean validation set's losses, "
                         "and none were measured (PolicyWeighter.observe_validation(accuracy, losses))")
    if norm == "class_val_rank" and "loss" in terms and validation_by_class is None:
        raise ValueError("feature normalisation 'class_val_rank' ranks each loss among its class's validation "
                         "losses, and their labels were not given (PolicyWeighter.observe_validation(accuracy, "
                         "losses, labels))")
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
        columns.append(batch_density(logits, density))
    if "label" in wanted:
        if label_feature == "index":
            label = labels.float()
        else:
            label = log_class_freq.to(logits.device)[labels] + math.log(len(log_class_freq))
        columns.append(label)
    features = torch.zeros(logits.shape[0], NUM_FEATURES, device=logits.device)
    kept = "label" in wanted and label_feature == "log_freq"  # a data-set property: not normalised (see above)
    normalised = wanted[:-1] if kept else wanted
    if normalised:
        computed = torch.stack(columns[:len(normalised)], dim=1)
        if norm != "zscore":
            computed = batch_ranks(computed)
        features[:, [FEATURE_NAMES.index(name) for name in normalised]] = zscore(computed)
        if norm == "val_rank" and "loss" in wanted:
            features[:, FEATURE_NAMES.index("loss")] = validation_ranks(columns[0], validation_losses)
        elif norm == "class_val_rank" and "loss" in wanted:
            features[:, FEATURE_NAMES.index("loss")] = class_validation_ranks(columns[0], labels, validation_by_class,
                                                                              validation_losses)
    if kept:
        features[:, FEATURE_NAMES.index("label")] = columns[-1]
    return features
