#!/usr/bin/env python
"""Follow a running search from its metrics.h5 (SWMR): print each new stage as it lands.

    python tools/watch.py runs/<run>/metrics.h5 [--interval 5] [--once]
"""
import time

import numpy as np
from _common import metrics_argument_parser

from law_hpc.io.metrics import read_stages


def main(argv=None) -> int:
    parser = metrics_argument_parser(__doc__.splitlines()[0])
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between polls")
    parser.add_argument("--once", action="store_true", help="print what is there and exit")
    args = parser.parse_args(argv)
    seen = set()
    while True:
        try:
            c = read_stages(args.metrics)
        except (FileNotFoundError, ValueError) as err:
            print(f"error: {err}")
            return 2
        for episode, stage in sorted(set(zip(c["episode"].tolist(), c["stage"].tolist())) - seen):
            rows = (c["episode"] == episode) & (c["stage"] == stage)
            gap = np.mean(c["acc_target"][rows] - c["acc_reference"][rows])
            print(f"episode {episode + 1} stage {stage + 1}: {rows.sum()} searcher(s) reward "
                  f"{np.mean(c['reward'][rows]):+.4f} acc gap {gap:+.4f} "
                  f"samples/s {np.sum(c['samples_per_second'][rows]):,.0f}", flush=True)
            seen.add((episode, stage))
        if args.once:
            return 0
        time.sleep(args.interval)


if __name__ == "__main__":
    raise SystemExit(main())
