"""DivideMix (Li, Socher & Hoi, ICLR 2020, "DivideMix: Learning with Noisy Labels as Semi-supervised Learning").

Two networks. After a warm-up on cross-entropy, at the start of every epoch each network's per-sample losses on
the (unaugmented) training set are fitted with a two-component Gaussian mixture (their Eq. 1-2); the posterior of
the low-mean component is the clean probability w_i. Co-divide: the division of one network trains the other.
Each network then trains with MixMatch on its batch split into a labelled part (w_i > p_threshold) and an
unlabelled part:
- label co-refinement (Eq. 3-4): y'_i = sharpen(w_i y_i + (1 - w_i) p_i, T), p_i the network's own prediction;
- label co-guessing: q_i = sharpen(mean of both networks' predictions, T) for the unlabelled samples;
- MixUp of the whole batch with lambda' = max(lambda, 1 - lambda), lambda ~ Beta(alpha, alpha) (Eq. 5-8);
- loss: soft cross-entropy on the mixed labelled part + lambda_u * MSE on the mixed unlabelled part (ramped up
  linearly over `rampup_epochs`) + the uniform-prior regulariser sum_c pi_c log(pi_c / mean_i p_ic) (Eq. 9-11).
Differences from the paper, for this harness: one augmented view per sample (the batch as the data stream
delivers it; the paper averages over two augmentations), labelled and unlabelled samples come from the same
batch (the paper draws separate batches of each), the epochs are scaled to ours. The test accuracy is the first
network's (the paper averages both networks' outputs). Told: nothing (the GMM estimates the noise).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..seeding import derive_seed
from .base import StepResult, WeightingMethod, register_method


def clean_probability(losses: np.ndarray, iterations: int = 10, reg_covar: float = 5e-4) -> np.ndarray:
    """Posterior of the low-mean component of a two-component 1-D Gaussian mixture fitted by EM to `losses`
    (min-max normalised first, as the paper does; the paper's sklearn settings: 10 iterations, reg_covar 5e-4)."""
    x = np.asarray(losses, dtype=np.float64)
    x = (x - x.min()) / max(x.max() - x.min(), 1e-12)
    low = x <= np.median(x)  # start: the lower half is one component
    resp = np.stack([low, ~low], axis=1).astype(np.float64)
    for _ in range(iterations):
        weight = resp.sum(axis=0) + 1e-12
        mean = (resp * x[:, None]).sum(axis=0) / weight
        var = (resp * (x[:, None] - mean) ** 2).sum(axis=0) / weight + reg_covar
        prior = weight / len(x)
        log_density = -0.5 * ((x[:, None] - mean) ** 2 / var + np.log(2 * math.pi * var)) + np.log(prior)
        log_density -= log_density.max(axis=1, keepdims=True)
        resp = np.exp(log_density)
        resp /= resp.sum(axis=1, keepdims=True)
    return resp[:, int(np.argmin(mean))]


def sharpen(probabilities: torch.Tensor, temperature: float) -> torch.Tensor:
    """p^(1/T), renormalised (MixMatch's temperature sharpening)."""
    sharpened = probabilities ** (1.0 / temperature)
    return sharpened / sharpened.sum(dim=1, keepdim=True)


@register_method
class DivideMix(WeightingMethod):
    name = "dividemix"
    told = "nothing"

    @dataclass
    class Options:
        warmup_epochs: float = 2.0
        """Epochs of plain cross-entropy before the first division (paper: 10 of 300 on CIFAR-10; our nets
        start to memorise earlier)."""
        p_threshold: float = 0.5
        """tau: a sample is labelled when its clean probability exceeds it (paper: 0.5)."""
        temperature: float = 0.5
        """T of the sharpening (paper: 0.5)."""
        alpha: float = 4.0
        """MixUp's Beta(alpha, alpha) (paper: 4)."""
        lambda_u: float = 0.0
        """Weight of the unlabelled MSE loss (paper: 0 at 20 % noise, 25 at 50 %, 50 at 90 %). 0 chosen on validation:
        small CNN, 4k noisy images, 8 epochs: validation 74.2 % at 0, 71.0 % at 25 (uniform 80.2 %)."""
        rampup_epochs: float = 1.0
        """Epochs over which lambda_u ramps up after the warm-up (paper: 16 of 300)."""

    def __init__(self, training_set, warmup_epochs: float = 2.0, p_threshold: float = 0.5, temperature: float = 0.5,
                 alpha: float = 4.0, lambda_u: float = 0.0, rampup_epochs: float = 1.0):
        if not 0 < temperature <= 1 or alpha <= 0 or not 0 <= p_threshold < 1 or lambda_u < 0:
            raise ValueError("dividemix needs 0 < temperature <= 1, alpha > 0, 0 <= p_threshold < 1, lambda_u >= 0")
        self.training_set = training_set  # () -> the training split as an evaluation set, in index order
        self.warmup_epochs, self.p_threshold, self.temperature = float(warmup_epochs), p_threshold, temperature
        self.alpha, self.lambda_u, self.rampup_epochs = alpha, lambda_u, float(rampup_epochs)
        self.divided_epoch = -1  # the epoch whose division `clean` holds
        self.clean: torch.Tensor | None = None  # [2, N]: w_i of network 0 and of network 1

    @classmethod
    def from_config(cls, cfg, data) -> "DivideMix":
        return cls(data.training_set, **asdict(cls.options(cfg)))

    def setup(self, model_factory, optimizer_factory, device) -> None:
        super().setup(model_factory, optimizer_factory, device)
        self.peer_model = model_factory(1).to(device)
        self.peer_optimizer = optimizer_factory(self.peer_model)

    @property
    def optimizers(self) -> list:
        return [self.optimizer, self.peer_optimizer]

    @torch.no_grad()
    def divide(self) -> None:
        """Each network's clean probabilities w_i over the whole training split (their Eq. 1-2): the same on every
        data-parallel rank, whose networks are one."""
        clean = []
        for model in (self.model, self.peer_model):
            model.eval()
            losses = [F.cross_entropy(model(images), labels, reduction="none").cpu()
                      for images, labels in self.training_set().batches()]
            clean.append(torch.from_numpy(clean_probability(torch.cat(losses).numpy())).float())
        self.clean = torch.stack(clean)

    def _mixmatch_loss(self, model, peer, images, labels, clean, epoch: float, net: int):
        """MixMatch with co-refined labels and co-guessed targets for `model`, divided by its peer (`clean`). The
        mix draws from a generator seeded by (step, network): a resumed run mixes as an uninterrupted one.
        Returns the loss and `model`'s per-sample cross-entropy on the unmixed batch before the step."""
        rng = np.random.default_rng(derive_seed("dividemix", round(epoch * 1_000_000), net))
        with torch.no_grad():  # as the authors' code: the net being trained guesses in train mode, its peer in eval
            model.train()
            peer.eval()
            own_logits = model(images)
            own = F.softmax(own_logits, dim=1)
            guessed = (own + F.softmax(peer(images), dim=1)) / 2
            num_classes = own.shape[1]
            given = F.one_hot(labels, num_classes).float()
            w = clean.to(images.device)[:, None]
            refined = sharpen(w * given + (1 - w) * own, self.temperature)  # label co-refinement (Eq. 3-4)
            targets_u = sharpen(guessed, self.temperature)  # label co-guessing
            labelled = clean.to(images.device) > self.p_threshold
            targets = torch.where(labelled[:, None], refined, targets_u)
            mix = float(rng.beta(self.alpha, self.alpha))
            mix = max(mix, 1 - mix)
            partner = torch.from_numpy(rng.permutation(len(labels))).to(images.device)
        mixed_images = mix * images + (1 - mix) * images[partner]
        mixed_targets = mix * targets + (1 - mix) * targets[partner]
        logits = model(mixed_images)
        n_labelled, n_unlabelled = int(labelled.sum()), int((~labelled).sum())
        loss_x = -(mixed_targets[labelled] * F.log_softmax(logits[labelled], dim=1)).sum(1).sum() / max(n_labelled, 1)
        probabilities = F.softmax(logits, dim=1)
        loss_u = ((probabilities[~labelled] - mixed_targets[~labelled]) ** 2).mean(1).sum() / max(n_unlabelled, 1)
        ramp = min(max((epoch - self.warmup_epochs) / self.rampup_epochs, 0.0), 1.0) if self.rampup_epochs > 0 else 1.0
        prior = torch.full((num_classes,), 1.0 / num_classes, device=images.device)
        penalty = (prior * torch.log(prior / probabilities.mean(0))).sum()  # Eq. 11
        return loss_x + self.lambda_u * ramp * loss_u + penalty, F.cross_entropy(own_logits, labels, reduction="none")

    def train_step(self, batch, epoch, val_batch_fn) -> StepResult:
        if epoch < self.warmup_epochs:  # both networks on plain cross-entropy
            losses = []
            for model, optimizer in ((self.model, self.optimizer), (self.peer_model, self.peer_optimizer)):
                model.train()
                loss = F.cross_entropy(model(batch.images), batch.labels, reduction="none")
                optimizer.zero_grad()  # Horovod's DistributedOptimizer takes no set_to_none
                loss.mean().backward()
                optimizer.step()
                losses.append(loss.detach())
            return StepResult(losses[0].mean(), torch.ones_like(losses[0]))
        if int(epoch) != self.divided_epoch:  # the first step of an epoch: divide again
            self.divide()
            self.divided_epoch = int(epoch)
        index = batch.index.cpu()
        # co-divide: each network learns from the division its peer made
        for net, (model, peer, optimizer) in enumerate(((self.model, self.peer_model, self.optimizer),
                                                        (self.peer_model, self.model, self.peer_optimizer))):
            divided_by = 1 - net
            loss, own_loss = self._mixmatch_loss(model, peer, batch.images, batch.labels, self.clean[divided_by][index],
                                                 epoch, net)
            if net == 0:
                reported_loss = own_loss.mean()  # network 0 is the one evaluated
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        return StepResult(reported_loss, self.clean[1][index].to(batch.images.device))

    def stateful(self) -> dict:
        return {**super().stateful(), "peer_model": self.peer_model, "peer_optimizer": self.peer_optimizer}

    def state_dict(self) -> dict:
        return {**super().state_dict(), "divided_epoch": self.divided_epoch,
                "clean": torch.empty(0) if self.clean is None else self.clean.clone()}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.divided_epoch = int(state["divided_epoch"])
        self.clean = state["clean"] if state["clean"].numel() else None
