"""Multi-node jobs on a real two-node Slurm cluster on this host (tools/slurm_local.sh start --nodes 2: two
slurmd, n1 and n2, of one core each): one rank per node under srun --mpi=pmix, against the same search run by
horovodrun on one node; the time limit across nodes; the loss of a node mid-stage; the data-parallel test phase.

Every search here is one job of `LONG` (the smoke config, one episode of 2 stages of 64 iterations); the
uninterrupted 2-node run is the reference of the time-limited and the node-loss runs. The measured figures
(README "Reliability") are printed as `[multinode]` lines: pytest -rP.
"""
import re
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import h5py
import numpy as np
import pytest

from law_hpc.io.checkpoint import checkpoint_dir, complete_positions
from search_helpers import HOROVODRUN, REPO, SMOKE, TIMING_COLUMNS, assert_same_results, metrics_rows, run_search
from slurm_helpers import (job_field, rank_processes, sbatch, start_cluster, time_limit_checks, wait_for_end,
                           wait_while_running)

LONG = ["search.episodes=1", "search.stages=2", "search.warmup_stages=1", "optim.epochs=16",
        "optim.lr_decay_stages=[2]", "stop_check_seconds=1", "threads_per_rank=1"]
ITERATIONS_PER_STAGE = 64
TWO_NODES = ["--nodes=2", "--ntasks-per-node=1", "--gpus-per-node=0"]


def sets(assignments) -> list[str]:
    return [arg for assignment in assignments for arg in ("--set", assignment)]


@pytest.fixture(scope="module")
def cluster():
    env = start_cluster("--nodes", "2")
    yield env
    # leave nothing behind: a job of a failed test, a node set down, the daemons
    jobs = subprocess.run(["squeue", "-h", "-o", "%i"], env=env, capture_output=True, text=True).stdout.split()
    if jobs:
        subprocess.run(["scancel", *jobs], env=env)
        for job_id in jobs:
            wait_for_end(env, job_id, timeout=60)
    subprocess.run(["scontrol", "update", "nodename=n2", "state=resume"], env=env, capture_output=True)
    subprocess.run(["bash", str(REPO / "tools" / "slurm_local.sh"), "stop", str(Path(env["SLURM_CONF"]).parent)])


@pytest.fixture(scope="module")
def two_nodes(cluster, tmp_path_factory):
    """The LONG search as one job on n1 and n2, run through: (run directory, nodes of its ranks, seconds)."""
    run_dir = tmp_path_factory.mktemp("multinode") / "two-nodes"
    started = time.time()
    job_id = sbatch(cluster, "slurm/search_fmnist.sh", run_dir, *sets(LONG), options=TWO_NODES)
    nodes = sorted(proc.environ()["SLURMD_NODENAME"] for proc in rank_processes(job_id, count=2))
    state = wait_for_end(cluster, job_id)
    assert state == "COMPLETED", Path(f"{run_dir}.out").read_text()[-3000:]
    return run_dir, nodes, time.time() - started


def test_a_two_node_search_equals_a_two_rank_one_node_search(two_nodes, tmp_path):
    run_dir, nodes, seconds = two_nodes
    log = Path(f"{run_dir}.out").read_text()
    assert nodes == ["n1", "n2"] and "2 searcher(s) on cpu (mpi)" in log, (nodes, log[-3000:])
    started = time.time()
    proc = run_search(tmp_path / "one-node", ranks=2, overrides=LONG)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert_same_results(tmp_path / "one-node", run_dir)
    print(f"[multinode] search on 2 nodes (a rank on n1, a rank on n2, srun --mpi=pmix) in {seconds:.0f} s from "
          f"sbatch to its end; equal to the 2-rank horovodrun search on one node ({time.time() - started:.0f} s)")


def aim_at_a_time_limit_check(slurmctld_log: Path, earliest: float, latest: float) -> int:
    """Wait until slurmctld's next time-limit check is `earliest` to `latest` seconds away and return the --signal
    lead with which a 1-minute job submitted now gets its signal at that check. slurmctld signals at the first
    check (every 30 s) from which the job's end is at most lead + 30 s away; the smallest such lead leaves the
    resumed run, which starts later, likely done before a second signal."""
    deadline = time.time() + 120
    while time.time() < deadline:
        checks = time_limit_checks(slurmctld_log)
        if checks:
            ahead = (checks[-1] - time.time()) % 30
            if earliest <= ahead <= latest:
                return round(30 - ahead + 3)  # the threshold falls 3 s before that check: room for the start
            time.sleep(ahead - latest if ahead > latest else ahead + 30 - latest)
        else:
            time.sleep(1)
    raise AssertionError(f"slurmctld logged no time-limit check in {slurmctld_log} within 120 s")


