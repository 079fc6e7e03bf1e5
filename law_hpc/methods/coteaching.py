"""Co-teaching (Han et al. 2018, "Co-teaching: Robust Training of Deep Neural Networks with Extremely
Noisy Labels"): two networks, each trains on the small-loss samples its peer selects."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..law.losses import base_loss
from .base import METHODS, StepResult, WeightingMethod, register_method
from .self_paced import smallest_loss_mask

RATE_EPOCH = 1
"""The epoch (from 0) whose predictions estimate the noise rate: each sample seen once, none memorised yet."""
MAX_ESTIMATED_RATE = 0.9


def noise_rate_estimate(label_agreement: float, clean_accuracy: float, num_classes: int) -> float:
    """r from P(prediction = given label) = a (1 - r) + (1 - a) r / (C - 1): a network of clean accuracy a whose
    errors fall on the C - 1 other classes alike, meeting labels of which a fraction r were flipped."""
    denominator = clean_accuracy - (1.0 - clean_accuracy) / max(num_classes - 1, 1)
    if denominator <= 0:  # a network at chance says nothing about the labels
        return 0.0
    return min(max((clean_accuracy - label_agreement) / denominator, 0.0), MAX_ESTIMATED_RATE)


def classwise_noise_rate(evidence: torch.Tensor) -> float:
    """The training labels' noise rate from [4, C] counts per class: training labels given, of those agreed with by
    the network's prediction, validation images shown, of those predicted right. Each class's rate (against that
    class's clean accuracy) weighs by its share of the labels: on a long tail the head classes, which the network
    knows best, hold most labels, and one class-balanced validation accuracy would underestimate the rate."""
    given, agreeing, shown, correct = evidence.double()
    overall_accuracy = float(correct.sum() / shown.sum().clamp(min=1))
    rate = 0.0
    for c in torch.nonzero(given).flatten().tolist():
        accuracy = float(correct[c] / shown[c]) if shown[c] else overall_accuracy
        rate += float(given[c] / given.sum()) * noise_rate_estimate(float(agreeing[c] / given[c]), accuracy,
                                                                       evidence.shape[1])
    return rate


@register_method
class CoTeaching(WeightingMethod):
    name = "coteaching"
    told = "the noise rate (its forget rate), unless it estimates it"

    @dataclass
    class Options:
        forget_rate: float = 0.4
        """The fraction of large-loss samples finally dropped (an estimate of the noise rate)."""
        forget_epochs: int = 10
        """T_k: epochs over which the drop rate ramps up."""
        estimate_forget_rate: bool = False
        """Estimate the noise rate instead of being told it (forget_rate is then unused): the first network's
        predictions through epoch 2 on its training batches against the given labels and on validation batches
        against the clean ones, per class (classwise_noise_rate). Nothing is dropped before the estimate."""
        loss: str = "ce"
        """The per-sample loss each network ranks its samples by and its peer trains on: ce (the paper's) or gce
        (GCE's L_q with methods.gce.q, no logit adjustment). Both fall with p_y, so they select the same samples;
        gce trains the kept ones with the noise-robust gradient."""

    def __init__(self, forget_rate: float = 0.4, forget_epochs: float = 10.0, estimate_forget_rate: bool = False,
                 num_classes: int = 0, loss: str = "ce", q: float = 0.7):
        if not 0.0 <= forget_rate < 1.0:
            raise ValueError(f"co-teaching forget_rate must be in [0, 1), got {forget_rate}")
        if loss not in ("ce", "gce"):
            raise ValueError(f"co-teaching loss must be ce or gce, got '{loss}'")
        self.ranking_loss = base_loss(loss, q=q)  # gce without class counts: no logit adjustment
        if estimate_forget_rate and num_classes < 2:
            raise ValueError("co-teaching estimate_forget_rate needs the number of classes")
        self.forget_rate, self.forget_epochs = float(forget_rate), float(forget_epochs)
        self.estimates_rate = bool(estimate_forget_rate)
        # when estimating: counts per class of epoch RATE_EPOCH (classwise_noise_rate), then the estimate
        self.rate_evidence = torch.zeros(4, max(num_classes, 1), dtype=torch.float64)
        self.rate_estimated = False
        if self.estimates_rate:
            self.forget_rate = 0.0  # until the estimate

    @classmethod
    def from_config(cls, cfg, data) -> "CoTeaching":
        options = cls.options(cfg)
        return cls(options.forget_rate, options.forget_epochs, options.estimate_forget_rate, data.num_classes,
                   options.loss, METHODS["gce"].options(cfg).q)

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
        if self.estimates_rate and not self.rate_estimated and int(epoch) == RATE_EPOCH:
            self.count_rate_evidence(images, labels, val_batch_fn())
        self.model.train()
        self.peer_model.train()
        loss_f = self.ranking_loss(self.model(images), labels)
        loss_g = self.ranking_loss(self.peer_model(images), labels)
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

    @torch.no_grad()
    def count_rate_evidence(self, images, labels, validation_batch) -> None:
        """f's predictions (evaluation mode, before the step) on the training batch and on a validation batch,
        counted per class into rate_evidence."""
        self.model.eval()
        classes = self.rate_evidence.shape[1]
        val_images, val_labels = validation_batch
        agreeing = self.model(images).argmax(1) == labels
        correct = self.model(val_images).argmax(1) == val_labels
        for row, counted in enumerate((labels, labels[agreeing], val_labels, val_labels[correct])):
            self.rate_evidence[row] += torch.bincount(counted, minlength=classes).cpu().double()

    def choose_eval_model(self, validation) -> None:
        """The epoch-end hook (a collective): after epoch RATE_EPOCH, the forget rate from every rank's counts."""
        if self.estimates_rate and not self.rate_estimated and self.rate_evidence[0].sum() > 0:
            self.pool_ranks()
            self.forget_rate = classwise_noise_rate(self.rate_evidence)
            self.rate_estimated = True
        return None

    def pool_ranks(self) -> None:
        """The ranks' counts averaged (their ratios are what counts), so rank 0's checkpoint stands for all."""
        if self.estimates_rate and not self.rate_estimated:
            everyone = self.allgather(self.rate_evidence.tolist())
            self.rate_evidence = torch.tensor(everyone, dtype=torch.float64).mean(0)

    def status(self) -> str:
        if not self.estimates_rate:
            return ""
        return f"forget rate {self.forget_rate:.3f}, estimated" if self.rate_estimated else "forget rate: estimating"

    def state_dict(self) -> dict:
        state = super().state_dict()
        if self.estimates_rate:
            state["rate_estimate"] = {"evidence": self.rate_evidence.clone(), "estimated": self.rate_estimated,
                                      "forget_rate": self.forget_rate}
        return state

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        if self.estimates_rate and "rate_estimate" in state:
            estimate = state["rate_estimate"]
            self.rate_evidence = estimate["evidence"].clone()
            self.rate_estimated, self.forget_rate = bool(estimate["estimated"]), float(estimate["forget_rate"])

    def stateful(self) -> dict:
        return {**super().stateful(), "peer_model": self.peer_model, "peer_optimizer": self.peer_optimizer}
