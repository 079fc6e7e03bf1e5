"""DDPG for the strategy model: replay buffer, exploration noise, and the Full Data Update (Algorithm 1).

Gradients are averaged over the N_a searchers by an injected `average_gradients(params)` callable
(Eq. 10 and 13: (1/N_a) sum over searchers); in one process it is the identity.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from .policy import ACTION_DIM, STATE_SCALARS, StrategyModel

# Transition (s_T, a_T, r_T, s_{T+1}, done); a state is stored as (stage index, [l_smooth, acc_smooth])
# so it is re-embedded with the CURRENT e_T at every update, which is how e_T learns.
_FIELDS = {
    "stage": ((), np.int64),
    "scalars": ((STATE_SCALARS,), np.float32),
    "action": ((ACTION_DIM,), np.float32),
    "reward": ((), np.float32),
    "next_stage": ((), np.int64),
    "next_scalars": ((STATE_SCALARS,), np.float32),
    "done": ((), np.float32),
}


class ReplayBuffer:
    """FIFO buffer of transitions with a capacity; arrays kept in insertion order (oldest first)."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.arrays = {name: np.zeros((0, *shape), dtype) for name, (shape, dtype) in _FIELDS.items()}

    def __len__(self) -> int:
        return len(self.arrays["reward"])

    def add(self, **transition) -> None:
        """Append one transition; the oldest is dropped beyond capacity."""
        if set(transition) != set(_FIELDS):
            raise ValueError(f"a transition has fields {sorted(_FIELDS)}, got {sorted(transition)}")
        for name, (shape, dtype) in _FIELDS.items():
            row = np.asarray(transition[name], dtype=dtype).reshape(1, *shape)
            if not np.all(np.isfinite(row)):
                raise ValueError(f"non-finite '{name}' in a transition: {row}")
            self.arrays[name] = np.concatenate([self.arrays[name], row])[-self.capacity:]

    def batch(self, indices: np.ndarray) -> dict[str, torch.Tensor]:
        return {name: torch.from_numpy(array[indices]) for name, array in self.arrays.items()}

    def state_dict(self) -> dict[str, np.ndarray]:
        return {name: array.copy() for name, array in self.arrays.items()}

    def load_state_dict(self, state: dict) -> None:
        for name, (shape, dtype) in _FIELDS.items():
            self.arrays[name] = np.asarray(state[name], dtype=dtype).reshape(-1, *shape)


EXPLORATIONS = ("gaussian", "ou")
"""strategy.exploration: the noise ExplorationNoise adds to a_T during search."""


class ExplorationNoise:
    """Noise added to a_T while searching: Gaussian, or Ornstein-Uhlenbeck correlated over stages.

    Its std decays per episode: sigma_e = sigma * decay^episode. Draws come from a generator the
    caller seeds by (seed, rank, episode, stage), so a resumed run draws the same noise; the OU
    process' only state is its current value, kept in `ou_state` for checkpoints.
    """

    def __init__(self, kind: str, sigma: float, decay: float, ou_theta: float = 0.15):
        self.kind, self.sigma, self.decay, self.ou_theta = kind, sigma, decay, ou_theta
        self.ou_state = np.zeros(ACTION_DIM, dtype=np.float64)

    def reset(self) -> None:
        self.ou_state[:] = 0.0

    def state_dict(self) -> dict[str, np.ndarray]:
        return {"ou_state": self.ou_state.copy()}

    def load_state_dict(self, state: dict) -> None:
        self.ou_state[:] = state["ou_state"]

    def sample(self, episode: int, rng: np.random.Generator) -> np.ndarray:
        sigma = self.sigma * self.decay ** episode
        gaussian = rng.standard_normal(ACTION_DIM)
        if self.kind == "gaussian":
            return sigma * gaussian
        if self.kind == "ou":
            self.ou_state += -self.ou_theta * self.ou_state + sigma * gaussian
            return self.ou_state.copy()
        raise ValueError(f"unknown exploration noise '{self.kind}'")


@dataclass
class FduStats:
    """What one Full Data Update did: its minibatches and mean losses (NaN when there were none)."""

    minibatches: int = 0
    critic_loss: float = float("nan")
    actor_loss: float = float("nan")


