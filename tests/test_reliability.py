"""Crash-safe searches on real jobs: kill -9 of one rank or of all ranks under Gloo and MPI, re-run, and the
result equals an uninterrupted run's; live readers across the restart; a stop request agreed mid-stage in
stages much longer than the poll interval; a checkpoint carrying a pickle payload; logs that cannot be
repaired; kill -9 of the data-parallel test phase (law_hpc.train). The measured figures (README
"Reliability") are printed as `[reliability]` lines: pytest -rP.
"""
import io
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

import h5py
import numpy as np
import pytest
import torch

from law_hpc.io.checkpoint import _digest, checkpoint_dir, list_checkpoints
from law_hpc.io.metrics import logged_rows, read_stages
from search_helpers import (HOROVODRUN, REPO, SMOKE, TIMING_COLUMNS, assert_same_results, kill_ranks, run_search,
                            search_command, start_job, wait_for_rows, wait_paused)

pytestmark = pytest.mark.slow  # every test here launches jobs

# Two stages of 32 iterations (the smoke split, 8 epochs), the stop polled every 2 iterations: a stage is
# 16 polls long. One episode (an evaluation episode: it writes policy.h5).
LONG = ["search.episodes=1", "search.stages=2", "search.warmup_stages=1", "optim.epochs=8", "optim.lr_decay_stages=[2]",
        "stop_check_iterations=2", "threads_per_rank=1"]
