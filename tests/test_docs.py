"""The docs that are generated or bounded: docs/benchmarks.md from docs/results/, the README a product page."""
import re
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tools"))
import results_doc  # noqa: E402
import run_benchmark  # noqa: E402


def test_benchmarks_doc_is_what_the_results_files_give():
    assert (REPO / "docs" / "benchmarks.md").read_text() == results_doc.render()


def test_readme_is_a_product_page():
    text = (REPO / "README.md").read_text()
    assert len(text.splitlines()) <= 200
    commits = [word for word in re.findall(r"\b[0-9a-f]{7,40}\b", text) if re.search(r"[a-f]", word)]
    assert commits == []
    first_commands = re.search(r"```bash\n(.*?)```", text, re.S).group(1).splitlines()
    assert [line.split()[:2] for line in first_commands] == [["make", "search"], ["make", "test"]]


def test_readme_and_docs_links_resolve():
    for page in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)\s#]+)(?:#[^)\s]*)?\)", page.read_text()):
            if not target.startswith("http"):
                assert (page.parent / target).exists(), f"{page.name} links to missing {target}"


def test_benchmark_export_writes_a_results_file_the_doc_renders(tmp_path):
    run = tmp_path / "runs" / "noisy_mlp" / "uniform-seed0"
    run.mkdir(parents=True)
    np.save(run / "result.npy", np.array([0.785, 0.821, 0.3, 0.8]))
    exported = tmp_path / "results"
    assert run_benchmark.main(["--out", str(tmp_path / "runs"), "--settings", "noisy_mlp", "--methods", "uniform",
                               "--seeds", "0", "--report", "--export", str(exported)]) == 0
    document = results_doc.render(exported)
    assert "| uniform | 78.5 ± 0.0 | 82.1 ± 0.0 | 1 | 0.3 |" in document
    assert "Command: `python tools/run_benchmark.py --out" in document and "--export" not in document
