"""Launcher sanity on real processes: a launcher/Horovod mismatch, GPUs without CUDA, threads per rank, the
GPU a rank takes, --print-config and --help. Bad input: one line, exit 2, no run directory."""
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

from law_hpc.config_help import describe_keys
from law_hpc.dist import LaunchError, check_launcher, choose_device, threads_for
from search_helpers import HOROVODRUN, REPO, SMOKE, assert_one_line_error

LAUNCHER_VARIABLES = ("SLURM_NTASKS", "SLURM_STEP_NUM_TASKS", "SLURM_PROCID", "SLURM_CPUS_PER_TASK", "WORLD_SIZE",
                      "RANK", "OMP_NUM_THREADS", "PMIX_SIZE", "SLURM_GPUS_ON_NODE", "SLURM_JOB_GPUS", "SLURM_STEP_GPUS")
PROBE = ("import json, torch; from law_hpc import dist as d; x = d.init(); "
         "print(json.dumps({'rank': x.rank, 'size': x.size, 'threads': torch.get_num_threads()})); x.shutdown()")


def clean_env(**extra) -> dict:
    """This environment without any launcher variable of the machine running the tests, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if k not in LAUNCHER_VARIABLES}
    return {**env, **{k: str(v) for k, v in extra.items()}}


def run_module(module, *args, env, cwd, timeout=300):
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=timeout)


# --- a launcher that did not wire the tasks up ------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("variables", [{"SLURM_NTASKS": 4, "WORLD_SIZE": 4, "RANK": 2},  # the case
                                       {"SLURM_NTASKS": 4}, {"WORLD_SIZE": 2, "RANK": 1}, {"PMIX_SIZE": 3}])
@pytest.mark.parametrize("module", ["law_hpc.search", "law_hpc.train"])
def test_a_launcher_mismatch_stops_with_one_line_and_writes_nothing(tmp_path, variables, module):
    proc = run_module(module, "--config", SMOKE, "--run-dir", tmp_path / "run", env=clean_env(**variables), cwd=tmp_path)
    assert_one_line_error(proc, "Horovod sees 1 rank", "srun --mpi=pmix", "horovodrun")
    assert list(tmp_path.iterdir()) == []  # neither --run-dir nor runs/


@pytest.mark.slow
def test_horovodrun_inside_a_larger_slurm_allocation_is_fine(tmp_path):
    """horovodrun's own count wins: 2 ranks started in a 4-task allocation is not a mismatch."""
    proc = subprocess.run([HOROVODRUN, "-np", "2", "-H", "localhost:2", "--gloo", sys.executable, "-c", PROBE],
                          capture_output=True, text=True, env=clean_env(SLURM_NTASKS=4), timeout=180)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    sizes = [json.loads(line.split("]<stdout>:")[-1])["size"] for line in proc.stdout.splitlines() if "{" in line]
    assert sizes == [2, 2]


@pytest.mark.parametrize("env, size, ok", [
    ({"SLURM_NTASKS": "4"}, 4, True), ({"SLURM_NTASKS": "4"}, 1, False), ({"SLURM_NTASKS": "1"}, 1, True),
    ({"SLURM_NTASKS": "4", "SLURM_STEP_NUM_TASKS": "2"}, 2, True),  # srun -n 2 in a 4-task allocation
    ({"SLURM_NTASKS": "4", "HOROVOD_SIZE": "2"}, 2, True), ({"SLURM_NTASKS": "4", "OMPI_COMM_WORLD_SIZE": "2"}, 2, True),
    ({"OMPI_COMM_WORLD_SIZE": "2"}, 1, False), ({"WORLD_SIZE": "8"}, 1, False), ({"WORLD_SIZE": "x"}, 1, True)])
def test_which_launcher_variable_counts(env, size, ok):
    if ok:
        check_launcher(size, env)
    else:
        with pytest.raises(LaunchError, match="srun --mpi=pmix"):
            check_launcher(size, env)


# --- GPUs -----------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("local_rank, count, expected", [(0, 1, 0), (3, 1, 0), (1, 2, 1), (5, 4, 1), (7, 8, 7)])
def test_a_rank_takes_gpu_local_rank_modulo_the_devices_it_sees(local_rank, count, expected):
    # one GPU bound per task (--gpus-per-task=1, --gpu-bind): every task sees cuda:0
    assert choose_device(local_rank, True, count) == torch.device("cuda", expected)


