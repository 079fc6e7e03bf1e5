"""Multi-node jobs on a real two-node Slurm cluster on this host (tools/slurm_local.sh start --nodes 2: two
slurmd, n1 and n2, of one core each): one rank per node under srun --mpi=pmix, against the same search run by
horovodrun on one node; a stop request across nodes; the loss of a node mid-stage, with the job waiting for it
or going on without it; the data-parallel test phase.

Every search here is one job of `LONG` (the smoke config, one episode of 2 stages of 128 iterations); the
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
from law_hpc.io.metrics import read_stages
from search_helpers import HOROVODRUN, REPO, SMOKE, TIMING_COLUMNS, assert_same_results, metrics_rows, run_search
from slurm_helpers import (job_field, rank_processes, sbatch, start_cluster, wait_for_end, wait_for_rows,
                           wait_while_running)

pytestmark = pytest.mark.slow  # a real Slurm cluster, real jobs

LONG = ["search.episodes=1", "search.stages=2", "search.warmup_stages=1", "optim.epochs=32",
        "optim.lr_decay_stages=[2]", "stop_check_seconds=1", "threads_per_rank=1"]
ITERATIONS_PER_STAGE = 128
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


def test_a_two_node_search_stopped_mid_stage_is_requeued_resumes_there_and_equals_uninterrupted(cluster, two_nodes,
                                                                                                   tmp_path):
    """What --signal=B:USR1@<lead> delivers before the time limit (or preemption), sent to the batch shell inside
    stage 2: both nodes' ranks agree, checkpoint mid-stage, the job is requeued and resumes there. (The time
    limit itself sending it: tests/test_slurm.py, on one node, the same scripts.)"""
    reference, _, _ = two_nodes
    run_dir = tmp_path / "stopped"
    started = time.time()
    job_id = sbatch(cluster, "slurm/search_fmnist.sh", run_dir, *sets(LONG), options=TWO_NODES)
    wait_for_rows(cluster, job_id, run_dir, 2)  # stage 1 logged by both ranks: stage 2 under way
    subprocess.run(["scancel", "--signal=USR1", "--batch", job_id], env=cluster, check=True)
    state = wait_for_end(cluster, job_id)
    seconds = time.time() - started
    log = Path(f"{run_dir}.out").read_text()
    assert state == "COMPLETED" and job_field(cluster, job_id, "Restarts") == "1", log[-3000:]
    stops = re.findall(r"agreed (\d+) iteration\(s\), ([\d.]+) s after the request: checkpoint written in episode 1 "
                       r"stage 2 at iteration (\d+)/(\d+)", log)
    assert len(stops) == 1 and re.search(r"\[law\] resumed \S+ in episode 1 stage 2 at iteration", log), log[-3000:]
    assert_same_results(reference, run_dir)
    with h5py.File(run_dir / "metrics.h5", "r") as f:
        assert f.attrs["status"] == b"done" and len(f["events/kind"]) == 1
    agreed, after, iteration, total = stops[0]
    print(f"[multinode] 2-node search, USR1 to the batch shell in stage 2: both ranks agreed {agreed} iteration(s), "
          f"{float(after):.2f} s after it, checkpointed at iteration {iteration}/{total}; requeued, resumed there and "
          f"COMPLETED {seconds:.0f} s after sbatch; equal to the uninterrupted 2-node run")


def lose_n2_in_stage_2(cluster, job_id: str, run_dir: Path) -> tuple[float, float]:
    """A node failure as Slurm sees one, a second into stage 2: n2's rank is killed (kill -9), then n2 is set
    down. Returns (when stage 2 began, when n2 failed)."""
    wait_for_rows(cluster, job_id, run_dir, 2)  # stage 1 logged by both ranks: stage 2 in progress
    stage_started = time.time()
    time.sleep(1)
    victims = rank_processes(job_id, node="n2", count=1)
    rows = metrics_rows(run_dir / "metrics.h5")
    assert len(victims) == 1 and rows == 2, (victims, rows)
    failed = time.time()
    for proc in victims:
        proc.kill()
    subprocess.run(["scontrol", "update", "nodename=n2", "state=down", "reason=test"], env=cluster, check=True)
    return stage_started, failed


def test_losing_a_node_mid_stage_ends_the_job_which_resumes_when_the_node_is_back(cluster, two_nodes, tmp_path):
    """n2 fails as Slurm sees a node failure: its rank is killed (kill -9) inside stage 2, then the node is set
    down. The job must end in a bounded time (not hang in a collective), be requeued (--requeue), wait for a
    second node, and resume from the last position both ranks hold: at most the stage in progress is lost."""
    reference, _, _ = two_nodes
    run_dir = tmp_path / "node-lost"
    job_id = sbatch(cluster, "slurm/search_fmnist.sh", run_dir, *sets(LONG), options=TWO_NODES)
    try:
        stage_started, failed = lose_n2_in_stage_2(cluster, job_id, run_dir)
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


def test_a_requeued_job_put_on_the_node_left_continues_with_one_searcher(cluster, tmp_path):
    """n2 fails in episode 1; rather than wait for it, the requeued job is put on fewer nodes (what a user does
    with `scontrol update jobid=<id> NumNodes=1-1 NumTasks=1 NumCPUs=1`) and starts on n1 alone. The search continues
    there with one searcher (search.allow_resize): the strategy model and both replay buffers from the last
    position both ranks held, a fresh pair from episode 2 on."""
    run_dir = tmp_path / "shrunk"
    job_id = sbatch(cluster, "slurm/search_fmnist.sh", run_dir, *sets(LONG + ["search.episodes=2"]), options=TWO_NODES)
    try:
        _, failed = lose_n2_in_stage_2(cluster, job_id, run_dir)
        assert wait_while_running(cluster, job_id, timeout=120) == "PENDING"  # requeued, waiting for 2 nodes
        subprocess.run(["scontrol", "update", f"jobid={job_id}", "NumNodes=1-1", "NumTasks=1", "NumCPUs=1"], env=cluster,
                       check=True)
        state = wait_for_end(cluster, job_id)
        seconds = time.time() - failed
    finally:
        subprocess.run(["scontrol", "update", "nodename=n2", "state=resume"], env=cluster, capture_output=True)
    log = Path(f"{run_dir}.out").read_text()
    assert state == "COMPLETED" and job_field(cluster, job_id, "Restarts") == "1", log[-3000:]
    rerun = log.split("restart 1 on")[-1]
    assert "1 ranks" in rerun and "written by 2 searchers, this job has 1" in rerun, log[-3000:]
    columns = read_stages(run_dir / "metrics.h5")
    assert list(zip(columns["episode"], columns["rank"])) == [(0, 0), (0, 1), (1, 0), (1, 0)], columns["rank"]
    with h5py.File(run_dir / "metrics.h5", "r") as f:
        kinds = [kind.decode() if isinstance(kind, bytes) else kind for kind in f["events/kind"][()]]
        assert "searchers:2->1" in kinds and f.attrs["status"] == b"done"
    print(f"[multinode] fewer nodes: n2 lost in episode 1 stage 2; the requeued job, put on 1 node, ran on n1 alone, "
          f"resumed with 1 searcher after episode 1 stage 1 (the rest of episode 1 given up) and COMPLETED "
          f"episode 2 {seconds:.0f} s after the failure")


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
