"""The classifier pair of one searcher (Duplicate Networks Reward).

The target net is trained with the policy's weights, the reference net plainly, on IDENTICAL
batches. Both start from the same initialisation (parameters, buffers, optimizer state), so with
uniform weighting they stay bit-identical and any accuracy gap is the policy's doing.
The two nets step sequentially, concurrently in two threads (torch releases the GIL inside its kernels, so
the threads overlap where the cores allow it), or fused into one stacked forward and backward (engine/fused.py);
a net that cannot be fused steps sequentially, with the reason printed (`pair_mode`).
"""
from __future__ import annotations

import copy
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
import torch

from ..data.types import EvalSet
from ..law.weighting import WeightingRule
from .evaluation import top1_accuracies
from .fused import TARGET, REFERENCE, StackedNets, fusion_obstacle, repoint_optimizer
from ..law.schedule import set_lr
from .steps import StepProgress, run_steps


@dataclass
class StageStats:
    """What a stage of training measured; per-sample means over the stage's batches."""

    loss_target: float
    loss_reference: float
    weight_mean: float
    weight_std: float
    class_weight_mean: np.ndarray
    samples: int
    seconds: float
    finite: bool
    weights_seconds: float = 0.0
    """Of `seconds`: the target's item features, weights K_T and weighted loss (host time; asynchronous on CUDA)."""

    @property
    def samples_per_second(self) -> float:
        return self.samples / max(self.seconds, 1e-9)


class StageProgress(StepProgress):
    """Where a stage's training stands: iterations done of `steps` and the per-sample sums over them, kept
    on the device (no host sync per iteration); `stats()` at the stage's end."""

    def __init__(self, steps: range, num_classes: int, device):
        super().__init__(steps)
        self.weights_seconds = 0.0
        zero = torch.zeros((), device=device, dtype=torch.float64)
        self.loss_target_sum, self.loss_reference_sum = zero.clone(), zero.clone()
        self.weight_sum, self.weight_sq_sum = zero.clone(), zero.clone()
        self.class_weight_sum = torch.zeros(num_classes, device=device, dtype=torch.float64)
        self.class_count = torch.zeros(num_classes, device=device, dtype=torch.float64)

    def add(self, loss_target, loss_reference, weights, labels) -> None:
        """One iteration's batch: its mean losses, the target's weights and the labels."""
        size = labels.numel()
        self.count(size)
        self.loss_target_sum += loss_target * size
        self.loss_reference_sum += loss_reference * size
        w = weights.double()
        self.weight_sum += w.sum()
        self.weight_sq_sum += (w * w).sum()
        self.class_weight_sum.index_add_(0, labels, w)
        self.class_count += torch.bincount(labels, minlength=self.class_count.numel())

    def stats(self) -> StageStats:
        """The stage's per-sample means: both nets' losses, the target's weights K_T (mean, std, per class)."""
        n = max(self.samples, 1)
        weight_mean = float(self.weight_sum) / n
        weight_var = max(float(self.weight_sq_sum) / n - weight_mean ** 2, 0.0)
        class_mean = (self.class_weight_sum / self.class_count.clamp_min(1)).cpu().numpy()
        class_mean[self.class_count.cpu().numpy() == 0] = np.nan
        loss_target_mean = float(self.loss_target_sum) / n
        loss_reference_mean = float(self.loss_reference_sum) / n
        return StageStats(loss_target_mean, loss_reference_mean, weight_mean, weight_var ** 0.5, class_mean,
                          self.samples, self.seconds, bool(np.isfinite([loss_target_mean, loss_reference_mean]).all()),
                          self.weights_seconds)

    _SUMS = ("loss_target_sum", "loss_reference_sum", "weight_sum", "weight_sq_sum", "class_weight_sum", "class_count")

    def state_dict(self) -> dict:
        return {**super().state_dict(), "weights_seconds": self.weights_seconds,
                **{name: getattr(self, name).cpu() for name in self._SUMS}}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.weights_seconds = float(state.get("weights_seconds", 0.0))
        for name in self._SUMS:
            getattr(self, name).copy_(state[name])


@dataclass
class InterruptedStage:
    """A stage that a stop request cut short, as a mid-stage checkpoint holds it: its action a_T (None in a
    warm-up stage; the exploration noise is not drawn again) and its progress."""

    action: np.ndarray | None
    progress: StageProgress

    def state_dict(self) -> dict:
        return {"action": None if self.action is None else torch.from_numpy(self.action),
                "progress": self.progress.state_dict()}

    @classmethod
    def from_state(cls, state: dict, steps: range, num_classes: int, device) -> "InterruptedStage":
        progress = StageProgress(steps, num_classes, device)
        progress.load_state_dict(state["progress"])
        return cls(None if state["action"] is None else state["action"].numpy(), progress)


