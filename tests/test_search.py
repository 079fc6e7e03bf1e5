"""The LAW search end to end on real Fashion-MNIST: invariants, contract columns, resume, bad input."""
import json
import signal
import subprocess
import sys

import h5py
import numpy as np
import pytest
import torch

from law_hpc.config import load_config
from law_hpc.data import build_data
from law_hpc.engine.pair import ClassifierPair
from law_hpc.law.weighting import WeightingRule
from law_hpc.io.checkpoint import checkpoint_dir, list_checkpoints, read_checkpoint
from law_hpc.io.metrics import read_stages
from law_hpc.models import create_model
from search_helpers import SMOKE, assert_same_results, interrupt_after_rows, run_search

CONTRACT = ["episode", "stage", "rank", "lr", "weighted", "reward", "acc_target", "acc_reference",
            "loss_target", "loss_reference", "weight_mean", "weight_std", "stage_seconds",
            "samples_per_second", "strategy_checksum", "action"]


@pytest.fixture(scope="module")
def smoke_data():
    cfg = load_config(SMOKE)
    return cfg, build_data(cfg.data, purpose="search", seed=0, rank=0, world_size=1, device=torch.device("cpu"))


def _pair(cfg, data, mode):
    factory = lambda: create_model(cfg.model.name, data.num_classes, data.in_channels, data.image_size)
    return ClassifierPair.create(factory, 123, torch.device("cpu"), 0.05, 0.9, 2e-5, mode)


@pytest.mark.parametrize("mode, base_loss", [("sequential", "ce"), ("threads", "ce"), ("sequential", "gce")])
def test_uniform_weighting_keeps_the_pair_bit_identical(smoke_data, mode, base_loss):
    from law_hpc.law.losses import base_loss as make_base_loss
    cfg, data = smoke_data
    pair = _pair(cfg, data, mode)
    features = WeightingRule(torch.zeros(data.num_classes), base_loss=make_base_loss(base_loss))
    stats = pair.train_stage(data.train.iterate(7), range(6), lambda step: 0.05, None, features)
    pair.close()
    for (name, p_t), p_r in zip(pair.target_net.state_dict().items(), pair.reference_net.state_dict().values()):
        assert torch.equal(p_t, p_r), name
    assert stats.loss_target == stats.loss_reference and stats.weight_mean == 1.0 and stats.weight_std == 0.0


def test_a_nonzero_action_makes_the_pair_differ(smoke_data):
    cfg, data = smoke_data
    pair = _pair(cfg, data, "sequential")
    features = WeightingRule(torch.zeros(data.num_classes))
    action = np.array([-1.0, 0.0, 0.0, 0.0, 0.0], dtype=np.float32)  # down-weight high-loss samples
    stats = pair.train_stage(data.train.iterate(7), range(3), lambda step: 0.05, action, features)
    assert stats.weight_std > 0
    assert any(not torch.equal(t, r) for t, r in zip(pair.target_net.parameters(), pair.reference_net.parameters()))


@pytest.fixture(scope="module")
def two_rank_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("smoke2")
    # searcher 1 trains on clean labels (search.data_variants); searcher 0 on the smoke config's 40 % noise
    proc = run_search(run_dir, ranks=2, overrides=["search.data_variants=[noise_rate=0.4, noise_rate=0]"])
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return run_dir, proc


@pytest.mark.slow
def test_two_rank_smoke_search_writes_the_contract(two_rank_run):
    run_dir, proc = two_rank_run
    cfg = load_config(SMOKE)
    columns = read_stages(run_dir / "metrics.h5")
    for name in CONTRACT:
        assert name in columns, name
    n_rows = cfg.search.episodes * cfg.search.stages * 2
    assert all(len(columns[name]) == n_rows for name in columns)
    assert columns["action"].shape == (n_rows, 5) and columns["class_weight_mean"].shape == (n_rows, 10)
    assert set(columns["rank"]) == {0, 1}
    weighted = columns["weighted"] == 1
    assert weighted.any() and (~weighted).any()
    assert np.all(columns["action"][~weighted] == 0) and np.any(columns["action"][weighted] != 0)
    assert np.all(columns["weight_mean"][~weighted] == 1.0)
    assert np.isfinite(columns["reward"]).all()
    with h5py.File(run_dir / "metrics.h5", "r") as f:
        assert f.attrs["world_size"] == 2 and "torch" in f.attrs["versions"]
        assert "noise_mode: uniform_mix" in f.attrs["config_yaml"]
    assert (run_dir / "policy.h5").is_file()
    assert "episode 2 done" in proc.stdout and "| episode |" in proc.stdout


