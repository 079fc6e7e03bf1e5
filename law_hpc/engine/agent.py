"""A searcher's agent: the shared strategy model, its DDPG learner, this searcher's replay buffer and exploration
noise, and the choice of the policy among the evaluation episodes. It acts (Eq. 4) and learns (Algorithm 1)."""
from __future__ import annotations

import numpy as np
import torch

from ..io.policy_file import load_actor_into
from ..law.ddpg import DDPG, ExplorationNoise, FduStats, ReplayBuffer
from ..law.policy import ACTION_DIM
from ..law.settings import PolicySettings, strategy_model
from ..seeding import derive_seed
from .selection import PolicySelection


class Agent:
    def __init__(self, cfg, settings: PolicySettings, rank: int, average_gradients):
        """The agent of searcher `rank` for `cfg`, its model of the policy `settings`,
        initialised from one seed so every rank starts alike; `strategy.init_policy` warm-starts it.
        `average_gradients(params)` averages the strategy gradients over the searchers (Eq. 10, 13)."""
        self.cfg, self.rank, st = cfg, rank, cfg.strategy
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(cfg.seed, "strategy"))
            self.model = strategy_model(settings)
        if st.init_policy:
            load_actor_into(self.model, settings, st.init_policy)
        self.ddpg = DDPG(self.model, st.actor_lr, st.critic_lr, st.gamma, st.tau, st.target_networks,
                         average_gradients=average_gradients, action_penalty=st.action_penalty)
        self.buffer = ReplayBuffer(st.buffer_capacity)
        self.noise = ExplorationNoise(st.exploration, st.noise_sigma, st.noise_decay)
        self.selection = PolicySelection()

    def start_episode(self, evaluation: bool) -> None:
        """Fresh exploration noise; an evaluation episode acts with a frozen copy of the actor, without noise."""
        self.noise.reset()
        if evaluation:
            self.selection.start(self.model)

    def act(self, episode: int, stage: int, scalars) -> np.ndarray:
        """a_T = mu(s_T) + exploration noise, inside the action bounds (Eq. 4). The first random_episodes
        episodes act at random (one action for the whole episode); an evaluation episode with its frozen actor."""
        if self.selection.candidate is not None:
            return self.selection.candidate.act(stage, scalars).numpy().astype(np.float32)
        st, mask = self.cfg.strategy, self.model.actor.mask.numpy()
        if episode < st.random_episodes:
            random_rng = np.random.default_rng(derive_seed(self.cfg.seed, "random-action", self.rank, episode))
            return (random_rng.uniform(-st.action_scale, st.action_scale, ACTION_DIM) * mask).astype(np.float32)
        noise_rng = np.random.default_rng(derive_seed(self.cfg.seed, "noise", self.rank, episode, stage))
        action = self.model.act(stage, scalars).numpy() + self.noise.sample(episode, noise_rng) * mask
        if st.action_bound == "tanh":
            action = np.clip(action, -st.action_scale, st.action_scale)
        return action.astype(np.float32)

    def learn(self, episode: int, stage: int, scalars, action, reward: float, next_scalars, done: bool) -> FduStats:
        """Store (s_T, a_T, r_T, s_{T+1}, done), then the Full Data Update over the whole buffer (Algorithm 1)."""
        last = self.cfg.search.stages - 1
        self.buffer.add(stage=stage, scalars=scalars, action=action, reward=reward, next_stage=min(stage + 1, last),
                        next_scalars=next_scalars, done=float(done))
        fdu_rng = np.random.default_rng(derive_seed(self.cfg.seed, "fdu", self.rank, episode, stage))
        st = self.cfg.strategy
        return self.ddpg.full_data_update(self.buffer, st.fdu_epochs, st.fdu_batch, fdu_rng)

    def state_dict(self) -> dict:
        """The checkpoint parts: the replay buffer's arrays become HDF5 datasets (io/checkpoint.py)."""
        return {"ddpg": self.ddpg.state_dict(), "buffer": self.buffer.state_dict(), "noise": self.noise.state_dict(),
                "selection": self.selection.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.ddpg.load_state_dict(state["ddpg"])
        self.buffer.load_state_dict(state["buffer"])
        self.noise.load_state_dict(state["noise"])
        self.selection.load_state_dict(state["selection"], self.model)
