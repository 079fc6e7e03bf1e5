"""A learned LAW policy in the test phase: the searched actor weights a fresh network's training.

With `methods.law.uniform_guard` a second network trains unweighted beside it, from the same initialisation on the
same batches (the search's reference network, Algorithm 2), and at every epoch end the one with the better validation
accuracy is evaluated and exported: a shipped policy used without a search then trains two networks, and ends where
it would lose to uniform training only by what validation misjudges. `methods.law.guard_peers` adds peer methods'
trainings (e.g. GCE, ELR) to the candidates, so the guarded run also ends no lower than the best of them by more than
validation misjudges (each costs one more network). `methods.law.guard_ensemble` lets the evaluated model be the
mean of several candidates, chosen greedily on validation (models/ensemble.py).
"""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass

from ..config import ConfigError, get_key, set_key, validate
from ..io.policy_file import load_policy, preset_settings, resolve_policy
from ..law.losses import cross_entropy
from ..models.ensemble import Ensemble, describe, greedy_ensemble
from ..weighter import PolicyWeighter
from .base import METHODS, WeightingMethod, base_loss_of, register_method


@register_method
class LawPolicy(WeightingMethod):
    """Weights from a searched policy.h5 through the deterministic actor (no exploration noise)."""

    name = "law"
    told = "a clean validation set (in its search)"

    @dataclass
    class Options:
        uniform_guard: bool = False
        """Train an unweighted twin network beside the policy's (about 1.5x the CPU time) and evaluate and
        export whichever has the better validation accuracy at each epoch end: for a shipped policy used without a
        search, where it may lose to uniform training (README, Transfer)."""
        guard_peers: list[str] = dataclasses.field(default_factory=list)
        """Peer methods (names of --method, e.g. [gce, elr]) trained beside the policy's network, each on the same
        batches from the same initialisation; the evaluated network is the best on validation among the policy's,
        the uniform twin (with uniform_guard) and these. One network more per peer."""
        guard_ensemble: int = 1
        """With a guard: the evaluated and exported model is the mean of up to this many of its candidates (repeats
        count twice), chosen greedily on validation: the best, then whichever raises the validation accuracy of the
        mean most, until none does (models/ensemble.py). 1: the best candidate alone. An ensemble's model.pt holds
        each network it averages (inference costs one forward pass per distinct network)."""

    def __init__(self, policy_path, class_counts, total_epochs: float, iterations_per_epoch: int,
                 base_loss=cross_entropy, uniform_guard: bool = False, guard_ensemble: int = 1):
        self.policy_path = str(resolve_policy(policy_path))  # a file, or a shipped policy's name
        self.base_loss = base_loss  # train.base_loss, the loss the policy was searched on (recipe_differences)
        self.weighter = PolicyWeighter.from_file(policy_path, class_counts=class_counts)
        self.weight_norm = self.weighter.weight_norm
        self.iterations_per_epoch = iterations_per_epoch
        self.total_steps = round(total_epochs * iterations_per_epoch)
        self.schedule_differences: list[str] = []
        self.guard_twins: dict[str, WeightingMethod] = {}  # the guard's candidates beside the policy's network
        if uniform_guard:  # the base loss unweighted, as the search's reference network
            self.guard_twins["uniform twin"] = BaseLossTwin(base_loss)
        self.guard_accuracies: dict[str, float] | None = None  # the candidates' last validation accuracies
        self.guard_ensemble = guard_ensemble
        self.chosen: list[str] = ["policy"]  # the candidates the evaluated model averages (repeats included)
        self.chosen_accuracy: float | None = None
        self._eval_model = None

    @classmethod
    def from_config(cls, cfg, data) -> "LawPolicy":
        if not cfg.train.policy:
            raise ValueError("train.method=law needs a searched policy: --policy RUN/policy.h5 (or train.policy)")
        options = cls.options(cfg)
        method = cls(cfg.train.policy, data.train_label_counts, cfg.optim.epochs, data.train.batches_per_epoch,
                     base_loss_of(cfg, data.train_label_counts), options.uniform_guard, options.guard_ensemble)
        for name in options.guard_peers:  # names checked at launch (registry.resolve_methods)
            method.guard_twins[name] = METHODS[name].from_config(cfg, data)
        method.schedule_differences = recipe_differences(method.weighter.settings, cfg)
        if method.schedule_differences and not cfg.train.allow_schedule_mismatch:
            raise ValueError(f"{cfg.train.policy} was searched on another schedule ("
                             f"{'; '.join(method.schedule_differences)}): its stages would not be this training's. "
                             "Train on the policy's schedule, or set train.allow_schedule_mismatch=true")
        return method

    def setup(self, model_factory, optimizer_factory, device) -> None:
        super().setup(model_factory, optimizer_factory, device)
        for twin in self.guard_twins.values():  # the same initialisation as the policy's network and `--method X`
            twin.allgather, twin.schedule = self.allgather, self.schedule
            twin.setup(model_factory, optimizer_factory, device)

    @property
    def optimizers(self) -> list:
        return [self.optimizer] + [opt for twin in self.guard_twins.values() for opt in twin.optimizers]

    def train_step(self, batch, epoch, val_batch_fn):
        result = super().train_step(batch, epoch, val_batch_fn)
        for twin in self.guard_twins.values():  # each as its own `--method` would step on this batch
            twin.train_step(batch, epoch, val_batch_fn)
        return result

    def choose_eval_model(self, validation) -> float | None:
        if not self.guard_twins:
            return None
        candidates = {"policy": self.model}
        for name, twin in self.guard_twins.items():  # each twin's epoch-end hook runs, as under --method
            twin.choose_eval_model(validation)
            candidates[name] = twin.eval_model()
        if self.guard_ensemble > 1:  # each candidate's softmax on this rank's shard, summed in the greedy rounds
            probabilities = {name: validation.probabilities(model) for name, model in candidates.items()}
            self.guard_accuracies = dict(zip(candidates, validation.accuracies(list(probabilities.values()))))
            self.chosen, self.chosen_accuracy = greedy_ensemble(probabilities, list(self.guard_accuracies.values()),
                                                                validation.accuracies, self.guard_ensemble)
        else:  # the best alone (the first of equals: the policy's on a tie)
            self.guard_accuracies = {name: validation.accuracy(model) for name, model in candidates.items()}
            best = max(self.guard_accuracies, key=self.guard_accuracies.get)
            self.chosen, self.chosen_accuracy = [best], self.guard_accuracies[best]
        distinct = list(dict.fromkeys(self.chosen))
        self._eval_model = candidates[distinct[0]] if len(distinct) == 1 else Ensemble(
            [candidates[name] for name in distinct], [self.chosen.count(name) for name in distinct])
        return self.chosen_accuracy

    def eval_model(self):
        return self.model if self._eval_model is None else self._eval_model

    def status(self) -> str:
        if self.guard_accuracies is None:
            return ""
        accuracies = ", ".join(f"{name} {accuracy:.4f}" for name, accuracy in self.guard_accuracies.items())
        ensemble = f"ensemble {self.chosen_accuracy:.4f}; " if len(self.chosen) > 1 else ""
        return f"guard: {describe(self.chosen)} (validation {ensemble}{accuracies})"

    def log_attributes(self) -> dict:
        return {"policy": self.policy_path, "uniform_guard": "uniform twin" in self.guard_twins,
                "guard_peers": " ".join(name for name in self.guard_twins if name != "uniform twin"),
                "guard_ensemble": self.guard_ensemble,
                "schedule_mismatch": "; ".join(self.schedule_differences),
                "policy_validation_gap": float(self.weighter.outcome.get("validation_gap", float("nan")))}

    def sample_weights(self, logits, batch, epoch):
        # the step's stage, as the search's StageSchedule.stage_of_step cut its episodes
        stage = self.weighter.stage_of_step(round(epoch * self.iterations_per_epoch), self.total_steps)
        # the loss feature and l_smooth: the batch's base loss, computed once by per_sample_loss (train_step calls
        # it first), as the search's target step hands it on (law/weighting.py)
        return self.weighter.weights(logits, batch.labels, stage, self._batch_loss)

    def per_sample_loss(self, logits, batch):
        loss = self.base_loss(logits, batch.labels)
        self._batch_loss = loss.detach()
        return loss

    def end_stage(self, val_accuracy, val_losses) -> None:
        """acc_smooth of the stage state follows the validation accuracy, as in the search; a "val_rank" policy
        also ranks the next stage's losses among the validation set's."""
        self.pool_ranks()  # data-parallel ranks: l_smooth over all ranks' batches
        accuracy = val_accuracy()  # first: it averages the ranks' BatchNorm statistics
        losses = val_losses(self.base_loss) if self.weighter.needs_validation_losses else None
        self.weighter.observe_validation(accuracy, losses)

    def pool_ranks(self) -> None:
        """The ranks' stage-loss sums pooled (a mean, linear: pooling inside a stage changes nothing at its end)."""
        self.weighter.pool_stage_loss(self.allgather)
        for twin in self.guard_twins.values():
            twin.pool_ranks()

    def stateful(self) -> dict:
        state = {**super().stateful(), "weighter": self.weighter}
        for name, twin in self.guard_twins.items():
            if name == "uniform twin":  # the keys of checkpoints written before guard_peers existed
                state.update(uniform_model=twin.model, uniform_optimizer=twin.optimizer)
            else:
                state[f"guard_{name}"] = twin
        return state


