"""DIR/policy.h5: the trained strategy model without the critic: enough to weight a new training run.

Datasets /encoder/<param> and /actor/<param> hold the stage embedding and actor parameters; attributes
hold their shapes' settings and the feature settings the policy was searched with.
"""
from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np
import torch

from ..law.policy import StrategyModel

MAGIC = "law_hpc.policy/1"
SETTINGS = ("stages", "embed_dim", "hidden", "action_scale", "density", "label_feature", "weight_norm",
            "warmup_stages", "num_classes")


def save_policy(path: str | Path, model: StrategyModel, settings: dict, log_class_freq: np.ndarray) -> None:
    """Write atomically (temp file + rename); `settings` holds every key of SETTINGS."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with h5py.File(temporary, "w") as file:
        file.attrs["format"] = MAGIC
        for key in SETTINGS:
            file.attrs[key] = settings[key]
        for part in ("encoder", "actor"):
            for name, tensor in getattr(model, part).state_dict().items():
                file.create_dataset(f"{part}/{name}", data=tensor.detach().cpu().numpy())
        # The searched data's label frequencies; a user may pass their own at load time.
        file.create_dataset("log_class_freq", data=np.asarray(log_class_freq, dtype=np.float32))
    os.replace(temporary, path)


def load_policy(path: str | Path) -> tuple[StrategyModel, dict, np.ndarray]:
    """(strategy model with encoder + actor loaded, settings, log_class_freq). Clear errors on foreign files."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no policy file at {path}")
    try:
        file = h5py.File(path, "r")
    except OSError as err:
        raise ValueError(f"{path} is not a readable HDF5 file: {err}") from None
    with file:
        if file.attrs.get("format") != MAGIC:
            raise ValueError(f"{path} is not a law_hpc policy file")
        settings = {key: file.attrs[key].item() if hasattr(file.attrs[key], "item") else file.attrs[key]
                    for key in SETTINGS}
        settings = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in settings.items()}
        model = StrategyModel(int(settings["stages"]), int(settings["embed_dim"]), int(settings["hidden"]),
                              float(settings["action_scale"]))
        for part in ("encoder", "actor"):
            state = {name: torch.from_numpy(file[f"{part}/{name}"][()]) for name in
                     getattr(model, part).state_dict()}
            getattr(model, part).load_state_dict(state)
        log_class_freq = file["log_class_freq"][()]
    model.eval()
    return model, settings, log_class_freq
