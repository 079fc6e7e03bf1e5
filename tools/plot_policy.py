#!/usr/bin/env python
"""theta_T (and b) per stage, one panel per feature, one line per episode (mean over searchers).

    python tools/plot_policy.py runs/<run>/metrics.h5 [--out policy.png]
"""
import numpy as np
from _common import load_or_exit, metrics_argument_parser, pyplot, save_figure

NAMES = ["theta loss", "theta entropy", "theta density", "theta label", "b"]


def main(argv=None) -> int:
    args = metrics_argument_parser(__doc__.splitlines()[0], "policy.png").parse_args(argv)
    c = load_or_exit(args.metrics)
    plt = pyplot()
    fig, axes = plt.subplots(1, 5, figsize=(16, 3.2), sharex=True)
    for episode in np.unique(c["episode"]):
        rows = (c["episode"] == episode) & (c["weighted"] == 1)
        stages = np.unique(c["stage"][rows])
        if len(stages) == 0:
            continue
        actions = np.array([c["action"][rows & (c["stage"] == s)].mean(axis=0) for s in stages])
        for i, ax in enumerate(axes):
            ax.plot(stages + 1, actions[:, i], marker=".", label=f"ep {episode + 1}")
    for ax, name in zip(axes, NAMES):
        ax.set_title(name)
        ax.set_xlabel("stage")
        ax.axhline(0, color="gray", lw=0.6)
    axes[0].legend(fontsize="x-small")
    return save_figure(fig, args, "policy.png")


if __name__ == "__main__":
    raise SystemExit(main())
