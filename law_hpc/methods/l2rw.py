"""Learning to Reweight Examples (Ren et al. 2018): per-step weights from one look-ahead SGD step,
scored by the gradient of a clean validation loss."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.func import functional_call

from .base import StepResult, WeightingMethod, register_method


def detached_copies(model: torch.nn.Module) -> tuple[dict, dict]:
    """Copies of the parameters (leaves of a new graph) and buffers: a functional pass on them leaves
    the real model, its gradients and its BatchNorm running statistics untouched."""
    params = {name: p.detach().clone().requires_grad_(p.requires_grad) for name, p in model.named_parameters()}
    buffers = {name: b.detach().clone() for name, b in model.named_buffers()}
    return params, buffers


def virtual_sgd_step(params: dict, weighted_loss: torch.Tensor, lr: float) -> dict:
    """theta_hat = theta - lr * grad_theta weighted_loss, differentiable w.r.t. what weights the loss."""
    names = [name for name, p in params.items() if p.requires_grad]
    grads = torch.autograd.grad(weighted_loss, [params[n] for n in names], create_graph=True, allow_unused=True)
    stepped = dict(params)
    stepped.update({n: params[n] - lr * g for n, g in zip(names, grads) if g is not None})
    return stepped


def l2rw_weights(model, images, labels, val_images, val_labels, lr: float) -> torch.Tensor:
    """The per-sample weights of Ren et al. 2018, Eq. 9-13 (in the model's current train/eval mode)."""
    params, buffers = detached_copies(model)
    # Eq. 9-10: eps = 0 perturbs each sample's loss; theta_hat(eps) = theta - lr grad sum_i eps_i l_i.
    eps = torch.zeros(labels.shape[0], device=labels.device, requires_grad=True)
    per_sample_loss = F.cross_entropy(functional_call(model, (params, buffers), (images,)), labels,
                                      reduction="none")
    stepped = virtual_sgd_step(params, (eps * per_sample_loss).sum(), lr)
    # Eq. 11: u = d/d eps of the clean validation loss at theta_hat.
    val_loss = F.cross_entropy(functional_call(model, (stepped, buffers), (val_images,)), val_labels)
    (grad_eps,) = torch.autograd.grad(val_loss, eps)
    # Eq. 12-13: w~ = max(-u, 0); w = w~ / sum w~ (all zero when the sum is zero).
    weights = (-grad_eps).clamp_min(0.0)
    total = weights.sum()
    return weights / total if total > 0 else weights


@register_method
class L2RW(WeightingMethod):
    name = "l2rw"
    told = "a clean validation set"

    def train_step(self, batch, epoch, val_batch_fn) -> StepResult:
        images, labels = batch.images, batch.labels
        self.model.train()
        val_images, val_labels = val_batch_fn()
        weights = l2rw_weights(self.model, images, labels, val_images, val_labels, self.current_lr)
        per_sample_loss = F.cross_entropy(self.model(images), labels, reduction="none")
        # Algorithm 1, line 11-12: the real step on sum_i w_i l_i (the weights sum to 1).
        self.optimizer.zero_grad()  # Horovod's DistributedOptimizer takes no set_to_none
        (weights * per_sample_loss).sum().backward()
        self.optimizer.step()
        return StepResult(per_sample_loss.detach().mean(), weights.detach())
