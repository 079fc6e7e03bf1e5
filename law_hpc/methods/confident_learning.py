"""Confident Learning (Northcutt, Jiang & Chuang 2021, "Confident Learning: Estimating Uncertainty in Dataset
Labels"), with the `cleanlab` package: out-of-sample predicted probabilities by K-fold cross-validation, the label
issues `cleanlab.filter.find_label_issues` finds in them, and a training on the samples kept."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..law.losses import cross_entropy
from .base import WeightingMethod, register_method


@register_method
class ConfidentLearning(WeightingMethod):
    """Before the first step, K networks train (the same network, initialisation and schedule as the final one),
    network k on every sample but fold k (fold = index in the training split mod K); each then predicts its held-out
    fold. `find_label_issues` on those probabilities flags the samples whose label it doubts, and the final network
    trains on the rest (weight 0 for a flagged sample, the loss averaged over the kept ones). Cost: K + 1 trainings.
    The cross-validation runs inside the first step: a stop request then waits for it, and a job killed during it
    runs it again (the flagged set is in every later checkpoint)."""

    name = "confident_learning"
    weight_norm = "sum_w"  # the mean loss over the kept samples of a batch
    told = "nothing"

    @dataclass
    class Options:
        folds: int = 4
        """K of the K-fold cross-validation that gives every sample an out-of-sample prediction."""
        filter_by: str = "prune_by_noise_rate"
        """cleanlab.filter.find_label_issues' rule (prune_by_noise_rate, prune_by_class, both,
        confident_learning, predicted_neq_given)."""

    def __init__(self, stream, stream_seed: int, training_set, num_classes: int, folds: int = 4,
                 filter_by: str = "prune_by_noise_rate", labels: np.ndarray | None = None, schedule=None):
        if folds < 2:
            raise ValueError(f"confident_learning needs at least 2 folds, got {folds}")
        try:
            import cleanlab.filter  # noqa: F401  (imported here: only this method needs it)
        except ImportError:
            raise ValueError("confident_learning needs the cleanlab package: pip install cleanlab") from None
        self.stream, self.stream_seed, self.training_set = stream, stream_seed, training_set
        self.num_classes, self.folds, self.filter_by = num_classes, folds, filter_by
        self.schedule = schedule  # else the test phase's (WeightingMethod.schedule)
        if labels is not None:  # the observed training labels, when known before any training: check the folds now
            self.check_folds(np.asarray(labels))
        self.flagged: torch.Tensor | None = None  # [N] bool: the label issues (None until cross-validated)

    @classmethod
    def from_config(cls, cfg, data) -> "ConfidentLearning":
        from ..seeding import derive_seed
        options = cls.options(cfg)
        return cls(data.train, derive_seed(cfg.seed, "train-data"), data.training_set, data.num_classes,
                   options.folds, options.filter_by, data.split.train_observed if data.split is not None else None)

    def setup(self, model_factory, optimizer_factory, device) -> None:
        super().setup(model_factory, optimizer_factory, device)
        self.model_factory, self.optimizer_factory, self.device = model_factory, optimizer_factory, device

    def sample_weights(self, logits, batch, epoch):
        if self.flagged is None:
            self.flagged = self.find_label_issues()
        return (~self.flagged[batch.index.cpu()]).to(logits.dtype).to(logits.device)

    # --- the cross-validation ------------------------------------------------------------------------
    def find_label_issues(self) -> torch.Tensor:
        """[N] bool over the training split: the samples cleanlab flags from K-fold out-of-sample probabilities."""
        from cleanlab.filter import find_label_issues
        probabilities, labels = None, None
        for fold in range(self.folds):
            fold_labels, fold_probabilities = self.predict(self.train_fold(fold))
            held_out = np.arange(len(fold_labels)) % self.folds == fold
            if probabilities is None:
                probabilities, labels = np.zeros_like(fold_probabilities), fold_labels
                self.check_folds(labels)
            probabilities[held_out] = fold_probabilities[held_out]
        # Data-parallel: each rank's fold networks saw its shard only; the ranks' mean prediction flags the same
        # samples on every rank (one rank: its own).
        probabilities = np.mean(self.allgather(probabilities.astype(np.float32)), axis=0).astype(np.float64)
        probabilities /= probabilities.sum(axis=1, keepdims=True)
        # n_jobs=1: cleanlab's default forks a pool per physical core, and a fork of a process whose torch threads
        # are running can deadlock (it hung CI); one process per class loop costs milliseconds here.
        flagged = find_label_issues(labels, probabilities, filter_by=self.filter_by, n_jobs=1)
        return torch.from_numpy(np.asarray(flagged, bool))

    def check_folds(self, labels: np.ndarray) -> None:
        """Every class with a sample must have one in every fold: otherwise its network never sees it."""
        for fold in range(self.folds):
            present = np.bincount(labels[np.arange(len(labels)) % self.folds == fold], minlength=self.num_classes)
            missing = [c for c in range(self.num_classes) if present[c] == 0 and (labels == c).any()]
            if missing:
                raise ValueError(f"confident_learning: fold {fold + 1} of {self.folds} holds no sample of class(es) "
                                 f"{missing}: use fewer folds (methods.confident_learning.folds)")

    def train_fold(self, fold: int) -> torch.nn.Module:
        """A network trained on the whole schedule on every sample outside `fold`, in the final training's order."""
        model = self.model_factory().to(self.device)
        optimizer = self.optimizer_factory(model)
        schedule = self.schedule
        steps = schedule.epochs * schedule.iterations_per_epoch
        for step, batch in zip(range(steps), self.stream.iterate(self.stream_seed)):
            for group in optimizer.param_groups:
                group["lr"] = schedule.lr_at(step)
            keep = (batch.index % self.folds != fold).to(batch.images.device)
            model.train()
            loss = (cross_entropy(model(batch.images), batch.labels) * keep).sum() / keep.sum().clamp_min(1)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        return model

    @torch.no_grad()
    def predict(self, model: torch.nn.Module) -> tuple[np.ndarray, np.ndarray]:
        """(observed labels [N], softmax [N, C]) of `model` on the whole training split, unaugmented, index order."""
        model.eval()
        labels, probabilities = [], []
        for images, batch_labels in self.training_set().batches():
            probabilities.append(F.softmax(model(images.to(self.device)).float(), dim=1).cpu().numpy())
            labels.append(batch_labels.cpu().numpy())
        return np.concatenate(labels).astype(np.int64), np.concatenate(probabilities).astype(np.float64)

    # --- reporting and checkpoints -------------------------------------------------------------------
    def status(self) -> str:
        if self.flagged is None:
            return ""
        return f"confident learning: {int(self.flagged.sum())} of {len(self.flagged)} labels flagged and left out"

    def log_attributes(self) -> dict:
        return {"folds": self.folds, "filter_by": self.filter_by}

    def state_dict(self) -> dict:
        flagged = torch.zeros(0, dtype=torch.bool) if self.flagged is None else self.flagged.clone()
        return {**super().state_dict(), "flagged": flagged}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.flagged = state["flagged"] if len(state["flagged"]) else None
