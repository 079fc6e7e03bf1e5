"""The test-phase benchmark: search once per setting, then train every method for several seeds.

    python tools/run_benchmark.py --out runs/benchmark            # the README table (about an hour here)
    python tools/run_benchmark.py --out /tmp/b --seeds 0 --epochs 2 --train-size 1000 --episodes 1   # a trial

Settings (Fashion-MNIST, small CNN): `noisy` = 40 % symmetric label noise (uniform_mix); `longtail` =
clean labels, long-tailed classes (imbalance factor 100). Every method trains on the same split, data
order, augmentation and lr schedule (law_hpc.train); LAW uses the policy its own search found on the
same setting. Nothing is tuned on the test set. The markdown table (final-epoch test accuracy, mean
+- std over seeds, best-epoch accuracy beside it, CPU-minutes) is rewritten after every finished run,
so an interrupted benchmark keeps what it measured; re-running skips finished runs.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import h5py
import numpy as np

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
HOROVODRUN = str(Path(PYTHON).parent / "horovodrun")
METHODS = ["uniform", "focal", "class_balanced", "self_paced", "coteaching", "l2rw", "mwnet", "law", "oracle"]
SETTINGS = {
    "noisy": ["data.noise_mode=uniform_mix", "data.noise_rate=0.4", "data.imbalance=none",
              "train.forget_rate=0.4"],
    "longtail": ["data.noise_mode=none", "data.noise_rate=0.0", "data.imbalance=long_tail",
                 "data.imbalance_factor=100", "train.forget_rate=0.1"],
}
TITLES = {"noisy": "40 % symmetric label noise", "longtail": "long-tailed, imbalance factor 100"}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/benchmark", help="output directory (resumable)")
    parser.add_argument("--config", default=str(REPO / "configs" / "fmnist_noisy.yaml"))
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=20, help="test-phase epochs")
    parser.add_argument("--train-size", type=int, default=10000, help="test-phase training images")
    parser.add_argument("--episodes", type=int, default=8, help="search episodes (LAW)")
    parser.add_argument("--search-ranks", type=int, default=2, help="searchers (horovodrun -np)")
    parser.add_argument("--jobs", type=int, default=2, help="trainings run side by side (1 thread each)")
    parser.add_argument("--set", action="append", default=[], help="extra config override for every run")
    return parser.parse_args(argv)


def run_logged(cmd: list[str], log: Path) -> float:
    """Run `cmd` with output to `log`; its wall time in seconds; a failure raises with the log's tail."""
    started = time.perf_counter()
    with open(log, "w") as handle:
        code = subprocess.call(cmd, stdout=handle, stderr=subprocess.STDOUT, cwd=REPO)
    if code != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({code}):\n{log.read_text()[-2000:]}")
    return time.perf_counter() - started


def search(args, setting: str, out: Path) -> tuple[Path, float]:
    """The LAW search of one setting; (policy.h5, CPU-minutes)."""
    run_dir = out / setting / "search"
    policy, cost_file = run_dir / "policy.h5", run_dir / "cpu_minutes.txt"
    if not cost_file.exists():
        overrides = SETTINGS[setting] + [f"search.episodes={args.episodes}", "threads_per_rank=1"] + args.set
        cmd = [HOROVODRUN, "-np", str(args.search_ranks), "-H", f"localhost:{args.search_ranks}", PYTHON, "-m",
               "law_hpc.search", "--config", args.config, "--run-dir", str(run_dir)]
        cmd += [item for assignment in overrides for item in ("--set", assignment)]
        run_dir.parent.mkdir(parents=True, exist_ok=True)
        seconds = run_logged(cmd, out / setting / "search.log")
        cost_file.write_text(f"{seconds * args.search_ranks / 60:.3f}\n")
    return policy, float(cost_file.read_text())


def train(args, setting: str, method: str, seed: int, policy: Path, out: Path) -> dict:
    """One test-phase training; {'final', 'best', 'cpu_minutes'}."""
    run_dir = out / setting / f"{method}-seed{seed}"
    result_file = run_dir / "result.npy"
    if not result_file.exists():
        overrides = SETTINGS[setting] + [f"seed={seed}", f"train.epochs={args.epochs}",
                                         f"data.train_size={args.train_size}", "threads_per_rank=1"] + args.set
        cmd = [PYTHON, "-m", "law_hpc.train", "--config", args.config, "--run-dir", str(run_dir)]
        cmd += ["--policy", str(policy)] if method == "law" else ["--method", method]
        cmd += [item for assignment in overrides for item in ("--set", assignment)]
        seconds = run_logged(cmd, out / setting / f"{method}-seed{seed}.log")
        with h5py.File(run_dir / "train.h5", "r") as log:
            test_acc = log["epochs/test_acc"][()]
        np.save(result_file, np.array([test_acc[-1], test_acc.max(), seconds / 60]))
    final, best, minutes = np.load(result_file)
    return {"final": final, "best": best, "cpu_minutes": minutes}


def table(results: dict, search_cost: dict, args) -> str:
    lines = [f"Fashion-MNIST, small CNN, {args.train_size} training images, {args.epochs} epochs; "
             f"test accuracy (%) at the final epoch, mean ± std over seeds; best epoch beside it.", ""]
    for setting in args.settings:
        lines += [f"**{TITLES[setting]}**", "", "| method | final epoch | best epoch | seeds | CPU-min |",
                  "| --- | ---: | ---: | ---: | ---: |"]
        for method in args.methods:
            runs = results.get((setting, method), [])
            if not runs:
                continue
            final = 100 * np.array([r["final"] for r in runs])
            best = 100 * np.array([r["best"] for r in runs])
            minutes = np.mean([r["cpu_minutes"] for r in runs]) + (search_cost.get(setting, 0.0) if method == "law" else 0)
            lines.append(f"| {method} | {final.mean():.1f} ± {final.std():.1f} | {best.mean():.1f} ± {best.std():.1f} "
                         f"| {len(runs)} | {minutes:.1f} |")
        lines.append("")
    lines.append("CPU-min: one training's CPU time; for law, the search's (all searchers) is added.")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    args = parse_args(argv)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    results, search_cost = {}, {}

    def finish(key, result):
        results.setdefault(key, []).append(result)
        (out / "results.md").write_text(table(results, search_cost, args))
        print(f"[benchmark] {key[0]} {key[1]}: final {100 * result['final']:.1f} % best {100 * result['best']:.1f} %",
              flush=True)

    for setting in args.settings:
        policy = None
        if "law" in args.methods:
            print(f"[benchmark] {setting}: searching ({args.episodes} episodes, {args.search_ranks} ranks)", flush=True)
            policy, search_cost[setting] = search(args, setting, out)
        jobs = [(method, seed) for seed in args.seeds for method in args.methods]
        with ThreadPoolExecutor(args.jobs) as pool:
            futures = {pool.submit(train, args, setting, method, seed, policy, out): method for method, seed in jobs}
            for future, method in futures.items():
                finish((setting, method), future.result())
    print(f"[benchmark] table: {out / 'results.md'}\n")
    print((out / "results.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
