"""The strategy model: stage embedding e_T, actor mu(s), critic Q(s, a), and the weight K (Eq. 3-5)."""
from __future__ import annotations

import copy
import hashlib

import torch
from torch import nn

from .features import FEATURE_NAMES, NUM_FEATURES

ACTION_DIM = NUM_FEATURES + 1  # a_T = [theta_T (4), b]
ACTION_TERMS = FEATURE_NAMES + ("bias",)
"""The names of a_T's entries: the feature each theta multiplies, then b."""
STATE_SCALARS = 2  # l_smooth, acc_smooth
WEIGHT_NORMS = ("mean", "sum_w")
"""strategy.weight_norm: mean_i K_i l_i (the paper) or sum_i K_i l_i / sum_i K_i (the authors' code), Eq. 7."""
ACTION_BOUNDS = ("tanh", "none")
"""strategy.action_bound: the actor's output bounded by tanh (the paper) or unbounded (the authors' code)."""


def sample_weights(features: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
    """K_T(f, theta_T) = 1 + tanh(theta_T . f + b), in (0, 2) (Eq. 3); exactly 1 for a zero action."""
    theta, bias = action[:NUM_FEATURES], action[NUM_FEATURES]
    # 1 + tanh(x) == 2 sigmoid(2x); the sigmoid form does not round tiny weights to 0 in float32.
    return 2.0 * torch.sigmoid(2.0 * (features @ theta.to(features) + bias.to(features)))


def weighted_mean_loss(per_sample_loss: torch.Tensor, weights: torch.Tensor, norm: str = "mean") -> torch.Tensor:
    """The loss of Eq. 7: mean_i K_i l_i ("mean"), or sum_i K_i l_i / sum_i K_i ("sum_w")."""
    if norm == "mean":
        return (weights * per_sample_loss).mean()
    if norm == "sum_w":
        return (weights * per_sample_loss).sum() / weights.sum().clamp_min(1e-12)
    raise ValueError(f"unknown weight normalisation '{norm}'")


def mlp(in_dim: int, hidden: int, out_dim: int, layers: int = 4) -> nn.Sequential:
    """`layers` linear layers with ReLUs between them (paper: 4-layer MLPs)."""
    dims = [in_dim] + [hidden] * (layers - 1) + [out_dim]
    modules: list[nn.Module] = []
    for i in range(layers):
        modules.append(nn.Linear(dims[i], dims[i + 1]))
        if i < layers - 1:
            modules.append(nn.ReLU())
    return nn.Sequential(*modules)


class Actor(nn.Module):
    """mu(s_T | theta^mu) -> a_T = [theta_T, b] (Eq. 4): action_scale * tanh(net) ("tanh", bounded) or
    action_scale * net ("none", unbounded, as the authors' code). Entries not in `terms` are held at 0."""

    def __init__(self, state_dim: int, hidden: int, action_scale: float, bound: str = "tanh",
                 terms=ACTION_TERMS):
        super().__init__()
        if bound not in ACTION_BOUNDS:
            raise ValueError(f"unknown action bound '{bound}'")
        unknown = set(terms) - set(ACTION_TERMS)
        if unknown:
            raise ValueError(f"unknown action terms {sorted(unknown)}; known: {', '.join(ACTION_TERMS)}")
        self.net = mlp(state_dim, hidden, ACTION_DIM)
        self.action_scale, self.bound = action_scale, bound
        self.register_buffer("mask", torch.tensor([float(term in terms) for term in ACTION_TERMS]))
        # Start near the uniform policy (K = 1): a small last layer gives actions close to 0.
        with torch.no_grad():
            self.net[-1].weight.mul_(0.01)
            self.net[-1].bias.zero_()

    def forward(self, state: torch.Tensor) -> torch.Tensor:
        out = self.net(state)
        return self.action_scale * self.mask * (torch.tanh(out) if self.bound == "tanh" else out)

    @torch.no_grad()
    def make_constant(self, action) -> None:
        """Make mu(s) = `action` for every state (a fixed policy, e.g. for probing); inside the bounds."""
        action = torch.as_tensor(action, dtype=torch.float32) / self.action_scale
        if torch.any((action != 0) & (self.mask == 0)):
            raise ValueError(f"action {action.tolist()} uses terms this actor holds at 0")
        if self.bound == "tanh":
            if action.abs().max() >= 1:
                raise ValueError(f"action {action.tolist()} x {self.action_scale} is outside the tanh bound")
            action = torch.atanh(action)
        self.net[-1].weight.zero_()
        self.net[-1].bias.copy_(action)


class Critic(nn.Module):
    """Q(s_T, a_T | theta^Q): the value of acting a_T in stage state s_T."""

    def __init__(self, state_dim: int, hidden: int):
        super().__init__()
        self.net = mlp(state_dim + ACTION_DIM, hidden, 1)

    def forward(self, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([state, action], dim=-1)).squeeze(-1)


class StageEncoder(nn.Module):
    """s_T = [e_T, l_smooth, acc_smooth] (Eq. 5); e_T a learned d-dim embedding, Gaussian init."""

    def __init__(self, stages: int, embed_dim: int):
        super().__init__()
        self.embedding = nn.Embedding(stages, embed_dim)
        nn.init.normal_(self.embedding.weight)

    @property
    def state_dim(self) -> int:
        return self.embedding.embedding_dim + STATE_SCALARS

    def forward(self, stage: torch.Tensor, scalars: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.embedding(stage.long()), scalars.float()], dim=-1)


class StrategyModel(nn.Module):
    """Everything the searchers share: encoder + actor (trained together), critic, target copies."""

    def __init__(self, stages: int, embed_dim: int, hidden: int, action_scale: float, action_bound: str = "tanh",
                 action_terms=ACTION_TERMS):
        super().__init__()
        self.encoder = StageEncoder(stages, embed_dim)
        self.actor = Actor(self.encoder.state_dim, hidden, action_scale, action_bound, action_terms)
        self.critic = Critic(self.encoder.state_dim, hidden)
        # Target copies mu', Q' (and the encoder mu' sees) follow by soft updates.
        self.encoder_target = copy.deepcopy(self.encoder).requires_grad_(False)
        self.actor_target = copy.deepcopy(self.actor).requires_grad_(False)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)

    def checksum(self) -> int:
        """A signed 64-bit digest of every parameter and buffer: equal on all ranks iff bit-identical."""
        digest = hashlib.sha256()
        for name, tensor in sorted(self.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return int.from_bytes(digest.digest()[:8], "little", signed=True)

    def actor_parameters(self) -> list[nn.Parameter]:
        return list(self.encoder.parameters()) + list(self.actor.parameters())

    @torch.no_grad()
    def act(self, stage: int, scalars) -> torch.Tensor:
        """The deterministic action a_T = mu(s_T) for one stage state (no exploration noise)."""
        state = self.encoder(torch.tensor([stage]), torch.tensor([list(scalars)], dtype=torch.float32))
        return self.actor(state)[0]

    @torch.no_grad()
    def soft_update(self, tau: float) -> None:
        """theta' <- tau theta + (1 - tau) theta' for the encoder, actor and critic targets."""
        for online, target in ((self.encoder, self.encoder_target), (self.actor, self.actor_target),
                               (self.critic, self.critic_target)):
            for p_online, p_target in zip(online.parameters(), target.parameters()):
                p_target.lerp_(p_online, tau)