@pytest.mark.slow
def test_each_searcher_trains_on_its_data_variant(two_rank_run):
    run_dir, _ = two_rank_run
    with h5py.File(run_dir / "metrics.h5", "r") as f:
        searcher_data = json.loads(f.attrs["searcher_data"])
    assert "40 % uniform_mix noise" in searcher_data[0] and "used as given" in searcher_data[1]
    c = read_stages(run_dir / "metrics.h5")
    # the clean searcher's reference net (unweighted) has the lower training loss at every stage
    for episode, stage in set(zip(c["episode"], c["stage"])):
        rows = (c["episode"] == episode) & (c["stage"] == stage)
        by_rank = {int(r): loss for r, loss in zip(c["rank"][rows], c["loss_reference"][rows])}
        assert by_rank[1] < by_rank[0], (episode, stage)


@pytest.mark.slow
def test_strategy_identical_across_ranks_classifiers_differ(two_rank_run):
    run_dir, _ = two_rank_run
    c = read_stages(run_dir / "metrics.h5")
    for episode, stage in set(zip(c["episode"], c["stage"])):
        rows = (c["episode"] == episode) & (c["stage"] == stage)
        assert len(set(c["strategy_checksum"][rows])) == 1, (episode, stage)
    assert len(set(c["strategy_checksum"])) > 1  # the strategy does learn
    rank0, rank1 = c["rank"] == 0, c["rank"] == 1
    assert not np.array_equal(c["loss_target"][rank0], c["loss_target"][rank1])  # own init and data order
    assert not np.array_equal(c["action"][rank0], c["action"][rank1])  # own exploration noise
    # every rank's own checkpoint holds the same strategy model and its own replay buffer
    last = [read_checkpoint(list_checkpoints(checkpoint_dir(run_dir, r))[0]) for r in (0, 1)]
    for name, tensor in last[0]["torch"]["ddpg"]["model"].items():
        assert torch.equal(tensor, last[1]["torch"]["ddpg"]["model"][name]), name
    assert not np.array_equal(last[0]["arrays"]["buffer/reward"], last[1]["arrays"]["buffer/reward"])


@pytest.mark.slow
@pytest.mark.parametrize("overrides", [(), ("strategy.feature_norm=val_rank", "strategy.action_terms=[loss,label,bias]")],
                         ids=["batch_rank", "val_rank"])
def test_interrupted_and_resumed_run_equals_uninterrupted(tmp_path, overrides, smoke_run):
    # val_rank: the validation losses the stage under way ranks against come back from the checkpoint
    full = smoke_run if not overrides else tmp_path / "full"
    if overrides:
        proc = run_search(full, overrides=overrides)
        assert proc.returncode == 0, proc.stderr[-3000:]
    stopped = tmp_path / "stopped"
    code, output = interrupt_after_rows(stopped, rows=3, overrides=overrides)
    assert code == 75, output[-3000:]
    assert "stop requested" in output
    partial = read_stages(stopped / "metrics.h5")
    assert 3 <= len(partial["episode"]) < len(read_stages(full / "metrics.h5")["episode"])
    proc = run_search(stopped, overrides=overrides)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resumed" in proc.stdout
    assert_same_results(full, stopped)


