"""Shared by the tools/ scripts: argument parsing and loading metrics.h5 with a clear error."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from law_hpc.io.metrics import read_stages  # noqa: E402


def metrics_argument_parser(description: str, default_png: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("metrics", help="a run's metrics.h5 (also while the job is writing it)")
    if default_png:
        parser.add_argument("--out", help=f"PNG to write (default: {default_png} beside metrics.h5)")
    return parser


def load_or_exit(path: str) -> dict:
    """The /stages columns, or one clear error line and exit code 2."""
    try:
        columns = read_stages(path)
    except (FileNotFoundError, ValueError, KeyError) as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2)
    if len(columns["episode"]) == 0:
        print(f"error: {path} holds no stage rows yet", file=sys.stderr)
        raise SystemExit(2)
    return columns


def output_path(args, default_png: str) -> Path:
    return Path(args.out) if args.out else Path(args.metrics).resolve().parent / default_png


def pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def save_figure(fig, args, default_png: str) -> int:
    """Write the figure where --out says (default beside metrics.h5), print its path; exit code 0."""
    out = output_path(args, default_png)
    if fig.get_layout_engine() is None:
        fig.tight_layout()
    fig.savefig(out, dpi=120)
    print(out)
    return 0


def episode_colours(plt, fig, axes, episodes) -> dict:
    """One colour per episode on a sequential map with a colour bar: a legend does not scale to 40 episodes."""
    episodes = sorted(int(e) for e in episodes)
    norm = plt.Normalize(episodes[0] + 1, max(episodes[-1] + 1, episodes[0] + 2))
    fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap="viridis"), ax=axes, label="episode")
    return {e: plt.get_cmap("viridis")(norm(e + 1)) for e in episodes}
