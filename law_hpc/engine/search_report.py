"""Rank 0's account of a search: the metrics rows (every searcher's, gathered once per stage), their events,
the progress line of each stage, TensorBoard scalars and the summary at each episode's end."""
from __future__ import annotations

import numpy as np

from ..analysis import episode_summary, summary_markdown
from ..io.history import stage_events
from ..io.metrics import StageRow, read_stages
from ..law.ddpg import FduStats
from ..law.policy import ACTION_DIM, ACTION_TERMS
from .pair import StageStats

_MEANS = ("reward", "acc_target", "acc_reference", "weight_mean", "weight_std", "samples_per_second", "stage_seconds",
          "checkpoint_seconds")


def stage_row(*, episode: int, stage: int, rank: int, schedule, action, stats: StageStats, accuracies, reward: float,
              fdu: FduStats, strategy_checksum: int, evaluation: bool, state, part_seconds: dict) -> StageRow:
    """A searcher's metrics row of a stage (its stage time and checkpoint time are filled in later).
    `state`: the SearchState after the stage; `part_seconds`: its evaluate and learn times (taken from it)."""
    acc_target, acc_reference = accuracies
    return StageRow(
        episode=episode, stage=stage, rank=rank, lr=schedule.stage_lr(stage), weighted=int(action is not None),
        reward=reward, acc_target=acc_target, acc_reference=acc_reference, loss_target=stats.loss_target,
        loss_reference=stats.loss_reference, weight_mean=stats.weight_mean, weight_std=stats.weight_std,
        stage_seconds=0.0, samples_per_second=stats.samples_per_second, strategy_checksum=strategy_checksum,
        evaluation=int(evaluation), epoch=schedule.epoch_at_end(stage), l_smooth=state.l_smooth,
        acc_smooth=state.acc_smooth, fdu_minibatches=fdu.minibatches, critic_loss=fdu.critic_loss,
        actor_loss=fdu.actor_loss, checkpoint_seconds=0.0,
        action=np.zeros(ACTION_DIM) if action is None else action.astype(np.float64),
        class_weight_mean=stats.class_weight_mean, train_seconds=stats.seconds, weights_seconds=stats.weights_seconds,
        evaluate_seconds=part_seconds.pop("evaluate", 0.0), learn_seconds=part_seconds.pop("learn", 0.0))


class SearchReport:
    """What rank 0 writes and prints of a search; the other ranks only take part in the gathering."""

    def __init__(self, dist, console, progress, scalars, log, skips_reported: dict, plan, stages: int):
        """`log`: rank 0's metrics.h5 (None elsewhere) and `skips_reported` the skipped-image counts it already
        holds; `plan`: the search's EpisodePlan; `stages`: per episode."""
        self.dist, self.console, self.progress, self.scalars = dist, console, progress, scalars
        self.log, self.skips_reported, self.plan, self.stages = log, skips_reported, plan, stages

    def start(self, iterations_per_stage: int, run_dir, schedule_difference: str) -> None:
        """Rank 0's first lines: the searchers, the search's size, the run directory; a deliberate schedule difference."""
        self.console.info(f"{self.dist.size} searcher(s) on {self.dist.device} ({self.dist.controller}); "
                          f"{self.plan.episodes} episodes x {self.stages} stages x {iterations_per_stage} "
                          f"iterations; run dir {run_dir}")
        if schedule_difference:
            self.console.info(f"NOTE: {schedule_difference}")

    def out_of_patience(self, since: int, episodes_done: int) -> None:
        self.console.info(f"search.patience: {since} evaluation episode{'s' * (since != 1)} without a better "
                          f"validation gap; the search ends after {episodes_done} of {self.plan.episodes} episodes")

    def publish(self, row: StageRow, skipped_images: int, diverged: bool) -> None:
        """Gather every searcher's row (one collective per stage); rank 0 logs and prints them."""
        gathered = self.dist.allgather_object((row, skipped_images))
        if not self.dist.is_root:
            return
        rows = [gathered_row for gathered_row, _ in gathered]
        self.log.append(rows)
        # unreadable images skipped (data.on_corrupt_image=skip), non-finite losses
        for event in stage_events(rows, [count for _, count in gathered], self.skips_reported):
            self.log.event(*event)
        if diverged:
            self.console.info(f"episode {row.episode + 1}: a non-finite loss at stage {row.stage + 1}; the episode "
                              "stops (recorded in metrics.h5 /events)")
        self.progress_line(rows)

    def progress_line(self, rows: list[StageRow]) -> None:
        """Rank 0's line of a stage (means over the searchers), and its TensorBoard scalars."""
        mean = {key: float(np.mean([getattr(row, key) for row in rows])) for key in _MEANS}
        first = rows[0]
        done = first.episode * self.stages + first.stage + 1
        if self.scalars is not None:
            action = np.mean([row.action for row in rows], axis=0)
            self.scalars.add("search", {**mean, "acc_gap": mean["acc_target"] - mean["acc_reference"],
                                        **{f"action_{term}": action[i] for i, term in enumerate(ACTION_TERMS)}}, done)
        mode = "weighted" if first.weighted else "warm-up "
        self.console.info(
            f"{self.progress.stamp()} ep {first.episode + 1}/{self.plan.episodes} stage {first.stage + 1:>2}/"
            f"{self.stages} {mode} lr {first.lr:.4g} reward {mean['reward']:+.4f} acc T {mean['acc_target']:.4f} "
            f"R {mean['acc_reference']:.4f} gap {mean['acc_target'] - mean['acc_reference']:+.4f} "
            f"w {mean['weight_mean']:.3f}±{mean['weight_std']:.3f} "
            f"{mean['samples_per_second'] * len(rows):,.0f} samples/s {mean['stage_seconds']:.1f}s "
            f"(ckpt {mean['checkpoint_seconds']:.2f}s) | {self.progress.suffix(done)}")

    def episode_done(self, episode: int, metrics_path) -> None:
        """Rank 0: the summary table of the episodes so far."""
        if self.dist.is_root:
            summary = [row for row in episode_summary(read_stages(metrics_path)) if row["episode"] <= episode]
            self.console.info(f"episode {episode + 1} done\n{summary_markdown(summary)}")

    def policy_saved(self, episode: int, outcome: dict, path) -> None:
        gap, target, reference = (100 * outcome[key] for key in
                                  ("validation_gap", "validation_acc_target", "validation_acc_reference"))
        self.console.info(f"evaluation episode {episode + 1}: validation gap {gap:+.2f} points (target "
                          f"{target:.2f} %, reference {reference:.2f} %), the best so far: saved to {path}")

    def cost(self, episodes: int, epochs: int) -> None:
        """The search's cost in the unit users compare methods by: trainings of the final network."""
        searchers = self.dist.size
        self.console.info(f"search cost: {episodes} episodes x {searchers} searcher(s) x 2 networks = "
                          f"{2 * episodes * searchers} trainings of {epochs} epochs (the evaluation episodes included)")
