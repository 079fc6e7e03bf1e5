"""A trained network as a file users keep: everything needed to rebuild it, and its weights.

    model = law_hpc.models.load("runs/train-x/model.pt")   # an nn.Module in eval mode, on the CPU

The file is a plain torch.save of tensors and containers (it loads with weights_only=True), written atomically.
An ensemble (LAW's guard with methods.law.guard_ensemble) is saved as its members' weights and their weights in the
mean, in format law_hpc.model.ensemble/1. A model with a post-hoc calibration map (train.calibrate) is saved as its
network or ensemble plus the map, in format law_hpc.model.calibrated/1 (older readers refuse it, rather than drop
the map).
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from .calibration import Calibrated
from .ensemble import Ensemble
from .registry import create_model

FORMAT = "law_hpc.model/1"
ENSEMBLE_FORMAT = "law_hpc.model.ensemble/1"
CALIBRATED_FORMAT = "law_hpc.model.calibrated/1"


def save_model_file(path: str | Path, model: nn.Module, *, name: str, options: dict, num_classes: int,
                    in_channels: int, image_size: int, classes=None, **about) -> Path:
    """Write `model` (built by create_model(name, ..., **options), or an Ensemble of such) to `path` atomically;
    `about`: plain values recorded with it (epoch, accuracies, method)."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    contents = {"format": FORMAT, "name": name, "options": options, "num_classes": num_classes,
                "in_channels": in_channels, "image_size": image_size, "classes": list(classes or []), **about}
    calibration = None
    if isinstance(model, Calibrated):
        calibration, model = model.parameters_state(), model.model
    if isinstance(model, Ensemble):
        contents.update(format=ENSEMBLE_FORMAT, member_weights=model.member_weights,
                        state_dicts=[_cpu_state(member) for member in model.members])
    else:
        contents["state_dict"] = _cpu_state(model)
    if calibration is not None:
        contents.update(format=CALIBRATED_FORMAT, network_format=contents["format"], calibration=calibration)
    torch.save(contents, temporary)
    os.replace(temporary, path)
    return path


def read_model_file(path: str | Path) -> dict:
    """The contents of a model file; ValueError if it is not one."""
    contents = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(contents, dict) or contents.get("format") not in (FORMAT, ENSEMBLE_FORMAT, CALIBRATED_FORMAT):
        raise ValueError(f"{path} is not a law_hpc model file ({FORMAT}, {ENSEMBLE_FORMAT} or {CALIBRATED_FORMAT})")
    return contents


def load(path: str | Path) -> nn.Module:
    """The network saved in `path` (model.pt, model_best.pt of a training run), in eval mode on the CPU; what it
    is (classes in index order, input size and normalisation, method, policy, epoch, accuracies, config, commit)
    is in its attribute `law_hpc_info`. An ensemble file gives an Ensemble: its forward returns log-probabilities;
    a calibrated one a Calibrated (its forward returns the calibrated logits)."""
    contents = read_model_file(path)
    options = {key: tuple(value) if isinstance(value, list) else value for key, value in contents["options"].items()}

    def network(state_dict) -> nn.Module:
        model = create_model(contents["name"], contents["num_classes"], contents["in_channels"],
                             contents["image_size"], **options)
        model.load_state_dict(state_dict)
        return model

    network_format = contents.get("network_format", contents["format"])
    if network_format == ENSEMBLE_FORMAT:
        model = Ensemble([network(state) for state in contents["state_dicts"]], contents["member_weights"])
    else:
        model = network(contents["state_dict"])
    if contents["format"] == CALIBRATED_FORMAT:
        calibration = contents["calibration"]
        model = Calibrated(model, calibration["log_temperature"], calibration["matrix"], calibration["bias"],
                           kind=calibration["kind"])
    model.law_hpc_info = {key: value for key, value in contents.items() if key not in ("state_dict", "state_dicts")}
    return model.eval()


def _cpu_state(model: nn.Module) -> dict:
    return {key: value.detach().cpu() for key, value in model.state_dict().items()}