def fdu_minibatch_count(buffer_size: int, fdu_epochs: int, fdu_batch: int) -> int:
    """Minibatches of one Full Data Update: fdu_epochs x ceil(buffer / batch)."""
    return fdu_epochs * math.ceil(buffer_size / fdu_batch)


class DDPG:
    """Actor-critic updates of a StrategyModel (Eq. 10-13) with target networks and soft updates."""

    def __init__(self, model: StrategyModel, actor_lr: float, critic_lr: float, gamma: float, tau: float,
                 target_networks: bool = True,
                 average_gradients: Callable[[list[torch.nn.Parameter]], None] = lambda params: None,
                 action_penalty: float = 0.0):
        self.model = model
        self.gamma, self.tau, self.target_networks = gamma, tau, target_networks
        self.action_penalty = action_penalty
        self.average_gradients = average_gradients
        self.actor_params = model.actor_parameters()  # theta^mu and e_T
        self.critic_params = list(model.critic.parameters())  # theta^Q
        self.actor_optimizer = torch.optim.Adam(self.actor_params, lr=actor_lr)
        self.critic_optimizer = torch.optim.Adam(self.critic_params, lr=critic_lr)

    @torch.no_grad()
    def td_target(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """y = r + gamma * Q'(s', mu'(s')) * (1 - done) (Eq. 12; primes are the target copies)."""
        m = self.model
        if self.target_networks:
            encoder, actor, critic = m.encoder_target, m.actor_target, m.critic_target
        else:
            encoder, actor, critic = m.encoder, m.actor, m.critic
        next_state = encoder(batch["next_stage"], batch["next_scalars"])
        next_value = critic(next_state, actor(next_state))
        return batch["reward"] + self.gamma * next_value * (1.0 - batch["done"])

    def update_minibatch(self, batch: dict[str, torch.Tensor]) -> tuple[float, float]:
        """One critic step (Eq. 10-11) and one actor step (Eq. 13) on a minibatch of transitions.

        Both gradients are computed first, then averaged over ranks in ONE grouped allreduce, then
        both optimizers step: one collective per minibatch instead of two.
        """
        m = self.model
        target = self.td_target(batch)
        state = m.encoder(batch["stage"], batch["scalars"])
        critic_loss = F.mse_loss(m.critic(state.detach(), batch["action"]), target)
        action = m.actor(state)
        actor_loss = -m.critic(state, action).mean()
        if self.action_penalty:  # keeps an unbounded actor's output finite (the authors' 0.001 |a|)
            actor_loss = actor_loss + self.action_penalty * action.norm(dim=-1).mean()
        critic_grads = torch.autograd.grad(critic_loss, self.critic_params)
        actor_grads = torch.autograd.grad(actor_loss, self.actor_params)
        params = self.critic_params + self.actor_params
        for param, grad in zip(params, critic_grads + actor_grads):
            param.grad = grad
        self.average_gradients(params)
        self.critic_optimizer.step()
        self.actor_optimizer.step()
        m.soft_update(self.tau)
        return critic_loss.item(), actor_loss.detach().item()

    def full_data_update(self, buffer: ReplayBuffer, fdu_epochs: int, fdu_batch: int,
                         rng: np.random.Generator) -> FduStats:
        """Algorithm 1: fdu_epochs passes over the WHOLE shuffled buffer, minibatches of fdu_batch."""
        size = len(buffer)
        critic_losses, actor_losses = [], []
        for _ in range(fdu_epochs):
            order = rng.permutation(size)
            for start in range(0, size, fdu_batch):
                critic_loss, actor_loss = self.update_minibatch(buffer.batch(order[start:start + fdu_batch]))
                critic_losses.append(critic_loss)
                actor_losses.append(actor_loss)
        if not critic_losses:
            return FduStats()
        return FduStats(len(critic_losses), float(np.mean(critic_losses)), float(np.mean(actor_losses)))

    def state_dict(self) -> dict:
        """The strategy model (with its target copies) and both optimizers."""
        return {"model": self.model.state_dict(), "actor_optimizer": self.actor_optimizer.state_dict(),
                "critic_optimizer": self.critic_optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.actor_optimizer.load_state_dict(state["actor_optimizer"])
        self.critic_optimizer.load_state_dict(state["critic_optimizer"])
