"""Model zoo behind one registry: `create_model(name, num_classes, in_channels, image_size)`."""
from __future__ import annotations

from torch import nn

from . import cifar, imagenet, small  # noqa: F401  (each registers its models)
from .files import load  # noqa: F401
from .registry import create_model, list_models, register  # noqa: F401


def model_options(model_cfg) -> dict:
    """The builder options of the config's `model` section."""
    return {"hidden": tuple(model_cfg.mlp_hidden)} if model_cfg.name == "mlp" else {}


def model_from_config(model_cfg, num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    """`create_model` for the config's `model` section (its options reach the builders that take them)."""
    return create_model(model_cfg.name, num_classes, in_channels, image_size, **model_options(model_cfg))

