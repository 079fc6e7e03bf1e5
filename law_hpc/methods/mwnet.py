"""Meta-Weight-Net (Shu et al. 2019): an MLP maps each sample's loss to its weight, meta-learned on
clean validation data through a look-ahead SGD step of the classifier."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from .base import StepResult, WeightingMethod, register_method
from .l2rw import detached_copies, virtual_sgd_step


def weight_net(hidden: int) -> nn.Sequential:
    """V(l; Theta): 1 -> hidden -> 1, ReLU, sigmoid output in (0, 1)."""
    return nn.Sequential(nn.Linear(1, hidden), nn.ReLU(), nn.Linear(hidden, 1), nn.Sigmoid())


@register_method
class MetaWeightNet(WeightingMethod):
    name = "mwnet"
    told = "a clean validation set"

    @dataclass
    class Options:
        hidden: int = 100
        """Hidden units of the weight net V(l; Theta) (paper: 100)."""
        meta_lr: float = 1e-3
        """Adam lr of the weight net (paper: 1e-3)."""

    def __init__(self, hidden: int = 100, meta_lr: float = 1e-3):
        self.hidden, self.meta_lr = int(hidden), float(meta_lr)

    def setup(self, model_factory, optimizer_factory, device) -> None:
        super().setup(model_factory, optimizer_factory, device)
        with torch.random.fork_rng(devices=[]):  # the same meta-net initialisation on every rank and run
            torch.manual_seed(0)
            self.meta_net = weight_net(self.hidden).to(device)
        # data-parallel: the meta-net's gradients are averaged over ranks too, so every rank holds one meta-net
        self.meta_optimizer = optimizer_factory(self.meta_net, torch.optim.Adam(self.meta_net.parameters(),
                                                                                lr=self.meta_lr))

    def loss_weights(self, per_sample_loss: torch.Tensor) -> torch.Tensor:
        return self.meta_net(per_sample_loss.detach()[:, None]).squeeze(1)

    def train_step(self, batch, epoch, val_batch_fn) -> StepResult:
        images, labels = batch.images, batch.labels
        self.model.train()
        params, buffers = detached_copies(self.model)
        per_sample_loss = F.cross_entropy(functional_call(self.model, (params, buffers), (images,)), labels,
                                          reduction="none")
        # Eq. 6: theta_hat(Theta) = theta - alpha 1/n sum_i V(L_i(theta); Theta) grad_theta L_i(theta)
        stepped = virtual_sgd_step(params, (self.loss_weights(per_sample_loss) * per_sample_loss).mean(),
                                   self.current_lr)
        # Eq. 7: Theta <- Theta - beta grad_Theta 1/m sum_j L_j^meta(theta_hat(Theta)) (Adam here)
        val_images, val_labels = val_batch_fn()
        meta_loss = F.cross_entropy(functional_call(self.model, (stepped, buffers), (val_images,)), val_labels)
        self.meta_optimizer.zero_grad()
        meta_loss.backward(inputs=list(self.meta_net.parameters()))
        self.meta_optimizer.step()
        # Eq. 8: theta <- theta - alpha 1/n sum_i V(L_i(theta); Theta_{t+1}) grad_theta L_i(theta)
        per_sample_loss = F.cross_entropy(self.model(images), labels, reduction="none")
        with torch.no_grad():
            weights = self.loss_weights(per_sample_loss)
        self.optimizer.zero_grad()  # Horovod's DistributedOptimizer takes no set_to_none
        (weights * per_sample_loss).mean().backward()
        self.optimizer.step()
        return StepResult(per_sample_loss.detach().mean(), weights.detach())

    def stateful(self) -> dict:
        return {**super().stateful(), "meta_net": self.meta_net, "meta_optimizer": self.meta_optimizer}
