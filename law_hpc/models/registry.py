"""The models' registry: `register(name)` makes a builder creatable by `create_model(name, ...)`."""
from __future__ import annotations

from typing import Callable

from torch import nn

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register(name: str):
    """Decorator: make a builder `fn(num_classes, in_channels, image_size) -> nn.Module` creatable by name."""
    def wrap(builder):
        _REGISTRY[name] = builder
        return builder
    return wrap


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def create_model(name: str, num_classes: int, in_channels: int = 3, image_size: int = 32, **options) -> nn.Module:
    """A freshly initialised model; an unknown name is a ValueError listing the known ones. `options` go to
    the builder (e.g. `hidden` of the mlp)."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown model '{name}' (known: {', '.join(list_models())})")
    return _REGISTRY[name](num_classes=num_classes, in_channels=in_channels, image_size=image_size, **options)
