"""Every name a config gives, checked at launch against the module that owns it.

The config (law_hpc/config.py) is a leaf that knows no registry; `checked` is what the entry points, the tools and
the tests load a config through: datasets, models, methods, pair modes, noise modes, feature normalisations and the
other fixed choices are checked against their owners' lists, and every weighting method's options (methods.<name>)
are read by its `Options`, defaults filled in, so the resolved config records them all.
"""
from __future__ import annotations

import dataclasses

from .config import Config, ConfigError, load_config, searcher_data
from .data import AUGMENTS_FOLDERS, AUGMENTS_IN_MEMORY, BACKENDS, DATASETS
from .data.corruption import IMBALANCES, NOISE_MODES
from .data.dali import DALI_DEVICES
from .data.folders import ON_CORRUPT_IMAGE
from .engine.pair import PAIR_MODES
from .law.ddpg import EXPLORATIONS
from .law.features import FEATURE_NORMS
from .law.losses import BASE_LOSSES
from .law.policy import ACTION_BOUNDS, ACTION_TERMS, WEIGHT_NORMS
from .methods import METHODS, list_methods
from .models import list_models

FOLDER_DATASETS = ("imagenet",)
"""The datasets read from image folders (data.val_root, data.test_root and the folder augmentations apply)."""


def data_choices() -> dict[str, tuple]:
    """The allowed values of the data keys with a fixed set (for `data` and for each searcher's variant of it)."""
    return {"dataset": tuple(DATASETS), "backend": tuple(BACKENDS), "dali_device": DALI_DEVICES,
            "noise_mode": NOISE_MODES, "imbalance": IMBALANCES, "on_corrupt_image": ON_CORRUPT_IMAGE,
            "augment": tuple(dict.fromkeys(AUGMENTS_IN_MEMORY + AUGMENTS_FOLDERS))}


def choices() -> dict[str, tuple]:
    """The allowed values of the other keys with a fixed set, from the modules and registries that own them."""
    return {"model.name": tuple(list_models()), "search.pair_mode": PAIR_MODES, "train.method": tuple(METHODS),
            "train.base_loss": BASE_LOSSES, "strategy.exploration": EXPLORATIONS,
            "strategy.weight_norm": WEIGHT_NORMS, "strategy.feature_norm": FEATURE_NORMS,
            "strategy.action_bound": ACTION_BOUNDS}


def _check(key: str, value, allowed) -> None:
    if value not in allowed:
        raise ConfigError(f"config key '{key}': '{value}' is not one of {', '.join(sorted(allowed))}")


def check_names(cfg: Config) -> None:
    """Every fixed choice of `cfg` (and of each searcher's data variant) is one its owner knows; ConfigError
    naming the key otherwise."""
    for dotted, allowed in choices().items():
        section, key = dotted.split(".")
        _check(dotted, getattr(getattr(cfg, section), key), allowed)
    for term in cfg.strategy.action_terms:
        _check("strategy.action_terms", term, ACTION_TERMS)
    variants = [(f"search.data_variants[{rank}]", searcher_data(cfg, rank))
                for rank in range(len(cfg.search.data_variants))]
    for where, data in [("data", cfg.data)] + variants:
        for key, allowed in data_choices().items():
            _check(f"{where}.{key}", getattr(data, key), allowed)
        _check_kind(data)


def _check_kind(data) -> None:
    """The data keys that only image folders take."""
    if data.dataset in FOLDER_DATASETS:
        return
    if data.augment not in AUGMENTS_IN_MEMORY:
        raise ConfigError(f"config key 'data.augment': '{data.augment}' is for image folders (data.dataset="
                          f"{'|'.join(FOLDER_DATASETS)}); in-memory data takes {' or '.join(AUGMENTS_IN_MEMORY)}")
    for key in ("val_root", "test_root"):
        if getattr(data, key):
            raise ConfigError(f"config key 'data.{key}': is for image folders (data.dataset="
                              f"{'|'.join(FOLDER_DATASETS)})")


def resolve_methods(cfg: Config) -> None:
    """cfg.methods: every registered method's options, read by its `Options` (defaults filled in, in table order);
    a section of an unknown method or an unknown option is a ConfigError naming it."""
    unknown = sorted(set(cfg.methods) - {name for name in METHODS if METHODS[name].Options is not None})
    if unknown:
        raise ConfigError(f"unknown config key 'methods.{unknown[0]}' (methods with options: "
                          f"{', '.join(name for name in list_methods() if METHODS[name].Options is not None)})")
    cfg.methods = {name: dataclasses.asdict(METHODS[name].options(cfg)) for name in list_methods()
                   if METHODS[name].Options is not None}
    for peer in cfg.methods["law"]["guard_peers"]:
        _check("methods.law.guard_peers", peer, [name for name in METHODS if name != "law"])


def checked(cfg: Config) -> Config:
    """`cfg` with its names checked and its methods' options resolved (in place)."""
    check_names(cfg)
    resolve_methods(cfg)
    return cfg


def load_checked_config(path=None, overrides=()) -> Config:
    """load_config (defaults, the YAML file, --set overrides; types and ranges) and `checked`."""
    return checked(load_config(path, overrides))
