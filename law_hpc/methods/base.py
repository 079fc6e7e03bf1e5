"""The interface of every weighting method the test phase runs, its registry, and uniform weighting (ERM).

A method is one file of law_hpc/methods: a `WeightingMethod` subclass under `@register_method`, with its
options as a nested `Options` dataclass (a docstring per field). The registry gives `--method` its choices,
the config its section `methods.<name>` (and --help its keys), and the benchmark its rows.
A method is built from the config and the training data (`from_config`), given its networks
(`setup`), then stepped batch by batch (`train_step`); `end_stage` is called at each stage end.
Every method sees the same batches, lr schedule and initialisation, so rows of a table compare.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

import torch

from ..config import coerce_options
from ..data.types import Batch
from ..law.schedule import set_lr
from ..law.losses import base_loss, cross_entropy
from ..law.policy import weighted_mean_loss


@dataclass
class StepResult:
    loss: torch.Tensor
    """Mean unweighted per-sample loss of the batch before the step (detached, on the device)."""
    weights: torch.Tensor
    """[B] the weights the step used (detached)."""


METHODS: dict[str, type["WeightingMethod"]] = {}
"""Every weighting method by its name, in registration order (law_hpc.methods imports them all)."""


def register_method(cls: type["WeightingMethod"]) -> type["WeightingMethod"]:
    """Class decorator: make a WeightingMethod buildable by its `name` (train.method, --method); the fields of its
    `Options` dataclass become the config keys methods.<name>.<field>."""
    if METHODS.get(cls.name, cls) is not cls:
        raise ValueError(f"two weighting methods are named '{cls.name}'")
    METHODS[cls.name] = cls
    return cls


class WeightingMethod:
    """ERM: every sample weighs 1. Subclasses override `sample_weights` or `train_step`, and the hooks."""

    name = "uniform"
    weight_norm = "mean"
    """How weights enter the loss: "mean" = mean_i w_i l_i, "sum_w" = sum_i w_i l_i / sum_i w_i (Eq. 7)."""
    told = "nothing"
    """What the method is told beyond the noisy training labels (the benchmark tables state it)."""
    Options = None
    """A dataclass of the method's options (config section methods.<name>), or None."""
    schedule = None
    """The training's StageSchedule (set by the test phase): for methods that train networks of their own."""
    allgather: Callable = staticmethod(lambda mine: [mine])
    """Every rank's object, in rank order (the test phase sets Horovod's): per-sample state stays alike on every
    data-parallel rank."""

    @classmethod
    def options(cls, cfg):
        """This method's `Options` as `cfg` sets them (methods.<name>; absent keys keep their defaults)."""
        return coerce_options(f"methods.{cls.name}", cls.Options, cfg.methods.get(cls.name, {}))

    @classmethod
    def from_config(cls, cfg, data) -> "WeightingMethod":
        """The method with the options of `cfg` for the training data `data` (a DataBundle)."""
        return cls(**dataclasses.asdict(cls.options(cfg))) if cls.Options else cls()

    def setup(self, model_factory: Callable[..., torch.nn.Module], optimizer_factory, device) -> None:
        """Build the network(s): `model_factory(variant)` gives the same initialisation for every method;
        `optimizer_factory(model, optimizer=None)` gives the SGD of the schedule (or wraps `optimizer`),
        data-parallel over the ranks."""
        self.model = model_factory().to(device)
        self.optimizer = optimizer_factory(self.model)

    @property
    def optimizers(self) -> list:
        return [self.optimizer]

    def set_lr(self, lr: float) -> None:
        set_lr(self.optimizers, lr)

    @property
    def current_lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def per_sample_loss(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        """[B] the loss each weight multiplies (law/losses.py): cross-entropy unless the method corrects it."""
        return cross_entropy(logits, batch.labels)

    def sample_weights(self, logits: torch.Tensor, batch: Batch, epoch: float) -> torch.Tensor | None:
        """[B] weights of the batch's samples; None = uniform. `epoch` is the training progress in epochs."""
        return None

    def train_step(self, batch: Batch, epoch: float, val_batch_fn: Callable) -> StepResult:
        """One SGD step on `batch`; `val_batch_fn()` gives a clean validation minibatch (meta-learning peers)."""
        self.model.train()
        logits = self.model(batch.images)
        per_sample_loss = self.per_sample_loss(logits, batch)
        weights = self.sample_weights(logits, batch, epoch)
        if weights is None:
            weights = torch.ones_like(per_sample_loss)
            loss = per_sample_loss.mean()
        else:
            loss = weighted_mean_loss(per_sample_loss, weights, self.weight_norm)
        self.optimizer.zero_grad()  # Horovod's DistributedOptimizer takes no set_to_none
        loss.backward()
        self.optimizer.step()
        return StepResult(per_sample_loss.detach().mean(), weights.detach())

    def end_stage(self, val_accuracy: Callable[[], float], val_losses: Callable[[Callable], torch.Tensor]) -> None:
        """Called at every stage end; `val_accuracy()` evaluates `self.model` on the validation split,
        `val_losses(loss)` gives its per-sample losses there (only methods that use them pay)."""

    def choose_eval_model(self, validation) -> float | None:
        """Called before each epoch's evaluation (a collective): a method that trains candidate networks picks
        what `eval_model` gives, judged on `validation` (engine.evaluation.ShardedValidation), and returns its
        validation accuracy (None: nothing was evaluated)."""
        return None

    def status(self) -> str:
        """A note for the epoch's progress line and the model file (LAW's guard: which network is evaluated)."""
        return ""

    def pool_ranks(self) -> None:
        """Called by every rank before each checkpoint (a collective for methods that override it): pool what the
        ranks accumulate apart, so rank 0's checkpoint stands for all of them (LAW: the stage's loss sums)."""

    def log_attributes(self) -> dict:
        """Extra attributes of train.h5 that describe this method's run (LAW: its policy)."""
        return {}

    def eval_model(self) -> torch.nn.Module:
        return self.model

    def stateful(self) -> dict:
        """The objects a checkpoint holds, by name; methods with more networks or state add theirs."""
        return {"model": self.model, "optimizer": self.optimizer}

    def state_dict(self) -> dict:
        return {name: obj.state_dict() for name, obj in self.stateful().items()}

    def load_state_dict(self, state: dict) -> None:
        for name, obj in self.stateful().items():
            obj.load_state_dict(state[name])


register_method(WeightingMethod)


def base_loss_of(cfg, class_counts):
    """train.base_loss of a config (law/losses.py), with its options from the peers' sections: the logit adjustment's
    tau (methods.logit_adjusted.tau) and GCE's q and tau (methods.gce.q, methods.gce.tau)."""
    gce = METHODS["gce"].options(cfg)
    return base_loss(cfg.train.base_loss, class_counts, tau=METHODS["logit_adjusted"].options(cfg).tau,
                     q=gce.q, gce_tau=gce.tau)
