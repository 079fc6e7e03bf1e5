"""Which searched actor the user gets: the best of the evaluation episodes, judged on the validation split.

An evaluation episode acts with a frozen copy of the actor taken at its start, without exploration
noise (the authors' code runs such test episodes every few episodes); learning goes on meanwhile on
the live actor. At its end the searchers' final validation accuracies are averaged; the copy is kept
(written to policy.h5) when its target ends further above its reference than any earlier one.
"""
from __future__ import annotations

import copy

from ..law.policy import StrategyModel


class PolicySelection:
    def __init__(self):
        self.candidate: StrategyModel | None = None
        """The frozen actor of the evaluation episode under way; None outside evaluation episodes."""
        self.best: dict | None = None
        """The best evaluation so far: validation_gap, validation_acc_target, validation_acc_reference, episode."""

    def start(self, strategy: StrategyModel) -> None:
        """Freeze the actor an evaluation episode acts with."""
        self.candidate = copy.deepcopy(strategy).requires_grad_(False)

    def finish(self, outcome: dict) -> StrategyModel | None:
        """End the evaluation episode with its `outcome`; its candidate if that beats every earlier one."""
        candidate, self.candidate = self.candidate, None
        if self.best is not None and outcome["validation_gap"] <= self.best["validation_gap"]:
            return None
        self.best = outcome
        return candidate

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
