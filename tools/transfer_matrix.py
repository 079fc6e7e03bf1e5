#!/usr/bin/env python
"""The shipped policies without a search, across noise rates, noise modes, the long tail and networks.

    python tools/transfer_matrix.py --out runs/transfer --networks mlp --policies fmnist_noisy_mlp fmnist_noisy
    python tools/transfer_matrix.py --out runs/transfer --report       # the table from the runs done so far
    python tools/transfer_matrix.py --out runs/guarded --policies fmnist_noisy_mlp_valrank \
        --set methods.law.uniform_guard=true      # the policy with its uniform guard (another --out)

Each cell trains uniform and every given policy (tools/run_benchmark.py, the benchmark's 10k Fashion-MNIST images
and 20 epochs) for --seeds seeds and reports the policy's final-epoch test accuracy minus uniform's. A cell where
uniform's final epoch is 3 or more points below its best epoch is marked as memorising (m). The policy to
recommend is chosen on VALIDATION accuracy (the mean over the cells of its final-epoch validation accuracy minus
uniform's), never on the test columns. Re-running skips finished runs.
"""
from __future__ import annotations

import argparse
import shlex
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run_benchmark  # noqa: E402

NETWORKS = {"mlp": ("noisy_mlp", []), "small_cnn": ("noisy", []),
            "resnet32": ("noisy", ["model.name=resnet32_cifar"])}
"""Row -> (benchmark setting, overrides): the setting brings the network and the shared schedule."""
COLUMNS = {
    "sym 20 %": ["data.noise_rate=0.2", "methods.coteaching.forget_rate=0.2"],
    "sym 40 %": ["methods.coteaching.forget_rate=0.4"],
    "sym 60 %": ["data.noise_rate=0.6", "methods.coteaching.forget_rate=0.6"],
    "sym 80 %": ["data.noise_rate=0.8", "methods.coteaching.forget_rate=0.8"],
    "flip 40 %": ["data.noise_mode=flip", "methods.coteaching.forget_rate=0.4"],
    "pair 40 %": ["data.noise_mode=pair", "methods.coteaching.forget_rate=0.4"],
    "long tail": ["data.noise_mode=none", "data.noise_rate=0", "data.imbalance=long_tail",
                  "methods.coteaching.forget_rate=0.1"],
    "noisy long tail": ["data.imbalance=long_tail", "data.imbalance_factor=10", "methods.coteaching.forget_rate=0.4"],
}
"""Column -> overrides of the setting (symmetric = uniform_mix, the benchmark's noise; Co-teaching is told the cell's
noise rate, and 0.1 on the clean long tail as in configs/fmnist_longtail.yaml)."""
PEERS = ("gce", "elr", "coteaching", "logit_adjusted", "confident_learning")
"""The peers a practitioner runs instead (Co-teaching told the noise rate of the setting's config)."""
ABOUT = ("Final-epoch test accuracy (%) of each peer and shipped policy minus uniform's, mean ± std over seeds "
         "(uniform's own accuracy in brackets; m: uniform memorises, final epoch >= 3 below its best).")


def cell(args, network: str, column: str) -> dict:
    """{row: [run results]} of one cell (run_benchmark's rows: uniform, law (<policy>))."""
    setting, overrides = NETWORKS[network]
    out = Path(args.out) / network / column.replace(" ", "").replace("%", "")
    argv = ["--out", str(out), "--settings", setting, "--methods", "uniform", *args.peers, "law", "--policy", *args.policies,
            "--seeds", *map(str, args.seeds), "--jobs", str(args.jobs)]
    for override in overrides + COLUMNS[column] + args.set:
        argv += ["--set", override]
    if args.report:
        argv.append("--report")
    bench_args, root = run_benchmark.parse_args(argv), out.resolve()
    jobs = [("uniform", "uniform", None)] + [(peer, peer, None) for peer in args.peers]
    jobs += [(f"law ({Path(p).stem})", "law", p) for p in args.policies]
    with ThreadPoolExecutor(args.jobs) as pool:
        futures = {(row, seed): pool.submit(run_benchmark.train, bench_args, setting, row, method, seed, policy, root)
                   for row, method, policy in jobs for seed in args.seeds}
    results = {row: [] for row, _, _ in jobs}
    for (row, _), future in futures.items():
        if future.result() is not None:
            results[row].append(future.result())
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/transfer")
    parser.add_argument("--networks", nargs="+", default=["mlp", "small_cnn"], choices=list(NETWORKS))
    parser.add_argument("--columns", nargs="+", default=list(COLUMNS), choices=list(COLUMNS))
    parser.add_argument("--policies", nargs="+", default=["fmnist_noisy_mlp", "fmnist_noisy"])
    parser.add_argument("--peers", nargs="*", default=list(PEERS), choices=run_benchmark.METHODS,
                        help="peer methods trained in every cell beside uniform and the policies (rows of their own)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key in every run (e.g. methods.law.uniform_guard=true)")
    parser.add_argument("--report", action="store_true", help="run nothing: the table from finished runs")
    parser.add_argument("--export", metavar="FILE", help="also write the table as a results file (docs/results/)")
    args = parser.parse_args(argv)
    columns = ["network", "method", *args.columns]
    table_rows = []
    rows = [(peer, peer) for peer in args.peers] + [(f"law ({Path(p).stem})", Path(p).stem) for p in args.policies]
    validation = {name: [] for _, name in rows}
    for network in args.networks:
        cells = {column: cell(args, network, column) for column in args.columns}
        for row, name in rows:
            texts = []
            for column in args.columns:
                uniform, runs = cells[column]["uniform"], cells[column][row]
                seeds = min(len(uniform), len(runs))
                if not seeds:
                    texts.append("")
                    continue
                gain = 100 * np.array([runs[i]["final"] - uniform[i]["final"] for i in range(seeds)])
                base = 100 * np.mean([u["final"] for u in uniform[:seeds]])
                memorises = np.mean([u["best"] - u["final"] for u in uniform[:seeds]]) >= 0.03
                texts.append(f"{gain.mean():+.1f} ± {gain.std():.1f} ({base:.1f}{' m' if memorises else ''})")
                validation[name] += [runs[i]["val"] - uniform[i]["val"] for i in range(seeds)]
            table_rows.append([network, name, *texts])
    choice = "Chosen on validation (mean final-epoch validation accuracy gain over uniform, all cells): " + ", ".join(
        f"{name} {100 * np.nanmean(v):+.2f}" for name, v in validation.items() if v)
    lines = [ABOUT, "", "| " + " | ".join(columns) + " |", "| --- | --- |" + " ---: |" * len(args.columns)]
    table = "\n".join(lines + ["| " + " | ".join(r) + " |" for r in table_rows] + ["", choice]) + "\n"
    if args.export:
        from results_doc import write_results
        argv = sys.argv[1:] if argv is None else argv
        print(write_results(args.export, title="Transfer: the peers and the shipped policies with no search, across cells", columns=columns,
                            rows=table_rows, label_columns=2, about=ABOUT, notes=choice,
                            command="python tools/transfer_matrix.py " + shlex.join(run_benchmark.without_export(argv))))
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "matrix.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
