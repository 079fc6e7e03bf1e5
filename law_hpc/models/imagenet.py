"""torchvision's ImageNet architectures, randomly initialised, with our class and channel counts."""
from __future__ import annotations

from torch import nn

from .registry import register


def _replace_first_conv(conv: nn.Conv2d, in_channels: int) -> nn.Conv2d:
    """Same geometry and initialisation as the original stem conv, different input channels."""
    if in_channels == conv.in_channels:
        return conv
    replacement = nn.Conv2d(in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
                            padding=conv.padding, bias=conv.bias is not None)
    nn.init.kaiming_normal_(replacement.weight, mode="fan_out", nonlinearity="relu")  # as torchvision does
    return replacement


def _torchvision_resnet(arch: str):
    def build(num_classes: int, in_channels: int = 3, image_size: int = 32) -> nn.Module:
        import torchvision  # only these models need it: the core package installs without it
        model = getattr(torchvision.models, arch)(weights=None, num_classes=num_classes)
        model.conv1 = _replace_first_conv(model.conv1, in_channels)
        return model
    build.__doc__ = f"torchvision {arch} (He et al. 2016, arXiv:1512.03385): 7x7 stem + max-pool, meant for ~224px."
    build.__name__ = arch
    return build


for _arch in ("resnet18", "resnet34", "resnet50"):
    register(_arch)(_torchvision_resnet(_arch))


@register("mobilenet_v2")
def mobilenet_v2(num_classes: int, in_channels: int = 3, image_size: int = 32) -> nn.Module:
    """torchvision MobileNetV2 (Sandler et al. 2018, arXiv:1801.04381); width 1.0, dropout 0.2 before the classifier."""
    import torchvision
    model = torchvision.models.mobilenet_v2(weights=None, num_classes=num_classes)
    stem = model.features[0][0]
    model.features[0][0] = _replace_first_conv(stem, in_channels)
    return model
