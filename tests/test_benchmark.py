"""tools/run_benchmark.py end to end on a tiny real setting: a 2-rank Gloo search, trainings side by side,
the table, resume (finished runs are skipped) and --report."""
import pytest
import subprocess
import sys
from pathlib import Path

pytestmark = pytest.mark.slow  # every test here launches jobs

REPO = Path(__file__).resolve().parent.parent
TINY = ["data.search_train_size=512", "data.train_size=512", "data.val_size=200", "data.test_size=200",
        "data.batch_size=64", "data.eval_batch_size=200", "optim.epochs=2", "optim.lr_decay_stages=[4]",
        "search.stages=4", "strategy.buffer_capacity=64", "strategy.fdu_epochs=2", "strategy.fdu_batch=4"]


def run_benchmark(out, *args):
    cmd = [sys.executable, str(REPO / "tools" / "run_benchmark.py"), "--out", str(out), "--settings", "noisy_mlp",
           "--methods", "uniform", "law", "--seeds", "0", *args]
    for override in TINY:
        cmd += ["--set", override]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=900)


def table_rows(table: str) -> dict:
    return {line.split("|")[1].strip(): line for line in table.splitlines() if line.startswith("| ")}


def test_run_benchmark_searches_trains_resumes_and_reports(tmp_path):
    first = run_benchmark(tmp_path, "--searcher-episodes", "4", "--search-ranks", "2", "--gloo")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    search_log = (tmp_path / "noisy_mlp" / "search-np2.log").read_text()
    assert "2 searcher(s) on cpu (gloo)" in search_log  # --gloo reached horovodrun
    assert (tmp_path / "noisy_mlp" / "search-np2" / "policy.h5").is_file()
    table = (tmp_path / "results.md").read_text()
    rows = table_rows(table)
    assert {"uniform", "law"} <= set(rows) and rows["law"].count("|") == 6
    accuracy = float(rows["law"].split("|")[2].split("±")[0])
    assert 10.0 < accuracy <= 100.0  # a percentage of a trained network, not a fraction

    finished = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("result.npy")}
    again = run_benchmark(tmp_path, "--searcher-episodes", "4", "--search-ranks", "2", "--gloo")
    assert again.returncode == 0 and "searching with 2 searcher(s)" in again.stdout
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("result.npy")} == finished  # nothing rerun

    report = run_benchmark(tmp_path, "--report", "--table", "report.md")
    assert report.returncode == 0 and table_rows((tmp_path / "report.md").read_text()) == rows
