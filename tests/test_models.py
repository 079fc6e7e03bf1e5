"""Model zoo: every registered model builds, runs and has the size its paper reports."""
import pytest
import torch

from law_hpc.models import create_model, list_models

TORCHVISION_MODELS = {"resnet18", "resnet34", "resnet50", "mobilenet_v2"}
CIFAR_MODELS = ["resnet18_cifar", "resnet32_cifar", "resnet101_cifar", "wrn28_10", "vgg19_cifar"]
NUM_CLASSES = 7


def _forward(model, images):
    model.eval()
    with torch.no_grad():
        return model(images)


def _n_params(model):
    return sum(p.numel() for p in model.parameters())


def test_zoo_contains_expected_models():
    assert set(CIFAR_MODELS) | TORCHVISION_MODELS | {"small_cnn"} <= set(list_models())


@pytest.mark.parametrize("name", list_models())
def test_forward_shape_and_finite(name):
    torch.manual_seed(0)
    size = 64 if name in TORCHVISION_MODELS else 32  # torchvision stems downsample 32x; 64px keeps them fast
    model = create_model(name, num_classes=NUM_CLASSES, in_channels=3, image_size=size)
    out = _forward(model, torch.randn(2, 3, size, size))
    assert out.shape == (2, NUM_CLASSES)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", CIFAR_MODELS + ["small_cnn"])
def test_cifar_models_accept_one_channel_28px(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=NUM_CLASSES, in_channels=1, image_size=28)
    out = _forward(model, torch.randn(2, 1, 28, 28))
    assert out.shape == (2, NUM_CLASSES)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", sorted(TORCHVISION_MODELS))
def test_torchvision_models_accept_one_channel(name):
    model = create_model(name, num_classes=NUM_CLASSES, in_channels=1, image_size=64)
    assert _forward(model, torch.randn(2, 1, 64, 64)).shape == (2, NUM_CLASSES)


# feature extractor size from the papers / torchvision, plus the 7-class linear head
EXPECTED_PARAMS = {
    "resnet18_cifar": 11.17e6,
    "resnet32_cifar": 0.46e6,
    "wrn28_10": 36.5e6,
    "vgg19_cifar": 20.0e6,
    "resnet50": 23.5e6 + 2048 * NUM_CLASSES + NUM_CLASSES,
}


@pytest.mark.parametrize("name", sorted(EXPECTED_PARAMS))
def test_parameter_counts_match_papers(name):
    n_params = _n_params(create_model(name, num_classes=NUM_CLASSES))
    assert n_params == pytest.approx(EXPECTED_PARAMS[name], rel=0.10)


def test_unknown_name_is_value_error_listing_known_models():
    with pytest.raises(ValueError) as excinfo:
        create_model("no_such_model", num_classes=NUM_CLASSES)
    message = str(excinfo.value)
    assert "no_such_model" in message
    for name in list_models():
        assert name in message


@pytest.mark.parametrize("name", ["resnet32_cifar", "wrn28_10", "resnet18"])
def test_same_seed_gives_identical_parameters(name):
    torch.manual_seed(123)
    first = create_model(name, num_classes=NUM_CLASSES)
    torch.manual_seed(123)
    second = create_model(name, num_classes=NUM_CLASSES)
    for (name_a, a), (name_b, b) in zip(first.state_dict().items(), second.state_dict().items()):
        assert name_a == name_b
        assert torch.equal(a, b), name_a
