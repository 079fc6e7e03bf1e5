"""DIR/policy.h5: the trained strategy model without the critic: enough to weight a new training run.

Datasets /encoder/<param> and /actor/<param> hold the stage embedding and actor parameters. Attributes hold the
policy's settings (law/settings.py: the actor's shapes, the weighting rule, the recipe it was searched on: epochs,
stages, warm-up, lr decay stages, augmentation, base loss) and how the policy did on its search's validation split
(the evaluation episode that chose it).
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch
import yaml

from ..law.policy import StrategyModel
from ..law.settings import PolicySettings, strategy_model

MAGIC = "law_hpc.policy/2"
ATTRIBUTES = ("stages", "embed_dim", "hidden", "action_scale", "action_bound", "action_terms", "density",
              "label_feature", "weight_norm", "feature_norm", "warmup_stages", "num_classes", "epochs",
              "lr_decay_stages", "smoothing", "augment", "base_loss")
"""The settings' attributes in file order (older files lack smoothing, augment and base_loss: those were searched
with cross-entropy)."""
FIXED = {"density": "cosine", "label_feature": "log_freq"}
"""Attributes of the format whose other values earlier versions wrote and this one no longer has
(docs/experiments.md): a file with another value is refused."""
OUTCOME = ("validation_gap", "validation_acc_target", "validation_acc_reference", "episode")
"""The evaluation episode that chose the policy: final validation accuracy of target and reference
(mean over searchers), their gap, and the episode (0-based)."""

SHIPPED_POLICIES = Path(__file__).resolve().parent.parent / "policies"
"""The searched policies that come with the package (policies/*.h5 of the repository), described in index.yaml."""


@dataclass
class Policy:
    """A policy.h5 as loaded: its actor (and stage embedding), settings, search outcome and label frequencies."""

    model: StrategyModel
    settings: PolicySettings
    outcome: dict
    """OUTCOME's keys that the file records (none for a constant or hand-made policy)."""
    log_class_freq: np.ndarray
    """The searched data's log label frequencies; a user passes their own class counts at load time."""
    path: Path

    @property
    def validation_gap(self) -> float | None:
        return self.outcome.get("validation_gap")


def save_policy(path: str | Path, model: StrategyModel, settings: PolicySettings, log_class_freq: np.ndarray,
                outcome: dict | None = None) -> None:
    """Write atomically (temp file + rename); `outcome` holds OUTCOME's keys."""
    path = Path(path)
    values = {**vars(settings), **FIXED}
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with h5py.File(temporary, "w") as file:
        file.attrs["format"] = MAGIC
        for key in ATTRIBUTES:
            value = values[key]
            if value is None:  # not recorded (augment of an early file, carried by a warm start)
                continue
            file.attrs[key] = ",".join(value) if key == "action_terms" else (
                np.asarray(value, dtype=np.int64) if key == "lr_decay_stages" else value)
        for key, value in (outcome or {}).items():
            file.attrs[key] = value
        for part in ("encoder", "actor"):
            for name, tensor in getattr(model, part).state_dict().items():
                file.create_dataset(f"{part}/{name}", data=tensor.detach().cpu().numpy())
        file.create_dataset("log_class_freq", data=np.asarray(log_class_freq, dtype=np.float32))
    os.replace(temporary, path)


def _plain(value):
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray):
        return [int(v) for v in value]
    return value.item() if hasattr(value, "item") else value


def shipped_policies() -> list[str]:
    """Names of the shipped policies and presets (`--policy NAME` takes them)."""
    return sorted([path.stem for path in SHIPPED_POLICIES.glob("*.h5")] + list(shipped_presets()))


def shipped_presets() -> dict[str, dict]:
    """index.yaml's presets: a shipped policy under a name of its own (`policy`) with the method settings it is
    trained with (`settings`: config keys, e.g. the guard's), such as `default`."""
    return {name: entry for name, entry in shipped_index().items() if "policy" in entry}


def preset_settings(name: str | Path) -> dict[str, object]:
    """The config keys a preset trains with ({} for a policy file or a plain shipped policy)."""
    return dict(shipped_presets().get(str(name), {}).get("settings", {}))


@functools.lru_cache(maxsize=1)
def shipped_index() -> dict[str, dict]:
    """policies/index.yaml: per shipped policy, the config it was searched on and what it is for (read once: it
    comes with the package)."""
    index = SHIPPED_POLICIES / "index.yaml"
    return yaml.safe_load(index.read_text()) if index.is_file() else {}


def resolve_policy(path: str | Path) -> Path:
    """A policy file: `path` itself, else a shipped policy by name (fmnist_noisy_mlp, fmnist_noisy_mlp.h5) or the
    policy of a preset (default)."""
    path = Path(path)
    if path.is_file():
        return path
    preset = shipped_presets().get(str(path))
    if preset:
        return resolve_policy(preset["policy"])
    shipped = SHIPPED_POLICIES / (path.name if path.suffix == ".h5" else f"{path.name}.h5")
    if path.parent == Path(".") and shipped.is_file():
        return shipped
    raise FileNotFoundError(f"no policy file at {path} (shipped policies, by name: {', '.join(shipped_policies())})")


def describe_policy(name: str) -> str:
    """One line on a policy: what it is for, what it was searched on, its base loss and validation outcome."""
    policy, about = load_policy(name), shipped_index().get(name, {})
    s = policy.settings
    gap = policy.validation_gap
    outcome = (f"validation gap {100 * gap:+.2f} points over its reference (episode {policy.outcome['episode'] + 1})"
               if gap is not None else "no recorded validation outcome")
    purpose = f"{about['purpose']}; " if "purpose" in about else ""
    searched = f"searched on configs/{about['config']}, " if "config" in about else ""
    return (f"{purpose}{searched}base loss {s.base_loss}, {s.num_classes} classes, {s.epochs} epochs in {s.stages} "
            f"stages ({s.warmup_stages} warm-up), lr decay at stages {list(s.lr_decay_stages)}, augment "
            f"{s.augment or 'not recorded'}; {outcome}")


def load_policy(path: str | Path) -> Policy:
    """The policy at `path` (or a shipped policy's name), its actor in eval mode. Clear errors on foreign, outdated
    or damaged files, and on settings this version no longer has."""
    path = resolve_policy(path)
    try:
        file = h5py.File(path, "r")
    except OSError as err:
        raise ValueError(f"{path} is not a readable HDF5 file: {err}") from None
    with file:
        found = file.attrs.get("format")
        if found != MAGIC:
            older = isinstance(found, str) and found.startswith("law_hpc.policy/")
            raise ValueError(f"{path} is {'an older law_hpc policy file (' + found + ')' if older else 'not a law_hpc policy file'}"
                             f"{'; search again with this version' if older else ''}")
        attributes = {key: _plain(file.attrs[key]) for key in ATTRIBUTES + OUTCOME if key in file.attrs}
        for key, value in FIXED.items():
            if attributes.get(key, value) != value:
                raise ValueError(f"{path} was searched with strategy.{key}={attributes[key]}, which this version no "
                                 "longer has (docs/experiments.md): search again")
        if attributes.get("feature_norm") == "class_val_rank":
            raise ValueError(f"{path} was searched with strategy.feature_norm=class_val_rank, which this version no "
                             "longer has (docs/experiments.md): search again")
        attributes["action_terms"] = [term for term in attributes["action_terms"].split(",") if term]
        try:
            settings = PolicySettings.from_mapping(attributes)
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{path}: its settings are incomplete or unknown ({err})") from None
        model = strategy_model(settings)
        for part in ("encoder", "actor"):
            state = {name: torch.from_numpy(file[f"{part}/{name}"][()]) for name in getattr(model, part).state_dict()}
            getattr(model, part).load_state_dict(state)
        log_class_freq = file["log_class_freq"][()]
    model.eval()
    return Policy(model, settings, {key: attributes[key] for key in OUTCOME if key in attributes}, log_class_freq,
                  path)


def load_actor_into(model: StrategyModel, settings: PolicySettings, path: str | Path) -> None:
    """Start `model` (of `settings`) from the actor and stage embedding of policy.h5 at `path`, target copies
    included (strategy.init_policy: a warm start, or fine-tuning a shipped policy); the critic is untouched."""
    policy = load_policy(path)
    if policy.settings.actor_shape() != settings.actor_shape():
        shape = ", ".join(f"{key}={value}" for key, value in policy.settings.actor_shape().items())
        wanted = ", ".join(f"{key}={value}" for key, value in settings.actor_shape().items())
        raise ValueError(f"strategy.init_policy {path} has another actor ({shape}) than this search ({wanted})")
    for part in ("encoder", "actor"):
        for copy in (part, f"{part}_target"):
            getattr(model, copy).load_state_dict(getattr(policy.model, part).state_dict())