def test_gpus_without_cuda_is_an_error_unless_cpu_is_allowed():
    assert choose_device(0, False, 0) == torch.device("cpu")
    for given in ({"gpus": "SLURM_JOB_GPUS=0"}, {"driver": "NVRM version: NVIDIA UNIX x86_64 Kernel Module 470.1"}):
        with pytest.raises(LaunchError, match="allow_cpu=true"):
            choose_device(0, False, 0, **given)
        assert choose_device(0, False, 0, allow_cpu=True, **given) == torch.device("cpu")


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_slurm_gpus_without_cuda_stop_the_job_and_allow_cpu_runs_it(tmp_path):
    env = clean_env(SLURM_GPUS_ON_NODE=1, SLURM_JOB_GPUS=0)
    small = ["--config", SMOKE, "--method", "uniform", "--set", "optim.epochs=1", "--set", "data.train_size=256",
             "--set", "data.test_size=100", "--set", "threads_per_rank=1"]
    proc = run_module("law_hpc.train", "--run-dir", tmp_path / "refused", *small, env=env, cwd=tmp_path)
    assert_one_line_error(proc, "SLURM_JOB_GPUS=0", "CUDA is unavailable", "allow_cpu=true")
    assert list(tmp_path.iterdir()) == []
    proc = run_module("law_hpc.train", "--run-dir", tmp_path / "cpu", *small, "--set", "allow_cpu=true", env=env,
                      cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "cpu" / "train.h5").is_file()


# --- threads per rank -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("setting, local_size, env, affinity, expected", [
    (3, 2, {"OMP_NUM_THREADS": "5"}, 8, 3),  # threads_per_rank first
    (0, 2, {"OMP_NUM_THREADS": "5", "SLURM_CPUS_PER_TASK": "7"}, 8, 5),
    (0, 2, {"SLURM_CPUS_PER_TASK": "7"}, 8, 7),
    (0, 2, {}, 8, 4), (0, 4, {}, 2, 1), (0, 1, {}, 1, 1), (0, 2, {"OMP_NUM_THREADS": ""}, 6, 3)])
def test_threads_per_rank_order(setting, local_size, env, affinity, expected):
    assert threads_for(setting, local_size, env, affinity) == expected


@pytest.mark.skipif(shutil.which("taskset") is None or (os.cpu_count() or 1) < 2, reason="needs taskset, 2 cores")
@pytest.mark.parametrize("prefix, env, expected", [(["taskset", "-c", "0"], {}, 1), ([], {"OMP_NUM_THREADS": 1}, 1),
                                                   ([], {"SLURM_CPUS_PER_TASK": 1}, 1), ([], {}, None)])
def test_threads_follow_the_cpu_affinity_and_the_environment(prefix, env, expected):
    proc = subprocess.run([*prefix, sys.executable, "-c", PROBE], capture_output=True, text=True,
                          env=clean_env(**env), timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    threads = json.loads(proc.stdout.strip().splitlines()[-1])["threads"]
    assert threads == (expected or len(os.sched_getaffinity(0)))


# --- --print-config and --help --------------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("module", ["law_hpc.search", "law_hpc.train"])
def test_print_config_prints_the_resolved_yaml_and_writes_nothing(tmp_path, module):
    proc = run_module(module, "--config", "smoke", "--set", "search.episodes=7", "--print-config",
                      "--run-dir", tmp_path / "run", env=clean_env(), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    from law_hpc.config import to_yaml
    from law_hpc.registry import load_checked_config
    assert proc.stdout == to_yaml(load_checked_config(SMOKE, ["search.episodes=7"]))
    bad = run_module(module, "--set", "search.episodez=3", "--print-config", "--run-dir", tmp_path / "run",
                     env=clean_env(), cwd=tmp_path)
    assert_one_line_error(bad, "search.episodez")
    assert bad.stdout == "" and list(tmp_path.iterdir()) == []


@pytest.mark.slow
@pytest.mark.parametrize("module", ["law_hpc.search", "law_hpc.train"])
def test_help_lists_every_config_key_with_default_and_docstring(module):
    proc = run_module(module, "--help", env=clean_env(), cwd=REPO)
    assert proc.returncode == 0
    text = " ".join(proc.stdout.split())
    for key, default, doc in describe_keys():
        assert doc, f"config key {key} has no docstring"
        assert f"{key} = {default}" in text and " ".join(doc.split()) in text, key


# --- a stop request as a finished job exits --------------------------------------------------------------------
@pytest.mark.slow
def test_a_stop_request_while_a_done_job_exits_leaves_its_exit_code_alone(tmp_path):
    """The time limit's USR1 may reach ranks that are done and exiting; Python, finalizing, restores the default
    action of the signals it handled, so such a rank died with -10 (and srun then failed the finished job)."""
    import signal
    import time
    cmd = [sys.executable, "-m", "law_hpc.search", "--config", str(SMOKE), "--run-dir", str(tmp_path / "run"),
           "--set", "search.episodes=1", "--set", "search.stages=1", "--set", "search.warmup_stages=0",
           "--set", "optim.epochs=1", "--set", "optim.lr_decay_stages=[1]"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO,
                            env=clean_env())
    for line in proc.stdout:
        if "episode 1 done" in line:  # from here on the job only closes its files and exits
            break
    sent = 0
    while proc.poll() is None:
        proc.send_signal(signal.SIGUSR1)
        sent += 1
        time.sleep(0.02)
    rest = proc.stdout.read()
    assert sent > 0 and proc.returncode == 0, (sent, proc.returncode, rest[-2000:])
