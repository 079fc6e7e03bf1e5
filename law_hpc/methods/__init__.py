"""Every example-weighting method of the test phase, behind one registry.

Uniform weighting (ERM), a searched LAW policy, the peers and the clean-label oracle: one file each in
this package, registered with `@register_method` (methods/base.py). Adding a method is adding its file.
`build_method(cfg, data)` makes `cfg.train.method` for the training data; `create_method(name, **options)`
makes one from explicit options. Each follows `WeightingMethod`.
"""
from __future__ import annotations

import importlib
import pkgutil

from .base import METHODS, base_loss_of, StepResult, WeightingMethod, register_method

for _module in pkgutil.iter_modules(__path__):  # each module registers its methods
    importlib.import_module(f"{__name__}.{_module.name}")


def list_methods() -> list[str]:
    """The method names in table order: uniform first, the oracle last, the rest alphabetically."""
    ends = {"uniform": 0, "oracle": 2}
    return sorted(METHODS, key=lambda name: (ends.get(name, 1), name))


def method_class(name: str) -> type[WeightingMethod]:
    """The registered class of `name`; a ValueError listing the known names otherwise."""
    if name not in METHODS:
        raise ValueError(f"unknown weighting method '{name}'; known: {', '.join(list_methods())}")
    return METHODS[name]


def create_method(name: str, **options) -> WeightingMethod:
    """A new, not yet set-up method by registry name; options go to its constructor."""
    return method_class(name)(**options)


def build_method(cfg, data) -> WeightingMethod:
    """The method `cfg.train.method`, built from the config and the training data (a DataBundle)."""
    return method_class(cfg.train.method).from_config(cfg, data)


__all__ = ["METHODS", "StepResult", "WeightingMethod", "base_loss_of", "build_method", "create_method", "list_methods",
           "method_class", "register_method"]
