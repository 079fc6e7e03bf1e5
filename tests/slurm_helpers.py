"""Real Slurm clusters on this machine (tools/slurm_local.sh) for the tests: start one, submit the shipped
batch scripts, follow jobs, find their ranks' processes."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from search_helpers import REPO, SMOKE, metrics_rows

JOB_TIMEOUT = 300
ENDED = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED", "BOOT_FAIL",
         "DEADLINE")
# a job still alive; SIGNALING is the transient state while Slurm delivers --signal before the time limit
LIVE = ("PENDING", "CONFIGURING", "RUNNING", "SIGNALING")


def start_cluster(*options: str) -> dict:
    """The environment for jobs on a local cluster (`slurm_local.sh start *options`); skips the module where
    it cannot start (no root, no apt)."""
    try:
        proc = subprocess.run(["bash", str(REPO / "tools" / "slurm_local.sh"), "start", *options],
                              capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as err:
        pytest.skip(f"cannot start a local Slurm cluster: {err}")
    if proc.returncode != 0:
        pytest.skip(f"cannot start a local Slurm cluster: {proc.stderr.strip()[-500:]}")
    conf = proc.stdout.strip().rsplit("=", 1)[-1]
    # the jobs run this checkout's code in the environment running the tests, unless told otherwise
    return {**os.environ, "SLURM_CONF": conf, "LAW_CONFIG": str(SMOKE), "LAW_HPC_ROOT": str(REPO),
            "LAW_VENV": os.environ.get("LAW_VENV", sys.prefix)}


def sbatch(env, script: str, run_dir: Path, *args, options=()) -> str:
    """Submit a shipped script from the repository root (`options`: for sbatch, `args`: for law_hpc); the job
    id. Its output goes to <run_dir>.out."""
    proc = subprocess.run(["sbatch", "--parsable", f"--output={run_dir}.out", *options, script, *args],
                          env={**env, "RUN_DIR": str(run_dir)}, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip().split(";")[0]


def job_field(env, job_id: str, key: str) -> str:
    out = subprocess.run(["scontrol", "show", "job", job_id], env=env, capture_output=True, text=True).stdout
    for token in out.split():
        if token.startswith(f"{key}="):
            return token.split("=", 1)[1]
    return ""


def wait_for_end(env, job_id: str, timeout: float = JOB_TIMEOUT) -> str:
    """The job's final state; scancel and fail after `timeout` seconds."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        state = job_field(env, job_id, "JobState")
        if state in ENDED:
            return state
        time.sleep(0.5)
    subprocess.run(["scancel", job_id], env=env)
    raise AssertionError(f"job {job_id} did not end within {timeout} s")


def wait_for_rows(env, job_id: str, run_dir: Path, rows: int, timeout: float = JOB_TIMEOUT) -> None:
    """Wait until the run's metrics.h5 holds `rows` stage rows; fail if the job ends first or after `timeout`."""
    deadline = time.time() + timeout
    while metrics_rows(run_dir / "metrics.h5") < rows:
        assert time.time() < deadline and job_field(env, job_id, "JobState") in LIVE
        time.sleep(0.05)


def wait_while_running(env, job_id: str, timeout: float = JOB_TIMEOUT) -> str:
    """The job's state once it is neither running nor completing (pending again after a requeue, or ended)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        state = job_field(env, job_id, "JobState")
        if state not in ("RUNNING", "SIGNALING", "COMPLETING", "CONFIGURING", "REQUEUED", ""):
            return state
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} still running after {timeout} s")


def rank_processes(job_id: str, module: str = "law_hpc.", node: str | None = None, count: int = 0,
                   timeout: float = 120) -> list:
    """psutil processes of the job's ranks (python -m law_hpc.<...> under slurmstepd), by SLURM_PROCID; with
    `count`, wait until that many are up."""
    import psutil
    deadline = time.time() + timeout
    while True:
        found = {}
        for proc in psutil.process_iter(["cmdline"]):
            try:
                cmdline = proc.info["cmdline"] or []
                if len(cmdline) < 3 or cmdline[1] != "-m" or not cmdline[2].startswith(module):
                    continue
                env = proc.environ()
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            if env.get("SLURM_JOB_ID") == job_id and (node is None or env.get("SLURMD_NODENAME") == node):
                found[int(env.get("SLURM_PROCID", -1))] = proc
        if len(found) >= count or time.time() > deadline:
            return [found[rank] for rank in sorted(found)]
        time.sleep(0.1)