@pytest.mark.slow
def test_a_first_ctrl_c_stops_cleanly_with_a_checkpoint_and_the_rerun_finishes(tmp_path):
    code, output = interrupt_after_rows(tmp_path, rows=2, sig=signal.SIGINT)
    assert code == 75 and "stop requested (SIGINT)" in output and "Traceback" not in output, output[-3000:]
    proc = run_search(tmp_path)
    assert proc.returncode == 0 and "resumed" in proc.stdout, proc.stderr[-3000:]


@pytest.mark.slow
def test_literal_command_default_config_new_run_dir_over_mpi(tmp_path):
    """`horovodrun -np N python -m law_hpc.search`: no --config, no --run-dir (made to run short by --set)."""
    tiny = ["search.episodes=1", "optim.epochs=1", "search.stages=2", "search.warmup_stages=1",
            "data.search_train_size=512", "data.val_size=200"]
    proc = run_search(None, ranks=2, config=None, overrides=tiny, controller="mpi", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert str(run_dir.name) in proc.stdout  # the new run's path is printed
    columns = read_stages(run_dir / "metrics.h5")
    assert len(columns["episode"]) == 2 * 2
    with h5py.File(run_dir / "metrics.h5") as f:
        assert f.attrs["controller"] == "mpi" and "model:\n  name: mlp" in f.attrs["config_yaml"]


@pytest.mark.slow
def test_resume_refuses_other_config_and_world_size(tmp_path):
    code, _ = interrupt_after_rows(tmp_path, rows=1)
    proc = run_search(tmp_path, overrides=["search.episodes=3"])
    assert proc.returncode == 2 and "different config" in proc.stderr
    proc = run_search(tmp_path, ranks=2, overrides=["search.allow_resize=false"], extra=["--force"])
    assert proc.returncode != 0 and "search.allow_resize=true continues" in proc.stdout + proc.stderr, proc.stderr[-3000:]


@pytest.mark.slow
def test_a_two_rank_search_resumed_on_one_searcher_continues_with_both_ranks_transitions(tmp_path):
    """After episode 1 of 2 ranks, the job comes back with one (a node lost): it continues from the common
    position with the same strategy model and both searchers' replay buffers, and logs the change."""
    proc = run_search(tmp_path, ranks=2, overrides=["search.episodes=1"])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    before = [read_checkpoint(list_checkpoints(checkpoint_dir(tmp_path, rank))[0]) for rank in (0, 1)]
    checksum_before = read_stages(tmp_path / "metrics.h5")["strategy_checksum"][-1]
    proc = run_search(tmp_path, ranks=1, overrides=["search.episodes=2"], extra=["--force"])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "written by 2 searchers, this job has 1" in proc.stderr, proc.stderr[-3000:]
    c = read_stages(tmp_path / "metrics.h5")
    assert list(zip(c["episode"], c["rank"])) == [(0, 0), (0, 1)] * 4 + [(1, 0)] * 4  # both ranks' rows stay
    assert c["strategy_checksum"][8] == checksum_before  # a warm-up stage learns nothing: the model it resumed with
    with h5py.File(tmp_path / "metrics.h5") as f:
        kinds = [kind.decode() if isinstance(kind, bytes) else kind for kind in f["events/kind"][()]]
        assert "searchers:2->1" in kinds and f.attrs["world_size"] == 1
    after = read_checkpoint(list_checkpoints(checkpoint_dir(tmp_path, 0))[0])
    pooled = np.concatenate([state["arrays"]["buffer/reward"] for state in before])
    assert len(pooled) == 6 and np.array_equal(after["arrays"]["buffer/reward"][:6], pooled)
    assert len(after["arrays"]["buffer/reward"]) == 6 + 3  # and this episode's three weighted stages
    assert (tmp_path / "policy.h5").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("ranks", [1, 2])
def test_bad_config_key_is_one_clear_line_and_exit_2(tmp_path, ranks):
    proc = run_search(tmp_path / "r", ranks=ranks, overrides=["search.episodez=3"])
    output = proc.stdout + proc.stderr
    errors = [line for line in output.splitlines() if "error: unknown config key 'search.episodez'" in line]
    # One line per rank that got to print it: horovodrun may stop the other rank first when one exits (a race
    # seen on a loaded machine), so under 2 ranks one or two such lines, and no rank prints a traceback
    # (horovodrun's own report of the failed ranks is not ours).
    assert 1 <= len(errors) <= ranks and not any("]<stderr>:Traceback" in line for line in output.splitlines())
    assert proc.returncode == 2 if ranks == 1 else proc.returncode != 0


@pytest.mark.slow
def test_missing_dataset_is_a_clear_error_before_training(tmp_path):
    proc = run_search(tmp_path / "r", overrides=["data.root=/nonexistent/fmnist"])
    assert proc.returncode == 2, proc.stderr
    assert "/nonexistent/fmnist" in proc.stderr
    assert not (tmp_path / "r" / "checkpoints").exists()


@pytest.mark.slow
def test_non_finite_loss_stops_the_episode_and_is_recorded(tmp_path):
    proc = run_search(tmp_path, overrides=["optim.lr=1e12", "optim.lr_decay_stages=[]"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    with h5py.File(tmp_path / "metrics.h5", "r") as f:
        kinds = [k.decode() for k in f["events/kind"][()]]
    assert "non_finite_loss" in kinds
    arrays = read_checkpoint(list_checkpoints(checkpoint_dir(tmp_path, 0))[0])["arrays"]
    buffer = {name: array for name, array in arrays.items() if name.startswith("buffer/")}
    assert buffer  # the replay buffer is in the checkpoint
    for name, array in buffer.items():
        assert np.isfinite(array).all(), name  # no NaN transition entered the buffer


def test_policy_selection_keeps_the_best_evaluated_actor_not_the_last():
    from law_hpc.engine.selection import PolicySelection
    from law_hpc.law.policy import StrategyModel

    strategy, selection = StrategyModel(4, 3, 8, 1.0), PolicySelection()
    kept = []
    for episode, gap in enumerate([0.01, 0.03, 0.02]):
        selection.start(strategy)
        with torch.no_grad():  # learning goes on between evaluations; the candidate is a frozen copy
            strategy.actor.net[-1].bias.add_(1.0)
        assert not torch.equal(selection.candidate.actor.net[-1].bias, strategy.actor.net[-1].bias)
        # two searchers' (acc_target, acc_reference): the mean gap decides
        better, outcome = selection.finish(episode, [(0.8, 0.8 - gap + 0.01), (0.8, 0.8 - gap - 0.01)])
        kept.append(better)
        assert selection.candidate is None and outcome["episode"] == episode
        assert outcome["validation_gap"] == pytest.approx(gap) and outcome["validation_acc_target"] == 0.8
    assert kept[0] is not None and kept[1] is not None and kept[2] is None  # 0.02 < 0.03: not saved
    assert selection.best["episode"] == 1
    restored = PolicySelection()
    restored.load_state_dict(selection.state_dict(), strategy)
    assert restored.best == selection.best and restored.candidate is None


@pytest.mark.slow
def test_a_search_built_to_lose_says_so_and_its_policy_warns(tmp_path):
    """A frozen actor that weights up the highest-loss (mostly mislabelled) samples: the evaluation loses."""
    from law_hpc.io.policy_file import load_policy, save_policy
    from law_hpc.law.settings import PolicySettings, strategy_model
    from law_hpc.weighter import PolicyWeighter

    unbounded = ["strategy.action_bound=none", "strategy.action_scale=1.0"]
    settings = PolicySettings.from_config(load_config(SMOKE, unbounded), 10)
    losing = strategy_model(settings)
    losing.actor.make_constant([8.0, 0.0, 0.0, 0.0, 0.0])  # K ~ 2 for the higher-loss half (the mislabelled), ~0 below
    save_policy(tmp_path / "losing.h5", losing, settings, np.zeros(10))
    proc = run_search(tmp_path / "run", overrides=unbounded + [f"strategy.init_policy={tmp_path / 'losing.h5'}",
                                                                 "strategy.fdu_epochs=0", "search.episodes=1"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "WARNING: no evaluation episode's target beat its reference" in proc.stderr
    searched = load_policy(tmp_path / "run" / "policy.h5")
    assert searched.validation_gap < 0 and searched.outcome["episode"] == 0
    with pytest.warns(UserWarning, match="did not beat uniform training on its search's validation split"):
        PolicyWeighter.from_file(tmp_path / "run" / "policy.h5")


@pytest.mark.slow
def test_a_start_that_failed_before_its_first_checkpoint_reruns_with_the_fixed_config(tmp_path):
    """The tool's own hint followed (here: a dataset path fixed) on the same command and run directory."""
    proc = run_search(tmp_path / "run", overrides=["data.root=/nonexistent"])
    assert proc.returncode == 2 and "does not exist" in proc.stderr, proc.stderr[-2000:]
    proc = run_search(tmp_path / "run", overrides=["search.episodes=1"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    (tmp_path / "file").write_text("")
    proc = run_search(tmp_path / "file")
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 2 and errors == [f"error: --run-dir {tmp_path / 'file'} is a file, not a directory"]


@pytest.mark.slow
def test_the_readmes_main_command_prints_whole_lines_without_launcher_prefixes(tmp_path):
    """`make search` (the README's first command), made short: 2 ranks, rank 0's lines as written."""
    from search_helpers import REPO

    args = f"ARGS=--config smoke --run-dir {tmp_path / 'run'} --set search.episodes=1 --set threads_per_rank=1"
    proc = subprocess.run(["make", "--no-print-directory", "search", args], cwd=REPO, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = [line for line in proc.stdout.splitlines() if "[law]" in line]
    assert any("2 searcher(s)" in line for line in lines) and any("policy.h5" in line for line in lines), proc.stdout
    assert all(line.startswith("[law] ") for line in lines), lines  # no [1,0]<stdout>: and no glued lines


@pytest.mark.slow
def test_search_patience_stops_after_evaluations_without_a_better_gap(tmp_path):
    overrides = ["search.episodes=12", "search.eval_every=1", "search.patience=2", "search.min_episodes=3"]
    proc = run_search(tmp_path, overrides=overrides)
    assert proc.returncode == 0 and "search.patience: 2 evaluation episodes" in proc.stdout, proc.stdout[-3000:]
    episodes = int(read_stages(tmp_path / "metrics.h5")["episode"].max()) + 1
    with h5py.File(tmp_path / "policy.h5") as f:
        best = int(f.attrs["episode"])
    assert episodes == max(3, best + 1 + 2) < 12, (episodes, best)
    proc = run_search(tmp_path, overrides=overrides)  # the same command again: done, nothing more runs
    assert proc.returncode == 0 and int(read_stages(tmp_path / "metrics.h5")["episode"].max()) + 1 == episodes


@pytest.mark.slow
def test_a_search_on_another_base_loss_records_it_and_its_policy_asks_for_it(tmp_path):
    """train.base_loss: both nets of the search train on it (here the logit-adjusted loss); policy.h5 records it,
    and the test phase adopts it (saying so), or refuses the policy where --set asks for another loss."""
    proc = run_search(tmp_path / "search", overrides=["search.episodes=1", "train.base_loss=logit_adjusted"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    with h5py.File(tmp_path / "search" / "policy.h5") as f:
        assert f.attrs["base_loss"] == "logit_adjusted"
    train = [sys.executable, "-m", "law_hpc.train", "--config", str(SMOKE), "--policy", str(tmp_path / "search" /
             "policy.h5"), "--set", "data.train_size=1024", "--set", "data.test_size=200"]
    proc = subprocess.run(train + ["--run-dir", str(tmp_path / "refused"), "--set", "train.base_loss=ce"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "--set train.base_loss=ce conflicts with policy" in proc.stderr, proc.stderr
    proc = subprocess.run(train + ["--run-dir", str(tmp_path / "trained")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "train.base_loss=logit_adjusted (was ce)" in proc.stdout
    assert "base_loss: logit_adjusted" in (tmp_path / "trained" / "config.yaml").read_text()
