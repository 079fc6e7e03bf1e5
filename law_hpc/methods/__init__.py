"""Every example-weighting method of the test phase, behind one registry.

Uniform weighting (ERM), a searched LAW policy, and the peers: focal loss (Lin et al. 2017),
class-balanced loss (Cui et al. 2019), self-paced learning (Kumar et al. 2010), Co-teaching (Han et
al. 2018), L2RW (Ren et al. 2018), Meta-Weight-Net (Shu et al. 2019) and the clean-label oracle.
`build_method(cfg, data)` makes `cfg.train.method` for the training data; `create_method(name, **options)`
makes one from explicit options. Each follows `WeightingMethod` (methods/base.py).
"""
from __future__ import annotations

from .base import StepResult, WeightingMethod
from .class_balanced import ClassBalanced
from .coteaching import CoTeaching
from .focal import FocalLoss
from .l2rw import L2RW
from .law import LawPolicy
from .mwnet import MetaWeightNet
from .oracle import Oracle
from .self_paced import SelfPaced

METHODS: dict[str, type[WeightingMethod]] = {
    cls.name: cls for cls in (WeightingMethod, LawPolicy, FocalLoss, ClassBalanced, SelfPaced, CoTeaching, L2RW,
                              MetaWeightNet, Oracle)}


def _method_class(name: str) -> type[WeightingMethod]:
    if name not in METHODS:
        raise ValueError(f"unknown weighting method '{name}'; known: {', '.join(sorted(METHODS))}")
    return METHODS[name]


def create_method(name: str, **options) -> WeightingMethod:
    """A new, not yet set-up method by registry name; options go to its constructor."""
    return _method_class(name)(**options)


def build_method(cfg, data) -> WeightingMethod:
    """The method `cfg.train.method`, built from the config and the training data (a DataBundle)."""
    return _method_class(cfg.train.method).from_config(cfg, data)


__all__ = ["METHODS", "StepResult", "WeightingMethod", "build_method", "create_method", "LawPolicy", "FocalLoss",
           "ClassBalanced", "SelfPaced", "CoTeaching", "L2RW", "MetaWeightNet", "Oracle"]