ITERATIONS_PER_STAGE = 32


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The 2-rank LONG search, run through."""
    run_dir = tmp_path_factory.mktemp("long") / "uninterrupted"
    started = time.time()
    proc = run_search(run_dir, ranks=2, overrides=LONG)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    print(f"[reliability] uninterrupted 2-rank run: {time.time() - started:.1f} s")
    return run_dir


PAUSE_STEP = ITERATIONS_PER_STAGE + 4
"""Both ranks pause after this step, in the second stage (its 5th iteration): a signal sent then lands mid-stage
however loaded the machine."""


def kill_mid_stage(run_dir, which: str, controller: str = "gloo", sig=signal.SIGKILL):
    """Start the LONG search on 2 ranks, send `sig` to one or all ranks while both pause inside the second stage;
    (seconds until the launcher exited, its exit code, its output)."""
    pause = run_dir.with_name(f"{run_dir.name}-pause")
    proc = start_job(search_command(run_dir, 2, overrides=LONG, controller=controller), pause=(pause, PAUSE_STEP))
    wait_paused(proc, pause, 2)
    seconds = kill_ranks(proc, which, sig, release=pause)
    return seconds, proc.returncode, proc.output


def resumed_stage(output: str) -> str:
    match = re.search(r"\[law\] resumed \S+ (after|in) (episode \d+ stage \d+( at iteration \d+)?)", output)
    assert match, output[-3000:]
    return f"{match.group(1)} {match.group(2)}"


@pytest.mark.parametrize("controller", ["gloo", "mpi"])
def test_kill9_of_one_rank_mid_stage_ends_the_job_and_the_rerun_equals_uninterrupted(uninterrupted, tmp_path,
                                                                                     controller):
    run_dir = tmp_path / "killed"
    seconds, code, output = kill_mid_stage(run_dir, "one", controller)
    assert code != 0 and seconds < 60, output[-3000:]
    print(f"[reliability] kill -9 of rank 1 mid-stage under {controller}: the job ended {seconds:.2f} s later "
          f"(launcher exit {code})")
    proc = run_search(run_dir, ranks=2, overrides=LONG, controller=controller)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert resumed_stage(proc.stdout) == "after episode 1 stage 1"  # the kill came inside stage 2
    assert_same_results(uninterrupted, run_dir)
    print(f"[reliability] rerun after kill -9 of rank 1 ({controller}): metrics.h5 and policy.h5 equal the "
          "uninterrupted run's")


def test_kill9_of_all_ranks_with_live_readers_across_the_restart(uninterrupted, tmp_path):
    """tools/watch.py and a plain h5py reader follow metrics.h5 through the crash and the rerun."""
    run_dir, path = tmp_path / "killed", tmp_path / "killed" / "metrics.h5"
    seen, errors, stop = [], [], threading.Event()

    def plain_reader():  # what a user's notebook does: open, read, close, again
        while not stop.is_set():
            try:
                if path.exists():
                    with h5py.File(path, "r", libver="latest", swmr=True) as f:
                        seen.append(f["stages/episode"].shape[0])
            except Exception as err:  # noqa: BLE001 - any failure of the reader is the finding
                errors.append(repr(err))
            time.sleep(0.01)

    reader = threading.Thread(target=plain_reader)
    reader.start()
    pause = tmp_path / "pause"
    job = start_job(search_command(run_dir, 2, overrides=LONG), pause=(pause, PAUSE_STEP))
    wait_paused(job, pause, 2)
    watch = subprocess.Popen([sys.executable, str(REPO / "tools" / "watch.py"), str(path), "--interval", "0.1"],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    time.sleep(0.3)  # the watcher follows the live file before the crash
    kill_ranks(job, "all", release=pause)
    assert watch.poll() is None  # killed ranks set no status: the watcher waits
    proc = run_search(run_dir, ranks=2, overrides=LONG)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    watched, _ = watch.communicate(timeout=120)
    stop.set()
    reader.join()
    assert resumed_stage(proc.stdout) == "after episode 1 stage 1"
    assert_same_results(uninterrupted, run_dir)
    assert watch.returncode == 0 and watched.endswith("run done\n"), watched
    assert [line.split(":")[0] for line in watched.splitlines()[:-1]] == ["episode 1 stage 1", "episode 1 stage 2"]
    assert not errors, errors[:3]
    assert seen and seen == sorted(seen) and seen[-1] == 4  # never a row lost, never an error
    print("[reliability] kill -9 of both ranks: the rerun equals the uninterrupted run; watch.py and a plain h5py "
          f"reader ({len(seen)} reads) followed across the restart without an error")


def test_a_stop_request_to_one_rank_is_agreed_mid_stage_and_resumes_bit_exactly(uninterrupted, tmp_path):
    """SIGTERM to rank 1 only, inside a 32-iteration stage polled every 2 iterations: both ranks stop at one
    iteration. Before it, while both ranks wait in stage 2, a second job on the same run directory (it would
    overwrite the checkpoints and logs) stops with one line naming the holder and leaves the first alone."""
    run_dir, pause = tmp_path / "stopped", tmp_path / "pause"
    first = start_job(search_command(run_dir, 2, overrides=LONG), pause=(pause, PAUSE_STEP))
    wait_paused(first, pause, 2)  # stage 1's rows written, both ranks inside stage 2
    second = run_search(run_dir, ranks=2, overrides=LONG)
    output = second.stdout + second.stderr
    errors = [line for line in output.splitlines() if "error: " in line]
    # each rank prints the line, unless horovodrun stopped it first
    assert second.returncode != 0 and "Exit code: 2" in output and 1 <= len(errors) <= 2, output[-3000:]
    assert all("is in use by another job (pid" in line and "another --run-dir" in line for line in errors), errors
    assert first.poll() is None
    seconds = kill_ranks(first, "one", signal.SIGTERM, release=pause)
    code, output = first.returncode, first.output
    match = re.search(r"stop requested \(another rank\), agreed (\d+) iteration\(s\), ([\d.]+) s after the request: "
                      r"checkpoint written in episode 1 stage 2 at iteration (\d+)/32", output)
    assert match and (code == 75 or "Exit code: 75" in output), output[-3000:]
    waited, latency, iteration = int(match.group(1)), float(match.group(2)), int(match.group(3))
    assert 1 <= waited <= 2 and PAUSE_STEP - ITERATIONS_PER_STAGE < iteration <= PAUSE_STEP - ITERATIONS_PER_STAGE + 3
    positions = [path.name for path in list_checkpoints(checkpoint_dir(run_dir, 1))]
    assert positions[0] == f"ckpt-e00000-s00001-i{iteration:08d}.h5"
    rows = read_stages(run_dir / "metrics.h5")
    assert sorted(zip(rows["stage"], rows["rank"])) == [(0, 0), (0, 1)]  # the first job's rows, untouched
    with h5py.File(run_dir / "metrics.h5", "r") as f:
        assert f.attrs["status"] == b"preempted"
    stage_seconds = read_stages(uninterrupted / "metrics.h5")["stage_seconds"].max()
    print(f"[reliability] stop request inside a {ITERATIONS_PER_STAGE}-iteration stage ({stage_seconds:.1f} s "
          f"uninterrupted), polled every 2 iterations: agreed {waited} iteration(s), {latency:.2f} s after the "
          f"signal; mid-stage checkpoint at iteration {iteration}; the job exited {seconds:.2f} s after the signal")
    proc = run_search(run_dir, ranks=2, overrides=LONG)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert resumed_stage(proc.stdout) == f"in episode 1 stage 2 at iteration {iteration}"
    assert_same_results(uninterrupted, run_dir)
    with h5py.File(run_dir / "metrics.h5", "r") as f:
        assert f["events/kind"][()].tolist() == [f"resume_mid_stage:{iteration}".encode()]
        assert f.attrs["status"] == b"done"


class Payload:
    """What a tampered checkpoint carries: unpickled with weights_only=False, it would run a command."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os
        return os.system, (f"touch {self.marker}",)


def tamper(path, marker) -> None:
    """Replace the checkpoint's RNG part by a pickle payload and re-sign the file (checksum and marker intact),
    as a hostile or foreign writer would."""
    buffer = io.BytesIO()
    torch.save({"torch": Payload(marker)}, buffer)
    with h5py.File(path, "r+") as f:
        del f["torch/rng"]
        f["torch/rng"] = np.frombuffer(buffer.getvalue(), dtype=np.uint8)
        f.attrs["sha256"] = _digest(f)


