"""Summaries of metrics.h5 columns, shared by the search's closing report and tools/summarize.py."""
from __future__ import annotations

import numpy as np

from .law.policy import ACTION_DIM


def episode_summary(columns: dict[str, np.ndarray]) -> list[dict]:
    """Per episode, averaged over ranks: reward sum, final target/reference validation accuracy, final theta."""
    summary = []
    for episode in np.unique(columns["episode"]):
        rows = columns["episode"] == episode
        last_stage = columns["stage"][rows].max()
        final = rows & (columns["stage"] == last_stage)
        ranks = np.unique(columns["rank"][rows])
        reward_sums = [columns["reward"][rows & (columns["rank"] == r)].sum() for r in ranks]
        weighted = rows & (columns["weighted"] == 1)
        last_action = (columns["action"][weighted & (columns["stage"] == columns["stage"][weighted].max())]
                       .mean(axis=0) if weighted.any() else np.zeros(ACTION_DIM))
        summary.append({
            "episode": int(episode),
            "evaluation": bool(columns["evaluation"][rows].any()) if "evaluation" in columns else False,
            "stages": int(last_stage) + 1,
            "ranks": len(ranks),
            "reward_sum": float(np.mean(reward_sums)),
            "acc_target": float(columns["acc_target"][final].mean()),
            "acc_reference": float(columns["acc_reference"][final].mean()),
            "final_theta": [float(v) for v in last_action],
        })
    return summary


def summary_markdown(summary: list[dict]) -> str:
    lines = ["| episode | stages | reward sum | final acc target | final acc reference | gap | final theta (loss, entropy, density, label; b) |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for row in summary:
        theta = ", ".join(f"{v:+.3f}" for v in row["final_theta"])
        episode = f"{row['episode'] + 1}{' (eval)' if row['evaluation'] else ''}"
        lines.append(f"| {episode} | {row['stages']} | {row['reward_sum']:+.4f} | {row['acc_target']:.4f} | "
                     f"{row['acc_reference']:.4f} | {row['acc_target'] - row['acc_reference']:+.4f} | {theta} |")
    return "\n".join(lines)
