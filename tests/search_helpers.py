"""Launch real searches for the tests: horovodrun -np N or plain python, on configs/smoke.yaml."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np

REPO = Path(__file__).resolve().parent.parent
SMOKE = REPO / "configs" / "smoke.yaml"
HOROVODRUN = str(Path(sys.executable).parent / "horovodrun")
TIMING_COLUMNS = {"stage_seconds", "samples_per_second", "checkpoint_seconds", "train_seconds", "weights_seconds",
                  "evaluate_seconds", "learn_seconds"}


def assert_one_line_error(proc, *fragments):
    errors = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(errors) == 1 and errors[0].startswith("error: "), proc.stderr[-2000:]
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


def export_dataset(fmt: str, out, per_class: int, test_per_class: int) -> Path:
    """tools/export_dataset.py, run in this process (its main): real Fashion-MNIST images written out in ImageNet's
    folder layout or CIFAR's pickles at `out`."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("export_dataset", REPO / "tools" / "export_dataset.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--format", fmt, "--out", str(out), "--per-class", str(per_class), "--test-per-class",
                        str(test_per_class)]) == 0
    return Path(out)


def search_command(run_dir, ranks: int = 1, config=SMOKE, overrides=(), extra=(), controller="gloo") -> list[str]:
    cmd = [sys.executable, "-m", "law_hpc.search"]
    if run_dir is not None:
        cmd += ["--run-dir", str(run_dir)]
    if config is not None:
        cmd += ["--config", str(config)]
    for assignment in overrides:
        cmd += ["--set", assignment]
    cmd += list(extra)
    if ranks > 1:
        cmd = [HOROVODRUN, "-np", str(ranks), "-H", f"localhost:{ranks}", f"--{controller}"] + cmd
    return cmd


def run_search(run_dir, ranks: int = 1, config=SMOKE, overrides=(), extra=(), timeout=300, controller="gloo",
               cwd=REPO):
    return subprocess.run(search_command(run_dir, ranks, config, overrides, extra, controller), capture_output=True,
                          text=True, timeout=timeout, cwd=cwd)


def finished_smoke_search(tmp_path_factory, name: str) -> Path:
    """Run directory of a completed one-rank smoke search (for module-scoped fixtures)."""
    run_dir = tmp_path_factory.mktemp(name)
    proc = run_search(run_dir)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return run_dir


def metrics_rows(path) -> int:
    try:
        with h5py.File(path, "r", libver="latest", swmr=True) as f:
            return f["stages/episode"].shape[0]
    except (OSError, KeyError):
        return 0


def interrupt_after_rows(run_dir, rows: int, ranks: int = 1, overrides=(), timeout=300, sig=signal.SIGUSR1):
    """Start a search, send `sig` to ONE searcher process once metrics.h5 holds `rows` rows; wait for exit."""
    proc = subprocess.Popen(search_command(run_dir, ranks, overrides=overrides), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, cwd=REPO, start_new_session=True)
    deadline = time.time() + timeout
    while metrics_rows(Path(run_dir) / "metrics.h5") < rows:
        if proc.poll() is not None or time.time() > deadline:
            break
        time.sleep(0.05)
    if proc.poll() is None:
        os.kill(rank_pid(proc.pid, ranks), sig)
    output, _ = proc.communicate(timeout=timeout)
    return proc.returncode, output


def rank_pid(launcher_pid: int, ranks: int, module: str = "law_hpc.search") -> int:
    """The launcher itself for one rank; under horovodrun, the process of one rank (the highest pid)."""
    if ranks == 1:
        return launcher_pid
    import psutil
    children = [p for p in psutil.Process(launcher_pid).children(recursive=True)
                if module in " ".join(p.cmdline()) and p.pid != launcher_pid]
    return max(p.pid for p in children)


def assert_same_results(expected_dir, got_dir) -> None:
    """metrics.h5 of two runs agree bit for bit on every column but wall-clock timings; so do policies."""
    from law_hpc.io.metrics import read_stages

    expected, got = read_stages(Path(expected_dir) / "metrics.h5"), read_stages(Path(got_dir) / "metrics.h5")
    assert set(expected) == set(got)
    for name in set(expected) - TIMING_COLUMNS:
        assert np.array_equal(expected[name], got[name], equal_nan=True), name
    with h5py.File(Path(expected_dir) / "policy.h5") as a, h5py.File(Path(got_dir) / "policy.h5") as b:
        assert np.array_equal(a["actor/net.0.weight"][()], b["actor/net.0.weight"][()])


def rank_pids(launcher_pid: int, module: str = "law_hpc.search") -> list[int]:
    """The processes of the ranks under a launcher (horovodrun --gloo or --mpi), in rank order."""
    import psutil
    ranks = {}
    for p in psutil.Process(launcher_pid).children(recursive=True):
        if p.cmdline()[1:3] == ["-m", module]:
            env = p.environ()
            ranks[int(env.get("HOROVOD_RANK", env.get("OMPI_COMM_WORLD_RANK", -1)))] = p.pid
    return [ranks[rank] for rank in sorted(ranks)]


def wait_for_rows(proc, path, rows: int, timeout=300) -> None:
    """Until the log at `path` (metrics.h5 or train.h5) holds `rows` rows; the job must still be running."""
    deadline = time.time() + timeout
    while log_rows(path) < rows:
        assert proc.poll() is None, f"the job ended (exit {proc.returncode}) before {path} had {rows} rows"
        assert time.time() < deadline, f"{path} did not reach {rows} rows within {timeout} s"
        time.sleep(0.02)


def log_rows(path) -> int:
    """Rows of a metrics.h5 or train.h5, read as any live reader would (0 while there is none)."""
    try:
        with h5py.File(path, "r", libver="latest", swmr=True) as f:
            return f["stages/episode" if "stages" in f else "epochs/epoch"].shape[0]
    except (OSError, KeyError):
        return 0


def kill_ranks(proc, which: str, sig=signal.SIGKILL, module: str = "law_hpc.search", release=None) -> float:
    """Send `sig` to the highest rank's process ("one") or to every rank ("all") of a launched job, then release a
    paused job (`release`: its pause folder); returns the seconds until the launcher exited (its output is in
    proc.output)."""
    pids = rank_pids(proc.pid, module) if proc.args[0] == HOROVODRUN else [proc.pid]
    victims = pids[-1:] if which == "one" else pids
    started = time.time()
    for pid in victims:
        os.kill(pid, sig)
    if release is not None:
        (release / "go").touch()
    proc.output, _ = proc.communicate(timeout=300)
    return time.time() - started


def start_job(cmd, cwd=REPO, pause=None) -> subprocess.Popen:
    """A job in its own session; `pause` = (folder, step): every rank stops after that step until released (a signal
    then lands mid-stage by construction: law_hpc/engine/steps.py)."""
    env = None
    if pause is not None:
        folder, step = pause
        Path(folder).mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "LAW_HPC_PAUSE_AT_STEP": str(step), "LAW_HPC_PAUSE_DIR": str(folder)}
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=cwd,
                            start_new_session=True, env=env)


def wait_paused(proc, folder, processes: int, timeout=300) -> None:
    """Until `processes` ranks of a job started with `pause` wait at their pause step; the job must still run."""
    deadline = time.time() + timeout
    while len(list(Path(folder).glob("paused-*"))) < processes:
        assert proc.poll() is None, f"the job ended (exit {proc.returncode}) before it paused"
        assert time.time() < deadline, f"the job did not pause within {timeout} s"
        time.sleep(0.02)
