"""python -m law_hpc.search: LAW's search (paper Algorithm 2), one searcher per Horovod rank.

    horovodrun -np 8 python -m law_hpc.search [--config FILE] [--run-dir DIR] [--set key=value ...]

for episode in 1..L:                                   # a complete training of a fresh pair
    init target net, copy it into the reference net    # DNR
    for stage T in 1..T_max:                           # 3SM: the policy is fixed within a stage
        a_T = mu(s_T) + noise   (after warm-up)        # Eq. 4
        train both nets on the same batches, the target weighted by K_T = 1 + tanh(theta_T f + b)
        r_T = r_w (acc_target - acc_reference)         # Eq. 8-9, clean validation split
        store (s_T, a_T, r_T, s_{T+1}, done); Full Data Update, gradients averaged over ranks
Re-running the same command with the same --run-dir resumes from the last complete checkpoint (after a stop
request, SIGUSR1/SIGTERM, one written mid-stage), and rewrites metrics.h5 from the checkpoints.
"""
from __future__ import annotations

if __name__ == "__main__":  # first, before torch: a stop request while the rank starts up is kept, not fatal
    from law_hpc.engine.preemption import StopFlag
    StopFlag.install()

import argparse
import enum
import json
import sys
import time

import numpy as np
import torch

from .config import searcher_data
from .engine.agent import Agent
from .engine.evaluation import per_sample_losses
from .engine.pair import ClassifierPair, InterruptedStage, StageProgress
from .engine.preemption import EXIT_PREEMPTED
from .engine.resize import checkpoint_world_size, resize_warning, resized_state, retired_logs
from .engine.search_report import SearchReport, stage_row
from .engine.search_state import SearchState
from .engine.selection import EpisodePlan
from .io.history import stage_events
from .io.metrics import StageRow, search_layout
from .io.policy_file import save_policy
from .io.rundir import RunDirError
from .job import Job
from .launch import add_config_options, run_entry_point
from .law.ddpg import FduStats
from .law.features import log_class_frequencies
from .law.reward import stage_reward
from .law.schedule import StageSchedule, schedule_difference
from .law.settings import PolicySettings
from .law.weighting import WeightingRule
from .methods import base_loss_of
from .seeding import derive_seed, rng_states, set_rng_states


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m law_hpc.search", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", help="YAML config (default: the built-in Fashion-MNIST search, "
                        "configs/fmnist_noisy_mlp.yaml)")
    parser.add_argument("--run-dir", help="run directory; an existing one is resumed (default: a new runs/search-<time>)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key, e.g. search.episodes=3")
    parser.add_argument("--force", action="store_true", help="resume a run directory even if its config differs")
    return add_config_options(parser).parse_args(argv)


class StageOutcome(enum.Enum):
    OK = "ok"
    DIVERGED = "diverged"
    """A non-finite loss on some rank: every rank ends the episode."""
    PREEMPTED = "preempted"
    """A stop was requested: the checkpoint is written, the job exits for requeue."""


