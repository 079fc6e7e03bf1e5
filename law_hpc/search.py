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
import sys
import time
from pathlib import Path

import numpy as np
import torch

from . import dist as distributed
from .analysis import episode_summary, summary_markdown
from .config import Config
from .engine.pair import ClassifierPair, FeatureSettings, InterruptedStage, StageProgress, StageStats
from .engine.preemption import EXIT_PREEMPTED, Preemption
from .engine.resume import load_agreed
from .engine.schedule import StageSchedule, schedule_difference
from .engine.search_state import SearchState
from .engine.selection import PolicySelection
from .io.checkpoint import CheckpointStore
from .io.history import RowHistory, open_log, position_text, stage_events
from .io.metrics import MetricsLog, StageRow, read_stages, search_layout
from .io.policy_file import load_actor_into, new_strategy_model, policy_settings, save_policy
from .io.progress import Progress
from .io.rundir import logged_results
from .io.tensorboard import open_scalars
from .launch import add_config_options, run_attributes, run_entry_point
from .law.ddpg import DDPG, ExplorationNoise, FduStats, ReplayBuffer
from .law.features import log_class_frequencies
from .law.policy import ACTION_DIM, ACTION_TERMS
from .law.reward import stage_reward
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


class Search:
    """One searcher (this rank) and its share of the strategy model; `run()` is Algorithm 2."""

    def __init__(self, cfg: Config, dist: distributed.Dist, run_dir: Path, resumed_dir: bool):
        from .data import Screening, build_data  # the data layer pulls in DALI/torchvision: import when needed
        from .models import model_from_config

        self.cfg, self.dist, self.run_dir = cfg, dist, run_dir
        if cfg.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
        self.data = build_data(cfg.data, purpose="search", seed=cfg.seed, rank=dist.rank,
                               world_size=dist.size, device=dist.device,
                               screening=Screening(run_dir / "screened.h5", dist.rank, dist.size,
                                                   dist.allgather_object))
        self.num_classes = self.data.num_classes
        self.model_factory = lambda: model_from_config(cfg.model, self.num_classes, self.data.in_channels,
                                                       self.data.image_size)
        iterations_per_epoch = self.data.train.batches_per_epoch
        if cfg.search.max_iters_per_epoch:
            iterations_per_epoch = min(iterations_per_epoch, cfg.search.max_iters_per_epoch)
        self.schedule = StageSchedule.from_config(cfg, iterations_per_epoch=iterations_per_epoch,
                                                  epochs=cfg.search_epochs)
        self.log_class_freq = log_class_frequencies(self.data.train_label_counts)
        st = cfg.strategy
        self.features = FeatureSettings(torch.from_numpy(self.log_class_freq).to(dist.device), st.density,
                                        st.label_feature, st.weight_norm, st.feature_norm)
        self.settings = policy_settings(cfg, self.num_classes)
        # The strategy model is shared: same seed everywhere, then rank 0's values broadcast.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(cfg.seed, "strategy"))
            self.strategy = new_strategy_model(self.settings)
        if st.init_policy:
            load_actor_into(self.strategy, self.settings, st.init_policy)
        self.ddpg = DDPG(self.strategy, st.actor_lr, st.critic_lr, st.gamma, st.tau, st.target_networks,
                         average_gradients=dist.average_gradients, action_penalty=st.action_penalty)
        self.selection = PolicySelection()
        self.buffer = ReplayBuffer(st.buffer_capacity)
        self.noise = ExplorationNoise(st.exploration, st.noise_sigma, st.noise_decay)
        self.state = SearchState()
        self.state.start_episode(self.num_classes)
        self.pair: ClassifierPair | None = None
        self.history = RowHistory(StageRow)  # this rank's rows: metrics.h5 is rebuilt from them on resume
        self.interrupted: InterruptedStage | None = None  # a stage a mid-stage checkpoint resumes
        self.preemption = Preemption(dist, cfg.stop_check_seconds, cfg.stop_check_iterations)
        self.skips_reported: dict[int, int] = {}
        self.part_seconds: dict[str, float] = {}  # this stage's evaluate and learn times, for its row
        self.checkpoints = CheckpointStore(run_dir, dist.rank)
        results = logged_results(run_dir, "metrics.h5") if resumed_dir and dist.is_root else ""
        position, state = (load_agreed(self.checkpoints, dist, run_dir, results) if resumed_dir else None) or (None, None)
        if position is not None:
            self.load_state_dict(state)
        self.scalars = open_scalars(cfg, run_dir, dist.is_root)
        self.metrics = self._open_metrics(position)
        self.progress = Progress(cfg.search.episodes * cfg.search.stages,
                                 self.state.episode * cfg.search.stages + self.state.stage)
        dist.broadcast_state(self.strategy)

    def is_evaluation(self, episode: int) -> bool:
        """Every search.eval_every-th episode and the last one act deterministically."""
        s = self.cfg.search
        return (episode + 1) % s.eval_every == 0 or episode == s.episodes - 1

    def new_pair(self, episode: int) -> ClassifierPair:
        """A freshly initialised target (seeded by seed, rank, episode), copied into the reference (DNR)."""
        o = self.cfg.optim
        return ClassifierPair.create(self.model_factory, derive_seed(self.cfg.seed, "init", self.dist.rank, episode),
                                     self.dist.device, o.lr, o.momentum, o.weight_decay, self.cfg.search.pair_mode)

    # --- checkpoint state ------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Everything this searcher needs to continue exactly after the stage just finished, or inside the
        stage under way (`interrupted`: its action and progress)."""
        state = {"search": self.state.state_dict(), "ddpg": self.ddpg.state_dict(), "buffer": self.buffer.state_dict(),
                 "noise": self.noise.state_dict(), "selection": self.selection.state_dict(),
                 "rng": rng_states(), "log": self.history.state_dict()}
        if not self.state.episode_over:
            state["pair"] = self.pair.state_dict()
        if self.interrupted is not None:
            state["stage"] = self.interrupted.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        self.state.load_state_dict(state["search"])
        self.ddpg.load_state_dict(state["ddpg"])
        self.buffer.load_state_dict(state["buffer"])
        self.noise.load_state_dict(state["noise"])
        self.selection.load_state_dict(state["selection"], self.strategy)
        set_rng_states(state["rng"])
        self.history.load_state_dict(state["log"])
        if self.state.episode_over:
            self.state.next_episode()
        else:
            self.pair = self.new_pair(self.state.episode)
            self.pair.load_state_dict(state["pair"])
        if "stage" in state:  # a mid-stage checkpoint
            self.interrupted = InterruptedStage.from_state(state["stage"], self.schedule.stage_steps(self.state.stage),
                                                           self.num_classes, self.dist.device)

    def _open_metrics(self, position: tuple[int, int, int] | None) -> MetricsLog | None:
        """Rank 0's metrics.h5: new, or on a resume written anew from every rank's rows in the checkpoints (a
        killed writer leaves the file unopenable, and may die between a checkpoint and its rows)."""
        if position is not None:
            self.history.add_resume(position)
        histories = self.dist.allgather_object(self.history.state_dict()) if position is not None else []
        if not self.dist.is_root:
            return None
        if position is None:
            self.data.save_split(self.run_dir / "split.h5")
        else:
            print(f"[law] resumed {self.run_dir} {position_text(position, self.schedule.iterations_per_stage)}; "
                  "metrics.h5 rewritten from the checkpoints", flush=True)
        attributes = run_attributes(self.cfg, self.dist, num_classes=self.num_classes, search_epochs=self.cfg.search_epochs,
                                    schedule_difference=schedule_difference(self.cfg))
        metrics, self.skips_reported = open_log(self.run_dir / "metrics.h5", search_layout(self.num_classes),
                                                attributes, self.data.report, StageRow, histories,
                                                self.schedule.iterations_per_stage)
        return metrics

    # --- Algorithm 2 -------------------------------------------------------------------------------
    def run(self) -> int:
        s = self.cfg.search
        if self.dist.is_root:
            print(f"[law] {self.dist.size} searcher(s) on {self.dist.device} ({self.dist.controller}); "
                  f"{s.episodes} episodes x {s.stages} stages x {self.schedule.iterations_per_stage} iterations; "
                  f"run dir {self.run_dir}", flush=True)
            if schedule_difference(self.cfg):
                print(f"[law] NOTE: {schedule_difference(self.cfg)}", flush=True)
        while self.state.episode < s.episodes:
            episode = self.state.episode
            if self.pair is None:  # a new episode: fresh target, copied into the reference (DNR)
                self.pair = self.new_pair(episode)
                self.state.start_episode(self.num_classes)
                self.noise.reset()
                if self.is_evaluation(episode):
                    self.selection.start(self.strategy)
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
            if self.dist.is_root:
                self.finish_episode(episode)
        if self.dist.is_root:
            print(f"[law] {self.selection.verdict()}", flush=True)
        return 0

    def run_stage(self, episode: int, stage: int, batches) -> StageOutcome:
        """One stage: act, train the pair, reward, learn, record, checkpoint, publish, check for a stop."""
        started = time.perf_counter()
        scalars = self.state.scalars  # s_T = [e_T, l_smooth, acc_smooth] (Eq. 5)
        action, progress = self.begin_stage(episode, stage, scalars)  # a_T = mu(s_T) + noise (Eq. 4); None in warm-up
        if not self.pair.train_steps(batches, progress, self.schedule.lr_at, action, self.features, self.preemption.poll):
            return self.checkpoint_mid_stage(episode, stage, action, progress)  # a stop agreed mid-stage
        stats = progress.stats()
        accuracies = self.timed("evaluate", self.pair.evaluate, self.data.val)  # (acc_target, acc_reference), clean split
        reward = self.reward(stage, *accuracies)  # r_T (Eq. 8-9)
        diverged = self.dist.any_flag(not (stats.finite and np.isfinite(reward)))  # all ranks end the episode
        next_scalars = self.state.smoothed(stats.loss_target, accuracies[0], self.cfg.search.smoothing)
        done = diverged or stage == self.cfg.search.stages - 1
        fdu = FduStats()
        if action is not None and not diverged:
            fdu = self.timed("learn", self.learn, episode, stage, scalars, action, reward, next_scalars, done)
        self.state.advance(stage, next_scalars, accuracies[0] - accuracies[1], done)
        if done and self.selection.candidate is not None:
            self.judge_candidate(episode, accuracies)
        row = self.record(episode, stage, action, stats, accuracies, reward, fdu)
        row.stage_seconds = time.perf_counter() - started
        row.checkpoint_seconds = self.checkpoint(row)
        self.publish(row, diverged)
        agreed_stop = self.preemption.agreed()  # a collective: every rank asks, at every stage end
        return StageOutcome.PREEMPTED if agreed_stop else StageOutcome.DIVERGED if diverged else StageOutcome.OK

    # --- the steps of a stage ------------------------------------------------------------------------
    def timed(self, part: str, work, *args):
        """work(*args); its wall-clock seconds go to this stage's row as `<part>_seconds`."""
        started = time.perf_counter()
        result = work(*args)
        self.part_seconds[part] = time.perf_counter() - started
        return result

    def begin_stage(self, episode: int, stage: int, scalars) -> tuple[np.ndarray | None, StageProgress]:
        """The stage's action and its training progress: fresh, or those of the stage a checkpoint interrupted."""
        if self.interrupted is not None:
            interrupted, self.interrupted = self.interrupted, None
            return interrupted.action, interrupted.progress
        return self.act(episode, stage, scalars), StageProgress(self.schedule.stage_steps(stage), self.num_classes,
                                                                self.dist.device)

    def act(self, episode: int, stage: int, scalars) -> np.ndarray | None:
        """a_T = mu(s_T) + exploration noise, inside the action bounds (Eq. 4); None in warm-up stages. An
        evaluation episode acts with its frozen candidate actor and no noise."""
        if not self.schedule.is_weighted(stage):
            return None
        if self.selection.candidate is not None:
            return self.selection.candidate.act(stage, scalars).numpy().astype(np.float32)
        mask, scale = self.strategy.actor.mask.numpy(), self.cfg.strategy.action_scale
        if episode < self.cfg.strategy.random_episodes:  # one random action for the whole episode
            random_rng = np.random.default_rng(derive_seed(self.cfg.seed, "random-action", self.dist.rank, episode))
            return (random_rng.uniform(-scale, scale, ACTION_DIM) * mask).astype(np.float32)
        noise_rng = np.random.default_rng(derive_seed(self.cfg.seed, "noise", self.dist.rank, episode, stage))
        action = self.strategy.act(stage, scalars).numpy() + self.noise.sample(episode, noise_rng) * mask
        if self.cfg.strategy.action_bound == "tanh":
            action = np.clip(action, -scale, scale)
        return action.astype(np.float32)

    def reward(self, stage: int, acc_target: float, acc_reference: float) -> float:
        """r_T = r_w (acc_target - acc_reference), r_w = s exp(k ce / ne) (Eq. 8-9); with search.reward =
        gap_change, r_w times the change of that gap over the stage."""
        s = self.cfg.search
        baseline = self.state.gap if s.reward == "gap_change" else 0.0
        return stage_reward(acc_target, acc_reference + baseline, self.schedule.epoch_at_end(stage),
                            self.schedule.epochs, s.reward_scale, s.reward_k)

    def learn(self, episode, stage, scalars, action, reward, next_scalars, done) -> FduStats:
        """Store (s_T, a_T, r_T, s_{T+1}, done), then the Full Data Update over the whole buffer (Algorithm 1)."""
        last = self.cfg.search.stages - 1
        self.buffer.add(stage=stage, scalars=scalars, action=action, reward=reward, next_stage=min(stage + 1, last),
                        next_scalars=next_scalars, done=float(done))
        fdu_rng = np.random.default_rng(derive_seed(self.cfg.seed, "fdu", self.dist.rank, episode, stage))
        st = self.cfg.strategy
        return self.ddpg.full_data_update(self.buffer, st.fdu_epochs, st.fdu_batch, fdu_rng)

    def record(self, episode: int, stage: int, action, stats: StageStats, accuracies, reward: float,
               fdu: FduStats) -> StageRow:
        """This stage's metrics row (timings are filled in by the caller)."""
        acc_target, acc_reference = accuracies
        return StageRow(
            episode=episode, stage=stage, rank=self.dist.rank, lr=self.schedule.stage_lr(stage),
            weighted=int(action is not None), reward=reward, acc_target=acc_target, acc_reference=acc_reference,
            loss_target=stats.loss_target, loss_reference=stats.loss_reference, weight_mean=stats.weight_mean,
            weight_std=stats.weight_std, stage_seconds=0.0, samples_per_second=stats.samples_per_second,
            strategy_checksum=self.strategy.checksum(), evaluation=int(self.is_evaluation(episode)),
            epoch=self.schedule.epoch_at_end(stage),
            l_smooth=self.state.l_smooth, acc_smooth=self.state.acc_smooth, fdu_minibatches=fdu.minibatches,
            critic_loss=fdu.critic_loss, actor_loss=fdu.actor_loss, checkpoint_seconds=0.0,
            action=np.zeros(ACTION_DIM) if action is None else action.astype(np.float64),
            class_weight_mean=stats.class_weight_mean, train_seconds=stats.seconds,
            weights_seconds=stats.weights_seconds, evaluate_seconds=self.part_seconds.pop("evaluate", 0.0),
            learn_seconds=self.part_seconds.pop("learn", 0.0))

    def judge_candidate(self, episode: int, accuracies: tuple[float, float]) -> None:
        """End of an evaluation episode: the searchers' mean final validation accuracies decide whether its
        actor becomes policy.h5 (written atomically by rank 0, before this stage's checkpoint)."""
        everyone = np.array(self.dist.allgather_object(accuracies))
        acc_target, acc_reference = (float(value) for value in everyone.mean(axis=0))
        outcome = {"validation_gap": acc_target - acc_reference, "validation_acc_target": acc_target,
                   "validation_acc_reference": acc_reference, "episode": episode}
        better = self.selection.finish(outcome)
        if better is not None and self.dist.is_root:
            save_policy(self.run_dir / "policy.h5", better, self.settings, self.log_class_freq, outcome)
            print(f"[law] evaluation episode {episode + 1}: validation gap {100 * outcome['validation_gap']:+.2f} "
                  f"points (target {100 * acc_target:.2f} %, reference {100 * acc_reference:.2f} %), the best so far: "
                  f"saved to {self.run_dir / 'policy.h5'}", flush=True)

    def checkpoint(self, row: StageRow) -> float:
        """This rank's checkpoint of the stage just finished; returns the seconds it took."""
        started = time.perf_counter()
        self.history.add(row, self.data.train.skipped_images)
        if self.cfg.checkpoint_every_stage:
            self.checkpoints.save((self.state.episode, self.state.stage - 1, self.schedule.iterations_per_stage),
                                  self.state_dict(), {"rank": self.dist.rank, "world_size": self.dist.size})
        return time.perf_counter() - started

    def checkpoint_mid_stage(self, episode: int, stage: int, action, progress: StageProgress) -> StageOutcome:
        """A stop agreed inside a stage: every rank checkpoints the stage as it stands (both nets, both
        optimizers, the data position, the stage's sums, the RNG states) and the job exits for requeue."""
        self.interrupted = InterruptedStage(action, progress)
        self.checkpoints.save((episode, stage, progress.done), self.state_dict(),
                              {"rank": self.dist.rank, "world_size": self.dist.size})
        self.preemption.stopped_mid_stage(f"in episode {episode + 1} stage {stage + 1} at iteration {progress.done}/"
                                          f"{len(progress.steps)}")
        return StageOutcome.PREEMPTED

    def publish(self, row: StageRow, diverged: bool) -> None:
        """Gather every searcher's row (one collective per stage); rank 0 logs and prints them."""
        gathered = self.dist.allgather_object((row, self.data.train.skipped_images))
        if not self.dist.is_root:
            return
        rows = [gathered_row for gathered_row, _ in gathered]
        self.metrics.append(rows)
        # unreadable images skipped (data.on_corrupt_image=skip), non-finite losses
        for event in stage_events(rows, [count for _, count in gathered], self.skips_reported):
            self.metrics.event(*event)
        if diverged:
            print(f"[law] episode {row.episode + 1}: a non-finite loss at stage {row.stage + 1}; the episode stops "
                  "(recorded in metrics.h5 /events)", flush=True)
        self.report_progress(rows)

    # --- reporting (rank 0) --------------------------------------------------------------------------
    def report_progress(self, rows: list[StageRow]) -> None:
        mean = {key: float(np.mean([getattr(row, key) for row in rows])) for key in
                ("reward", "acc_target", "acc_reference", "weight_mean", "weight_std", "samples_per_second",
                 "stage_seconds", "checkpoint_seconds")}
        first, stages = rows[0], self.cfg.search.stages
        mode = "weighted" if first.weighted else "warm-up "
        done = first.episode * stages + first.stage + 1
        if self.scalars is not None:
            action = np.mean([row.action for row in rows], axis=0)
            self.scalars.add("search", {**mean, "acc_gap": mean["acc_target"] - mean["acc_reference"],
                                        **{f"action_{term}": action[i] for i, term in enumerate(ACTION_TERMS)}},
                             done)
        print(f"[law] {self.progress.stamp()} ep {first.episode + 1}/{self.cfg.search.episodes} "
              f"stage {first.stage + 1:>2}/{self.cfg.search.stages} {mode} lr {first.lr:.4g} reward {mean['reward']:+.4f} "
              f"acc T {mean['acc_target']:.4f} R {mean['acc_reference']:.4f} "
              f"gap {mean['acc_target'] - mean['acc_reference']:+.4f} "
              f"w {mean['weight_mean']:.3f}±{mean['weight_std']:.3f} "
              f"{mean['samples_per_second'] * len(rows):,.0f} samples/s {mean['stage_seconds']:.1f}s "
              f"(ckpt {mean['checkpoint_seconds']:.2f}s) | {self.progress.suffix(done)}", flush=True)

    def finish_episode(self, episode: int) -> None:
        summary = [row for row in episode_summary(read_stages(self.run_dir / "metrics.h5"))
                   if row["episode"] <= episode]
        print(f"[law] episode {episode + 1} done\n{summary_markdown(summary)}", flush=True)

    def close(self, status: str | None = None) -> None:
        """Release the pair's threads and rank 0's files; metrics.h5 records `status` (how the run ended)."""
        if self.pair is not None:
            self.pair.close()
        if self.metrics is not None:
            self.metrics.close(status)
        if self.scalars is not None:
            self.scalars.close()


def main(argv=None) -> int:
    return run_entry_point(parse_args(argv), "search", Search)


if __name__ == "__main__":
    sys.exit(main())
