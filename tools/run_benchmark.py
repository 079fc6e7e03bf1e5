"""The test-phase benchmark: search once per setting, then train every method for several seeds.

    python tools/run_benchmark.py --out runs/benchmark            # the README table (a few hours here)
    python tools/run_benchmark.py --out /tmp/b --settings noisy_mlp --seeds 0 --searcher-episodes 4   # a trial
    python tools/run_benchmark.py --settings noisy_mlp --methods law --search-ranks 1 2 4 --gloo \
        --searcher-episodes 80 --set search.patience=0                                          # what N_a buys
    python tools/run_benchmark.py --settings noisy --methods uniform law --policy fmnist_noisy_mlp   # no search

Settings (Fashion-MNIST, 10k noisy training images, 20 epochs, the schedule of the configs):
`noisy_mlp` = 40 % symmetric noise (uniform_mix), the MLP that memorises noisy labels; `noisy` = the
same noise, the small CNN; `longtail` = clean labels, long-tailed classes (imbalance factor 100), the
small CNN; `noisy_longtail` = 40 % symmetric noise on long-tailed classes (imbalance factor 10), the small CNN.
Every method trains on the same split, data order and lr schedule (law_hpc.train); LAW uses
the policy its own search found on the same setting (a search of `--searcher-episodes` searcher-episodes
split over N_a = --search-ranks searchers), and on `noisy` also the policy searched on `noisy_mlp`
(transfer to another network). Nothing is tuned on the test set. The markdown table (final-epoch test
accuracy, mean +- std over seeds, best epoch beside it, CPU-minutes) is rewritten after every finished
run, so an interrupted benchmark keeps what it measured; re-running skips finished runs.
"""
from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import h5py
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tools"))
from law_hpc.methods import list_methods  # noqa: E402

PYTHON = sys.executable
HOROVODRUN = str(Path(PYTHON).parent / "horovodrun")
METHODS = list_methods()
SETTINGS = {
    "noisy_mlp": {"config": "fmnist_noisy_mlp.yaml",
                  "title": "MLP, 40 % symmetric label noise (memorising)", "searcher_episodes": 80},
    "noisy": {"config": "fmnist_noisy.yaml",
              "title": "small CNN, 40 % symmetric label noise", "searcher_episodes": 32},
    "longtail": {"config": "fmnist_longtail.yaml",
                 "title": "small CNN, clean labels, long-tailed classes (imbalance factor 100)", "searcher_episodes": 16},
    "noisy_longtail": {"config": "fmnist_noisy_longtail.yaml",
                       "title": "small CNN, 40 % symmetric label noise on long-tailed classes (imbalance factor 10)",
                       "searcher_episodes": 16},
}
TRANSFER = {"noisy": "noisy_mlp"}  # setting -> the setting whose searched policy it also trains with


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/benchmark", help="output directory (resumable)")
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--searcher-episodes", type=int, default=0,
                        help="episodes x searchers of each LAW search (0 = the setting's default)")
    parser.add_argument("--search-ranks", nargs="+", type=int, default=[2],
                        help="N_a of the LAW searches: one law row per value (horovodrun -np)")
    parser.add_argument("--gloo", action="store_true",
                        help="searches use Horovod's Gloo controller (it sleeps while waiting; MPI spins, which "
                             "costs dearly with more ranks than cores)")
    parser.add_argument("--jobs", type=int, default=2, help="trainings run side by side (1 thread each)")
    parser.add_argument("--table", default="results.md", help="the markdown table's file name in --out")
    parser.add_argument("--report", action="store_true",
                        help="run nothing: write the table from the runs already finished in --out")
    parser.add_argument("--export", metavar="DIR",
                        help="also write one results file per setting into DIR (docs/results: tools/results_doc.py)")
    parser.add_argument("--set", action="append", default=[], help="extra config override for every run")
    parser.add_argument("--policy", nargs="+", default=[],
                        help="law rows that train with these policies (shipped names or files) instead of searching")
    return parser.parse_args(argv)


