#!/usr/bin/env python
"""Follow a running search (metrics.h5) or training (train.h5) live (SWMR): print each new stage or epoch as it
lands, and exit when the run ends (its status attribute: done 0, failed 1, preempted 75).

    python tools/watch.py runs/<run>/metrics.h5 [--interval 5] [--once]
"""
import time

import numpy as np
from _common import metrics_argument_parser

from law_hpc.io.metrics import read_table

EXIT_CODES = {"done": 0, "failed": 1, "preempted": 75}


def stage_lines(c: dict, seen: set):
    """One line per (episode, stage) not yet in `seen`, averaged over the searchers."""
    for episode, stage in sorted(set(zip(c["episode"].tolist(), c["stage"].tolist())) - seen):
        rows = (c["episode"] == episode) & (c["stage"] == stage)
        gap = np.mean(c["acc_target"][rows] - c["acc_reference"][rows])
        seen.add((episode, stage))
        yield (f"episode {episode + 1} stage {stage + 1}: {rows.sum()} searcher(s) reward "
               f"{np.mean(c['reward'][rows]):+.4f} acc gap {gap:+.4f} "
               f"samples/s {np.sum(c['samples_per_second'][rows]):,.0f}")


def epoch_lines(c: dict, seen: set):
    """One line per epoch of a train.h5 not yet in `seen`."""
    for i in range(len(c["epoch"])):
        if int(c["epoch"][i]) not in seen:
            seen.add(int(c["epoch"][i]))
            yield (f"epoch {int(c['epoch'][i]) + 1}: loss {c['train_loss'][i]:.4f} test {c['test_acc'][i]:.4f} "
                   f"val {c['val_acc'][i]:.4f} samples/s {c['samples_per_second'][i]:,.0f}")


def main(argv=None) -> int:
    parser = metrics_argument_parser(__doc__.splitlines()[0])
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between polls")
    parser.add_argument("--once", action="store_true", help="print what is there and exit")
    args = parser.parse_args(argv)
    seen = set()
    while True:
        try:
            columns, status = read_table(args.metrics)  # the status is read first: rows before it are all there
        except (FileNotFoundError, ValueError, KeyError) as err:
            print(f"error: {err}")
            return 2
        for line in (stage_lines if "stage" in columns else epoch_lines)(columns, seen):
            print(line, flush=True)
        if args.once:
            return 0
        if status in EXIT_CODES:
            print(f"run {status}", flush=True)
            return EXIT_CODES[status]
        time.sleep(args.interval)


if __name__ == "__main__":
    raise SystemExit(main())
