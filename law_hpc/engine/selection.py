"""Which searched actor the user gets: the best of the evaluation episodes, judged on the validation split.

An evaluation episode acts with a frozen copy of the actor taken at its start, without exploration
noise (the authors' code runs such test episodes every few episodes); learning goes on meanwhile on
the live actor. At its end the searchers' final validation accuracies are averaged; the copy is kept
(written to policy.h5) when its target ends further above its reference than any earlier one.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np

from ..law.policy import StrategyModel


@dataclass(frozen=True)
class EpisodePlan:
    """Which episodes of a search evaluate the actor, and when search.patience ends the search."""

    episodes: int
    eval_every: int
    patience: int
    min_episodes: int

    @classmethod
    def from_config(cls, search) -> "EpisodePlan":
        """From the config's search section."""
        return cls(search.episodes, search.eval_every, search.patience, search.min_episodes)

    def is_evaluation(self, episode: int) -> bool:
        """Every eval_every-th episode and the last one act deterministically."""
        return (episode + 1) % self.eval_every == 0 or episode == self.episodes - 1

    def out_of_patience(self, selection: "PolicySelection", episodes_done: int) -> int | None:
        """The evaluation episodes since the best one once they reach `patience` (the search ends), else None;
        never before min_episodes, and never with patience 0."""
        if not self.patience or episodes_done < self.min_episodes:
            return None
        since = selection.evaluations_since_best(episodes_done, self.is_evaluation)
        return since if since is not None and since >= self.patience else None


class PolicySelection:
    def __init__(self):
        self.candidate: StrategyModel | None = None
        """The frozen actor of the evaluation episode under way; None outside evaluation episodes."""
        self.best: dict | None = None
        """The best evaluation so far: validation_gap, validation_acc_target, validation_acc_reference, episode."""

    def start(self, strategy: StrategyModel) -> None:
        """Freeze the actor an evaluation episode acts with."""
        self.candidate = copy.deepcopy(strategy).requires_grad_(False)

    def finish(self, episode: int, accuracies: list[tuple[float, float]]) -> tuple[StrategyModel | None, dict]:
        """End evaluation episode `episode` with every searcher's final validation accuracies (target, reference):
        (its candidate if the mean gap beats every earlier evaluation's, else None; its outcome)."""
        acc_target, acc_reference = (float(value) for value in np.mean(accuracies, axis=0))
        outcome = {"validation_gap": acc_target - acc_reference, "validation_acc_target": acc_target,
                   "validation_acc_reference": acc_reference, "episode": episode}
        candidate, self.candidate = self.candidate, None
        if self.best is not None and outcome["validation_gap"] <= self.best["validation_gap"]:
            return None, outcome
        self.best = outcome
        return candidate, outcome

    def evaluations_since_best(self, episodes_done: int, is_evaluation) -> int | None:
        """Evaluation episodes finished after the best one (None before any); `is_evaluation(episode)`."""
        if self.best is None:
            return None
        return sum(is_evaluation(episode) for episode in range(self.best["episode"] + 1, episodes_done))

    @property
    def won(self) -> bool:
        """Whether the best evaluation's target ended above its reference (the policy beat uniform training)."""
        return self.best is not None and self.best["validation_gap"] > 0

    def verdict(self) -> str:
        """The search's outcome, plainly: which actor policy.h5 holds, and whether it beat uniform training
        (a warning unless `won`)."""
        best = self.best
        if best is None:
            return "no evaluation episode finished; no policy.h5 was written"
        gap, episode = 100 * best["validation_gap"], best["episode"] + 1
        if gap <= 0:
            return (f"no evaluation episode's target beat its reference on the validation split (best gap "
                    f"{gap:+.2f} points, episode {episode}). policy.h5 holds that actor, which is likely to hurt: "
                    "search longer or change the strategy settings")
        return (f"policy.h5: the actor of evaluation episode {episode}, validation gap {gap:+.2f} points over uniform "
                "training")

    def state_dict(self) -> dict:
        return {"best": self.best, "candidate": None if self.candidate is None else self.candidate.state_dict()}

    def load_state_dict(self, state: dict, strategy: StrategyModel) -> None:
        """`strategy` gives the shapes of the candidate to restore."""
        self.best = state["best"]
        self.candidate = None
        if state["candidate"] is not None:
            self.start(strategy)
            self.candidate.load_state_dict(state["candidate"])