def make_sgd(net: torch.nn.Module, lr: float, momentum: float, weight_decay: float) -> torch.optim.SGD:
    return torch.optim.SGD(net.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)


PAIR_MODES = ("sequential", "threads", "fused")
_reported_fallbacks: set[str] = set()


class ClassifierPair:
    """target_net + reference_net with their SGD optimizers, stepping on the same batches."""

    def __init__(self, target_net, reference_net, target_optimizer, reference_optimizer, mode: str = "sequential",
                 note: Callable[[str], None] = print):
        if mode not in PAIR_MODES:
            raise ValueError(f"unknown pair mode '{mode}'")
        self.note = note  # where a fallback from the fused mode is told (rank 0's console in a search)
        self.target_net, self.reference_net = target_net, reference_net
        self.target_optimizer, self.reference_optimizer = target_optimizer, reference_optimizer
        self.mode, self.fallback_reason = mode, ""
        self.stacked: StackedNets | None = None
        self.weights_seconds = 0.0  # host time in features, weights and the weighted loss, all stages
        self._probed = False
        if mode == "fused":
            self._fuse()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="reference") if mode == "threads" else None

    def _fuse(self) -> None:
        """Stack the nets' state (engine/fused.py) and point their optimizers at the nets' new parameter views."""
        obstacle = fusion_obstacle(self.target_net)
        if obstacle:
            return self._fall_back(obstacle)
        old = [list(net.parameters()) for net in (self.target_net, self.reference_net)]
        self.stacked = StackedNets(self.target_net, self.reference_net)
        for optimizer, net, old_params in zip((self.target_optimizer, self.reference_optimizer),
                                              (self.target_net, self.reference_net), old):
            repoint_optimizer(optimizer, old_params, list(net.parameters()))

    def _fall_back(self, reason: str) -> None:
        """Step sequentially from now on; the reason is printed once per process."""
        self.mode, self.fallback_reason, self.stacked = "sequential", reason, None
        if reason not in _reported_fallbacks:
            _reported_fallbacks.add(reason)
            self.note(f"NOTE: search.pair_mode=fused cannot fuse {type(self.target_net).__name__}; the pair steps "
                      f"sequentially: {reason}")

    def _probe_fusion(self, images) -> None:
        """Before the first fused step: stacked forwards on two images, in train mode on copies of the buffers (the
        BatchNorm statistics are not touched) and in eval mode; whatever fails, the pair steps sequentially."""
        self._probed = True
        try:
            with torch.no_grad():
                self.stacked.probe(images[:2])
        except Exception as err:  # noqa: BLE001 (whatever vmap rejects; the pair then works unfused)
            self._fall_back(f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}")

    @classmethod
    def create(cls, model_factory: Callable[[], torch.nn.Module], init_seed: int, device, lr: float,
               momentum: float, weight_decay: float, mode: str = "sequential", note=print) -> "ClassifierPair":
        """A freshly initialised target (seeded by `init_seed`) and its exact copy as the reference."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(init_seed)
            target_net = model_factory().to(device)
        reference_net = copy.deepcopy(target_net)
        target_optimizer = make_sgd(target_net, lr, momentum, weight_decay)
        reference_optimizer = make_sgd(reference_net, lr, momentum, weight_decay)
        reference_optimizer.load_state_dict(target_optimizer.state_dict())
        return cls(target_net, reference_net, target_optimizer, reference_optimizer, mode, note)

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    # --- one iteration -----------------------------------------------------------------------------
    def _loss_and_weights(self, logits, labels, per_sample_loss, action, rule: WeightingRule):
        """The plain mean loss and weights 1 without an action; else K_T(f, theta_T) on features of the target's
        own forward pass (Eq. 3, 6; no gradient) and the weighted loss (Eq. 7), their time kept."""
        if action is None:
            return per_sample_loss.mean(), torch.ones_like(per_sample_loss)
        started = time.perf_counter()
        weights = rule.weights(logits, labels, action, per_sample_loss)
        loss = rule.loss(per_sample_loss, weights)
        self.weights_seconds += time.perf_counter() - started
        return loss, weights

    def _step_net(self, net, optimizer, images, labels, action, rule: WeightingRule):
        """One SGD step of `net`; weighted by K_T when `action` is given. Both nets run THIS code, so with
        no action the target and the reference compute bit-identical losses and updates."""
        net.train()
        logits = net(images)
        per_sample_loss = rule.base_loss(logits, labels)
        loss, weights = self._loss_and_weights(logits, labels, per_sample_loss, action, rule)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return per_sample_loss.detach().mean(), weights.detach()

    def _step_fused(self, images, labels, action, rule: WeightingRule):
        """One SGD step of both nets from one stacked forward and backward; the same losses as `_step_net`."""
        logits = self.stacked.forward(images, train=True)  # [2, B, C]
        per_sample_loss = rule.base_loss(logits.flatten(0, 1), labels.repeat(2)).view(2, -1)
        loss_reference = per_sample_loss[REFERENCE].mean()
        loss_target, weights = self._loss_and_weights(logits[TARGET], labels, per_sample_loss[TARGET], action, rule)
        self.stacked.zero_grad()
        (loss_target + loss_reference).backward()  # the nets share no parameter: each gets its own gradient
        self.stacked.share_grads()
        self.target_optimizer.step()
        self.reference_optimizer.step()
        losses = per_sample_loss.detach().mean(1)
        return losses[TARGET], losses[REFERENCE], weights.detach()

    def step(self, images, labels, lr: float, action, rule: WeightingRule):
        """One SGD step of both nets on the same batch; returns (target loss, reference loss, weights)."""
        set_lr((self.target_optimizer, self.reference_optimizer), lr)
        if self.stacked is not None and not self._probed:
            self._probe_fusion(images)
        if self.stacked is not None:
            return self._step_fused(images, labels, action, rule)
        reference = (self.reference_net, self.reference_optimizer, images, labels, None, rule)
        target = (self.target_net, self.target_optimizer, images, labels, action, rule)
        if self._executor is None:
            loss_reference, _ = self._step_net(*reference)
            loss_target, weights = self._step_net(*target)
        else:
            future = self._executor.submit(self._step_net, *reference)
            loss_target, weights = self._step_net(*target)
            loss_reference, _ = future.result()
        return loss_target, loss_reference, weights

    # --- a stage and an evaluation -------------------------------------------------------------------
    def train_stage(self, batches: Iterator, steps: range, lr_at: Callable[[int], float], action,
                    rule: WeightingRule) -> StageStats:
        """One SGD step per iteration of `steps` on the next batches of the stream, with the stage's fixed action."""
        progress = StageProgress(steps, rule.num_classes, next(self.target_net.parameters()).device)
        self.train_steps(batches, progress, lr_at, action, rule)
        return progress.stats()

    def train_steps(self, batches: Iterator, progress: "StageProgress", lr_at: Callable[[int], float], action,
                    rule: WeightingRule, stop: Callable[[], bool] = lambda: False) -> bool:
        """The rest of a stage from where `progress` stands, adding to its sums; `stop()` is asked after every
        iteration. False when it said stop before the stage's last iteration (`progress` is then a mid-stage
        position that a checkpoint can hold), True when the stage is complete."""
        weights_seconds = self.weights_seconds
        device = progress.class_count.device
        action_on_device = None if action is None else torch.as_tensor(action, dtype=torch.float32, device=device)

        def one_step(step: int) -> None:
            batch = next(batches)
            loss_target, loss_reference, weights = self.step(batch.images, batch.labels, lr_at(step), action_on_device,
                                                             rule)
            progress.add(loss_target, loss_reference, weights, batch.labels)
        try:
            return run_steps(progress, one_step, stop)
        finally:
            progress.weights_seconds += self.weights_seconds - weights_seconds

    def evaluate(self, eval_set: EvalSet) -> tuple[float, float]:
        """Top-1 accuracy (fraction) of the target and reference nets, in one pass over the clean batches."""
        if self.stacked is not None:
            acc_target, acc_reference = self.stacked.top1_accuracies(eval_set)
        else:
            acc_target, acc_reference = top1_accuracies((self.target_net, self.reference_net), eval_set)
        return acc_target, acc_reference

    def state_dict(self) -> dict:
        """The sequential mode's format in every mode; fused nets' tensors are copied out of their stacks (saving
        a view would save the whole stacked storage)."""
        own = (lambda state: {key: value.clone() for key, value in state.items()}) if self.stacked else (lambda s: s)
        return {
            "target_net": own(self.target_net.state_dict()),
            "reference_net": own(self.reference_net.state_dict()),
            "target_optimizer": self.target_optimizer.state_dict(),
            "reference_optimizer": self.reference_optimizer.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.target_net.load_state_dict(state["target_net"])
        self.reference_net.load_state_dict(state["reference_net"])
        self.target_optimizer.load_state_dict(state["target_optimizer"])
        self.reference_optimizer.load_state_dict(state["reference_optimizer"])
