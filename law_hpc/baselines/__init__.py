"""Peer example-weighting methods, run by the test-phase harness (law_hpc.train) like a LAW policy.

Each method has setup / set_lr / train_step / eval_model / state_dict / load_state_dict
(see law_hpc.engine.law_method.UniformMethod) and a `name` equal to its registry name.
"""
from __future__ import annotations

from ..engine.law_method import UniformMethod
from .class_balanced import ClassBalanced
from .coteaching import CoTeaching
from .focal import FocalLoss
from .l2rw import L2RW
from .mwnet import MetaWeightNet
from .oracle import Oracle
from .self_paced import SelfPaced

METHODS = {cls.name: cls for cls in (UniformMethod, FocalLoss, ClassBalanced, SelfPaced, CoTeaching, L2RW,
                                     MetaWeightNet, Oracle)}


def create_method(name: str, **options):
    """A new, not yet set-up method object by registry name; options go to its constructor."""
    if name not in METHODS:
        raise ValueError(f"unknown weighting method '{name}'; known: {', '.join(sorted(METHODS))}")
    return METHODS[name](**options)


__all__ = ["METHODS", "create_method", "UniformMethod", "FocalLoss", "ClassBalanced", "SelfPaced", "CoTeaching",
           "L2RW", "MetaWeightNet", "Oracle"]
