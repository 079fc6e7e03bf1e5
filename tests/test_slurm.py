"""slurm/search_fmnist.sh on a real one-node Slurm cluster: sbatch, CPU and GPU binding, preemption, requeue,
exact resume, scancel, the requeue cap.

The cluster is started by tools/slurm_local.sh (root and apt needed), with 2 cores and 2 stand-in GPUs. Where it
cannot start, the tests are skipped with the reason, which `pytest -ra` prints.
"""
import re
import subprocess
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from law_hpc.io.checkpoint import checkpoint_dir, complete_positions
from law_hpc.io.metrics import read_stages
from search_helpers import REPO, assert_same_results, metrics_rows
from slurm_helpers import (JOB_TIMEOUT, LIVE, job_field, rank_processes, sbatch, start_cluster, wait_for_end,
                           wait_for_rows, wait_while_running)

pytestmark = pytest.mark.slow  # a real Slurm cluster, real jobs


@pytest.fixture(scope="module")
def slurm_env():
    return start_cluster("--gpus", "2")


def submit(env, run_dir: Path, *extra, sbatch_options=()) -> str:
    """sbatch the shipped script from the repository root (`sbatch_options`: for sbatch, `extra`: for the
    search); CPU node: no GPUs requested."""
    return sbatch(env, "slurm/search_fmnist.sh", run_dir, *extra, options=["--gpus-per-node=0", *sbatch_options])