class BaseLossTwin(WeightingMethod):
    """The uniform guard's twin: the policy's base loss (train.base_loss), unweighted."""

    def __init__(self, base_loss):
        self.base_loss = base_loss

    def per_sample_loss(self, logits, batch):
        return self.base_loss(logits, batch.labels)


def recipe_differences(settings, cfg) -> list[str]:
    """How the training `cfg` describes differs from the recipe a policy was searched on (its schedule, augmentation
    and base loss: PolicySettings.recipe), one text per key ([] = none)."""
    differences = []
    for key, searched in settings.recipe().items():
        section, name = key.split(".")
        value = getattr(getattr(cfg, section), name)
        if value != searched:
            differences.append(f"{name} {searched} (searched) vs {value} (this training)")
    return differences


def adopt_recipe(cfg, explicit_keys) -> tuple[object, list[str]]:
    """`cfg` (train.method=law) on the recipe its policy was searched on (PolicySettings.recipe: the schedule, base
    loss and augmentation): every recipe key not in `explicit_keys` (the command line's --set keys) takes the
    policy's value. A key set explicitly to another value is a ConfigError naming both, unless
    train.allow_schedule_mismatch. A preset's settings (policies/index.yaml, e.g. `default`'s guard) are taken the
    same way, except that an explicit key simply wins. Returns the new config and a `key=value (was old)` text per
    key it changed."""
    try:
        settings = load_policy(cfg.train.policy).settings
    except (FileNotFoundError, ValueError, OSError) as err:
        raise ConfigError(str(err)) from None
    cfg, adopted = copy.deepcopy(cfg), []
    wanted = [(key, value, True) for key, value in settings.recipe().items()]  # True: the policy was searched so
    wanted += [(key, value, False) for key, value in preset_settings(cfg.train.policy).items()]  # False: a choice
    for key, value, searched in wanted:
        current = _method_option(cfg, key) if key.startswith("methods.") else get_key(cfg, key)
        if _same(current, value):
            continue
        if key in explicit_keys:
            if searched and not cfg.train.allow_schedule_mismatch:
                raise ConfigError(f"--set {key}={_text(current)} conflicts with policy {cfg.train.policy}, searched "
                                  f"with {key}={_text(value)}: drop the --set to adopt the policy's value, or set "
                                  "train.allow_schedule_mismatch=true to train on yours")
            continue
        set_key(cfg, key, value)
        adopted.append(f"{key}={_text(value)} (was {_text(current)})")
    validate(cfg)
    return cfg, adopted


def _method_option(cfg, key: str):
    """methods.<method>.<option> of `cfg`, its default where the config does not set it."""
    _, method, option = key.split(".")
    return getattr(METHODS[method].options(cfg), option)


def _same(value, searched) -> bool:
    return list(value) == list(searched) if isinstance(value, (list, tuple)) else value == searched


def _text(value) -> str:
    if isinstance(value, bool):
        return str(value).lower()  # as --set and YAML write it
    return "[" + ", ".join(map(str, value)) + "]" if isinstance(value, (list, tuple)) else str(value)
