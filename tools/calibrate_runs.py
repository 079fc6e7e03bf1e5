#!/usr/bin/env python
"""What train.calibrate would give finished trainings: each run's model.pt, calibrated on its validation split as
the option does at the last epoch's end (law_hpc/models/calibration.py), scored on its test split.

    python tools/calibrate_runs.py runs/my-model                            # one run: the table
    python tools/calibrate_runs.py runs/matrix/mlp/*/*/*-seed* --save       # also write model_calibrated.pt
    python tools/calibrate_runs.py RUN ... --export docs/results/NN_x.json  # the table as a results file

Any method's run; a model.pt that is already calibrated is calibrated again from its network(s). Nothing in a run
directory is changed but the model_calibrated.pt that --save writes.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_doc import write_results  # noqa: E402

COLUMNS = ["run", "validation", "cross-validated: none / bias / matrix", "chosen", "test", "test, calibrated"]


def calibrate_run(run_dir: Path, save: bool) -> list[str]:
    """One row of the table for a finished training's directory."""
    from law_hpc.config import load_config
    from law_hpc.data import build_data
    from law_hpc.engine.evaluation import sharded_accuracy
    from law_hpc.models import load
    from law_hpc.models.calibration import Calibrated, calibrate, log_probabilities_of
    from law_hpc.models.files import save_model_file

    cfg = load_config(run_dir / "config.yaml")
    data = build_data(cfg.data, purpose="train", seed=cfg.seed, rank=0, world_size=1, device=torch.device("cpu"))
    model = load(run_dir / "model.pt")
    network = model.model if isinstance(model, Calibrated) else model
    log_probabilities, labels = log_probabilities_of(network, data.val)
    calibrated, kind, accuracies = calibrate(network, log_probabilities, labels)

    def test(scored) -> str:
        return "–" if data.test is None else f"{100 * sharded_accuracy(scored, data.test, lambda mine: [mine]):.2f}"
    if save:  # what model.pt says of itself, with this map
        about = {key: value for key, value in model.law_hpc_info.items()
                 if key not in ("format", "network_format", "member_weights", "calibration")}
        method_note = about.get("note", "").split("calibration: ")[0].rstrip("; ")  # a map's note comes last
        note = "; ".join(part for part in (method_note, f"calibration: {kind}") if part)
        save_model_file(run_dir / "model_calibrated.pt", calibrated, **{**about, "note": note})
    return [str(run_dir), f"{100 * accuracies['none']:.2f}",
            " / ".join(f"{100 * accuracy:.2f}" for accuracy in accuracies.values()), kind,
            test(network), test(calibrated) if kind != "none" else "(kept)"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="training run directories (model.pt, config.yaml)")
    parser.add_argument("--save", action="store_true", help="write each run's model_calibrated.pt")
    parser.add_argument("--export", metavar="FILE", help="also write the table as a results file (docs/results/)")
    parser.add_argument("--title", default="train.calibrate on finished runs")
    args = parser.parse_args(argv)
    rows = []
    for run_dir in args.runs:
        if not (run_dir / "model.pt").is_file() or not (run_dir / "config.yaml").is_file():
            print(f"error: {run_dir} is not a finished training (no model.pt or config.yaml)", file=sys.stderr)
            return 2
        rows.append(calibrate_run(run_dir, args.save))
        print("| " + " | ".join(rows[-1]) + " |", flush=True)
    if args.export:
        write_results(args.export, title=args.title, columns=COLUMNS, rows=rows,
                      command="python tools/calibrate_runs.py " + " ".join(map(str, args.runs)),
                      about="Accuracy (%). Validation: the model's own; cross-validated: each map's accuracy on the "
                            "validation split, every image predicted by the map fit on the other 4 of 5 folds.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
