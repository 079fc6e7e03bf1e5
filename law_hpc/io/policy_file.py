"""DIR/policy.h5: the trained strategy model without the critic: enough to weight a new training run.

Datasets /encoder/<param> and /actor/<param> hold the stage embedding and actor parameters. Attributes
hold the network shapes, the feature settings, the schedule the policy was searched on (epochs, stages,
warm-up, lr decay stages: a training on another schedule sees other stages) and how the policy did on
its search's validation split (the evaluation episode that chose it).
"""
from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np
import torch

from ..law.policy import StrategyModel

MAGIC = "law_hpc.policy/2"
SETTINGS = ("stages", "embed_dim", "hidden", "action_scale", "action_bound", "action_terms", "density", "label_feature",
            "weight_norm", "feature_norm", "warmup_stages", "num_classes", "epochs", "lr_decay_stages", "smoothing",
            "augment", "base_loss")
"""What a policy needs to act as it did in its search (older files lack smoothing, augment and base_loss:
those were searched with cross-entropy)."""
OUTCOME = ("validation_gap", "validation_acc_target", "validation_acc_reference", "episode")
"""The evaluation episode that chose the policy: final validation accuracy of target and reference
(mean over searchers), their gap, and the episode (0-based)."""


def policy_settings(cfg, num_classes: int) -> dict:
    """SETTINGS of a policy searched with `cfg`."""
    st = cfg.strategy
    return {"stages": cfg.search.stages, "embed_dim": st.embed_dim, "hidden": st.hidden,
            "action_scale": st.action_scale, "action_bound": st.action_bound,
            "action_terms": list(st.action_terms), "density": st.density,
            "label_feature": st.label_feature, "weight_norm": st.weight_norm, "feature_norm": st.feature_norm,
            "warmup_stages": cfg.search.warmup_stages, "num_classes": num_classes, "epochs": cfg.search_epochs,
            "lr_decay_stages": list(cfg.optim.lr_decay_stages), "smoothing": cfg.search.smoothing,
            "augment": cfg.data.augment, "base_loss": cfg.train.base_loss}


def new_strategy_model(settings: dict) -> StrategyModel:
    """A StrategyModel of the shapes in `settings`."""
    return StrategyModel(int(settings["stages"]), int(settings["embed_dim"]), int(settings["hidden"]),
                         float(settings["action_scale"]), str(settings["action_bound"]), tuple(settings["action_terms"]))


def save_policy(path: str | Path, model: StrategyModel, settings: dict, log_class_freq: np.ndarray,
                outcome: dict | None = None) -> None:
    """Write atomically (temp file + rename); `settings` holds every key of SETTINGS, `outcome` those of OUTCOME."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with h5py.File(temporary, "w") as file:
        file.attrs["format"] = MAGIC
        for key in (key for key in SETTINGS if key in settings):
            value = settings[key]
            file.attrs[key] = ",".join(value) if key == "action_terms" else (
                np.asarray(value, dtype=np.int64) if key == "lr_decay_stages" else value)
        for key, value in (outcome or {}).items():
            file.attrs[key] = value
        for part in ("encoder", "actor"):
            for name, tensor in getattr(model, part).state_dict().items():
                file.create_dataset(f"{part}/{name}", data=tensor.detach().cpu().numpy())
        # The searched data's label frequencies; a user may pass their own at load time.
        file.create_dataset("log_class_freq", data=np.asarray(log_class_freq, dtype=np.float32))
    os.replace(temporary, path)


def _plain(value):
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray):
        return [int(v) for v in value]
    return value.item() if hasattr(value, "item") else value


SHIPPED_POLICIES = Path(__file__).resolve().parent.parent / "policies"
"""The searched policies that come with the package (policies/*.h5 of the repository)."""


def shipped_policies() -> list[str]:
    """Names of the shipped policies (`--policy NAME` takes them)."""
    return sorted(path.stem for path in SHIPPED_POLICIES.glob("*.h5"))


def resolve_policy(path: str | Path) -> Path:
    """A policy file: `path` itself, else a shipped policy by name (fmnist_noisy_mlp, fmnist_noisy_mlp.h5)."""
    path = Path(path)
    if path.is_file():
        return path
    shipped = SHIPPED_POLICIES / (path.name if path.suffix == ".h5" else f"{path.name}.h5")
    if path.parent == Path(".") and shipped.is_file():
        return shipped
    raise FileNotFoundError(f"no policy file at {path} (shipped policies, by name: {', '.join(shipped_policies())})")


def describe_policy(path: str | Path) -> str:
    """One line: what a policy was searched on (classes, schedule, augmentation) and how it did on validation."""
    _, settings, _ = load_policy(path)
    gap = settings.get("validation_gap")
    outcome = f"validation gap {100 * gap:+.2f} points over uniform (episode {settings['episode'] + 1})" \
        if gap is not None else "no recorded validation outcome"
    return (f"{settings['num_classes']} classes, {settings['epochs']} epochs in {settings['stages']} stages "
            f"({settings['warmup_stages']} warm-up), lr decay at stages {list(settings['lr_decay_stages'])}, augment "
            f"{settings.get('augment', 'not recorded')}, weight_norm {settings['weight_norm']}; {outcome}")


def load_policy(path: str | Path) -> tuple[StrategyModel, dict, np.ndarray]:
    """(strategy model with encoder + actor loaded, settings and outcome, log_class_freq). Clear errors on
    foreign or outdated files."""
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
        settings = {key: _plain(file.attrs[key]) for key in SETTINGS + OUTCOME if key in file.attrs}
        settings["action_terms"] = [term for term in settings["action_terms"].split(",") if term]
        model = new_strategy_model(settings)
        for part in ("encoder", "actor"):
            state = {name: torch.from_numpy(file[f"{part}/{name}"][()]) for name in
                     getattr(model, part).state_dict()}
            getattr(model, part).load_state_dict(state)
        log_class_freq = file["log_class_freq"][()]
    model.eval()
    return model, settings, log_class_freq


def load_actor_into(model: StrategyModel, settings: dict, path: str | Path) -> None:
    """Start `model` (of `settings`) from the actor and stage embedding of policy.h5 at `path`, target copies
    included (strategy.init_policy: a warm start, or fine-tuning a shipped policy); the critic is untouched."""
    policy, found, _ = load_policy(path)
    shapes = ("stages", "embed_dim", "hidden", "action_scale", "action_bound", "action_terms")
    if any(found[key] != settings[key] for key in shapes):
        raise ValueError(f"strategy.init_policy {path} has another actor ({', '.join(f'{k}={found[k]}' for k in shapes)})"
                         f" than this search ({', '.join(f'{k}={settings[k]}' for k in shapes)})")
    for part in ("encoder", "actor"):
        for copy in (part, f"{part}_target"):
            getattr(model, copy).load_state_dict(getattr(policy, part).state_dict())


def schedule_differences(settings: dict, cfg) -> list[str]:
    """How the schedule (and augmentation) a policy was searched on differs from the training `cfg` describes
    ([] = none). A policy searched without augmentation can hurt a training with it, and the reverse."""
    training = {"epochs": cfg.optim.epochs, "stages": cfg.search.stages, "warmup_stages": cfg.search.warmup_stages,
                "lr_decay_stages": list(cfg.optim.lr_decay_stages), "augment": cfg.data.augment,
                "base_loss": cfg.train.base_loss}
    searched = {"base_loss": "ce", **settings}
    return [f"{key} {searched[key]} (searched) vs {value} (this training)" for key, value in training.items()
            if key in searched and searched[key] != value]
