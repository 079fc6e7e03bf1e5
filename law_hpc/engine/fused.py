"""The fused pair (search.pair_mode = fused): the target and reference nets run as ONE stacked network.

Their parameters and buffers live in stacked tensors [2, ...] (index 0 the target, 1 the reference); the two
real nn.Modules hold views of the slices, so the modules, their SGD optimizers and the checkpoints are those of
the sequential mode. One forward is `torch.func.vmap` over `functional_call` on a parameterless skeleton of the
net: every layer runs once for both nets (on CUDA one batched kernel per layer: the first layer, whose input
is shared, as one wider layer; the others as grouped convolutions and batched matmuls). One backward fills the
stacked gradient, whose slices become the nets' .grad. BatchNorm running statistics stay per net: the forward
updates the stacked buffers' slices in place.
"""
from __future__ import annotations

import copy

import torch
from torch import nn
from torch.func import functional_call, vmap

from ..data.types import EvalSet

TARGET, REFERENCE = 0, 1


def fusion_obstacle(net: nn.Module) -> str:
    """Why `net` cannot run fused, '' if nothing is known to stop it (a probe forward decides the rest)."""
    for name, module in net.named_modules():
        if isinstance(module, nn.modules.dropout._DropoutNd) and module.p > 0:
            return (f"module '{name}' is {type(module).__name__}(p={module.p}): its random masks would not be "
                    "the ones the sequential mode draws")
    if any(p.is_sparse for p in net.parameters()):
        return "the net has sparse parameters"
    return ""


def _owner(net: nn.Module, dotted: str) -> tuple[nn.Module, str]:
    """The submodule holding the parameter or buffer `dotted` and its attribute name there."""
    path, _, attribute = dotted.rpartition(".")
    return (net.get_submodule(path) if path else net), attribute


class StackedNets:
    """Two nets of one architecture whose state is stacked [2, ...]; `forward` runs both in one batched pass."""

    def __init__(self, target_net: nn.Module, reference_net: nn.Module):
        self.nets = (target_net, reference_net)
        self.params: dict[str, torch.Tensor] = {}
        self.buffers: dict[str, torch.Tensor] = {}
        for name, parameter in target_net.named_parameters():
            self.params[name] = self._stack(name, "_parameters", lambda view: nn.Parameter(view, parameter.requires_grad))
            self.params[name].requires_grad_(parameter.requires_grad)
        for name, _ in target_net.named_buffers():
            self.buffers[name] = self._stack(name, "_buffers", lambda view: view)
        # (stacked gradient, the nets' own parameters), for handing each net its slice of the gradient
        self._grad_slices = [(stacked, [net.get_parameter(name) for net in self.nets])
                             for name, stacked in self.params.items()]
        self.skeleton = copy.deepcopy(target_net).to("meta")  # the architecture only: state comes stacked
        self._vmapped = vmap(self._call, in_dims=(0, 0, None))

    def _stack(self, name: str, kind: str, wrap) -> torch.Tensor:
        """torch.stack of the nets' tensors `name`; each net's own tensor becomes a view of its slice."""
        owners = [_owner(net, name) for net in self.nets]
        stacked = torch.stack([getattr(module, attribute).detach() for module, attribute in owners])
        for index, (module, attribute) in enumerate(owners):
            getattr(module, kind)[attribute] = wrap(stacked.detach()[index])
        return stacked

    def _call(self, params, buffers, images):
        return functional_call(self.skeleton, (params, buffers), (images,))

    def forward(self, images: torch.Tensor, train: bool) -> torch.Tensor:
        """Logits [2, B, C] of both nets on the same images; in train mode BatchNorm uses and updates each net's
        own batch statistics."""
        if self.skeleton.training != train:  # walking the modules costs more than a small layer
            self.skeleton.train(train)
        return self._vmapped(self.params, self.buffers, images)

    def probe(self, images: torch.Tensor) -> None:
        """Both modes' stacked forward on `images`, no state changed (train mode runs on copies of the buffers)."""
        self.skeleton.train(True)
        self._vmapped(self.params, {name: buffer.clone() for name, buffer in self.buffers.items()}, images)
        self.forward(images, train=False)

    def zero_grad(self) -> None:
        for stacked in self.params.values():
            stacked.grad = None

    def share_grads(self) -> None:
        """Each net's .grad = its slice of the stacked gradient (a view, no copy), for its own optimizer."""
        for stacked, parameters in self._grad_slices:
            for index, parameter in enumerate(parameters):
                parameter.grad = None if stacked.grad is None else stacked.grad[index]

    @torch.no_grad()
    def top1_accuracies(self, eval_set: EvalSet) -> list[float]:
        """Accuracy (fraction) of both nets, one stacked forward per batch (decoded and normalised once)."""
        correct, total = None, 0
        for images, labels in eval_set.batches():
            batch_correct = (self.forward(images, train=False).argmax(2) == labels).sum(1)
            correct = batch_correct if correct is None else correct + batch_correct  # on the device: no sync
            total += labels.numel()
        return [int(count) / max(total, 1) for count in (correct.tolist() if correct is not None else (0, 0))]


def repoint_optimizer(optimizer: torch.optim.Optimizer, old_params, new_params) -> None:
    """Make `optimizer` step `new_params` in place of `old_params` (same order), keeping its state."""
    replacement = {id(old): new for old, new in zip(old_params, new_params)}
    for group in optimizer.param_groups:
        group["params"] = [replacement.get(id(p), p) for p in group["params"]]
    moved = {replacement.get(id(p), p): state for p, state in optimizer.state.items()}
    optimizer.state.clear()
    optimizer.state.update(moved)
