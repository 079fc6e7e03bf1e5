"""CIFAR-style networks for 32x32 inputs (and 28x28 1-channel ones such as Fashion-MNIST).

All stems are 3x3 convs without max-pool, so small images keep their resolution; every head
is adaptive average pooling + linear, so the input size only changes the compute, not the shapes.
"""
from __future__ import annotations

from torch import nn

from .registry import register


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


def _projection(cin: int, cout: int, stride: int) -> nn.Module:
    """1x1 conv + BN shortcut when shape changes (option B), identity otherwise."""
    if stride == 1 and cin == cout:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))


class BasicBlock(nn.Module):
    """Two 3x3 convs, post-activation (He et al. 2016a)."""
    expansion = 1

    def __init__(self, cin: int, width: int, stride: int = 1):
        super().__init__()
        self.residual = nn.Sequential(_conv3x3(cin, width, stride), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
                                      _conv3x3(width, width), nn.BatchNorm2d(width))
        self.shortcut = _projection(cin, width, stride)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.relu(self.residual(x) + self.shortcut(x))


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3, 1x1 expand (x4), post-activation; stride on the 3x3 as in torchvision."""
    expansion = 4

    def __init__(self, cin: int, width: int, stride: int = 1):
        super().__init__()
        cout = width * self.expansion
        self.residual = nn.Sequential(
            nn.Conv2d(cin, width, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            _conv3x3(width, width, stride), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.Conv2d(width, cout, 1, bias=False), nn.BatchNorm2d(cout))
        self.shortcut = _projection(cin, cout, stride)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.relu(self.residual(x) + self.shortcut(x))


class PreActBlock(nn.Module):
    """BN-ReLU-conv twice (He et al. 2016b); the wide-ResNet block, with optional dropout between the convs."""

    def __init__(self, cin: int, width: int, stride: int = 1, dropout: float = 0.0):
        super().__init__()
        self.bn_relu = nn.Sequential(nn.BatchNorm2d(cin), nn.ReLU(inplace=True))
        self.residual = nn.Sequential(_conv3x3(cin, width, stride), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
                                      nn.Dropout(dropout), _conv3x3(width, width))
        # the projection sees the pre-activated input, so it needs no BN of its own
        self.shortcut = (nn.Identity() if stride == 1 and cin == width
                         else nn.Conv2d(cin, width, 1, stride=stride, bias=False))

    def forward(self, x):
        out = self.bn_relu(x)
        shortcut = self.shortcut(x) if isinstance(self.shortcut, nn.Identity) else self.shortcut(out)
        return self.residual(out) + shortcut


def _head(features: int, num_classes: int) -> nn.Sequential:
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(features, num_classes))


def _init_weights(model: nn.Module) -> nn.Module:
    """He-normal convs, unit BN, zero biases: the initialisation the cited papers train with."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            nn.init.zeros_(module.bias)
    return model


def _resnet(block, blocks_per_stage, widths, in_channels: int, num_classes: int, **block_kwargs) -> nn.Module:
    """3x3 stem (width of the first stage) + stages (first stage stride 1, the others stride 2) + head."""
    layers = [_conv3x3(in_channels, widths[0]), nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True)]
    cin = widths[0]
    for stage, (n_blocks, width) in enumerate(zip(blocks_per_stage, widths)):
        for i in range(n_blocks):
            layers.append(block(cin, width, 2 if stage > 0 and i == 0 else 1, **block_kwargs))
            cin = width * getattr(block, "expansion", 1)
    return _init_weights(nn.Sequential(*layers, _head(cin, num_classes)))


@register("resnet18_cifar")
def resnet18_cifar(num_classes: int, in_channels: int = 3, image_size: int = 32) -> nn.Module:
    """ResNet-18 (He et al. 2016, arXiv:1512.03385) with a 3x3 stem and no max-pool; ~11.2M parameters."""
    return _resnet(BasicBlock, [2, 2, 2, 2], [64, 128, 256, 512], in_channels, num_classes)


@register("resnet101_cifar")
def resnet101_cifar(num_classes: int, in_channels: int = 3, image_size: int = 32) -> nn.Module:
    """ResNet-101 (He et al. 2016, arXiv:1512.03385), bottleneck blocks, 3x3 stem, no max-pool; ~42.5M parameters."""
    return _resnet(Bottleneck, [3, 4, 23, 3], [64, 128, 256, 512], in_channels, num_classes)


@register("resnet32_cifar")
def resnet32_cifar(num_classes: int, in_channels: int = 3, image_size: int = 32) -> nn.Module:
    """The CIFAR ResNet-32 of He et al. 2016 (arXiv:1512.03385, sec. 4.2): 3x5 basic blocks, widths 16-32-64.

    Projection (option B) shortcuts instead of zero padding: +~3k parameters, ~0.47M in total.
    """
    return _resnet(BasicBlock, [5, 5, 5], [16, 32, 64], in_channels, num_classes)


@register("wrn28_10")
def wrn28_10(num_classes: int, in_channels: int = 3, image_size: int = 32, dropout: float = 0.0) -> nn.Module:
    """Wide ResNet 28-10 (Zagoruyko & Komodakis 2016, arXiv:1605.07146): 3x4 pre-activation blocks,
    widths 160-320-640 after a 16-channel stem; ~36.5M parameters."""
    widths, cin = [160, 320, 640], 16
    layers = [_conv3x3(in_channels, cin)]
    for stage, width in enumerate(widths):
        for i in range(4):
            layers.append(PreActBlock(cin, width, 2 if stage > 0 and i == 0 else 1, dropout))
            cin = width
    layers += [nn.BatchNorm2d(cin), nn.ReLU(inplace=True)]
    return _init_weights(nn.Sequential(*layers, _head(cin, num_classes)))


_VGG19 = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"]


@register("vgg19_cifar")
def vgg19_cifar(num_classes: int, in_channels: int = 3, image_size: int = 32) -> nn.Module:
    """VGG-19 with BN (Simonyan & Zisserman 2015, arXiv:1409.1556), CIFAR variant: one linear layer on
    512 features; ceil-mode pooling takes 28x28 down to 1x1 as well (32x32 is unchanged); ~20.0M parameters."""
    layers, cin = [], in_channels
    for spec in _VGG19:
        if spec == "M":
            layers.append(nn.MaxPool2d(2, ceil_mode=True))
        else:
            layers += [_conv3x3(cin, spec), nn.BatchNorm2d(spec), nn.ReLU(inplace=True)]
            cin = spec
    return _init_weights(nn.Sequential(*layers, _head(cin, num_classes)))
