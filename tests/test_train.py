"""The test phase (python -m law_hpc.train): a learned policy on another network, peers in the same harness,
data-parallel under horovodrun, resume after preemption."""
import signal
import subprocess
import sys

import h5py
import numpy as np
import pytest

from search_helpers import HOROVODRUN, REPO, SMOKE, assert_one_line_error, kill_ranks, start_job, wait_paused

SMALL = ["data.train_size=1024", "data.test_size=500", "optim.epochs=3", "threads_per_rank=1"]
ON_SMOKE_SCHEDULE = ["data.train_size=1024", "data.test_size=500", "threads_per_rank=1"]  # the smoke search's 2 epochs
TWO_EPOCHS = [*SMALL, "optim.epochs=2"]


def train_command(run_dir, *args, ranks=1, overrides=SMALL):
    args = list(map(str, args)) if "--config" in map(str, args) else ["--config", str(SMOKE), *map(str, args)]
    cmd = [sys.executable, "-m", "law_hpc.train", "--run-dir", str(run_dir), *args]
    for assignment in overrides:
        cmd += ["--set", assignment]
    if ranks > 1:
        cmd = [HOROVODRUN, "-np", str(ranks), "-H", f"localhost:{ranks}", "--gloo"] + cmd
    return cmd


def train(run_dir, *args, ranks=1, overrides=SMALL):
    proc = subprocess.run(train_command(run_dir, *args, ranks=ranks, overrides=overrides), capture_output=True,
                          text=True, timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc


def epochs(run_dir) -> dict:
    with h5py.File(run_dir / "train.h5", "r", libver="latest", swmr=True) as f:  # also while it is written
        return {name: f["epochs"][name][()] for name in f["epochs"]}


@pytest.fixture(scope="module")
def policy(smoke_run):
    return smoke_run / "policy.h5"


@pytest.mark.slow
def test_learned_policy_transfers_to_another_network(policy, tmp_path):
    proc = train(tmp_path, "--policy", policy, overrides=ON_SMOKE_SCHEDULE + [  # fewer images: ResNet-32 is slow here
        "model.name=resnet32_cifar", "data.train_size=768", "data.test_size=200"])
    rows = epochs(tmp_path)
    assert list(rows["epoch"]) == [0, 1] and rows["test_acc"][-1] > 0.2  # learns (chance: 0.1)
    assert np.any(rows["weight_std"] > 0)  # the policy weights samples, unlike uniform
    with h5py.File(tmp_path / "train.h5") as f:
        assert f.attrs["method"] == "law" and str(policy) in f.attrs["policy"]
    assert "resnet32_cifar" in (tmp_path / "config.yaml").read_text() and "law epoch 2/2" in proc.stdout


@pytest.mark.slow
def test_a_policy_brings_its_recipe_and_an_explicit_conflict_is_refused(policy, tmp_path):
    """--policy trains on the policy's schedule where the command line does not say otherwise, and says so; an
    explicit --set to another value stops with one line naming both, unless train.allow_schedule_mismatch."""
    longer = tmp_path / "longer.yaml"  # the smoke config, 3 epochs instead of the policy's 2
    longer.write_text(SMOKE.read_text().replace("optim:\n  epochs: 2\n", "optim:\n  epochs: 3\n"))
    proc = train(tmp_path / "adopted", "--policy", policy, "--config", longer, overrides=ON_SMOKE_SCHEDULE)
    assert "[law-train] the policy's recipe: optim.epochs=2 (was 3)" in proc.stdout
    assert list(epochs(tmp_path / "adopted")["epoch"]) == [0, 1]
    proc = subprocess.run(train_command(tmp_path / "refused", "--policy", policy, overrides=SMALL), capture_output=True,
                          text=True, cwd=REPO, timeout=300)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 2 and len(errors) == 1, proc.stderr[-2000:]
    assert "--set optim.epochs=3 conflicts with policy" in errors[0] and "optim.epochs=2" in errors[0]
    assert not (tmp_path / "refused" / "train.h5").exists()
    train(tmp_path / "allowed", "--policy", policy, overrides=SMALL + ["train.allow_schedule_mismatch=true"])
    with h5py.File(tmp_path / "allowed" / "train.h5") as f:
        assert "epochs 2 (searched) vs 3" in f.attrs["schedule_mismatch"]


@pytest.mark.slow
@pytest.mark.parametrize("method", ["coteaching", "l2rw", "mwnet", "oracle", "gce", "ldam_drw", "confident_learning"])
def test_peer_methods_run_in_the_same_harness(method, tmp_path):
    train(tmp_path, "--method", method, overrides=[*SMALL, "optim.epochs=1"])
    rows = epochs(tmp_path)
    assert len(rows["epoch"]) == 1 and np.isfinite(rows["train_loss"]).all()


def assert_model_file_scores_as_logged(run_dir, overrides):
    """model.pt of a smoke-config training loads, in eval mode, and scores the test and validation accuracy of the
    last row of its train.h5 (an ensemble too: LAW's guard_ensemble); gives the data built for it."""
    import torch
    from law_hpc.config import load_config
    from law_hpc.data import build_data
    from law_hpc.engine.evaluation import sharded_accuracy
    from law_hpc.models import load
    from law_hpc.models.ensemble import Ensemble

    rows, final = epochs(run_dir), load(run_dir / "model.pt")
    cfg = load_config(SMOKE, overrides)
    data = build_data(cfg.data, purpose="train", seed=cfg.seed, rank=0, world_size=1, device=torch.device("cpu"))
    assert not final.training and sharded_accuracy(final, data.test, lambda mine: [mine]) == rows["test_acc"][-1]
    assert sharded_accuracy(final, data.val_shard, lambda mine: [mine]) == rows["val_acc"][-1]
    note = final.law_hpc_info["note"]
    assert isinstance(final, Ensemble) == (" + " in note or " x" in note), note
    return data


@pytest.mark.slow
def test_a_training_leaves_model_files_that_load_and_score_as_logged(tmp_path):
    from law_hpc.engine.evaluation import sharded_accuracy
    from law_hpc.models import load

    overrides = TWO_EPOCHS
    proc = train(tmp_path, "--method", "uniform", overrides=overrides)
    rows = epochs(tmp_path)
    assert "model.pt" in proc.stdout and "law_hpc.models.load" in proc.stdout
    final, best = load(tmp_path / "model.pt"), load(tmp_path / "model_best.pt")
    data = assert_model_file_scores_as_logged(tmp_path, overrides)
    info = final.law_hpc_info
    assert (info["name"], info["method"], info["epoch"], info["num_classes"]) == ("mlp", "uniform", 2, 10)
    assert info["mean"] == [0.2860] and "optim:" in info["config_yaml"] and info["val_acc"] == rows["val_acc"][-1]
    best_epoch = int(np.argmax(rows["val_acc"][::-1]))  # the last of the best: a tie keeps the later epoch
    assert sharded_accuracy(best, data.test, lambda mine: [mine]) == rows["test_acc"][::-1][best_epoch]


@pytest.mark.slow
def test_list_policies_names_each_shipped_policy_with_its_search():
    proc = subprocess.run([sys.executable, "-m", "law_hpc.train", "--list-policies"], capture_output=True, text=True,
                          cwd="/", timeout=120)  # from anywhere: the policies come with the package
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == ["default", "fmnist_longtail", "fmnist_longtail_la",
                                                     "fmnist_noisy", "fmnist_noisy_mlp", "fmnist_noisy_mlp_gce",
                                                     "fmnist_noisy_mlp_valrank"]
    assert "the default path" in lines[0] and "base loss gce" in lines[0]
    assert all("validation gap +" in line and "10 classes" in line for line in lines), lines


@pytest.mark.slow
def test_unknown_method_is_a_clear_error(tmp_path):
    proc = subprocess.run(train_command(tmp_path, "--method", "nope"), capture_output=True, text=True, cwd=REPO)
    assert_one_line_error(proc, "'train.method': 'nope' is not one of")
    assert "uniform" in proc.stderr and "law" in proc.stderr


def stop_in_second_epoch(run_dir, *args, iterations_per_epoch: int, ranks=1, overrides=SMALL) -> tuple[int, str]:
    """Start a training whose ranks pause 3 iterations into epoch 2, send SIGUSR1 to one rank there and let them go
    on: the stop lands mid-epoch by construction (engine/steps.py). (exit code, output)."""
    pause = run_dir.with_name(f"{run_dir.name}-pause")
    proc = start_job(train_command(run_dir, *args, ranks=ranks, overrides=overrides),
                     pause=(pause, iterations_per_epoch + 2))
    wait_paused(proc, pause, ranks)
    kill_ranks(proc, "one", signal.SIGUSR1, module="law_hpc.train", release=pause)
    return proc.returncode, proc.output


@pytest.mark.slow
def test_data_parallel_two_ranks_resume_after_preemption_equals_uninterrupted(tmp_path):
    full = tmp_path / "full"  # two epochs: the stop lands in the last one, the resume finishes it
    train(full, "--method", "uniform", ranks=2, overrides=TWO_EPOCHS)
    assert len(epochs(full)["epoch"]) == 2
    stopped = tmp_path / "stopped"
    # one rank: both must stop together
    code, output = stop_in_second_epoch(stopped, "--method", "uniform", iterations_per_epoch=8, ranks=2,
                                        overrides=TWO_EPOCHS)
    assert code != 0 and "75" in output or code == 75, output[-2000:]
    resumed = train(stopped, "--method", "uniform", ranks=2, overrides=TWO_EPOCHS)
    assert "resumed" in resumed.stdout
    expected, got = epochs(full), epochs(stopped)
    for name in ("epoch", "lr", "train_loss", "test_acc", "val_acc", "weight_mean"):
        assert np.array_equal(expected[name], got[name]), name


@pytest.mark.slow
def test_two_network_method_data_parallel(tmp_path):
    """Co-teaching's two DistributedOptimizers under horovodrun: distinct allreduce names, ranks agree; the noise
    rate it estimates from both ranks' counts of epoch 2 drives the rest (3 epochs). train.calibrate: the ranks'
    validation shards gathered whole, the map chosen by cross-validation on them; the last row logs the chosen
    kind's cross-validated accuracy, model.pt (with its map) scores the logged test accuracy, and
    tools/calibrate_runs.py chooses the same map for the finished run in one process."""
    import re

    import torch

    from law_hpc.config import load_config
    from law_hpc.data import build_data
    from law_hpc.engine.evaluation import sharded_accuracy
    from law_hpc.models import load
    overrides = [*SMALL, "methods.coteaching.estimate_forget_rate=true", "train.calibrate=true"]
    proc = train(tmp_path, "--method", "coteaching", ranks=2, overrides=overrides)
    rows = epochs(tmp_path)
    assert len(rows["epoch"]) == 3
    lines = [line for line in proc.stdout.splitlines() if "forget rate" in line]
    assert "estimating" in lines[0] and ", estimated" in lines[-1], proc.stdout[-2000:]
    rate = float(lines[-1].split("forget rate ")[1].split(",")[0])
    assert 0.0 < rate <= 0.9 and np.mean(rows["weight_mean"][2:]) < 1.0  # it drops samples
    note = re.search(r"calibration: (\w+) \(validation, 200 images in 5 folds: (.+?)\)", proc.stdout)
    assert note, proc.stdout[-2000:]
    accuracies = {kind: float(value) for kind, value in (item.split() for item in note[2].split(", "))}
    assert list(accuracies) == ["none", "bias", "matrix"] and rows["val_acc"][-1] == round(accuracies[note[1]], 4)
    model = load(tmp_path / "model.pt")
    assert (type(model).__name__ == "Calibrated") == (note[1] != "none")
    data = build_data(load_config(SMOKE, overrides).data, purpose="train", seed=0, rank=0, world_size=1,
                      device=torch.device("cpu"))
    assert sharded_accuracy(model, data.test, lambda mine: [mine]) == rows["test_acc"][-1]
    # tools/calibrate_runs.py re-derives the map of a finished run in one process, from its network(s)
    tool = subprocess.run([sys.executable, str(REPO / "tools" / "calibrate_runs.py"), str(tmp_path), "--save"],
                          capture_output=True, text=True, timeout=300, cwd=REPO)
    assert tool.returncode == 0 and f"| {note[1]} |" in tool.stdout, tool.stdout + tool.stderr[-2000:]
    assert type(load(tmp_path / "model_calibrated.pt")).__name__ == type(model).__name__


def evaluate_checkpoint_on_one_rank(run_dir, tmp_path) -> tuple[float, float]:
    """(test, validation) accuracy of the run's last checkpoint, evaluated whole in this one process."""
    import shutil

    import torch

    from law_hpc.config import load_config
    from law_hpc.dist import Dist
    from law_hpc.train import Training
    copy = tmp_path / "evaluated"
    shutil.copytree(run_dir, copy)
    cfg = load_config(copy / "config.yaml")
    training = Training(cfg, Dist(0, 1, 0, 1, torch.device("cpu"), "none"), copy, resumed=True)
    try:
        assert training.epochs_done == cfg.optim.epochs  # the last epoch's checkpoint
        return training.accuracy(training.data.test), training.accuracy(training.data.val)
    finally:
        training.close()


@pytest.mark.slow
@pytest.mark.parametrize("method", ["uniform", "mwnet", "elr"])
def test_data_parallel_rank0_checkpoint_and_sharded_evaluation_equal_one_rank(tmp_path, method):
    """2 ranks, a BatchNorm network: rank 0 alone writes the checkpoint (the ranks hold one state, checked), and
    the accuracies evaluated in shards and summed equal the whole sets evaluated in one process."""
    run_dir = tmp_path / "run"
    proc = train(run_dir, "--method", method, ranks=2,
                 overrides=[*TWO_EPOCHS, "model.name=small_cnn", "data.test_size=333"])
    assert "WARNING" not in proc.stdout + proc.stderr, proc.stdout[-2000:]
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["rank0000"]
    rows = epochs(run_dir)
    test_acc, val_acc = evaluate_checkpoint_on_one_rank(run_dir, tmp_path)
    assert (test_acc, val_acc) == (rows["test_acc"][-1], rows["val_acc"][-1])
    assert test_acc > 0.3  # a trained network (chance 0.1): the equality is not 0 == 0


@pytest.mark.parametrize("shipped", sorted((REPO / "policies").glob("*.h5")), ids=lambda path: path.name)
def test_shipped_policy_fits_its_config_and_won_its_search(shipped):
    """policies/<name>.h5 trains with configs/<name>.yaml as it is: same schedule, same classes, and its search's
    evaluation beat the reference on validation."""
    from law_hpc.io.policy_file import load_policy
    from law_hpc.methods.law import recipe_differences
    from law_hpc.registry import load_checked_config
    cfg = load_checked_config(REPO / "configs" / f"{shipped.stem}.yaml")
    policy = load_policy(shipped)
    assert recipe_differences(policy.settings, cfg) == []
    assert len(policy.log_class_freq) == policy.settings.num_classes == 10
    assert policy.validation_gap > 0 and policy.settings.feature_norm == cfg.strategy.feature_norm


def constant_val_rank_policy(path):
    """A val_rank policy.h5 on the smoke schedule whose actor drops what sits high among the clean losses."""
    from law_hpc.config import load_config
    from law_hpc.io.policy_file import save_policy
    from law_hpc.law.settings import PolicySettings, strategy_model
    cfg = load_config(SMOKE, ["strategy.feature_norm=val_rank", "strategy.action_terms=[loss,label,bias]"])
    settings = PolicySettings.from_config(cfg, 10)
    model = strategy_model(settings)
    model.actor.make_constant([-3.0, 0, 0, 0, 2.0])
    save_policy(path, model, settings, np.zeros(10, dtype=np.float32), {"validation_gap": 0.01})
    return path


@pytest.mark.slow
def test_the_guard_evaluates_whichever_candidate_validates_best(tmp_path):
    """methods.law.uniform_guard with guard_peers=[gce, coteaching]: the policy's network trains as without the
    guard, the twin as `--method uniform`, GCE's network as `--method gce` and Co-teaching's (estimating its forget
    rate at the end of epoch 2) as `--method coteaching` would; each epoch's validation accuracy is the best of the
    four runs', its test accuracy (and model file) that network's."""
    from law_hpc.models import load
    policy = constant_val_rank_policy(tmp_path / "policy.h5")
    overrides = ON_SMOKE_SCHEDULE + ["optim.epochs=4", "train.allow_schedule_mismatch=true",
                                     "methods.coteaching.estimate_forget_rate=true"]
    train(tmp_path / "policy", "--policy", policy, overrides=overrides)
    train(tmp_path / "uniform", "--method", "uniform", overrides=overrides)
    train(tmp_path / "gce", "--method", "gce", overrides=overrides)
    assert "estimated" in train(tmp_path / "coteaching", "--method", "coteaching", overrides=overrides).stdout
    proc = train(tmp_path / "guarded", "--policy", policy, overrides=overrides + [
        "methods.law.uniform_guard=true", "methods.law.guard_peers=[gce,coteaching]"])
    runs = [epochs(tmp_path / name) for name in ("policy", "uniform", "gce", "coteaching")]
    guarded = epochs(tmp_path / "guarded")
    validation = np.stack([run["val_acc"] for run in runs])
    chosen = validation.argmax(axis=0)  # the first of equals, as the guard
    assert np.array_equal(guarded["val_acc"], validation.max(axis=0))
    assert np.array_equal(guarded["test_acc"], np.stack([run["test_acc"] for run in runs])[chosen, range(4)])
    assert np.array_equal(guarded["weight_std"], runs[0]["weight_std"]) and runs[0]["weight_std"][-1] > 0.1
    name = ("policy", "uniform twin", "gce", "coteaching")[chosen[-1]]
    assert f"guard: {name} (validation policy {runs[0]['val_acc'][-1]:.4f}, uniform twin " in proc.stdout
    assert f"gce {runs[2]['val_acc'][-1]:.4f}, coteaching {runs[3]['val_acc'][-1]:.4f})" in proc.stdout
    assert load(tmp_path / "guarded" / "model.pt").law_hpc_info["note"].startswith(f"guard: {name} ")


@pytest.mark.slow
def test_the_guard_ensemble_averages_candidates_while_validation_rises(tmp_path):
    """methods.law.guard_ensemble: the evaluated model starts from the best candidate on validation and adds
    whichever raises the validation accuracy of the mean; on this run two networks, above every one alone, and
    model.pt holds both and scores the logged accuracies."""
    import re
    overrides = ON_SMOKE_SCHEDULE + ["optim.epochs=1", "train.allow_schedule_mismatch=true",
                                     "methods.law.uniform_guard=true", "methods.law.guard_peers=[elr,focal]",
                                     "methods.law.guard_ensemble=6"]
    proc = train(tmp_path, "--policy", constant_val_rank_policy(tmp_path / "policy.h5"), overrides=overrides)
    guard = re.search(r"guard: (.+?) \(validation ensemble ([0-9.]+); (.+?)\)", proc.stdout)
    assert guard and " + " in guard[1], proc.stdout[-1500:]
    alone = [float(item.rsplit(" ", 1)[1]) for item in guard[3].split(", ")]
    assert len(alone) == 4 and float(guard[2]) > max(alone) and epochs(tmp_path)["val_acc"][-1] == float(guard[2])
    assert_model_file_scores_as_logged(tmp_path, overrides)
    # 2 ranks: each holds a shard of the validation split; the greedy rounds' accuracies are of the whole split
    train(tmp_path / "two_ranks", "--policy", tmp_path / "policy.h5", ranks=2, overrides=overrides)
    assert_model_file_scores_as_logged(tmp_path / "two_ranks", overrides)


@pytest.mark.slow
def test_a_law_training_stopped_mid_epoch_resumes_as_if_uninterrupted(tmp_path):
    """The weighter's stage state (l_smooth, acc_smooth, the stage's loss sums, the validation losses of a val_rank
    policy), the uniform guard's twin and a guard peer (ELR, with its targets) come back from a mid-epoch
    checkpoint."""
    policy = constant_val_rank_policy(tmp_path / "policy.h5")
    # epochs of 16 iterations, stages of 8: the pause puts the stop at iteration 3 of epoch 2, inside stage 3
    guarded = ON_SMOKE_SCHEDULE + ["stop_check_iterations=1", "methods.law.uniform_guard=true",
                                   "methods.law.guard_peers=[elr]"]  # ELR's targets: per-sample state
    full = tmp_path / "full"
    train(full, "--policy", policy, overrides=guarded)
    stopped = tmp_path / "stopped"
    code, output = stop_in_second_epoch(stopped, "--policy", policy, iterations_per_epoch=16, overrides=guarded)
    assert code == 75 and "checkpoint written in epoch 2 at iteration 3/16" in output, \
        output[-2000:]  # mid-stage: the stage under way ranks against validation losses measured before it
    assert len(epochs(stopped)["epoch"]) == 1
    train(stopped, "--policy", policy, overrides=guarded)
    expected, got = epochs(full), epochs(stopped)
    for name in ("epoch", "lr", "train_loss", "test_acc", "val_acc", "weight_mean", "weight_std"):
        assert np.array_equal(expected[name], got[name]), name


@pytest.mark.slow
def test_a_val_rank_policy_data_parallel_ranks_against_the_whole_validation_set(tmp_path):
    """Each rank evaluates its shard of the validation set; the losses a val_rank policy ranks against are gathered
    whole: the checkpoint's equal those of the whole set evaluated in one process (the last stage ends with the
    training, so the checkpointed model is the one they were measured on). The ranks pool their stage losses at
    every stage end and before every checkpoint, so they hold one LAW state (l_smooth, actions, the partial sums of
    a stage under way; the uniform guard's twin) and no rank-disagreement warning is printed."""
    import shutil

    import torch

    from law_hpc.config import load_config
    from law_hpc.dist import Dist
    from law_hpc.engine.evaluation import per_sample_losses
    from law_hpc.train import Training
    run_dir = tmp_path / "run"
    # 8 epochs of the policy's 4 stages: every other epoch ends inside a stage, with the stage's losses half summed
    proc = train(run_dir, "--policy", constant_val_rank_policy(tmp_path / "policy.h5"), ranks=2,
                 overrides=ON_SMOKE_SCHEDULE + ["optim.epochs=8", "train.allow_schedule_mismatch=true",
                                                "methods.law.uniform_guard=true"])  # its twin: one state too
    assert "WARNING" not in proc.stdout + proc.stderr, proc.stdout[-2000:]
    assert np.any(epochs(run_dir)["weight_std"] > 0.1)  # the policy weighted
    shutil.copytree(run_dir, tmp_path / "evaluated")
    training = Training(load_config(tmp_path / "evaluated" / "config.yaml"),
                        Dist(0, 1, 0, 1, torch.device("cpu"), "none"), tmp_path / "evaluated", resumed=True)
    try:
        rule = training.method.weighter.rule
        whole = per_sample_losses(training.method.model, training.data.val, training.method.base_loss)
        assert len(rule.validation_losses) == len(whole) == load_config(SMOKE).data.val_size
        torch.testing.assert_close(rule.validation_losses, whole.sort().values)
    finally:
        training.close()


def recipe_config(*argv):
    """The config law_hpc.train would run for these arguments, and the keys its policy's recipe changed."""
    from law_hpc.launch import load_config_or_report
    from law_hpc.train import parse_args, with_method_of
    adopted: list[str] = []
    args = parse_args(list(argv))
    return load_config_or_report(args, with_method_of(args, adopted)), adopted


def test_a_shipped_policy_on_the_own_data_config_adopts_its_recipe_and_explicit_keys_win():
    cfg, adopted = recipe_config("--config", str(REPO / "configs" / "folder.yaml"), "--policy", "fmnist_noisy_mlp_gce")
    assert (cfg.optim.epochs, list(cfg.optim.lr_decay_stages), cfg.search.warmup_stages) == (20, [10], 1)
    assert (cfg.train.base_loss, cfg.data.augment) == ("gce", "none")
    assert "optim.epochs=20 (was 30)" in adopted and "train.base_loss=gce (was ce)" in adopted
    cfg, adopted = recipe_config("--config", str(REPO / "configs" / "folder.yaml"), "--policy", "fmnist_noisy_mlp_gce",
                                 "--set", "optim.epochs=30", "--set", "train.allow_schedule_mismatch=true")
    assert cfg.optim.epochs == 30 and cfg.train.base_loss == "gce" and not any("epochs" in a for a in adopted)


def test_the_default_preset_is_the_shipped_policy_with_its_guard_and_explicit_keys_win():
    from law_hpc.io.policy_file import load_policy
    cfg, adopted = recipe_config("--config", str(REPO / "configs" / "folder.yaml"), "--policy", "default")
    assert cfg.train.base_loss == "gce" and "train.base_loss=gce (was ce)" in adopted  # the policy's recipe
    law, elr, gce = cfg.methods["law"], cfg.methods["elr"], cfg.methods["gce"]
    coteaching = cfg.methods["coteaching"]
    assert (law["uniform_guard"], list(law["guard_peers"])) == (True, ["elr", "logit_adjusted", "coteaching"])
    assert (elr["tau"], gce["tau"], coteaching["estimate_forget_rate"], coteaching["loss"]) == (1.0, 1.0, True, "gce")
    assert "methods.law.guard_peers=[elr, logit_adjusted, coteaching] (was [])" in adopted
    assert "methods.elr.tau=1.0 (was 0.0)" in adopted and "methods.gce.tau=1.0 (was 0.0)" in adopted
    assert "methods.coteaching.loss=gce (was ce)" in adopted
    assert "methods.law.uniform_guard=true (was false)" in adopted
    assert law["guard_ensemble"] == 6 and "methods.law.guard_ensemble=6 (was 1)" in adopted
    assert cfg.train.calibrate and "train.calibrate=true (was false)" in adopted
    assert load_policy("default").path == load_policy("fmnist_noisy_mlp_gce").path
    cfg, adopted = recipe_config("--config", str(REPO / "configs" / "folder.yaml"), "--policy", "default",
                                 "--set", "methods.law.guard_peers=[gce]")
    assert list(cfg.methods["law"]["guard_peers"]) == ["gce"] and not any("guard_peers" in a for a in adopted)


def test_an_explicit_setting_against_the_recipe_is_one_line(capsys):
    cfg, _ = recipe_config("--config", str(REPO / "configs" / "folder.yaml"), "--policy", "fmnist_noisy_mlp_gce",
                           "--set", "train.base_loss=ce")
    errors = capsys.readouterr().err.strip().splitlines()
    assert cfg is None and len(errors) == 1
    assert "--set train.base_loss=ce conflicts with policy fmnist_noisy_mlp_gce" in errors[0] and "=gce" in errors[0]
