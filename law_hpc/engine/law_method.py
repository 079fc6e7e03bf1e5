"""The test phase's own methods: a learned LAW policy, and uniform weighting (ERM) as its reference.

Both follow the harness interface of law_hpc/baselines (setup / train_step / eval_model / state_dict):
the harness runs any method with the same data order and schedule.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..law.policy import weighted_mean_loss
from ..weighter import PolicyWeighter


class UniformMethod:
    """ERM: every sample weighs 1."""

    name = "uniform"

    def setup(self, model_factory, optimizer_factory, num_classes, class_counts, total_epochs, device, **_):
        self.model = model_factory().to(device)
        self.optimizer = optimizer_factory(self.model)
        self.total_epochs = total_epochs

    def set_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def sample_weights(self, logits, labels, epoch) -> torch.Tensor | None:
        return None

    def train_step(self, images, labels, index, epoch, step, val_batch_fn) -> dict:
        self.model.train()
        logits = self.model(images)
        per_sample_loss = F.cross_entropy(logits, labels, reduction="none")
        weights = self.sample_weights(logits, labels, epoch)
        if weights is None:
            weights = torch.ones_like(per_sample_loss)
            loss = per_sample_loss.mean()
        else:
            loss = weighted_mean_loss(per_sample_loss, weights, self.weight_norm)
        self.optimizer.zero_grad()  # Horovod's DistributedOptimizer takes no set_to_none
        loss.backward()
        self.optimizer.step()
        return {"loss": per_sample_loss.detach().mean(), "weights": weights.detach()}

    def eval_model(self) -> torch.nn.Module:
        return self.model

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])


class LawPolicyMethod(UniformMethod):
    """Weights from a searched policy.h5 through the deterministic actor (no exploration noise)."""

    name = "law"

    def __init__(self, policy_path):
        self.policy_path = policy_path

    def setup(self, model_factory, optimizer_factory, num_classes, class_counts, total_epochs, device, **kw):
        super().setup(model_factory, optimizer_factory, num_classes, class_counts, total_epochs, device)
        self.weighter = PolicyWeighter.from_file(self.policy_path, class_counts=class_counts)
        if len(self.weighter.log_class_freq) != num_classes:
            raise ValueError(f"{self.policy_path} was searched with {len(self.weighter.log_class_freq)} classes, "
                             f"this data has {num_classes}")
        self.weight_norm = self.weighter.settings["weight_norm"]

    def sample_weights(self, logits, labels, epoch):
        return self.weighter.weights(logits, labels, self.weighter.stage_of(epoch, self.total_epochs))

    def end_stage(self, val_accuracy: float) -> None:
        """acc_smooth of the stage state follows the validation accuracy, as in the search."""
        self.weighter.observe_validation(val_accuracy)

    def state_dict(self) -> dict:
        state = super().state_dict()
        state["weighter"] = {k: getattr(self.weighter, k) for k in ("l_smooth", "acc_smooth", "_stage", "_loss_sum",
                                                                    "_loss_count", "_action")}
        return state

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        for key, value in state["weighter"].items():
            setattr(self.weighter, key, value)
