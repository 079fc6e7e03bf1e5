"""A post-hoc affine map of a trained model's log-probabilities, fit on the clean validation split (train.calibrate).

Noise and a long tail bias a network's classifier toward the classes its (noisy) labels over-represent; a few
parameters fit on trusted, class-balanced images can take part of that bias back out (temperature and class bias as
in Guo et al., "On calibration of modern neural networks", ICML 2017, and a class-to-class matrix, their "matrix
scaling"). Which map, if any, is chosen by K-fold cross-validation on the validation split, so the choice and the
accuracy reported for it never rest on the images a map was fit on; the chosen map is then fit on the whole split.
"""
from __future__ import annotations

import torch
from torch import nn

KINDS = ("none", "bias", "matrix")
"""The maps tried, simplest first (the first of equals is kept): none; temperature and a class bias; temperature,
a class bias and a class-to-class matrix (L2-penalised), the last only where the split has more images than the
matrix has entries (C^2: 10 classes need 100, 1,000 classes are never given one)."""
MATRIX_L2 = 1e-2
FOLDS = 5


class Calibrated(nn.Module):
    """`model` followed by z = T log p + (log p) W + b on its log-probabilities log p (T = exp(log_temperature));
    forward returns z, used as logits."""

    def __init__(self, model: nn.Module, log_temperature: torch.Tensor, matrix: torch.Tensor, bias: torch.Tensor,
                 kind: str):
        super().__init__()
        self.model, self.kind = model, kind
        self.register_buffer("log_temperature", log_temperature.detach().reshape(1).float().clone())
        self.register_buffer("matrix", matrix.detach().float().clone())
        self.register_buffer("bias", bias.detach().float().clone())

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return affine(torch.log_softmax(self.model(images).float(), 1), self.log_temperature, self.matrix, self.bias)

    def parameters_state(self) -> dict:
        """The map alone, as a model file stores it."""
        return {"kind": self.kind, "log_temperature": self.log_temperature.cpu(), "matrix": self.matrix.cpu(),
                "bias": self.bias.cpu()}


def affine(log_probabilities, log_temperature, matrix, bias) -> torch.Tensor:
    return log_probabilities * torch.exp(log_temperature) + log_probabilities @ matrix + bias


def fit(log_probabilities: torch.Tensor, labels: torch.Tensor, kind: str) -> tuple[torch.Tensor, ...]:
    """(log_temperature, matrix, bias) of `kind` minimising the cross-entropy on these images (L-BFGS)."""
    classes = log_probabilities.shape[1]
    log_temperature, bias = torch.zeros(1, requires_grad=True), torch.zeros(classes, requires_grad=True)
    matrix = torch.zeros(classes, classes, requires_grad=kind == "matrix")
    if kind == "none":
        return log_temperature.detach(), matrix.detach(), bias.detach()
    trained = [log_temperature, bias] + ([matrix] if kind == "matrix" else [])
    l2 = MATRIX_L2 if kind == "matrix" else 0.0
    optimizer = torch.optim.LBFGS(trained, max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(affine(log_probabilities, log_temperature, matrix, bias), labels)
        loss = loss + l2 * (matrix.pow(2).sum() + bias.pow(2).sum())
        loss.backward()
        return loss
    optimizer.step(closure)
    return log_temperature.detach(), matrix.detach(), bias.detach()


def cross_validated_accuracies(log_probabilities: torch.Tensor, labels: torch.Tensor, seed: int = 0) -> dict:
    """Each kind's top-1 accuracy on the validation images, every image predicted by the map fit on the other
    FOLDS - 1 folds (none: the model's own accuracy)."""
    folds = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed)).chunk(FOLDS)
    accuracies = {}
    for kind in KINDS if len(labels) > log_probabilities.shape[1] ** 2 else KINDS[:-1]:
        predicted = torch.empty_like(labels)
        for k, held_out in enumerate(folds):
            rest = torch.cat([fold for j, fold in enumerate(folds) if j != k])
            params = fit(log_probabilities[rest], labels[rest], kind)
            predicted[held_out] = affine(log_probabilities[held_out], *params).argmax(1)
        accuracies[kind] = (predicted == labels).double().mean().item()
    return accuracies


@torch.no_grad()
def log_probabilities_of(model: nn.Module, eval_set) -> tuple[torch.Tensor, torch.Tensor]:
    """([N, C] log-softmax, [N] labels) of `model` (eval mode) on every image of `eval_set`, on the CPU."""
    model.eval()
    outputs, labels = [], []
    for images, batch_labels in eval_set.batches():
        outputs.append(torch.log_softmax(model(images).float(), 1).cpu())
        labels.append(batch_labels.cpu())
    return torch.cat(outputs), torch.cat(labels)


def calibrate(model: nn.Module, log_probabilities: torch.Tensor, labels: torch.Tensor) -> tuple[nn.Module, str, dict]:
    """`model` wrapped in the map that cross-validates best on (log_probabilities, labels), the whole validation
    split, or `model` itself when none beats it; the kind chosen; each kind's cross-validated accuracy."""
    with torch.enable_grad():
        accuracies = cross_validated_accuracies(log_probabilities, labels)
        kind = max(accuracies, key=accuracies.get)  # the first of equals: none before any map
        if kind == "none":
            return model, kind, accuracies
        return Calibrated(model, *fit(log_probabilities, labels, kind), kind=kind), kind, accuracies
