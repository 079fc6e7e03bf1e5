"""Duplicate Networks Reward (Eq. 8-9)."""
from __future__ import annotations

import math


def reward_weight(current_epoch: float, total_epochs: float, scale: float, k: float) -> float:
    """r_w = s * exp(k * ce / ne) (Eq. 9): later stages count more."""
    return scale * math.exp(k * current_epoch / total_epochs)


def stage_reward(acc_target: float, acc_reference: float, current_epoch: float, total_epochs: float,
                 scale: float, k: float) -> float:
    """r_T = r_w * (acc_target - acc_reference) (Eq. 8), accuracies as fractions on clean validation."""
    return reward_weight(current_epoch, total_epochs, scale, k) * (acc_target - acc_reference)