class Search(Job):
    """One searcher (this rank) and its share of the strategy model; `run()` is Algorithm 2."""

    purpose, log_name, row_type, prefix, unit = "search", "metrics.h5", StageRow, "[law]", "episode"
    log_events = staticmethod(stage_events)

    def __init__(self, cfg, dist, run_dir, resumed: bool):
        super().__init__(cfg, dist, run_dir, resumed)
        dist.broadcast_state(self.agent.model)  # the same strategy model on every rank, rank 0's
        self.report = SearchReport(dist, self.console, self.progress, self.scalars, self.log, self.skips_reported,
                                   self.plan, cfg.search.stages)

    def data_config(self):
        """search.data_variants: this searcher's variant of the data section."""
        return searcher_data(self.cfg, self.dist.rank)

    def build(self) -> None:
        from .models import model_from_config

        cfg, data = self.cfg, self.data
        self.num_classes = data.num_classes
        self.model_factory = lambda: model_from_config(cfg.model, self.num_classes, data.in_channels, data.image_size)
        self.schedule = StageSchedule.from_config(cfg, iterations_per_epoch=min(
            data.train.batches_per_epoch, cfg.search.max_iters_per_epoch or data.train.batches_per_epoch),
            epochs=cfg.search_epochs)
        self.iterations_per_unit = self.schedule.iterations_per_stage
        self.plan = EpisodePlan.from_config(cfg.search)
        self.log_class_freq = log_class_frequencies(data.train_label_counts)
        self.settings = PolicySettings.from_config(cfg, self.num_classes)
        self.rule = WeightingRule.from_settings(self.settings, torch.from_numpy(self.log_class_freq).to(self.dist.device),
                                                base_loss_of(cfg, data.train_label_counts))  # as the test phase's
        self.agent = Agent(cfg, self.settings, self.dist.rank, self.dist.average_gradients)
        self.searcher_data = self.dist.allgather_object(self.corruption.describe())  # every searcher's, for the log
        self.state = SearchState.fresh(self.num_classes)
        self.pair: ClassifierPair | None = None
        self.interrupted: InterruptedStage | None = None  # a stage a mid-stage checkpoint resumes
        self.part_seconds: dict[str, float] = {}  # this stage's evaluate and learn times, for its row
        self.retired_logs: list[dict] = []  # rank 0: the rows of searchers a resize let go (engine/resize.py)

    def new_pair(self, episode: int) -> ClassifierPair:
        """A freshly initialised target (seeded by seed, rank, episode), copied into the reference (DNR)."""
        o = self.cfg.optim
        return ClassifierPair.create(self.model_factory, derive_seed(self.cfg.seed, "init", self.dist.rank, episode),
                                     self.dist.device, o.lr, o.momentum, o.weight_decay, self.cfg.search.pair_mode,
                                     self.console.info)

    # --- the job's parts -----------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Everything this searcher needs to continue exactly after the stage just finished, or inside the
        stage under way (`interrupted`: its action and progress)."""
        state = {"search": self.state.state_dict(), **self.agent.state_dict(), "rng": rng_states(),
                 "log": self.history.state_dict(), **retired_logs(self.retired_logs), **self.rule.state_dict()}
        if not self.state.episode_over:
            state["pair"] = self.pair.state_dict()
        if self.interrupted is not None:
            state["stage"] = self.interrupted.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        self.state.load_state_dict(state["search"])
        self.agent.load_state_dict(state)
        set_rng_states(state["rng"])
        self.history.load_state_dict(state["log"])
        self.retired_logs = retired_logs(state)
        self.rule.load_state_dict(state)
        if self.state.episode_over:
            self.state.next_episode()
        else:
            self.pair = self.new_pair(self.state.episode)
            self.pair.load_state_dict(state["pair"])
        if "stage" in state:  # a mid-stage checkpoint
            self.interrupted = InterruptedStage.from_state(state["stage"], self.schedule.stage_steps(self.state.stage),
                                                           self.num_classes, self.dist.device)

    def progress_units(self) -> tuple[int, int]:
        return self.plan.episodes * self.cfg.search.stages, self.state.episode * self.cfg.search.stages + self.state.stage

    def log_layout(self) -> dict:
        return search_layout(self.num_classes)

    def log_attributes(self) -> dict:
        return {"num_classes": self.num_classes, "search_epochs": self.cfg.search_epochs,
                "schedule_difference": schedule_difference(self.cfg), "searcher_data": json.dumps(self.searcher_data)}

    def log_histories(self) -> list[dict]:
        return self.dist.allgather_object(self.history.state_dict()) + self.retired_logs  # every searcher's rows

    def resume(self) -> tuple[int, int, int] | None:
        """As every job resumes; from the checkpoints of another number of searchers as engine/resize.py says: every
        rank loads its part of them and checkpoints the position at once, so the new ranks hold it alike."""
        before = self.dist.allgather_object(checkpoint_world_size(self.run_dir) if self.dist.is_root else None)[0]
        if before in (None, self.dist.size):
            return super().resume()
        if not self.cfg.search.allow_resize:
            raise RunDirError(f"{self.run_dir} holds the checkpoints of {before} searchers, this job has "
                              f"{self.dist.size}: search.allow_resize=true continues on {self.dist.size}")
        position, state = resized_state(self.run_dir, before, self.dist.rank, self.dist.size)
        self.load_state_dict(state)
        self.history.add_resume(position, before, self.dist.size)
        self.save_checkpoint(position, self.state_dict())
        self.console.warning(resize_warning(position, before, self.dist.size, self.schedule.iterations_per_stage,
                                            len(self.agent.buffer)))
        return position

    def release(self) -> None:
        if self.pair is not None:
            self.pair.close()

    # --- Algorithm 2 -------------------------------------------------------------------------------
    def run(self) -> int:
        s = self.cfg.search
        self.report.start(self.schedule.iterations_per_stage, self.run_dir, schedule_difference(self.cfg))
        while self.state.episode < s.episodes and not self.out_of_patience():
            episode = self.state.episode
            if self.pair is None:  # a new episode: fresh target, copied into the reference (DNR)
                self.pair = self.new_pair(episode)
                self.state.start_episode(self.num_classes)
                self.rule.observe_validation_losses(None)  # "val_rank": nothing measured on the fresh target yet
                self.agent.start_episode(self.plan.is_evaluation(episode))
            start = self.interrupted.progress.next_step if self.interrupted else self.schedule.first_step(self.state.stage)
            batches = self.data.train.iterate(derive_seed(self.cfg.seed, "data", self.dist.rank, episode),
                                              start_step=start)
            while self.state.stage < s.stages:
                outcome = self.run_stage(episode, self.state.stage, batches)
                if outcome is StageOutcome.PREEMPTED:
                    return EXIT_PREEMPTED
                if outcome is StageOutcome.DIVERGED:
                    break
            self.pair.close()
            self.pair = None
            self.state.next_episode()
            self.report.episode_done(episode, self.run_dir / self.log_name)
        selection = self.agent.selection
        (self.console.info if selection.won else self.console.warning)(selection.verdict())
        self.report.cost(self.state.episode, self.cfg.search_epochs)
        return 0

    def out_of_patience(self) -> bool:
        """search.patience, between episodes (the same on every rank, as the selection is)."""
        since = None if self.pair is not None else self.plan.out_of_patience(self.agent.selection, self.state.episode)
        if since is not None:
            self.report.out_of_patience(since, self.state.episode)
        return since is not None

    def run_stage(self, episode: int, stage: int, batches) -> StageOutcome:
        """One stage: act, train the pair, reward, learn, record, checkpoint, publish, check for a stop."""
        started, s = time.perf_counter(), self.cfg.search
        scalars = self.state.scalars  # s_T = [e_T, l_smooth, acc_smooth] (Eq. 5)
        action, progress = self.begin_stage(episode, stage, scalars)  # a_T = mu(s_T) + noise (Eq. 4); None in warm-up
        if not self.pair.train_steps(batches, progress, self.schedule.lr_at, action, self.rule, self.preemption.poll):
            return self.checkpoint_mid_stage(episode, stage, action, progress)  # a stop agreed mid-stage
        stats = progress.stats()
        accuracies, reward = timed(self.part_seconds, "evaluate", self.evaluate, stage)  # on the clean split, r_T
        diverged = self.dist.any_flag(not (stats.finite and np.isfinite(reward)))  # all ranks end the episode
        next_scalars = self.state.smoothed(stats.loss_target, accuracies[0], s.smoothing)
        done = diverged or stage == s.stages - 1
        fdu = FduStats()
        if action is not None and not diverged:  # store (s_T, a_T, r_T, s_T+1, done), Full Data Update (Alg. 1)
            fdu = timed(self.part_seconds, "learn", self.agent.learn, episode, stage, scalars, action, reward,
                        next_scalars, done)
        self.state.advance(stage, next_scalars, done)
        if done and self.agent.selection.candidate is not None:
            self.judge_candidate(episode, accuracies)
        self.record(stage_row(episode=episode, stage=stage, rank=self.dist.rank, schedule=self.schedule, action=action,
                              stats=stats, accuracies=accuracies, reward=reward, fdu=fdu, state=self.state,
                              evaluation=self.plan.is_evaluation(episode), part_seconds=self.part_seconds,
                              strategy_checksum=self.agent.model.checksum()), started, diverged)
        agreed_stop = self.preemption.agreed()  # a collective: every rank asks, at every stage end
        return StageOutcome.PREEMPTED if agreed_stop else StageOutcome.DIVERGED if diverged else StageOutcome.OK

    # --- the steps of a stage ------------------------------------------------------------------------
    def evaluate(self, stage: int) -> tuple[tuple[float, float], float]:
        """((acc_target, acc_reference) on the clean validation split, r_T = r_w (acc_target - acc_reference),
        Eq. 8-9); a "val_rank" rule also takes the target's per-sample losses there, among which the next stage ranks
        its training losses (law/features.py)."""
        accuracies = self.pair.evaluate(self.data.val)
        if self.rule.needs_validation_losses:
            self.rule.observe_validation_losses(per_sample_losses(self.pair.target_net, self.data.val,
                                                                  self.rule.base_loss))
        s = self.cfg.search
        return accuracies, stage_reward(*accuracies, self.schedule.epoch_at_end(stage), self.schedule.epochs,
                                        s.reward_scale, s.reward_k)

    def begin_stage(self, episode: int, stage: int, scalars) -> tuple[np.ndarray | None, StageProgress]:
        """The stage's action and its training progress: fresh, or those of the stage a checkpoint interrupted."""
        if self.interrupted is not None:
            interrupted, self.interrupted = self.interrupted, None
            return interrupted.action, interrupted.progress
        action = self.agent.act(episode, stage, scalars) if self.schedule.is_weighted(stage) else None
        return action, StageProgress(self.schedule.stage_steps(stage), self.num_classes, self.dist.device)

    def judge_candidate(self, episode: int, accuracies: tuple[float, float]) -> None:
        """End of an evaluation episode: the searchers' mean final validation accuracies decide whether its
        actor becomes policy.h5 (written atomically by rank 0, before this stage's checkpoint)."""
        better, outcome = self.agent.selection.finish(episode, self.dist.allgather_object(accuracies))
        if better is not None and self.dist.is_root:
            save_policy(self.run_dir / "policy.h5", better, self.settings, self.log_class_freq, outcome)
            self.report.policy_saved(episode, outcome, self.run_dir / "policy.h5")

    def record(self, row: StageRow, started: float, diverged: bool) -> None:
        """The stage's row in this rank's checkpoint of the stage just finished, then in rank 0's log; the row gets the
        stage's seconds and the checkpoint's."""
        row.stage_seconds = time.perf_counter() - started
        self.history.add(row, self.data.train.skipped_images)
        if self.cfg.checkpoint_every_stage:
            self.save_checkpoint((self.state.episode, self.state.stage - 1, self.schedule.iterations_per_stage),
                                 self.state_dict())
        row.checkpoint_seconds = time.perf_counter() - started - row.stage_seconds
        self.report.publish(row, self.data.train.skipped_images, diverged)

    def checkpoint_mid_stage(self, episode: int, stage: int, action, progress: StageProgress) -> StageOutcome:
        """A stop agreed inside a stage: every rank checkpoints the stage as it stands (both nets, both
        optimizers, the data position, the stage's sums, the RNG states) and the job exits for requeue."""
        self.interrupted = InterruptedStage(action, progress)
        self.stop_mid_unit((episode, stage, progress.done), self.state_dict(),
                           f"in episode {episode + 1} stage {stage + 1} at iteration {progress.done}/"
                           f"{len(progress.steps)}")
        return StageOutcome.PREEMPTED


def timed(seconds: dict[str, float], part: str, work, *args):
    """work(*args); its wall-clock seconds go to `seconds[part]` (a stage row's `<part>_seconds`)."""
    started = time.perf_counter()
    result = work(*args)
    seconds[part] = time.perf_counter() - started
    return result


def main(argv=None) -> int:
    return run_entry_point(parse_args(argv), "search", Search)


if __name__ == "__main__":
    sys.exit(main())
