"""python -m law_hpc.search: LAW's search (paper Algorithm 2), one searcher per Horovod rank.

    horovodrun -np 8 python -m law_hpc.search [--config FILE] [--run-dir DIR] [--set key=value ...]

for episode in 1..L:                                   # a complete training of a fresh pair
    init target net, copy it into the reference net    # DNR
    for stage T in 1..T_max:                           # 3SM: the policy is fixed within a stage
        a_T = mu(s_T) + noise   (after warm-up)        # Eq. 4
        train both nets on the same batches, the target weighted by K_T = 1 + tanh(theta_T f + b)
        r_T = r_w (acc_target - acc_reference)         # Eq. 8-9, clean validation split
        store (s_T, a_T, r_T, s_{T+1}, done); Full Data Update, gradients averaged over ranks
Re-running the same command with the same --run-dir resumes from the last complete checkpoint.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from . import dist as distributed
from .analysis import episode_summary, summary_markdown
from .config import Config, to_yaml
from .engine.pair import ClassifierPair, FeatureSettings
from .engine.preemption import EXIT_PREEMPTED, StopFlag
from .engine.search_state import SearchState, agree_on_resume, strategy_checksum
from .io.metrics import MetricsLog, git_commit, read_stages, search_layout
from .io.policy_file import save_policy
from .launch import EXIT_BAD_INPUT, load_config_or_report, run_job
from .law.ddpg import DDPG, ExplorationNoise, ReplayBuffer
from .law.policy import StrategyModel
from .law.reward import StageSchedule, stage_reward
from .seeding import derive_seed


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m law_hpc.search", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", help="YAML config (default: the built-in Fashion-MNIST search, "
                        "configs/fmnist_noisy.yaml)")
    parser.add_argument("--run-dir", help="run directory; an existing one is resumed (default: a new runs/search-<time>)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key, e.g. search.episodes=3")
    parser.add_argument("--force", action="store_true", help="resume a run directory even if its config differs")
    return parser.parse_args(argv)


def log_class_frequencies(counts: np.ndarray) -> np.ndarray:
    """log of each observed label's training-set frequency: the default label feature."""
    counts = np.maximum(np.asarray(counts, dtype=np.float64), 1.0)
    return np.log(counts / counts.sum()).astype(np.float32)


