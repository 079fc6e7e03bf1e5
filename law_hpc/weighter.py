"""Apply a learned policy in any training loop: per-sample weights from (logits, labels, stage).

    weighter = PolicyWeighter.from_file("runs/search-x/policy.h5", class_counts=train_label_counts)
    weights = weighter.weights(logits, labels, stage)          # stage = weighter.stage_of(epoch, epochs)
    loss = (weights * F.cross_entropy(logits, labels, reduction="none")).mean()

The stage state s_T = [e_T, l_smooth, acc_smooth] is kept here as in the search: l_smooth follows the
mean loss of the batches seen in each stage, acc_smooth the validation accuracies reported through
`observe_validation` (optional; without it acc_smooth stays at chance level).
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import torch
import torch.nn.functional as F

from .io.policy_file import load_policy
from .law.features import item_features, log_class_frequencies
from .law.policy import sample_weights


class PolicyWeighter:
    """The deterministic actor mu(s_T) of a search, turned into K_T(f) = 1 + tanh(theta_T f + b) (Eq. 3-4)."""

    def __init__(self, model, settings: dict, log_class_freq: np.ndarray, smoothing: float = 0.9):
        self.model, self.settings, self.smoothing = model, settings, smoothing
        self.stages, self.warmup_stages = int(settings["stages"]), int(settings["warmup_stages"])
        self.log_class_freq = torch.as_tensor(log_class_freq, dtype=torch.float32)
        num_classes = len(log_class_freq)
        self.l_smooth, self.acc_smooth = math.log(num_classes), 1.0 / num_classes
        self._stage, self._loss_sum, self._loss_count, self._action = -1, 0.0, 0, None

    @classmethod
    def from_file(cls, path, class_counts=None, smoothing: float = 0.9) -> "PolicyWeighter":
        """Load policy.h5; `class_counts` (observed labels of YOUR training set) sets the label feature."""
        model, settings, log_class_freq = load_policy(path)
        gap = settings.get("validation_gap")
        if gap is not None and gap <= 0:
            warnings.warn(f"{path}: this policy did not beat uniform training on its search's validation split "
                          f"(final accuracy gap {100 * gap:+.2f} points); it is likely to hurt", stacklevel=2)
        if class_counts is not None:
            log_class_freq = log_class_frequencies(class_counts)
        return cls(model, settings, log_class_freq, smoothing)

    def stage_of(self, epoch: float, total_epochs: float) -> int:
        """The policy stage (0-based) of a point in training; training is cut into the search's stages."""
        return min(int(epoch / total_epochs * self.stages), self.stages - 1)

    def observe_validation(self, accuracy: float) -> None:
        """Report a validation accuracy (fraction); it enters acc_smooth as in the search."""
        self.acc_smooth = self.smoothing * self.acc_smooth + (1 - self.smoothing) * accuracy

    def action(self, stage: int) -> torch.Tensor:
        """a_T = [theta_T, b] for `stage`; the stage state is updated when the stage changes."""
        if stage != self._stage:
            if self._loss_count:
                mean_loss = self._loss_sum / self._loss_count
                self.l_smooth = self.smoothing * self.l_smooth + (1 - self.smoothing) * mean_loss
            self._stage, self._loss_sum, self._loss_count = stage, 0.0, 0
            self._action = self.model.act(stage, (self.l_smooth, self.acc_smooth))
        return self._action

    def state_dict(self) -> dict:
        """The stage state a resumed training continues from (the actor itself comes from policy.h5)."""
        return {"l_smooth": self.l_smooth, "acc_smooth": self.acc_smooth, "stage": self._stage,
                "loss_sum": self._loss_sum, "loss_count": self._loss_count, "action": self._action}

    def load_state_dict(self, state: dict) -> None:
        self.l_smooth, self.acc_smooth = state["l_smooth"], state["acc_smooth"]
        self._stage, self._loss_sum, self._loss_count = state["stage"], state["loss_sum"], state["loss_count"]
        self._action = state["action"]

    @torch.no_grad()
    def weights(self, logits: torch.Tensor, labels: torch.Tensor, stage: int) -> torch.Tensor:
        """Per-sample weights [B] for a batch; 1 during the search's warm-up stages."""
        action = self.action(stage)
        self._loss_sum += float(F.cross_entropy(logits.detach().float(), labels))
        self._loss_count += 1
        if stage < self.warmup_stages:
            return torch.ones(labels.shape[0], device=logits.device)
        features = item_features(logits, labels, self.log_class_freq.to(logits.device), self.settings["density"],
                                 self.settings["label_feature"], self.settings["feature_norm"])
        return sample_weights(features, action.to(logits.device))