@pytest.fixture(scope="module")
def uninterrupted(slurm_env, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("slurm") / "uninterrupted"
    job_id = submit(slurm_env, run_dir)
    state = wait_for_end(slurm_env, job_id)
    assert state == "COMPLETED", Path(f"{run_dir}.out").read_text()[-3000:]
    return run_dir


def test_sbatch_runs_the_search_with_one_rank_per_task(uninterrupted):
    log = Path(f"{uninterrupted}.out").read_text()
    assert "2 searcher(s)" in log and "(mpi)" in log  # srun --mpi=pmix gave Horovod both ranks
    assert metrics_rows(uninterrupted / "metrics.h5") == 2 * 2 * 4


def test_preempted_job_requeues_resumes_and_equals_uninterrupted(slurm_env, uninterrupted, tmp_path):
    run_dir = tmp_path / "preempted"
    job_id = submit(slurm_env, run_dir)
    wait_for_rows(slurm_env, job_id, run_dir, 4)  # mid-run: episode 1, stage 2 written by both ranks
    # what --signal=B:USR1@secs does before the time limit, sent now
    subprocess.run(["scancel", "--signal=USR1", "--batch", job_id], env=slurm_env, check=True)
    state = wait_for_end(slurm_env, job_id)
    log = Path(f"{run_dir}.out").read_text()
    assert state == "COMPLETED", log[-3000:]
    assert job_field(slurm_env, job_id, "Restarts") == "1", log[-3000:]
    assert "exiting with 75" in log and "requeueing job" in log and "resumed" in log
    assert_same_results(uninterrupted, run_dir)  # complete, duplicate-free, bit-identical


def test_srun_without_pmix_stops_every_task_with_one_line_and_writes_nothing(slurm_env, tmp_path):
    """The launcher mismatch of a plain srun (no MPI wire-up): each task would be rank 0 of a world of one."""
    run_dir = tmp_path / "no-pmix"
    job_id = submit({**slurm_env, "LAW_SRUN_MPI": "none"}, run_dir)
    state = wait_for_end(slurm_env, job_id)
    log = Path(f"{run_dir}.out").read_text()
    errors = [line for line in log.splitlines() if line.startswith("error:")]
    # the first task out exits 2; srun --kill-on-bad-exit may terminate the other before it prints its line
    assert state == "FAILED" and re.search(r"tasks? [0-9,-]+: Exited with exit code 2", log), log
    assert 1 <= len(errors) <= 2 and all("but Horovod sees 1 rank" in e and "srun --mpi=pmix" in e for e in errors), log
    assert not run_dir.exists()


def bindings(job_id: str, ranks: int) -> list[tuple[list[int], str, str]]:
    """(cores, CUDA_VISIBLE_DEVICES, OMP_NUM_THREADS) of each rank of a running job, read from its process."""
    found = []
    for proc in rank_processes(job_id, count=ranks):
        env = proc.environ()
        found.append((sorted(proc.cpu_affinity()), env.get("CUDA_VISIBLE_DEVICES", ""), env.get("OMP_NUM_THREADS", "")))
    return found


def test_each_rank_is_bound_to_the_cores_it_was_given_and_to_one_gpu(slurm_env, tmp_path):
    """srun gets --cpus-per-task (since Slurm 22.05 it does not inherit sbatch's) and --gpus-per-task=1. The
    cluster binds tasks to cores by default, as sites do; without srun --cpus-per-task a rank of 2 cores was
    bound to one while OMP_NUM_THREADS said 2, and each rank saw both GPUs."""
    cpu = ["--set", "allow_cpu=true"]  # the GPUs are stand-ins: law_hpc runs on the CPU
    jobs = [sbatch(slurm_env, "slurm/search_fmnist.sh", tmp_path / "two-ranks", *cpu),  # as shipped: 1 core, 1 GPU each
            sbatch(slurm_env, "slurm/search_fmnist.sh", tmp_path / "one-rank", *cpu,
                   options=["--ntasks-per-node=1", "--cpus-per-task=2", "--gpus-per-node=1"])]
    try:
        two, one = bindings(jobs[0], 2), None
        subprocess.run(["scancel", jobs[0]], env=slurm_env)  # seen: no need to let them finish
        one = bindings(jobs[1], 1)
    finally:
        subprocess.run(["scancel", *jobs], env=slurm_env)
        for job_id in jobs:
            wait_for_end(slurm_env, job_id)
    assert len(two) == 2 and all(len(cores) == 1 and omp == "1" for cores, _, omp in two), two
    assert two[0][0] != two[1][0], two  # each its own core
    assert sorted(gpus for _, gpus, _ in two) == ["0", "1"], two  # each its own GPU, only that one
    assert one == [([0, 1], "0", "2")], one  # both cores, the threads to match, one GPU
    print(f"[slurm] binding: 2 ranks x 1 core x 1 GPU: cores {[c for c, _, _ in two]}, CUDA_VISIBLE_DEVICES "
          f"{[g for _, g, _ in two]}; 1 rank x 2 cores: cores {one[0][0]}, OMP_NUM_THREADS {one[0][2]}")


def test_scancel_ends_the_job_without_a_requeue_and_keeps_its_checkpoint(slurm_env, tmp_path):
    """A user's scancel is SIGTERM to every step and the batch shell: the ranks checkpoint and stop, and the job
    stays cancelled (before, the batch shell requeued it: CANCELLED, then PENDING, then running again)."""
    run_dir = tmp_path / "cancelled"
    job_id = submit(slurm_env, run_dir)
    wait_for_rows(slurm_env, job_id, run_dir, 4)
    cancelled = time.time()
    subprocess.run(["scancel", job_id], env=slurm_env, check=True)
    state = wait_while_running(slurm_env, job_id)
    seconds = time.time() - cancelled
    log = Path(f"{run_dir}.out").read_text()
    assert state == "CANCELLED" and job_field(slurm_env, job_id, "Restarts") == "0", log[-3000:]
    assert "stopped by SIGTERM (scancel)" in log and "requeueing" not in log, log[-3000:]
    positions = [complete_positions(checkpoint_dir(run_dir, rank)) for rank in (0, 1)]
    common = sorted(set(positions[0]) & set(positions[1]))
    assert common and common[-1][:2] >= (0, 1), positions  # at least stage 2 of episode 1, held by both ranks
    with h5py.File(run_dir / "metrics.h5", "r") as f:
        assert f.attrs["status"] == b"preempted"  # the ranks stopped cleanly, not killed at KillWait
    time.sleep(12)  # past AuthInfo=cred_expire=10: a requeued job would be pending or running again by now
    assert job_field(slurm_env, job_id, "JobState") == "CANCELLED" and job_field(slurm_env, job_id, "Restarts") == "0"
    print(f"[slurm] scancel: CANCELLED {seconds:.1f} s later, not requeued; checkpoint held by both ranks at "
          f"episode {common[-1][0] + 1} stage {common[-1][1] + 1} iteration {common[-1][2]}")


def test_a_job_requeued_as_often_as_law_max_requeues_allows_fails_saying_why(slurm_env, tmp_path):
    run_dir = tmp_path / "capped"
    job_id = submit({**slurm_env, "LAW_MAX_REQUEUES": "0"}, run_dir)
    wait_for_rows(slurm_env, job_id, run_dir, 4)
    subprocess.run(["scancel", "--signal=USR1", "--batch", job_id], env=slurm_env, check=True)
    state = wait_while_running(slurm_env, job_id)
    log = Path(f"{run_dir}.out").read_text()
    lines = [line for line in log.splitlines() if "LAW_MAX_REQUEUES" in line]
    assert state == "FAILED" and job_field(slurm_env, job_id, "Restarts") == "0", log[-3000:]
    assert len(lines) == 1 and "failed: checkpointed in" in lines[0] and "requeued 0 times already" in lines[0], log
    assert "requeueing job" not in log


# The time limit itself: 1 minute, SIGUSR1 to the batch shell "10 s" before it. slurmctld checks time limits
# every 30 s and sends the signal early (here, 22.05: once now + lead + 30 s reaches the end), so it comes
# 20-50 s after the start (after the ranks' start-up), and the kill at the limit 30-60 s later. A 2-stage episode
# of stages of 160 iterations, the stop polled every second (stop_check_seconds=1). The ranks pause at iteration
# PAUSE_STEP, mid stage 1, until the signal has come (the pause hook of law_hpc/engine/steps.py): the stop then
# falls inside a stage by construction, however loaded the machine (a stage end coinciding with the signal made
# the stop a stage-boundary one). Each run of the job trains until the signal, checkpoints, exits 75 and is
# requeued, until it is done. The pause makes the first run last until the signal whatever the episode's length, so
# the episode is short: what is left after the stop takes the requeued run a few seconds more than its start, and
# the signal may then come as it ends, after its work (that run exits 0 and is not requeued).
TIME_LIMIT = ["--time=1", "--signal=B:USR1@10"]
LONGER_THAN_THE_LIMIT = ["search.episodes=1", "search.stages=2", "search.warmup_stages=1", "optim.epochs=40",
                         "optim.lr_decay_stages=[2]", "stop_check_seconds=1"]
PAUSE_STEP = 80


def test_job_at_its_time_limit_checkpoints_mid_stage_requeues_resumes_and_finishes(slurm_env, tmp_path):
    run_dir, pause = tmp_path / "time-limited", tmp_path / "pause"
    pause.mkdir()
    started = time.time()
    job_id = submit({**slurm_env, "LAW_HPC_PAUSE_AT_STEP": str(PAUSE_STEP), "LAW_HPC_PAUSE_DIR": str(pause)}, run_dir,
                    *[arg for key in LONGER_THAN_THE_LIMIT for arg in ("--set", key)], sbatch_options=TIME_LIMIT)
    output = Path(f"{run_dir}.out")
    while not (output.exists() and "got SIGUSR1" in output.read_text()):
        assert time.time() - started < JOB_TIMEOUT and job_field(slurm_env, job_id, "JobState") in LIVE
        time.sleep(0.2)
    (pause / "go").touch()
    state = wait_for_end(slurm_env, job_id, timeout=1200)
    seconds = time.time() - started
    log = output.read_text()
    restarts = int(job_field(slurm_env, job_id, "Restarts"))
    assert state == "COMPLETED" and restarts >= 1, log[-3000:]
    assert "DUE TO TIME LIMIT" not in log, log[-3000:]  # every run stopped before the limit
    assert log.count("exiting with 75") == log.count("requeueing job") == restarts, log[-3000:]
    last_run = log[log.index(f"restart {restarts} on"):]
    signals = log.count("got SIGUSR1")  # one per requeue, and one more if it came as the last run ended
    assert signals == restarts or (signals == restarts + 1 and "episode 1 done" in last_run.split("got SIGUSR1")[0])
    stops = re.findall(r"agreed (\d+) iteration\(s\), ([\d.]+) s after the request: checkpoint written in episode 1 "
                       r"stage (\d) at iteration (\d+)/(\d+)", log)
    assert stops and stops[0][2] == "1" and 0 < int(stops[0][3]) < int(stops[0][4]), log[-3000:]  # inside stage 1
    resumes = re.findall(r"\[law\] resumed \S+ (after|in) episode 1 stage (\d)", log)
    assert len(resumes) == restarts, log[-3000:]
    rows = read_stages(run_dir / "metrics.h5")
    assert sorted(zip(rows["stage"], rows["rank"])) == [(0, 0), (0, 1), (1, 0), (1, 1)]  # complete, no duplicates
    assert np.isfinite(rows["acc_target"]).all()
    with h5py.File(run_dir / "metrics.h5", "r") as f:
        assert f.attrs["status"] == b"done" and len(f["events/kind"]) == restarts
    worst = max(stops, key=lambda stop: float(stop[1]))
    print(f"[reliability] Slurm --time=1 --signal=B:USR1@10, stop_check_seconds=1, stages of {stops[0][4]} "
          f"iterations: {restarts} time-limit stop(s), {len(stops)} mid-stage; slowest agreement {worst[0]} "
          f"iteration(s), {float(worst[1]):.2f} s after the signal; requeued, resumed and COMPLETED in {seconds:.0f} s")


def test_search_then_train_submits_both_and_a_model_comes_out(slurm_env, tmp_path):
    """slurm/search_then_train.sh: one command, two jobs; the training waits for the search (afterok) and
    trains with its policy."""
    env = {**slurm_env, "SEARCH_DIR": str(tmp_path / "search"), "MODEL_DIR": str(tmp_path / "model"),
           "LAW_SBATCH": f"--nodes=1 --gpus-per-node=0 --ntasks-per-node=2 --cpus-per-task=1 --mem-per-cpu=1G "
                         f"--output={tmp_path}/%j.out"}
    proc = subprocess.run(["bash", "slurm/search_then_train.sh", "configs/smoke.yaml", "--set", "data.train_size=1024",
                           "--set", "data.test_size=200"], env=env, cwd=REPO, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    search_job, train_job = re.findall(r"job (\d+)", proc.stdout)
    assert job_field(slurm_env, train_job, "Dependency").startswith(f"afterok:{search_job}")
    states = [wait_for_end(slurm_env, job) for job in (search_job, train_job)]
    logs = "".join(path.read_text() for path in sorted(tmp_path.glob("*.out")))
    assert states == ["COMPLETED", "COMPLETED"], logs[-3000:]
    assert (tmp_path / "model" / "model.pt").is_file() and (tmp_path / "model" / "model_best.pt").is_file()
    with h5py.File(tmp_path / "model" / "train.h5", "r") as f:
        assert f.attrs["method"] in ("law", b"law") and str(tmp_path / "search" / "policy.h5") in str(f.attrs["policy"])