def run_logged(cmd: list[str], log: Path) -> float:
    """Run `cmd` with output to `log`; the CPU seconds it used (its processes' user + system time, so runs
    side by side do not inflate each other); a failure raises with the log's tail."""
    log.parent.mkdir(parents=True, exist_ok=True)  # a setting's folder, also without a LAW search
    with open(log, "w") as handle:
        proc = subprocess.Popen(cmd, stdout=handle, stderr=subprocess.STDOUT, cwd=REPO)
        _, status, usage = os.wait4(proc.pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({code}):\n{log.read_text()[-2000:]}")
    return usage.ru_utime + usage.ru_stime


def config_args(setting: str, extra: list[str]) -> list[str]:
    overrides = ["threads_per_rank=1"] + extra  # each setting is its config file, unchanged
    config = REPO / "configs" / SETTINGS[setting]["config"]
    return ["--config", str(config)] + [x for o in overrides for x in ("--set", o)]


def search(args, setting: str, ranks: int, out: Path) -> tuple[Path, float]:
    """The LAW search of one setting with `ranks` searchers; (policy.h5, CPU-minutes of all searchers)."""
    total = args.searcher_episodes or SETTINGS[setting]["searcher_episodes"]
    run_dir = out / setting / f"search-np{ranks}"
    policy, cost_file = run_dir / "policy.h5", run_dir / "cpu_minutes.txt"
    if args.report and not cost_file.exists():
        return policy, float("nan")
    if not cost_file.exists():
        episodes = max(1, total // ranks)
        launcher = [HOROVODRUN, "-np", str(ranks), "-H", f"localhost:{ranks}"] if ranks > 1 else []
        launcher += ["--gloo"] if launcher and args.gloo else []
        cmd = launcher + [PYTHON, "-m", "law_hpc.search", "--run-dir", str(run_dir)] + config_args(
            setting, [f"search.episodes={episodes}"] + args.set)
        run_dir.parent.mkdir(parents=True, exist_ok=True)
        cpu_seconds = run_logged(cmd, out / setting / f"search-np{ranks}.log")
        cost_file.write_text(f"{cpu_seconds / 60:.3f}\n")
    return policy, float(cost_file.read_text())


def train(args, setting: str, row: str, method: str, seed: int, policy: Path | None, out: Path) -> dict | None:
    """One test-phase training; {'final', 'best', 'cpu_minutes'} (None: not run, --report)."""
    run_dir = out / setting / f"{row.replace(' ', '_')}-seed{seed}"
    result_file = run_dir / "result.npy"
    if args.report and not result_file.exists():
        return None
    if not result_file.exists():
        cmd = [PYTHON, "-m", "law_hpc.train", "--run-dir", str(run_dir)] + config_args(setting, [f"seed={seed}"] + args.set)
        cmd += ["--policy", str(policy)] if method == "law" else ["--method", method]
        cpu_seconds = run_logged(cmd, out / setting / f"{row.replace(' ', '_')}-seed{seed}.log")
        with h5py.File(run_dir / "train.h5", "r") as log:
            test_acc, val_acc = log["epochs/test_acc"][()], log["epochs/val_acc"][()]
        np.save(result_file, np.array([test_acc[-1], test_acc.max(), cpu_seconds / 60, val_acc[-1]]))
    final, best, minutes, *val = np.load(result_file)  # older results lack the validation accuracy
    return {"final": final, "best": best, "cpu_minutes": minutes, "val": val[0] if val else float("nan")}


SETTING_ABOUT = ("Fashion-MNIST, a training subset of 10,000 images drawn per setting, 20 epochs; test accuracy (%) at "
                 "the final epoch, mean ± std over seeds; best epoch beside it.")
COLUMNS = ["method", "final epoch", "best epoch", "seeds", "CPU-min"]
CPU_NOTE = "CPU-min: one training's CPU time (user + system); for law, its search's (all searchers) is added."


def setting_rows(results: dict, search_cost: dict, rows: dict, setting: str) -> list[list[str]]:
    """The table rows of one setting: method, final and best epoch (mean ± std), seeds, CPU-minutes."""
    table_rows = []
    for row in rows.get(setting, []):
        runs = results.get((setting, row), [])
        if not runs:
            continue
        final = 100 * np.array([r["final"] for r in runs])
        best = 100 * np.array([r["best"] for r in runs])
        minutes = np.mean([r["cpu_minutes"] for r in runs]) + search_cost.get((setting, row), 0.0)
        table_rows.append([row, f"{final.mean():.1f} ± {final.std():.1f}", f"{best.mean():.1f} ± {best.std():.1f}",
                           str(len(runs)), f"{minutes:.1f}"])
    return table_rows


def table(results: dict, search_cost: dict, rows: dict, args) -> str:
    lines = [SETTING_ABOUT, ""]
    for setting in args.settings:
        lines += [f"**{SETTINGS[setting]['title']}** (`{setting}`)", "", "| " + " | ".join(COLUMNS) + " |",
                  "| --- | ---: | ---: | ---: | ---: |"]
        lines += ["| " + " | ".join(r) + " |" for r in setting_rows(results, search_cost, rows, setting)]
        lines.append("")
    lines.append(CPU_NOTE)
    return "\n".join(lines) + "\n"


def without_export(argv) -> list[str]:
    """The command line as it measured: without --report and --export DIR."""
    kept, skip = [], False
    for word in argv:
        if not skip and word not in ("--report", "--export") and not word.startswith("--export="):
            kept.append(word)
        skip = word == "--export"
    return kept


def export(results: dict, search_cost: dict, rows: dict, args, folder: Path, argv) -> None:
    """--export: one results file per setting (benchmark_<setting>.json) for tools/results_doc.py."""
    from results_doc import write_results
    for setting in args.settings:
        command = "python tools/run_benchmark.py " + shlex.join(without_export(argv))
        path = write_results(folder / f"benchmark_{setting}.json", title=f"{SETTINGS[setting]['title']} (`{setting}`)",
                             command=command.strip(), columns=COLUMNS,
                             rows=setting_rows(results, search_cost, rows, setting), about=SETTING_ABOUT,
                             notes=CPU_NOTE)
        print(f"[benchmark] results file: {path}")


def main(argv=None) -> int:
    args = parse_args(argv)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    results, search_cost, rows, policies = {}, {}, {}, {}

    def finish(key, result):
        if result is None:
            return
        results.setdefault(key, []).append(result)
        (out / args.table).write_text(table(results, search_cost, rows, args))
        print(f"[benchmark] {key[0]} {key[1]}: final {100 * result['final']:.1f} % best {100 * result['best']:.1f} %",
              flush=True)

    for setting in args.settings:
        jobs = []  # (row name, method, policy)
        for method in args.methods:
            if method != "law":
                jobs.append((method, method, None))
                continue
            if args.policy:  # no search: each given policy is a row
                jobs += [(f"law ({Path(policy).stem})", "law", policy) for policy in args.policy]
                continue
            for ranks in args.search_ranks:
                if not args.report:
                    print(f"[benchmark] {setting}: searching with {ranks} searcher(s)", flush=True)
                row = "law" if ranks == args.search_ranks[0] else f"law N_a={ranks}"
                policies[(setting, ranks)], search_cost[(setting, row)] = search(args, setting, ranks, out)
                jobs.append((row, "law", policies[(setting, ranks)]))
            source = TRANSFER.get(setting)
            if source and (source, args.search_ranks[0]) in policies:
                jobs.append((f"law (policy of {source})", "law", policies[(source, args.search_ranks[0])]))
        rows[setting] = [row for row, _, _ in jobs]
        with ThreadPoolExecutor(args.jobs) as pool:
            futures = {pool.submit(train, args, setting, row, method, seed, policy, out): row
                       for seed in args.seeds for row, method, policy in jobs}
            for future, row in futures.items():
                finish((setting, row), future.result())
    if args.export:
        export(results, search_cost, rows, args, Path(args.export), sys.argv[1:] if argv is None else argv)
    print(f"[benchmark] table: {out / args.table}\n")
    print((out / args.table).read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