class Search:
    """One searcher (this rank) and its share of the strategy model; `run()` is Algorithm 2."""

    def __init__(self, cfg: Config, dist: distributed.Dist, run_dir: Path, resumed_dir: bool):
        from .data import build_data  # the data layer pulls in DALI/torchvision: import when needed
        from .models import create_model

        self.cfg, self.dist, self.run_dir = cfg, dist, run_dir
        if cfg.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
        self.data = build_data(cfg.data, purpose="search", seed=cfg.seed, rank=dist.rank,
                               world_size=dist.size, device=dist.device)
        self.num_classes = self.data.num_classes
        self.model_factory = lambda: create_model(cfg.model.name, self.num_classes, self.data.in_channels,
                                                  self.data.image_size)
        iterations_per_epoch = self.data.train.batches_per_epoch
        if cfg.search.max_iters_per_epoch:
            iterations_per_epoch = min(iterations_per_epoch, cfg.search.max_iters_per_epoch)
        s, o = cfg.search, cfg.optim
        self.schedule = StageSchedule(s.stages, s.warmup_stages, iterations_per_epoch, s.epochs, o.lr,
                                      tuple(o.lr_decay_stages), o.lr_decay, o.warmup_epochs)
        self.log_class_freq = log_class_frequencies(self.data.train_label_counts)
        st = cfg.strategy
        self.features = FeatureSettings(torch.from_numpy(self.log_class_freq).to(dist.device), st.density,
                                        st.label_feature, st.weight_norm)
        # The strategy model is shared: same seed everywhere, then rank 0's values broadcast.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(cfg.seed, "strategy"))
            self.strategy = StrategyModel(s.stages, st.embed_dim, st.hidden, st.action_scale)
        self.ddpg = DDPG(self.strategy, st.actor_lr, st.critic_lr, st.gamma, st.tau, st.target_networks,
                         average_gradients=dist.average_gradients)
        self.buffer = ReplayBuffer(st.buffer_capacity)
        self.noise = ExplorationNoise(st.exploration, st.noise_sigma, st.noise_decay)
        self.state = SearchState.fresh(self.num_classes)
        self.pair: ClassifierPair | None = None
        self.stop = StopFlag()
        self.metrics: MetricsLog | None = None
        self.skips_reported: dict[int, int] = {}
        self._open_metrics_and_resume(resumed_dir)
        dist.broadcast_state(self.strategy)

    # --- setup -----------------------------------------------------------------------------------
    def _open_metrics_and_resume(self, resumed_dir: bool) -> None:
        position = agree_on_resume(self.run_dir, self.dist) if resumed_dir else None
        if position is not None:
            self.pair = self.state.restore(self.run_dir, self.dist.rank, position, self)
        metrics_path = self.run_dir / "metrics.h5"
        if self.dist.is_root:
            if position is None:
                attrs = {"config_yaml": to_yaml(self.cfg), "world_size": self.dist.size,
                         "controller": self.dist.controller, "versions": distributed.package_versions(),
                         "git_commit": git_commit(), "num_classes": self.num_classes,
                         "device": str(self.dist.device)}
                self.metrics = MetricsLog.create(metrics_path, search_layout(self.num_classes), attrs,
                                                 self.data.report)
                self.data.save_split(self.run_dir / "split.h5") if hasattr(self.data, "save_split") else None
            else:
                self.metrics = MetricsLog.reopen(metrics_path, search_layout(self.num_classes),
                                                 self.state.metrics_cursor - self.dist.size)
        if position is not None:
            # The resumed stage's rows live in the checkpoints too: re-append them if the job died between
            # its checkpoint and its metrics append (nothing lost, nothing duplicated).
            rows = self.dist.allgather_object(self.state.last_row)
            if self.dist.is_root:
                self.metrics.append(rows)
                self.metrics.event(position[0], position[1], 0, "resume")
                print(f"[law] resumed {self.run_dir} after episode {position[0] + 1} stage {position[1] + 1}",
                      flush=True)

    # --- Algorithm 2 -------------------------------------------------------------------------------
    def run(self) -> int:
        cfg, s = self.cfg, self.cfg.search
        if self.dist.is_root:
            print(f"[law] {self.dist.size} searcher(s) on {self.dist.device} ({self.dist.controller}); "
                  f"{s.episodes} episodes x {s.stages} stages x {self.schedule.iterations_per_stage} iterations; "
                  f"run dir {self.run_dir}", flush=True)
        while self.state.episode < s.episodes:
            episode = self.state.episode
            if self.pair is None:  # a new episode: fresh target, copied into the reference (DNR)
                self.pair = ClassifierPair.create(
                    self.model_factory, derive_seed(cfg.seed, "init", self.dist.rank, episode), self.dist.device,
                    cfg.optim.lr, cfg.optim.momentum, cfg.optim.weight_decay, s.pair_mode)
                self.state.start_episode(self.num_classes)
                self.noise.reset()
            batches = self.data.train.iterate(derive_seed(cfg.seed, "data", self.dist.rank, episode),
                                              start_step=self.schedule.first_step(self.state.stage))
            while self.state.stage < s.stages:
                outcome = self.run_stage(episode, self.state.stage, batches)
                if outcome == "preempted":
                    return EXIT_PREEMPTED
                if outcome == "diverged":
                    break
            self.pair.close()
            self.pair = None
            self.state.next_episode()
            if self.dist.is_root:
                self.finish_episode(episode)
        return 0

    def run_stage(self, episode: int, stage: int, batches) -> str:
        cfg, st, schedule = self.cfg, self.cfg.strategy, self.schedule
        started = time.perf_counter()
        weighted = schedule.is_weighted(stage)
        scalars = (self.state.l_smooth, self.state.acc_smooth)  # s_T = [e_T, l_smooth, acc_smooth] (Eq. 5)
        if weighted:  # a_T = mu(s_T) + exploration noise (Eq. 4)
            noise_rng = np.random.default_rng(derive_seed(cfg.seed, "noise", self.dist.rank, episode, stage))
            action = self.strategy.act(stage, scalars).numpy() + self.noise.sample(episode, noise_rng)
            action = np.clip(action, -st.action_scale, st.action_scale).astype(np.float32)
        else:
            action = None
        lr = schedule.stage_lr(stage)
        train_started = time.perf_counter()
        stats = self.pair.train_stage(batches, schedule.iterations_per_stage, lambda step: schedule.lr_at(stage, step),
                                      schedule.first_step(stage), action, self.features, self.num_classes)
        train_seconds = time.perf_counter() - train_started
        acc_target, acc_reference = self.pair.evaluate(self.data.val.batches())
        # r_T = r_w (acc_target - acc_reference), r_w = s exp(k ce / ne) (Eq. 8-9)
        reward = stage_reward(acc_target, acc_reference, schedule.epoch_at_end(stage), cfg.search.epochs,
                              cfg.search.reward_scale, cfg.search.reward_k)
        finite = stats.finite and np.isfinite(reward)
        diverged = self.dist.any_flag(not finite)  # every rank ends the episode together: lock-step
        next_scalars = self.state.smooth(stats.loss_target, acc_target, cfg.search.smoothing)
        done = stage == cfg.search.stages - 1 or diverged
        fdu = {"minibatches": 0, "critic_loss": float("nan"), "actor_loss": float("nan")}
        if weighted and not diverged:
            self.buffer.add(stage=stage, scalars=scalars, action=action, reward=reward,
                            next_stage=min(stage + 1, cfg.search.stages - 1), next_scalars=next_scalars, done=float(done))
            fdu_rng = np.random.default_rng(derive_seed(cfg.seed, "fdu", self.dist.rank, episode, stage))
            fdu = self.ddpg.full_data_update(self.buffer, st.fdu_epochs, st.fdu_batch, fdu_rng)  # Algorithm 1
        row = {
            "episode": episode, "stage": stage, "rank": self.dist.rank, "lr": lr, "weighted": int(weighted),
            "reward": reward, "acc_target": acc_target, "acc_reference": acc_reference,
            "loss_target": stats.loss_target, "loss_reference": stats.loss_reference,
            "weight_mean": stats.weight_mean, "weight_std": stats.weight_std,
            "samples_per_second": stats.samples / max(train_seconds, 1e-9),
            "strategy_checksum": strategy_checksum(self.strategy), "epoch": schedule.epoch_at_end(stage),
            "l_smooth": next_scalars[0], "acc_smooth": next_scalars[1], "fdu_minibatches": fdu["minibatches"],
            "critic_loss": fdu["critic_loss"], "actor_loss": fdu["actor_loss"],
            "action": np.zeros(5) if action is None else action.astype(np.float64),
            "class_weight_mean": stats.class_weight_mean,
        }
        self.state.advance(stage, next_scalars, done or diverged)
        row["stage_seconds"] = time.perf_counter() - started
        row["checkpoint_seconds"] = 0.0
        if cfg.checkpoint_every_stage:
            row["checkpoint_seconds"] = self.state.save(self.run_dir, self.dist, self, row)
        gathered = self.dist.allgather_object((row, self.skipped_images()))  # one collective per stage
        rows, skipped = [r for r, _ in gathered], [count for _, count in gathered]
        if self.dist.is_root:
            self.metrics.append(rows)
            for rank, count in enumerate(skipped):  # unreadable images skipped (data.on_corrupt_image=skip)
                if count > self.skips_reported.get(rank, 0):
                    self.metrics.event(episode, stage, rank, f"skipped_images:{count}")
                    self.skips_reported[rank] = count
            if diverged:
                for bad in rows:
                    if not np.isfinite([bad["loss_target"], bad["loss_reference"], bad["reward"]]).all():
                        self.metrics.event(episode, stage, bad["rank"], "non_finite_loss")
                print(f"[law] episode {episode + 1}: a non-finite loss at stage {stage + 1}; the episode stops "
                      "(recorded in metrics.h5 /events)", flush=True)
            self.report_progress(rows)
        if self.dist.any_flag(self.stop.requested):
            if self.dist.is_root:
                print(f"[law] stop requested ({self.stop.signal_name or 'another rank'}): checkpoint written, "
                      f"exiting with {EXIT_PREEMPTED} for requeue", flush=True)
            return "preempted"
        return "diverged" if diverged else "ok"

    # --- reporting (rank 0) --------------------------------------------------------------------------
    def skipped_images(self) -> int:
        """How many unreadable training images this rank's pipeline has skipped so far."""
        corrupt = getattr(self.data.train, "corrupt", None)
        return len(corrupt.skipped) if corrupt is not None else 0

    def report_progress(self, rows: list[dict]) -> None:
        mean = {key: float(np.mean([row[key] for row in rows])) for key in
                ("reward", "acc_target", "acc_reference", "weight_mean", "weight_std", "samples_per_second",
                 "stage_seconds", "checkpoint_seconds")}
        first = rows[0]
        mode = "weighted" if first["weighted"] else "warm-up "
        print(f"[law] ep {first['episode'] + 1}/{self.cfg.search.episodes} stage {first['stage'] + 1:>2}/"
              f"{self.cfg.search.stages} {mode} lr {first['lr']:.4g} reward {mean['reward']:+.4f} "
              f"acc T {mean['acc_target']:.4f} R {mean['acc_reference']:.4f} "
              f"gap {mean['acc_target'] - mean['acc_reference']:+.4f} "
              f"w {mean['weight_mean']:.3f}±{mean['weight_std']:.3f} "
              f"{mean['samples_per_second'] * len(rows):,.0f} samples/s {mean['stage_seconds']:.1f}s "
              f"(ckpt {mean['checkpoint_seconds']:.2f}s)", flush=True)

    def finish_episode(self, episode: int) -> None:
        st = self.cfg.strategy
        settings = {"stages": self.cfg.search.stages, "embed_dim": st.embed_dim, "hidden": st.hidden,
                    "action_scale": st.action_scale, "density": st.density, "label_feature": st.label_feature,
                    "weight_norm": st.weight_norm, "warmup_stages": self.cfg.search.warmup_stages,
                    "num_classes": self.num_classes}
        save_policy(self.run_dir / "policy.h5", self.strategy, settings, self.log_class_freq)
        summary = [row for row in episode_summary(read_stages(self.run_dir / "metrics.h5"))
                   if row["episode"] <= episode]
        print(f"[law] episode {episode + 1} done; policy saved to {self.run_dir / 'policy.h5'}\n"
              f"{summary_markdown(summary)}", flush=True)

    def close(self) -> None:
        if self.pair is not None:
            self.pair.close()
        if self.metrics is not None:
            self.metrics.close()


def main(argv=None) -> int:
    args = parse_args(argv)
    cfg = load_config_or_report(args)
    if cfg is None:
        return EXIT_BAD_INPUT
    return run_job(args, cfg, "search", lambda dist, run_dir, resumed: Search(cfg, dist, run_dir, resumed))


if __name__ == "__main__":
    sys.exit(main())