def seconds_between(log: str, first: str, second: str) -> float:
    """Seconds between the timestamps of the first matches of two patterns (group 1: %Y-%m-%d %H:%M:%S)."""
    stamps = [datetime.strptime(re.search(pattern, log).group(1), "%Y-%m-%d %H:%M:%S")
              for pattern in (first, second)]
    return (stamps[1] - stamps[0]).total_seconds()


def test_a_two_node_search_at_its_time_limit_is_requeued_resumes_mid_stage_and_equals_uninterrupted(cluster, two_nodes,
                                                                                                      tmp_path):
    reference, _, took = two_nodes
    run_dir = tmp_path / "time-limited"
    # the signal must come while the job still trains: a third to a half of the uninterrupted job's time (that
    # is mostly the ranks' start-up here; a signal during it is kept, and the stop comes after one iteration)
    lead = aim_at_a_time_limit_check(Path(cluster["SLURM_CONF"]).parent / "log" / "slurmctld.log",
                                     max(5.0, took / 3), min(27.0, max(took / 3 + 6, took / 2)))
    started = time.time()
    job_id = sbatch(cluster, "slurm/search_fmnist.sh", run_dir, *sets(LONG),
                    options=[*TWO_NODES, "--time=1", f"--signal=B:USR1@{lead}"])
    state = wait_for_end(cluster, job_id)
    seconds = time.time() - started
    log = Path(f"{run_dir}.out").read_text()
    restarts = int(job_field(cluster, job_id, "Restarts"))
    assert state == "COMPLETED" and restarts >= 1, log[-3000:]
    assert "DUE TO TIME LIMIT" not in log, log[-3000:]  # every run stopped before the limit
    assert log.count("got SIGUSR1") == log.count("exiting with 75") == log.count("requeueing job") == restarts, log
    stops = re.findall(r"agreed (\d+) iteration\(s\), ([\d.]+) s after the request: checkpoint written in episode 1 "
                       r"stage (\d) at iteration (\d+)/(\d+)", log)
    resumes = re.findall(r"\[law\] resumed \S+ (after|in) episode 1 stage (\d)", log)
    assert stops and len(resumes) == restarts, log[-3000:]  # at least one stop inside a stage; each run resumed
    assert_same_results(reference, run_dir)
    with h5py.File(run_dir / "metrics.h5", "r") as f:
        assert f.attrs["status"] == b"done" and len(f["events/kind"]) == restarts
    worst = max(stops, key=lambda stop: float(stop[1]))
    first_run = log.split("restart 1 on")[0]
    came = seconds_between(first_run, r"law_hpc: (\S+ \S+) job", r"law_hpc: (\S+ \S+) got SIGUSR1")
    print(f"[multinode] 2-node search, Slurm --time=1 --signal=B:USR1@{lead}: the signal came {came:.0f} s after the "
          f"job started; {restarts} time-limit stop(s), at "
          f"{', '.join(f'stage {s} iteration {i}/{n}' for _, _, s, i, n in stops)}; slowest agreement {worst[0]} "
          f"iteration(s), {float(worst[1]):.2f} s after the signal; requeued, resumed there and COMPLETED "
          f"{seconds:.0f} s after sbatch; equal to the uninterrupted 2-node run")


