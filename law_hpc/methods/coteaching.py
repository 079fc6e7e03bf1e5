"""Co-teaching (Han et al. 2018, "Co-teaching: Robust Training of Deep Neural Networks with Extremely
Noisy Labels"): two networks, each trains on the small-loss samples its peer selects."""
from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F

from .base import StepResult, WeightingMethod, register_method
from .self_paced import smallest_loss_mask


@register_method
class CoTeaching(WeightingMethod):
    name = "coteaching"
    told = "the noise rate (its forget rate)"

    @dataclass
    class Options:
        forget_rate: float = 0.4
        """The fraction of large-loss samples finally dropped (an estimate of the noise rate)."""
        forget_epochs: int = 10
        """T_k: epochs over which the drop rate ramps up."""

    def __init__(self, forget_rate: float = 0.4, forget_epochs: float = 10.0):
        if not 0.0 <= forget_rate < 1.0:
            raise ValueError(f"co-teaching forget_rate must be in [0, 1), got {forget_rate}")
        self.forget_rate, self.forget_epochs = float(forget_rate), float(forget_epochs)

    def setup(self, model_factory, optimizer_factory, device) -> None:
        super().setup(model_factory, optimizer_factory, device)
        self.peer_model = model_factory(1).to(device)  # f = self.model (variant 0), g = self.peer_model
        self.peer_optimizer = optimizer_factory(self.peer_model)

    @property
    def optimizers(self) -> list:
        return [self.optimizer, self.peer_optimizer]

    def keep_rate(self, epoch: float) -> float:
        """R(T) = 1 - min(T / T_k, 1) * tau (Algorithm 1, step 5), T the epoch, T_k = forget_epochs."""
        ramp = min(epoch / self.forget_epochs, 1.0) if self.forget_epochs > 0 else 1.0
        return 1.0 - max(ramp, 0.0) * self.forget_rate

    def train_step(self, batch, epoch, val_batch_fn) -> StepResult:
        images, labels = batch.images, batch.labels
        self.model.train()
        self.peer_model.train()
        loss_f = F.cross_entropy(self.model(images), labels, reduction="none")
        loss_g = F.cross_entropy(self.peer_model(images), labels, reduction="none")
        keep = self.keep_rate(epoch)
        # Algorithm 1, steps 3-4: D_f = the R(T) small-loss samples of f, D_g those of g;
        # f is updated on D_g and g on D_f (the cross update).
        selected_by_f = smallest_loss_mask(loss_f.detach(), keep)
        selected_by_g = smallest_loss_mask(loss_g.detach(), keep)
        for loss, peer_selection, optimizer in ((loss_f, selected_by_g, self.optimizer),
                                                (loss_g, selected_by_f, self.peer_optimizer)):
            optimizer.zero_grad()  # Horovod's DistributedOptimizer takes no set_to_none
            ((loss * peer_selection).sum() / peer_selection.sum()).backward()
            optimizer.step()
        return StepResult(loss_f.detach().mean(), selected_by_g)

    def stateful(self) -> dict:
        return {**super().stateful(), "peer_model": self.peer_model, "peer_optimizer": self.peer_optimizer}
