#!/usr/bin/env python
"""theta_T (and b) per stage, one panel per searched term, one line per episode (mean over searchers).

    python tools/plot_policy.py runs/<run>/metrics.h5 [--out policy.png]
"""
import numpy as np
from _common import episode_colours, load_or_exit, metrics_argument_parser, pyplot, save_figure

NAMES = ["theta loss", "theta entropy", "theta density", "theta label", "b"]


def main(argv=None) -> int:
    args = metrics_argument_parser(__doc__.splitlines()[0], "policy.png").parse_args(argv)
    c = load_or_exit(args.metrics)
    plt = pyplot()
    searched = [i for i in range(len(NAMES)) if np.any(c["action"][:, i] != 0)] or list(range(len(NAMES)))
    fig, axes = plt.subplots(1, len(searched), figsize=(3.4 * len(searched) + 1, 3.2), sharex=True,
                             squeeze=False, layout="constrained")
    axes = axes[0]
    colours = episode_colours(plt, fig, axes, np.unique(c["episode"]))
    for episode in np.unique(c["episode"]):
        rows = (c["episode"] == episode) & (c["weighted"] == 1)
        stages = np.unique(c["stage"][rows])
        if len(stages) == 0:
            continue
        actions = np.array([c["action"][rows & (c["stage"] == s)].mean(axis=0) for s in stages])
        for i, ax in zip(searched, axes):
            ax.plot(stages + 1, actions[:, i], marker=".", color=colours[int(episode)])
    for i, ax in zip(searched, axes):
        ax.set_title(NAMES[i])
        ax.set_xlabel("stage")
        ax.axhline(0, color="gray", lw=0.6)
    return save_figure(fig, args, "policy.png")


if __name__ == "__main__":
    raise SystemExit(main())