def test_a_checkpoint_carrying_a_pickle_payload_is_refused_and_the_previous_one_used(smoke_run, tmp_path):
    run_dir, marker = tmp_path / "run", tmp_path / "payload-ran"
    proc = start_job(search_command(run_dir))
    wait_for_rows(proc, run_dir / "metrics.h5", 3)
    kill_ranks(proc, "all")
    newest, previous = list_checkpoints(checkpoint_dir(run_dir, 0))[:2]
    tamper(newest, marker)
    proc = run_search(run_dir)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    warning = next(line for line in proc.stderr.splitlines() if "WARNING" in line)
    assert str(newest) in warning and "refused, nothing in it was run" in warning and "posix.system" in warning
    assert f"using the previous checkpoint, {previous.name}" in warning
    assert not marker.exists()
    assert_same_results(smoke_run, run_dir)
    print(f"[reliability] tampered checkpoint: {warning.split('WARNING: ')[1]}")


def test_a_truncated_metrics_file_is_rebuilt_from_the_checkpoints(smoke_run, tmp_path):
    """A metrics.h5 cut short by a full disk: the rerun writes it anew, complete."""
    run_dir = tmp_path / "run"
    job = start_job(search_command(run_dir))
    wait_for_rows(job, run_dir / "metrics.h5", 3)
    kill_ranks(job, "all")
    path = run_dir / "metrics.h5"
    path.write_bytes(path.read_bytes()[:2000])
    assert logged_rows(path) is None  # unreadable (a SWMR reader of it would retry for minutes)
    proc = run_search(run_dir)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "metrics.h5 rewritten from the checkpoints" in proc.stdout
    assert_same_results(smoke_run, run_dir)


def test_results_without_a_checkpoint_to_resume_are_refused_not_overwritten(tmp_path):
    run_dir = tmp_path / "run"
    proc = start_job(search_command(run_dir))
    wait_for_rows(proc, run_dir / "metrics.h5", 2)
    kill_ranks(proc, "all")
    shutil.rmtree(run_dir / "checkpoints")
    before = (run_dir / "metrics.h5").read_bytes()
    proc = run_search(run_dir)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 2 and len(errors) == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "metrics.h5 with" in errors[0] and "no checkpoint that every rank can resume from" in errors[0]
    assert "another --run-dir" in errors[0]
    assert (run_dir / "metrics.h5").read_bytes() == before and len(read_stages(run_dir / "metrics.h5")["episode"]) >= 2


# The test phase, data-parallel on 2 ranks: MW-Net (its validation batches are part of what a resume restores),
# 3 epochs of 16 iterations per rank.
TRAIN = ["data.train_size=2048", "data.test_size=500", "optim.epochs=3", "threads_per_rank=1",
         "stop_check_iterations=2"]


def train_command(run_dir) -> list[str]:
    cmd = [sys.executable, "-m", "law_hpc.train", "--config", str(SMOKE), "--run-dir", str(run_dir), "--method", "mwnet"]
    for assignment in TRAIN:
        cmd += ["--set", assignment]
    return [HOROVODRUN, "-np", "2", "-H", "localhost:2", "--gloo"] + cmd


def train_epochs(run_dir) -> dict:
    with h5py.File(run_dir / "train.h5", "r", libver="latest", swmr=True) as f:
        return {name: f["epochs"][name][()] for name in f["epochs"]}


def test_kill9_of_one_rank_mid_epoch_of_the_test_phase_and_the_rerun_equals_uninterrupted(tmp_path):
    full, killed = tmp_path / "full", tmp_path / "killed"
    proc = subprocess.run(train_command(full), capture_output=True, text=True, timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    pause = tmp_path / "pause"
    job = start_job(train_command(killed), pause=(pause, 16 + 8))  # in epoch 2 (16 iterations per rank and epoch)
    wait_paused(job, pause, 2)
    seconds = kill_ranks(job, "one", module="law_hpc.train", release=pause)
    assert job.returncode != 0 and seconds < 60, job.output[-3000:]
    logged = train_epochs(killed)["epoch"].tolist()  # the killed writer's train.h5, still readable
    proc = subprocess.run(train_command(killed), capture_output=True, text=True, timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    match = re.search(r"\[law-train\] resumed \S+ after epoch (\d+); train.h5 rewritten from the checkpoint", proc.stdout)
    assert match and logged == [0] and match.group(1) == "1", proc.stdout[-3000:]  # nothing logged is lost
    expected, got = train_epochs(full), train_epochs(killed)
    assert set(expected) == set(got) and expected["epoch"].tolist() == [0, 1, 2]
    for name in set(expected) - TIMING_COLUMNS - {"seconds"}:
        assert np.array_equal(expected[name], got[name], equal_nan=True), name
    print(f"[reliability] kill -9 of rank 1 of the 2-rank test phase (mwnet) in epoch {len(logged) + 1}: the job "
          f"ended {seconds:.2f} s later; the rerun resumed after epoch {match.group(1)} and train.h5 equals the "
          "uninterrupted run's")
