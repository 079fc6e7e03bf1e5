#!/usr/bin/env python
"""Paper Fig. 4: per-class mean sample weight over stages (one episode, mean over searchers).

    python tools/plot_class_weights.py runs/<run>/metrics.h5 [--episode N] [--out class_weights.png]
"""
import numpy as np
from _common import load_or_exit, metrics_argument_parser, pyplot, save_figure


def main(argv=None) -> int:
    parser = metrics_argument_parser(__doc__.splitlines()[0], "class_weights.png")
    parser.add_argument("--episode", type=int, default=0, help="1-based episode (default: the last one)")
    args = parser.parse_args(argv)
    c = load_or_exit(args.metrics)
    episode = args.episode - 1 if args.episode else int(c["episode"].max())
    rows = c["episode"] == episode
    if not rows.any():
        print(f"error: no rows for episode {episode + 1}")
        return 2
    stages = np.unique(c["stage"][rows])
    per_class = np.array([np.nanmean(c["class_weight_mean"][rows & (c["stage"] == s)], axis=0) for s in stages])
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for cls in range(per_class.shape[1]):
        ax.plot(stages + 1, per_class[:, cls], marker=".", label=f"class {cls}")
    ax.set_xlabel("stage")
    ax.set_ylabel("mean weight K")
    ax.set_title(f"Per-class mean weight, episode {episode + 1} (paper Fig. 4)")
    ax.legend(fontsize="x-small", ncol=2)
    return save_figure(fig, args, "class_weights.png")


if __name__ == "__main__":
    raise SystemExit(main())
