#!/usr/bin/env python
"""Paper Fig. 3: mean training-loss gap (target minus reference) per stage, one line per episode.

    python tools/plot_loss_gap.py runs/<run>/metrics.h5 [--out loss_gap.png]
"""
import numpy as np
from _common import episode_colours, load_or_exit, metrics_argument_parser, pyplot, save_figure


def main(argv=None) -> int:
    args = metrics_argument_parser(__doc__.splitlines()[0], "loss_gap.png").parse_args(argv)
    c = load_or_exit(args.metrics)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4), layout="constrained")
    colours = episode_colours(plt, fig, ax, np.unique(c["episode"]))
    for episode in np.unique(c["episode"]):
        rows = c["episode"] == episode
        stages = np.unique(c["stage"][rows])
        gap = [np.mean(c["loss_target"][rows & (c["stage"] == s)] - c["loss_reference"][rows & (c["stage"] == s)])
               for s in stages]
        ax.plot(stages + 1, gap, marker="o", color=colours[int(episode)])
    ax.axhline(0, color="gray", lw=0.8)
    ax.set_xlabel("stage")
    ax.set_ylabel("loss gap (target - reference)")
    ax.set_title("Training-loss gap per stage (paper Fig. 3), mean over searchers")
    return save_figure(fig, args, "loss_gap.png")


if __name__ == "__main__":
    raise SystemExit(main())