def test_losing_a_node_mid_stage_ends_the_job_which_resumes_when_the_node_is_back(cluster, two_nodes, tmp_path):
    """n2 fails as Slurm sees a node failure: its rank is killed (kill -9) inside stage 2, then the node is set
    down. The job must end in a bounded time (not hang in a collective), be requeued (--requeue), wait for a
    second node, and resume from the last position both ranks hold: at most the stage in progress is lost."""
    reference, _, _ = two_nodes
    run_dir = tmp_path / "node-lost"
    job_id = sbatch(cluster, "slurm/search_fmnist.sh", run_dir, *sets(LONG), options=TWO_NODES)
    try:
        deadline = time.time() + 300
        while metrics_rows(run_dir / "metrics.h5") < 2:  # stage 1 logged by both ranks: stage 2 in progress
            assert time.time() < deadline and job_field(cluster, job_id, "JobState") in ("PENDING", "RUNNING")
            time.sleep(0.05)
        stage_started = time.time()
        time.sleep(1)
        victims = rank_processes(job_id, node="n2", count=1)
        rows = metrics_rows(run_dir / "metrics.h5")
        assert len(victims) == 1 and rows == 2, (victims, rows)
        failed = time.time()
        for proc in victims:
            proc.kill()
        subprocess.run(["scontrol", "update", "nodename=n2", "state=down", "reason=test"], env=cluster, check=True)
        state = wait_while_running(cluster, job_id, timeout=120)
        ended = time.time() - failed
        log = Path(f"{run_dir}.out").read_text()
        assert state == "PENDING" and job_field(cluster, job_id, "Restarts") == "1", (state, log[-3000:])
        held = [complete_positions(checkpoint_dir(run_dir, rank)) for rank in (0, 1)]
        common = max(set(held[0]) & set(held[1]))
        assert held[0][0] >= common == (0, 0, ITERATIONS_PER_STAGE), held  # the survivor's intact; stage 1 end
        # a requeued job may start again 10 s after the requeue (AuthInfo=cred_expire); past that it waits for n2
        eligible = datetime.strptime(job_field(cluster, job_id, "EligibleTime"), "%Y-%m-%dT%H:%M:%S").timestamp()
        time.sleep(max(0.0, eligible + 2 - time.time()))
        waiting = (job_field(cluster, job_id, "JobState"), job_field(cluster, job_id, "Reason"))
        assert waiting[0] == "PENDING" and waiting[1] != "BeginTime", waiting
        subprocess.run(["scontrol", "update", "nodename=n2", "state=resume"], env=cluster, check=True)
        back = time.time()
        while job_field(cluster, job_id, "JobState") == "PENDING" and time.time() < back + 120:
            time.sleep(0.2)
        restarted = time.time() - back
        state = wait_for_end(cluster, job_id)
    finally:
        subprocess.run(["scontrol", "update", "nodename=n2", "state=resume"], env=cluster, capture_output=True)
    log = Path(f"{run_dir}.out").read_text()
    assert state == "COMPLETED" and job_field(cluster, job_id, "Restarts") == "1", log[-3000:]
    assert re.search(r"\[law\] resumed \S+ after episode 1 stage 1;", log.split("restart 1 on")[-1]), log[-3000:]
    assert_same_results(reference, run_dir)
    print(f"[multinode] node loss: kill -9 of n2's rank {failed - stage_started:.1f} s into stage 2 "
          f"({ITERATIONS_PER_STAGE} iterations), then n2 set down: the job ended {ended:.1f} s after the kill "
          f"(Slurm: NODE_FAIL, requeued); it waited for a second node ({waiting[1]}), started {restarted:.1f} s after "
          f"n2 was resumed, resumed after episode 1 stage 1 (lost: the {failed - stage_started:.1f} s of stage 2 "
          "before the kill) and equals the uninterrupted run")


# The data-parallel test phase: one network trained by both ranks (gradients averaged), rank 0 writes train.h5.
TRAIN = ["--method", "uniform", "--set", "data.train_size=1024", "--set", "data.test_size=400", "--set",
         "threads_per_rank=1"]


def train_epochs(path: Path) -> dict:
    with h5py.File(path, "r") as f:
        return {name: f["epochs"][name][()] for name in f["epochs"]}


def test_the_data_parallel_test_phase_on_two_nodes_equals_two_ranks_on_one(cluster, tmp_path):
    two_nodes, one_node = tmp_path / "two-nodes", tmp_path / "one-node"
    started = time.time()
    job_id = sbatch(cluster, "slurm/train_cifar.sh", two_nodes, *TRAIN, options=[*TWO_NODES, "--cpus-per-task=1"])
    state = wait_for_end(cluster, job_id)
    seconds = time.time() - started
    log = Path(f"{two_nodes}.out").read_text()
    assert state == "COMPLETED", log[-3000:]
    started = time.time()
    proc = subprocess.run([HOROVODRUN, "-np", "2", "-H", "localhost:2", "--gloo", sys.executable, "-m", "law_hpc.train",
                           "--config", str(SMOKE), "--run-dir", str(one_node), *TRAIN],
                          capture_output=True, text=True, timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    expected, got = train_epochs(one_node / "train.h5"), train_epochs(two_nodes / "train.h5")
    assert set(expected) == set(got) and len(got["epoch"]) >= 2
    for name in set(expected) - TIMING_COLUMNS - {"seconds"}:
        assert np.array_equal(expected[name], got[name], equal_nan=True), name
    with h5py.File(two_nodes / "train.h5", "r") as f:
        assert f.attrs["world_size"] == 2 and f.attrs["controller"] in (b"mpi", "mpi")
    print(f"[multinode] test phase (uniform, 1024 images, {len(got['epoch'])} epochs) on 2 nodes in {seconds:.0f} s "
          f"from sbatch to its end: train.h5 equal to 2 ranks on one node (horovodrun, {time.time() - started:.0f} s)")
