#!/usr/bin/env python
"""Write a run's metrics.h5 (or train.h5) as one flat CSV table: named action columns (action_loss,
action_entropy, action_density, action_label, action_bias) and per-class columns (class_weight_mean_<c>).

    python tools/export_csv.py runs/<run>/metrics.h5 [--out metrics.csv]
"""
import sys
from pathlib import Path

from _common import metrics_argument_parser

from law_hpc.io.metrics import to_dataframe


def main(argv=None) -> int:
    parser = metrics_argument_parser(__doc__.splitlines()[0])
    parser.add_argument("--out", help="CSV to write (default: beside the file, same name, .csv)")
    args = parser.parse_args(argv)
    try:
        frame = to_dataframe(args.metrics)
    except (FileNotFoundError, ValueError, KeyError, ImportError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else Path(args.metrics).with_suffix(".csv")
    frame.to_csv(out, index=False)
    print(f"{out} ({len(frame)} rows, {len(frame.columns)} columns)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
