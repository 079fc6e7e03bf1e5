#!/usr/bin/env python
"""Fixed policies in the search environment: does the search's reward rank policies as the final training does?

    python tools/probe_policies.py --config configs/fmnist_noisy_mlp.yaml --seeds 0 1 2 --out runs/probe [--test]
    python tools/probe_policies.py --policy runs/search-x/policy.h5 --action "loss=-4,b=0.5" --seeds 0 1

Each probe is one search episode (`python -m law_hpc.search`, search.episodes=1) acting with a frozen
actor and no exploration noise, on the config's search subset with seed s: its reward sum and its final
validation gap (target - reference) are what the search would see. A probe is a fixed action a_T =
[theta (loss, entropy, density, label), b] in every weighted stage (written as a constant policy.h5), or a
searched policy.h5. With --test, each probe also trains the test-phase network (`python -m law_hpc.train
--policy`) and the table adds the final-epoch test accuracy, with Spearman's rank correlation between
the search's reward and test accuracy over the probes. Runs are kept in --out and reused on a rerun.
"""
from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import h5py
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from law_hpc.config import ConfigError  # noqa: E402
from law_hpc.data import load_datasets  # noqa: E402
from law_hpc.io.metrics import read_stages  # noqa: E402
from law_hpc.io.policy_file import load_policy, save_policy  # noqa: E402
from law_hpc.law.features import FEATURE_NAMES  # noqa: E402
from law_hpc.law.policy import ACTION_DIM, ACTION_TERMS  # noqa: E402
from law_hpc.law.settings import PolicySettings, strategy_model  # noqa: E402
from law_hpc.registry import load_checked_config  # noqa: E402

DEFAULT_ACTIONS = ["uniform", "loss=-1", "loss=-2", "loss=-4,b=0.5", "loss=-8", "loss=2"]
POLICY_KEYS = {"stages": "search.stages", "warmup_stages": "search.warmup_stages", "epochs": "optim.epochs",
               "lr_decay_stages": "optim.lr_decay_stages", "embed_dim": "strategy.embed_dim",
               "hidden": "strategy.hidden", "action_scale": "strategy.action_scale",
               "action_bound": "strategy.action_bound", "action_terms": "strategy.action_terms",
               "weight_norm": "strategy.weight_norm", "feature_norm": "strategy.feature_norm"}
"""Policy settings -> the config keys that make the search environment act as the policy was searched."""


def parse_action(text: str) -> np.ndarray:
    """'uniform' or 'loss=-4,b=0.5' (names: loss, entropy, density, label, b) -> [theta, b]."""
    action = np.zeros(ACTION_DIM, dtype=np.float32)
    if text == "uniform":
        return action
    names = list(FEATURE_NAMES) + ["b"]
    for item in text.split(","):
        name, _, value = item.partition("=")
        if name.strip() not in names:
            raise ValueError(f"--action {text!r}: '{name}' is not one of {', '.join(names)}")
        action[names.index(name.strip())] = float(value)
    return action


def constant_policy(path: Path, cfg, action: np.ndarray, num_classes: int) -> None:
    """A policy.h5 whose actor outputs `action` in every state (an unbounded actor of scale 1)."""
    settings = dataclasses.replace(PolicySettings.from_config(cfg, num_classes), action_bound="none", action_scale=1.0,
                                   action_terms=ACTION_TERMS)
    model = strategy_model(settings)
    model.actor.make_constant(action)
    save_policy(path, model, settings, np.zeros(num_classes, dtype=np.float32))


def policy_overrides(policy: Path) -> list[str]:
    """--set assignments that give the search environment the policy's own settings."""
    settings = load_policy(policy).settings
    return [f"{key}={list(value) if isinstance(value, tuple) else value}"
            for key, value in ((key, getattr(settings, name)) for name, key in POLICY_KEYS.items())]


def run(cmd: list[str], log: Path) -> None:
    with open(log, "w") as handle:
        code = subprocess.call(cmd, stdout=handle, stderr=subprocess.STDOUT, cwd=REPO)
    if code != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({code}); see {log}:\n{log.read_text()[-1500:]}")


def probe_episode(args, policy: Path, seed: int, run_dir: Path) -> dict:
    """The search environment's view of `policy` for `seed`: reward sum and final validation gap."""
    if not (run_dir / "policy.h5").exists():
        overrides = args.set + policy_overrides(policy) + [
            f"seed={seed}", "search.episodes=1", f"strategy.init_policy={policy}", "strategy.fdu_epochs=0",
            "threads_per_rank=1"]
        cmd = [sys.executable, "-m", "law_hpc.search", "--config", args.config, "--run-dir", str(run_dir)]
        run(cmd + [item for o in overrides for item in ("--set", o)], run_dir.with_suffix(".log"))
    columns = read_stages(run_dir / "metrics.h5")
    last = columns["stage"] == columns["stage"].max()
    return {"reward": float(columns["reward"].sum()),
            "gap": float((columns["acc_target"] - columns["acc_reference"])[last].mean())}


