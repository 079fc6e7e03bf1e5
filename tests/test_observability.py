"""Observable runs, on real jobs: time-stamped progress with elapsed time and ETA, the status attribute that
tools/watch.py follows to the end, flat tables for pandas (to_dataframe, tools/export_csv.py), TensorBoard."""
import re
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

from law_hpc.io.metrics import read_stages, to_dataframe
from law_hpc.io.progress import Progress, clock_text
from search_helpers import REPO, SMOKE, interrupt_after_rows, run_search, search_command, start_job, wait_for_rows

TOOLS = REPO / "tools"
STAMP = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"
TAIL = r"\| elapsed \d+:\d\d:\d\d ETA (\d+:\d\d:\d\d|\?)$"
ONE_EPISODE = ["search.episodes=1", "threads_per_rank=1"]


def status(path) -> str:
    with h5py.File(path, "r", libver="latest", swmr=True) as f:
        return f.attrs["status"].decode()


def tool(name, *args, timeout=300):
    return subprocess.run([sys.executable, str(TOOLS / name), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def tensorboard_run(tmp_path_factory):
    """A finished one-episode smoke search with TensorBoard scalars on."""
    run_dir = tmp_path_factory.mktemp("tb")
    proc = run_search(run_dir, overrides=ONE_EPISODE + ["log.tensorboard=true"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    return run_dir, proc


def test_progress_eta_extrapolates_this_process_rate():
    now = [100.0]
    progress = Progress(total=10, done=4, clock=lambda: now[0])  # resumed after 4 of 10
    assert progress.suffix(4) == "elapsed 0:00:00 ETA ?"
    now[0] += 30  # two units in 30 s: 6 - 2 = 4 left at 15 s each
    assert progress.suffix(6) == "elapsed 0:00:30 ETA 0:01:00"
    assert clock_text(3 * 3600 + 62) == "3:01:02" and clock_text(-1) == "0:00:00"
    assert re.fullmatch(STAMP, Progress.stamp())


@pytest.mark.slow
def test_search_lines_carry_time_stamp_elapsed_and_eta(tensorboard_run):
    _, proc = tensorboard_run
    lines = [line for line in proc.stdout.splitlines() if " ep 1/1 stage " in line]
    assert len(lines) == 4, proc.stdout
    for line in lines:
        assert re.match(rf"\[law\] {STAMP} ep 1/1 stage ", line) and re.search(TAIL, line), line
    assert lines[-1].endswith("ETA 0:00:00")


@pytest.mark.slow
def test_finished_run_is_done_and_watch_exits(tensorboard_run):
    run_dir, _ = tensorboard_run
    assert status(run_dir / "metrics.h5") == "done"
    proc = tool("watch.py", run_dir / "metrics.h5", "--interval", "0.1", timeout=60)  # no --once: the status ends it
    assert proc.returncode == 0 and proc.stdout.count("stage") == 4 and proc.stdout.endswith("run done\n")


@pytest.mark.slow
def test_watch_follows_a_live_search_to_its_end(tmp_path):
    job = subprocess.Popen(search_command(tmp_path, overrides=ONE_EPISODE), stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True, cwd=REPO)
    deadline = time.time() + 120
    while not (tmp_path / "metrics.h5").exists() and time.time() < deadline and job.poll() is None:
        time.sleep(0.05)
    watch = subprocess.run([sys.executable, str(TOOLS / "watch.py"), str(tmp_path / "metrics.h5"), "--interval",
                            "0.2"], capture_output=True, text=True, timeout=300)
    assert job.wait(timeout=60) == 0, job.stderr.read()[-2000:]
    assert watch.returncode == 0, watch.stdout + watch.stderr
    assert watch.stdout.count("episode 1 stage") == 4 and watch.stdout.endswith("run done\n")


@pytest.mark.slow
def test_preempted_then_resumed_statuses(tmp_path):
    code, output = interrupt_after_rows(tmp_path, rows=2, overrides=ONE_EPISODE)
    assert code == 75, output[-2000:]
    assert status(tmp_path / "metrics.h5") == "preempted"
    watch = tool("watch.py", tmp_path / "metrics.h5", "--interval", "0.1", timeout=60)
    assert watch.returncode == 75 and "run preempted" in watch.stdout
    proc = run_search(tmp_path, overrides=ONE_EPISODE)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert status(tmp_path / "metrics.h5") == "done"


@pytest.mark.slow
def test_a_run_that_fails_mid_job_says_failed(tmp_path):
    """Training images damaged while a (torch-backend) search runs, after the start-up screening passed them:
    with data.on_corrupt_image=fail the search stops at the next batch that reads one, and says failed."""
    export = subprocess.run([sys.executable, str(TOOLS / "export_dataset.py"), "--format", "imagenet", "--out",
                             str(tmp_path / "imagenet"), "--per-class", "30", "--test-per-class", "5"],
                            capture_output=True, text=True, timeout=300)
    assert export.returncode == 0, export.stderr
    proc = start_job(search_command(tmp_path / "run", overrides=ONE_EPISODE + [
        "data.dataset=imagenet", f"data.root={tmp_path / 'imagenet'}", "data.backend=torch", "data.image_size=32",
        "data.val_size=45", "data.search_train_size=100", "optim.epochs=40", "data.decoded_cache_mb=0"]))
    wait_for_rows(proc, tmp_path / "run" / "metrics.h5", 1)
    for victim in (tmp_path / "imagenet" / "train").glob("*/*.JPEG"):
        victim.write_bytes(victim.read_bytes()[:100])  # truncated: the next epoch's first batch fails
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode not in (0, 2, 75), output[-3000:]
    assert "cannot decode image" in output
    assert status(tmp_path / "run" / "metrics.h5") == "failed"


@pytest.mark.slow
def test_to_dataframe_is_flat_with_named_action_and_class_columns(tensorboard_run):
    run_dir, _ = tensorboard_run
    frame, stages = to_dataframe(run_dir / "metrics.h5"), read_stages(run_dir / "metrics.h5")
    assert len(frame) == 4
    names = ["action_loss", "action_entropy", "action_density", "action_label", "action_bias"]
    for i, name in enumerate(names):
        assert np.array_equal(frame[name].to_numpy(), stages["action"][:, i])
    for c in range(10):
        assert np.array_equal(frame[f"class_weight_mean_{c}"].to_numpy(), stages["class_weight_mean"][:, c])
    assert "action" not in frame and "class_weight_mean" not in frame
    assert all(frame[name].ndim == 1 for name in frame)
    assert frame.groupby("episode")["reward"].sum().shape == (1,)  # what failed before: pandas on 2-D columns


@pytest.mark.slow
def test_export_csv_writes_the_table(tensorboard_run, tmp_path):
    run_dir, _ = tensorboard_run
    proc = tool("export_csv.py", run_dir / "metrics.h5", "--out", tmp_path / "m.csv")
    assert proc.returncode == 0, proc.stderr
    header = (tmp_path / "m.csv").read_text().splitlines()[0].split(",")
    assert "action_label" in header and "class_weight_mean_9" in header and "reward" in header
    assert len((tmp_path / "m.csv").read_text().splitlines()) == 5
    bad = tool("export_csv.py", tmp_path / "missing.h5")
    assert bad.returncode == 2 and "no metrics file" in bad.stderr


@pytest.mark.slow
def test_tensorboard_scalars_of_a_search(tensorboard_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    run_dir, _ = tensorboard_run
    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    tags = events.Tags()["scalars"]
    assert {"search/reward", "search/acc_gap", "search/action_loss"} <= set(tags)
    reward = events.Scalars("search/reward")
    assert [e.step for e in reward] == [1, 2, 3, 4]
    assert np.allclose([e.value for e in reward], read_stages(run_dir / "metrics.h5")["reward"], atol=1e-6)


@pytest.mark.slow
def test_training_progress_status_and_tensorboard(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "law_hpc.train", "--config", str(SMOKE), "--run-dir", str(tmp_path),
                           "--set", "optim.epochs=2", "--set", "data.train_size=512", "--set", "data.test_size=200",
                           "--set", "threads_per_rank=1", "--set", "log.tensorboard=true"],
                          capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [line for line in proc.stdout.splitlines() if "uniform epoch" in line]
    assert len(lines) == 2 and all(re.match(rf"\[law-train\] {STAMP} uniform epoch", x) and re.search(TAIL, x)
                                   for x in lines)
    assert status(tmp_path / "train.h5") == "done"
    frame = to_dataframe(tmp_path / "train.h5")
    assert list(frame["epoch"]) == [0, 1] and "test_acc" in frame
    watch = tool("watch.py", tmp_path / "train.h5", timeout=60)
    assert watch.returncode == 0 and watch.stdout.count("test ") == 2 and "run done" in watch.stdout
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert [e.step for e in events.Scalars("train/test_acc")] == [1, 2]


@pytest.mark.slow
def test_tensorboard_asked_for_but_missing_is_a_clear_error(tmp_path):
    """A Python without the tensorboard package (its import blocked): one error line, exit 2."""
    code = ("import sys; sys.modules['tensorboard'] = None; from law_hpc.search import main; "
            f"sys.exit(main(['--config', '{SMOKE}', '--run-dir', '{tmp_path}', '--set', 'log.tensorboard=true']))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    errors = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(errors) == 1 and "needs the tensorboard package" in errors[0], proc.stderr
