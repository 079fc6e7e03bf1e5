"""slurm/search_fmnist.sh on a real one-node Slurm cluster: sbatch, preemption, requeue, exact resume.

The cluster is started by tools/slurm_local.sh (root and apt needed). Where it cannot start, the tests
are skipped with the reason, which `pytest -ra` prints.
"""
import os
import re
import subprocess
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from law_hpc.io.metrics import read_stages
from search_helpers import REPO, SMOKE, assert_same_results, metrics_rows

JOB_TIMEOUT = 300


@pytest.fixture(scope="module")
def slurm_env():
    try:
        proc = subprocess.run(["bash", str(REPO / "tools" / "slurm_local.sh"), "start"], capture_output=True,
                              text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as err:
        pytest.skip(f"cannot start a local Slurm cluster: {err}")
    if proc.returncode != 0:
        pytest.skip(f"cannot start a local Slurm cluster: {proc.stderr.strip()[-500:]}")
    conf = proc.stdout.strip().rsplit("=", 1)[-1]
    return {**os.environ, "SLURM_CONF": conf, "LAW_CONFIG": str(SMOKE)}


def submit(env, run_dir: Path, *extra, sbatch=()) -> str:
    """sbatch the shipped script from the repository root (`sbatch`: options for sbatch, `extra`: for the
    search); CPU node: no GPUs requested."""
    proc = subprocess.run(["sbatch", "--parsable", "--gpus-per-node=0", f"--output={run_dir}.out", *sbatch,
                           "slurm/search_fmnist.sh", *extra], env={**env, "RUN_DIR": str(run_dir)}, cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip().split(";")[0]


def job_field(env, job_id: str, key: str) -> str:
    out = subprocess.run(["scontrol", "show", "job", job_id], env=env, capture_output=True, text=True).stdout
    for token in out.split():
        if token.startswith(f"{key}="):
            return token.split("=", 1)[1]
    return ""


def wait_for_end(env, job_id: str, timeout: float = JOB_TIMEOUT) -> str:
    deadline = time.time() + timeout
    while time.time() < deadline:
        state = job_field(env, job_id, "JobState")
        if state in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"):
            return state
        time.sleep(1)
    subprocess.run(["scancel", job_id], env=env)
    raise AssertionError(f"job {job_id} did not end within {timeout} s")


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
    deadline = time.time() + JOB_TIMEOUT
    while metrics_rows(run_dir / "metrics.h5") < 4:  # mid-run: episode 1, stage 2 written by both ranks
        assert time.time() < deadline and job_field(slurm_env, job_id, "JobState") in ("PENDING", "RUNNING")
        time.sleep(0.2)
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


# The time limit itself: 1 minute, SIGUSR1 to the batch shell "10 s" before it. slurmctld checks time limits
# every 30 s and sends the signal early (here, 22.05: once now + lead + 30 s reaches the end), so it comes
# 20-50 s after the start (after the ranks' start-up), and the kill at the limit 30-60 s later. A
# 2-stage episode of a few minutes of training even on an idle machine (120 epochs took 15-30 s: too short,
# the job could end before the signal), the stop polled every second (stop_check_seconds=1): each run of the
# job trains until the signal, checkpoints mid-stage, exits 75 and is requeued, until it is done.
TIME_LIMIT = ["--time=1", "--signal=B:USR1@10"]
LONGER_THAN_THE_LIMIT = ["search.episodes=1", "search.stages=2", "search.warmup_stages=1", "optim.epochs=600",
              "optim.lr_decay_stages=[2]", "stop_check_seconds=1"]


def test_job_at_its_time_limit_checkpoints_mid_stage_requeues_resumes_and_finishes(slurm_env, tmp_path):
    run_dir = tmp_path / "time-limited"
    started = time.time()
    job_id = submit(slurm_env, run_dir, *[arg for key in LONGER_THAN_THE_LIMIT for arg in ("--set", key)], sbatch=TIME_LIMIT)
    state = wait_for_end(slurm_env, job_id, timeout=1200)
    seconds = time.time() - started
    log = Path(f"{run_dir}.out").read_text()
    restarts = int(job_field(slurm_env, job_id, "Restarts"))
    assert state == "COMPLETED" and restarts >= 1, log[-3000:]
    assert "DUE TO TIME LIMIT" not in log, log[-3000:]  # every run stopped before the limit
    assert log.count("got SIGUSR1") == log.count("exiting with 75") == log.count("requeueing job") == restarts
    stops = re.findall(r"agreed (\d+) iteration\(s\), ([\d.]+) s after the request: checkpoint written in episode 1 "
                       r"stage (\d) at iteration (\d+)/(\d+)", log)
    assert stops, log[-3000:]  # at least one stop fell inside a stage, as the time limit does not wait for its end
    resumes = re.findall(r"\[law\] resumed \S+ (after|in) episode 1 stage (\d)", log)
    assert len(resumes) == restarts, log[-3000:]
    rows = read_stages(run_dir / "metrics.h5")
    assert sorted(zip(rows["stage"], rows["rank"])) == [(0, 0), (0, 1), (1, 0), (1, 1)]  # complete, no duplicates
    assert np.isfinite(rows["acc_target"]).all()
    with h5py.File(run_dir / "metrics.h5", "r") as f:
        assert f.attrs["status"] == b"done" and len(f["events/kind"]) == restarts
    worst = max(stops, key=lambda stop: float(stop[1]))
    whole = [f"{length:.0f} s" for length in rows["stage_seconds"][rows["stage"] == 0]][:1] if all(
        stop[2] == "2" for stop in stops) else []  # the first stage's length, when no stop cut it
    print(f"[reliability] Slurm --time=1 --signal=B:USR1@10, stop_check_seconds=1, stages of {stops[0][4]} "
          f"iterations{' (' + whole[0] + ')' if whole else ''}: {restarts} time-limit stop(s), {len(stops)} mid-stage; slowest agreement {worst[0]} "
          f"iteration(s), {float(worst[1]):.2f} s after the signal; requeued, resumed and COMPLETED in {seconds:.0f} s")