def probe_training(args, policy: Path, seed: int, run_dir: Path) -> float:
    """Final-epoch test accuracy of the test-phase training weighted by `policy`."""
    if not (run_dir / "train.h5").exists() or not _finished(run_dir):
        overrides = args.set + policy_overrides(policy) + [f"seed={seed}", "threads_per_rank=1"]
        cmd = [sys.executable, "-m", "law_hpc.train", "--config", args.config, "--run-dir", str(run_dir),
               "--policy", str(policy)]
        run(cmd + [item for o in overrides for item in ("--set", o)], run_dir.with_suffix(".log"))
    with h5py.File(run_dir / "train.h5", "r") as log:
        return float(log["epochs/test_acc"][-1])


def _finished(run_dir: Path) -> bool:
    cfg = load_checked_config(run_dir / "config.yaml")
    with h5py.File(run_dir / "train.h5", "r") as log:
        return len(log["epochs/epoch"]) == cfg.optim.epochs


def spearman(x, y) -> float:
    """Spearman's rank correlation (ties averaged)."""
    def ranks(values):
        values = np.asarray(values, dtype=np.float64)
        order = values.argsort()
        ranked = np.empty(len(values))
        ranked[order] = np.arange(len(values))
        for value in np.unique(values):  # average the ranks of ties
            ranked[values == value] = ranked[values == value].mean()
        return ranked
    return float(np.corrcoef(ranks(x), ranks(y))[0, 1])


def mean_se(values) -> str:
    values = np.asarray(values, dtype=np.float64)
    se = values.std(ddof=1) / np.sqrt(len(values)) if len(values) > 1 else float("nan")
    return f"{values.mean():+.3f} ± {se:.3f}"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(REPO / "configs" / "fmnist_noisy_mlp.yaml"))
    parser.add_argument("--out", default="runs/probe", help="directory for the probe runs (reused on a rerun)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--action", action="append", default=None,
                        help=f"a fixed action, e.g. 'loss=-4,b=0.5' (repeatable; default: {' '.join(DEFAULT_ACTIONS)})")
    parser.add_argument("--policy", action="append", default=[], help="a searched policy.h5 (repeatable)")
    parser.add_argument("--test", action="store_true", help="also train the test-phase network with each probe")
    parser.add_argument("--jobs", type=int, default=2, help="runs side by side (one thread each)")
    parser.add_argument("--set", action="append", default=[], help="config override for every run")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    try:
        cfg = load_checked_config(args.config, args.set)
        actions = {text: parse_action(text) for text in (args.action or DEFAULT_ACTIONS)}
    except (ConfigError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    num_classes = load_datasets(cfg.data)[0].num_classes
    probes: dict[str, Path] = {}
    for text, action in actions.items():
        path = out / f"action[{text}].h5"
        constant_policy(path, cfg, action, num_classes)
        probes[text] = path
    for policy in args.policy:
        probes[str(policy)] = Path(policy).resolve()

    def one(name, path, seed):
        tag = Path(path).stem
        result = probe_episode(args, path, seed, out / f"{tag}-seed{seed}")
        if args.test:
            result["test"] = probe_training(args, path, seed, out / f"{tag}-seed{seed}-train")
        print(f"[probe] {name} seed {seed}: reward {result['reward']:+.4f} gap {result['gap']:+.4f}"
              + (f" test {result['test']:.4f}" if args.test else ""), flush=True)
        return name, result

    with ThreadPoolExecutor(args.jobs) as pool:
        done = list(pool.map(lambda job: one(*job), [(n, p, s) for n, p in probes.items() for s in args.seeds]))
    results = {name: [r for n, r in done if n == name] for name in probes}
    header = "| probe | reward sum | final val gap (pts) |" + (" test acc % |" if args.test else "")
    lines = [f"{cfg.model.name} on {cfg.data.dataset}, seeds {' '.join(map(str, args.seeds))}; mean ± standard error", "",
             header, "| --- | ---: | ---: |" + (" ---: |" if args.test else "")]
    for name, rows in results.items():
        line = (f"| {name} | {mean_se([r['reward'] for r in rows])} | "
                f"{mean_se([100 * r['gap'] for r in rows])} |")
        if args.test:
            line += f" {mean_se([100 * r['test'] for r in rows]).lstrip('+')} |"
        lines.append(line)
    if args.test and len(results) > 2:
        rewards = [np.mean([r["reward"] for r in rows]) for rows in results.values()]
        tests = [np.mean([r["test"] for r in rows]) for rows in results.values()]
        gaps = [np.mean([r["gap"] for r in rows]) for rows in results.values()]
        lines += ["", f"Spearman(search reward sum, test accuracy) = {spearman(rewards, tests):+.2f}; "
                      f"Spearman(final validation gap, test accuracy) = {spearman(gaps, tests):+.2f} "
                      f"over {len(results)} probes"]
    table = "\n".join(lines) + "\n"
    (out / "probe.md").write_text(table)
    print("\n" + table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
