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


# ---------------------------------------------------------------- ensembles of the guard's candidates

def _accuracies_of(labels):
    return lambda scores: [float((score.argmax(1) == labels).float().mean()) for score in scores]


def test_greedy_ensemble_starts_from_the_best_and_adds_while_validation_rises():
    """Three candidates on 4 images of 2 classes: a alone 3/4, b and c 2/4; a + b gets all 4 right, after which no
    addition helps: the selection is [a, b]. Capped at one entry it is a alone; ties go to the first."""
    from law_hpc.models.ensemble import describe, greedy_ensemble
    labels = torch.tensor([0, 0, 1, 1])
    a = torch.tensor([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8], [0.6, 0.4]])  # wrong on the last image, barely
    b = torch.tensor([[0.4, 0.6], [0.45, 0.55], [0.3, 0.7], [0.1, 0.9]])  # wrong on the first two
    c = torch.tensor([[0.6, 0.4], [0.3, 0.7], [0.6, 0.4], [0.3, 0.7]])  # wrong on the middle two
    probabilities = {"a": a, "b": b, "c": c}
    accuracies = _accuracies_of(labels)(list(probabilities.values()))
    assert accuracies == [0.75, 0.5, 0.5]
    chosen, accuracy = greedy_ensemble(probabilities, accuracies, _accuracies_of(labels), max_size=6)
    assert chosen == ["a", "b"] and accuracy == 1.0 and describe(chosen) == "a + b"
    assert greedy_ensemble(probabilities, accuracies, _accuracies_of(labels), max_size=1) == (["a"], 0.75)
    tied = {"b": b, "c": c}
    assert greedy_ensemble(tied, [0.5, 0.5], _accuracies_of(labels), max_size=1)[0] == ["b"]
    assert describe(["elr", "coteaching", "elr"]) == "elr x2 + coteaching"


def test_an_ensemble_model_file_loads_back_and_predicts_the_weighted_mean(tmp_path):
    from law_hpc.models.ensemble import Ensemble
    from law_hpc.models.files import load, save_model_file
    members = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        members.append(create_model("mlp", num_classes=NUM_CLASSES, in_channels=1, image_size=28).eval())
    ensemble = Ensemble(members, [2, 1])
    images = torch.randn(5, 1, 28, 28)
    expected = torch.log((2 * torch.softmax(members[0](images), 1) + torch.softmax(members[1](images), 1)) / 3)
    save_model_file(tmp_path / "model.pt", ensemble, name="mlp", options={}, num_classes=NUM_CLASSES, in_channels=1,
                    image_size=28, note="guard: a x2 + b")
    loaded = load(tmp_path / "model.pt")
    assert isinstance(loaded, Ensemble) and not loaded.training and len(loaded.members) == 2
    assert loaded.law_hpc_info["note"] == "guard: a x2 + b"
    assert loaded.law_hpc_info["member_weights"] == [2.0, 1.0]
    with torch.no_grad():
        assert torch.allclose(loaded(images), expected, atol=1e-6)
        assert torch.allclose(ensemble(images), expected, atol=1e-6)


def _biased_scores(seed: int, bias: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probabilities of 400 images of 4 classes from a model that sees the class (its logit + 2, with noise) but
    adds `bias` to class 0's logit, as a network trained on labels that over-represent class 0 would."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(400) % 4
    logits = 2.0 * torch.nn.functional.one_hot(labels, 4) + torch.randn(400, 4, generator=generator)
    logits[:, 0] += bias
    return torch.log_softmax(logits, 1), labels


def test_calibration_takes_a_class_bias_out_and_leaves_an_unbiased_model_alone():
    """A model biased toward class 0 gets a map (chosen by 5-fold cross-validation, every image predicted by a map
    fit on the others) that raises its accuracy, as much on new images of the same model; an unbiased model's
    maps cross-validate no better than it, and it is kept as is (the first of equals: none); a split with no more
    images than the matrix has entries is not given one."""
    from law_hpc.models.calibration import Calibrated, affine, calibrate, cross_validated_accuracies
    biased, labels = _biased_scores(0, bias=2.5)
    model = torch.nn.Identity()  # its "images" are the scores themselves
    calibrated, _, accuracies = calibrate(model, biased, labels)
    plain = (biased.argmax(1) == labels).double().mean().item()
    assert accuracies["none"] == plain < 0.6 and max(accuracies["bias"], accuracies["matrix"]) > plain + 0.15
    assert isinstance(calibrated, Calibrated) and calibrated.kind in ("bias", "matrix")
    unseen, unseen_labels = _biased_scores(1, bias=2.5)
    with torch.no_grad():
        assert float((calibrated(unseen).argmax(1) == unseen_labels).float().mean()) > plain + 0.15
        z = affine(unseen, calibrated.log_temperature, calibrated.matrix, calibrated.bias)
        assert torch.allclose(calibrated(unseen), z, atol=1e-5)
    fair, labels = _biased_scores(0, bias=0.0)
    fair = torch.log_softmax(fair + 10.0 * torch.nn.functional.one_hot(labels, 4), 1)  # every image right
    kept, _, accuracies = calibrate(model, fair, labels)
    assert kept is model and accuracies == cross_validated_accuracies(fair, labels) and accuracies["none"] == 1.0
    assert list(cross_validated_accuracies(biased[:16], labels[:16])) == ["none", "bias"]  # 16 images: 4x4 entries


def test_a_calibrated_model_file_loads_back_with_its_map(tmp_path):
    from law_hpc.models.calibration import Calibrated
    from law_hpc.models.ensemble import Ensemble
    from law_hpc.models.files import CALIBRATED_FORMAT, load, save_model_file
    torch.manual_seed(3)
    network = create_model("mlp", num_classes=NUM_CLASSES, in_channels=1, image_size=28).eval()
    matrix = 0.1 * torch.randn(NUM_CLASSES, NUM_CLASSES)
    images = torch.randn(5, 1, 28, 28)
    for inner in (network, Ensemble([network], [1])):
        model = Calibrated(inner, torch.tensor([0.2]), matrix, torch.linspace(-1, 1, NUM_CLASSES), kind="matrix")
        save_model_file(tmp_path / "model.pt", model, name="mlp", options={}, num_classes=NUM_CLASSES, in_channels=1,
                        image_size=28, note="calibration: matrix")
        loaded = load(tmp_path / "model.pt")
        assert isinstance(loaded, Calibrated) and isinstance(loaded.model, type(inner)) and not loaded.training
        assert loaded.law_hpc_info["format"] == CALIBRATED_FORMAT and loaded.kind == "matrix"
        with torch.no_grad():
            assert torch.allclose(loaded(images), model(images), atol=1e-6)
