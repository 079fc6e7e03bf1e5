"""tools/ scripts on a real search's metrics.h5: the table, the paper's figures, clear errors."""
import subprocess
import sys
from pathlib import Path

import h5py
import pytest


REPO = Path(__file__).resolve().parent.parent
TOOLS = REPO / "tools"


@pytest.fixture(scope="module")
def metrics(smoke_run):
    return smoke_run / "metrics.h5"


def tool(name, *args, timeout=120):
    return subprocess.run([sys.executable, str(TOOLS / name), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.slow
def test_summarize_prints_one_row_per_episode(metrics):
    proc = tool("summarize.py", metrics)
    assert proc.returncode == 0, proc.stderr
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert len(rows) == 2  # smoke: 2 episodes


@pytest.mark.slow
@pytest.mark.parametrize("script, png", [("plot_loss_gap.py", "loss_gap.png"),
                                         ("plot_class_weights.py", "class_weights.png"),
                                         ("plot_policy.py", "policy.png")])
def test_plots_write_pngs(metrics, tmp_path, script, png):
    out = tmp_path / png
    proc = tool(script, metrics, "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 5000


@pytest.mark.slow
def test_watch_once_lists_every_stage(metrics):
    proc = tool("watch.py", metrics, "--once")
    assert proc.returncode == 0 and proc.stdout.count("stage") == 2 * 4


@pytest.mark.slow
def test_tools_fail_clearly_on_foreign_and_truncated_files(tmp_path, metrics):
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["x"] = 1
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(metrics.read_bytes()[:2048])
    for bad, message in ((foreign, "not a law_hpc metrics file"), (truncated, "truncated or corrupt"),
                         (tmp_path / "missing.h5", "no metrics file")):
        proc = tool("plot_loss_gap.py", bad)
        assert proc.returncode == 2 and message in proc.stderr, proc.stderr


@pytest.mark.slow
def test_probe_policies_on_the_smoke_config(metrics, tmp_path):
    """Fixed actions and a searched policy in the search environment, then in the test phase (--test)."""
    policy = metrics.parent / "policy.h5"
    proc = tool("probe_policies.py", "--config", REPO / "configs" / "smoke.yaml", "--out", tmp_path, "--seeds", 0,
                "--action", "uniform", "--action", "loss=-2", "--policy", policy, "--test",
                "--set", "data.train_size=512", "--set", "data.test_size=200", timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    rows = {line.split("|")[1].strip(): line for line in proc.stdout.splitlines() if line.startswith("| ")}
    assert {"uniform", "loss=-2", str(policy)} <= set(rows)
    assert rows["uniform"].split("|")[2].strip().startswith("+0.000")  # uniform: target == reference, no reward
    assert "Spearman(search reward sum, test accuracy)" in proc.stdout and (tmp_path / "probe.md").is_file()
    bad = tool("probe_policies.py", "--config", REPO / "configs" / "smoke.yaml", "--out", tmp_path, "--action", "lr=3")
    assert bad.returncode == 2 and "'lr' is not one of" in bad.stderr


@pytest.mark.slow
def test_bench_search_figures_and_table_from_a_search(metrics):
    """The shares and ratios bench_search prints, from a real metrics.h5 (no timing is asserted)."""
    sys.path.insert(0, str(TOOLS))
    import bench_search

    figures = bench_search.search_figures(metrics.parent)
    assert figures["weighted"] > 0 and figures["warm-up"] > 0
    assert 0 < sum(figures[share] for share in bench_search.SHARES) < 1  # training takes the rest
    text = bench_search.table(2 * figures["weighted"], {("sequential", 1): figures, ("sequential", 2): figures}, [1, 2])
    assert "| sequential | 1 |" in text and "| 1.000 |" in text and "| 1.00 |" in text
