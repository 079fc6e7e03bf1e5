#!/usr/bin/env python
"""Per-episode markdown table of a search: reward sum, final accuracy gap, final policy theta.

    python tools/summarize.py runs/<run>/metrics.h5
"""
from _common import load_or_exit, metrics_argument_parser

from law_hpc.analysis import episode_summary, summary_markdown


def main(argv=None) -> int:
    args = metrics_argument_parser(__doc__.splitlines()[0]).parse_args(argv)
    print(summary_markdown(episode_summary(load_or_exit(args.metrics))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
