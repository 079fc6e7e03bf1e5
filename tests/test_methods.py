"""The weighting methods of law_hpc.methods on tiny linear nets and random tensors (CPU, fast)."""
from __future__ import annotations

import copy
import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from law_hpc.registry import load_checked_config
from law_hpc.data.types import Batch
from law_hpc.methods import METHODS, build_method, create_method
from law_hpc.methods.class_balanced import class_balanced_weights
from law_hpc.methods.l2rw import l2rw_weights

NUM_CLASSES, BATCH, LR = 3, 10, 0.1


def model_factory(variant: int = 0) -> nn.Module:
    torch.manual_seed(variant)
    return nn.Sequential(nn.Flatten(), nn.Linear(12, NUM_CLASSES))


def bn_model_factory(variant: int = 0) -> nn.Module:
    torch.manual_seed(variant)
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, NUM_CLASSES))


def optimizer_factory(model: nn.Module, optimizer=None) -> torch.optim.Optimizer:
    # momentum gives the optimizer a state, so checkpoint round-trips are tested on it too
    return optimizer or torch.optim.SGD(model.parameters(), lr=LR, momentum=0.9)


def plain_sgd_factory(model: nn.Module, optimizer=None) -> torch.optim.Optimizer:
    return optimizer or torch.optim.SGD(model.parameters(), lr=LR)


def batch(seed: int = 0, size: int = BATCH):
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(size, 1, 3, 4, generator=generator)
    labels = torch.randint(0, NUM_CLASSES, (size,), generator=generator)
    return images, labels


def set_up(method, factory=model_factory, optimizer=optimizer_factory):
    method.setup(factory, optimizer, torch.device("cpu"))
    return method


def step(method, data, epoch=0.0, val=None, index=None):
    images, labels = data
    val = val if val is not None else batch(99)
    index = index if index is not None else torch.arange(labels.numel())
    return method.train_step(Batch(images, labels, index), epoch, lambda: val)


def sgd_step_on(model, loss_fn):
    """A copy of `model` after one plain SGD step (lr LR) on loss_fn(model)."""
    model = copy.deepcopy(model)
    model.zero_grad()
    loss_fn(model).backward()
    with torch.no_grad():
        for p in model.parameters():
            p -= LR * p.grad
    return model


def assert_same_params(a, b):
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(p, q, msg=name)


def roundtrip(state):
    """Through bytes, as a checkpoint: no tensor is shared with the live method."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)  # as checkpoints are read: tensors and containers only


OPTIONS = {"focal": {"gamma": 2.0}, "class_balanced": {"class_counts": (50, 30, 20), "beta": 0.99},
           "self_paced": {"total_epochs": 10, "start_fraction": 0.5},
           "coteaching": {"forget_rate": 0.3, "forget_epochs": 2}, "l2rw": {}, "mwnet": {"hidden": 8},
           "oracle": {"clean_mask": np.arange(BATCH) % 3 != 0}, "uniform": {},
           "logit_adjusted": {"class_counts": (50, 30, 20)}, "balanced_softmax": {"class_counts": (50, 30, 20)},
           "gce": {"q": 0.7}, "ldam_drw": {"class_counts": (50, 30, 20), "total_epochs": 1.0},
           "elr": {"train_size": BATCH, "num_classes": NUM_CLASSES},
           "dividemix": {"training_set": lambda: TrainingSet(*batch(1)), "warmup_epochs": 0.5},
           "confident_learning": {"stream": None, "stream_seed": 0, "training_set": lambda: TrainingSet(*FOLDED),
                                  "num_classes": NUM_CLASSES, "folds": 2}}


def array_stream(images, labels):
    """A real in-memory training stream of these samples (pixel values as given: mean 0, std 1/255)."""
    from law_hpc.data.torch_backend import ArrayTrainStream
    return ArrayTrainStream(images.permute(0, 2, 3, 1).numpy(), labels.numpy(), batch_size=BATCH, mean=(0.0,),
                            std=(1 / 255,), augment="none", device=torch.device("cpu"))


def two_epochs(iterations_per_epoch: int = 1):
    from law_hpc.law.schedule import StageSchedule
    return StageSchedule(stages=2, warmup_stages=0, iterations_per_epoch=iterations_per_epoch, epochs=2, base_lr=LR,
                         lr_decay_stages=(), lr_decay=0.1, warmup_epochs=0.0)


FOLDED = batch(1)[0], torch.arange(BATCH) // 2 % NUM_CLASSES  # every class in both folds (index mod 2)
OPTIONS["confident_learning"].update(stream=array_stream(*FOLDED), schedule=two_epochs())


class TrainingSet:
    """The training split as an evaluation set (data.training_set()), in index order: DivideMix's division."""

    def __init__(self, images, labels):
        self.images, self.labels = images, labels

    def __len__(self):
        return len(self.labels)

    def batches(self):
        yield self.images, self.labels


# ---------------------------------------------------------------- registry and the common interface

def test_registry_names_and_unknown_name():
    assert set(OPTIONS) | {"law"} == set(METHODS)  # law needs a searched policy: tests/test_train.py
    for name, options in OPTIONS.items():
        method = create_method(name, **options)
        assert method.name == name and type(method).name == name
        assert create_method(name, **options) is not method
    with pytest.raises(ValueError, match="known: .*coteaching.*focal"):
        create_method("nope")


@pytest.mark.parametrize("name", sorted(OPTIONS))
def test_train_step_and_checkpoint_roundtrip(name):
    method = set_up(create_method(name, **OPTIONS[name]))
    data = batch(1)
    probe = copy.deepcopy(method)  # a per-sample loss may update state (ELR's targets)
    samples = Batch(*data, torch.arange(BATCH))
    expected_loss = probe.per_sample_loss(probe.eval_model()(data[0]), samples).mean().detach()
    out = step(method, data, epoch=0.5)
    assert out.loss.ndim == 0 and torch.isfinite(out.loss) and not out.loss.requires_grad
    torch.testing.assert_close(out.loss, expected_loss)  # the unweighted mean loss before the step
    assert out.weights.shape == (BATCH,) and torch.isfinite(out.weights).all()
    assert not out.weights.requires_grad
    step(method, batch(2), epoch=1.0)

    restored = set_up(create_method(name, **OPTIONS[name]))
    probe = batch(3)[0]
    fresh_output = restored.eval_model()(probe)
    restored.load_state_dict(roundtrip(method.state_dict()))
    trained_output = method.eval_model()(probe)
    assert not torch.allclose(trained_output, fresh_output)  # training moved the net: the check can fail
    torch.testing.assert_close(restored.eval_model()(probe), trained_output, rtol=0, atol=0)
    # optimizer (and meta / peer) state came back too: one more step stays identical
    step(method, batch(4), epoch=1.5)
    step(restored, batch(4), epoch=1.5)
    torch.testing.assert_close(restored.eval_model()(probe), method.eval_model()(probe), rtol=0, atol=0)


# ---------------------------------------------------------------- focal loss

def test_focal_gamma_zero_is_cross_entropy():
    data = batch(5)
    focal, uniform = (set_up(create_method(n, **o), optimizer=plain_sgd_factory)
                      for n, o in (("focal", {"gamma": 0.0}), ("uniform", {})))
    out = step(focal, data)
    step(uniform, data)
    torch.testing.assert_close(out.weights, torch.ones(BATCH))
    assert_same_params(focal.model, uniform.model)


def test_focal_gamma_two_is_smaller_than_cross_entropy_and_trains_on_the_focal_loss():
    images, labels = batch(6)
    focal = set_up(create_method("focal", gamma=2.0), optimizer=plain_sgd_factory)

    def focal_loss(model):  # -(1 - p_t)^2 log p_t, written out
        p_true = model(images).softmax(1).gather(1, labels[:, None]).squeeze(1)
        return (-(1 - p_true) ** 2 * p_true.log()).mean()

    logits = focal.model(images)
    cross_entropy = F.cross_entropy(logits, labels)
    assert focal_loss(focal.model) < cross_entropy
    expected = sgd_step_on(focal.model, focal_loss)
    p_true = logits.softmax(1).gather(1, labels[:, None]).squeeze(1).detach()
    out = step(focal, (images, labels))
    torch.testing.assert_close(out.weights, (1 - p_true) ** 2)
    assert (out.weights < 1).all()
    assert_same_params(focal.model, expected)  # the gradient includes d/dtheta of the modulating factor


# ---------------------------------------------------------------- class-balanced

def test_class_balanced_weights_sum_to_classes_and_favour_rare_classes():
    counts = np.array([1000, 100, 10, 1])
    weights = class_balanced_weights(counts, beta=0.999)
    assert weights.sum() == pytest.approx(len(counts))
    assert np.all(np.diff(weights) > 0)  # rarer class -> larger weight
    raw = (1 - 0.999) / (1 - 0.999 ** counts)
    np.testing.assert_allclose(weights, raw / raw.sum() * 4)
    np.testing.assert_allclose(class_balanced_weights(counts, beta=0.0), np.ones(4))  # beta 0: no reweighting

    method = set_up(create_method("class_balanced", class_counts=(200, 20, 2), beta=0.99))
    images, labels = batch(7)
    out = step(method, (images, labels))
    assert float(method.class_weights.sum()) == pytest.approx(NUM_CLASSES)
    torch.testing.assert_close(out.weights, method.class_weights[labels])
    assert method.class_weights[2] > method.class_weights[1] > method.class_weights[0]


# ---------------------------------------------------------------- self-paced

def test_self_paced_keeps_start_fraction_of_small_losses_then_everything():
    method = set_up(create_method("self_paced", total_epochs=10, start_fraction=0.3))
    images, labels = batch(8)
    losses = F.cross_entropy(method.model(images), labels, reduction="none").detach()
    weights = step(method, (images, labels), epoch=0.0).weights
    assert set(weights.tolist()) <= {0.0, 1.0} and weights.sum() == 3  # 0.3 of 10
    assert losses[weights == 1].max() < losses[weights == 0].min()  # v_i = [l_i < lambda]
    assert step(method, (images, labels), epoch=5.0).weights.sum() == 6  # 0.3 + 0.7 / 2 = 0.65 -> 6 of 10
    torch.testing.assert_close(step(method, (images, labels), epoch=10.0).weights, torch.ones(BATCH))


# ---------------------------------------------------------------- co-teaching

def test_coteaching_keep_rate_schedule():
    method = create_method("coteaching", forget_rate=0.4, forget_epochs=10)
    assert method.keep_rate(0.0) == 1.0
    assert method.keep_rate(2.5) == pytest.approx(0.9)
    assert method.keep_rate(5.0) == pytest.approx(0.8)
    assert method.keep_rate(10.0) == pytest.approx(0.6)
    assert method.keep_rate(30.0) == pytest.approx(0.6)


@pytest.mark.parametrize("loss", ["ce", "gce"])
def test_coteaching_each_network_trains_on_its_peers_small_loss_samples(loss):
    method = set_up(create_method("coteaching", forget_rate=0.5, forget_epochs=1, loss=loss),
                    optimizer=plain_sgd_factory)
    images, labels = batch(9)
    f, g = copy.deepcopy(method.model), copy.deepcopy(method.peer_model)
    assert not torch.allclose(f[1].weight, g[1].weight)  # two different initialisations
    keep = 5  # R(T) = 0.5 of 10
    per_sample = (lambda logits, y: F.cross_entropy(logits, y, reduction="none")) if loss == "ce" else \
        (lambda logits, y: (1 - F.softmax(logits, 1).gather(1, y[:, None]).squeeze(1) ** 0.7) / 0.7)

    def small_loss(model):
        return torch.argsort(per_sample(model(images), labels))[:keep]

    selected_by_f, selected_by_g = small_loss(f), small_loss(g)
    assert set(selected_by_f.tolist()) != set(selected_by_g.tolist())  # else the test could not tell them apart
    out = step(method, (images, labels), epoch=3.0)
    expected_f = sgd_step_on(f, lambda m: per_sample(m(images[selected_by_g]), labels[selected_by_g]).mean())
    expected_g = sgd_step_on(g, lambda m: per_sample(m(images[selected_by_f]), labels[selected_by_f]).mean())
    assert_same_params(method.model, expected_f)
    assert_same_params(method.peer_model, expected_g)
    assert out.weights.sum() == keep and out.weights[selected_by_g].sum() == keep
    assert method.eval_model() is method.model


def test_noise_rate_estimate_inverts_symmetric_flips():
    from law_hpc.methods.coteaching import classwise_noise_rate, noise_rate_estimate
    accuracy, rate, classes = 0.8, 0.4, 10
    agreement = accuracy * (1 - rate) + (1 - accuracy) * rate / (classes - 1)
    assert noise_rate_estimate(agreement, accuracy, classes) == pytest.approx(rate)
    assert noise_rate_estimate(0.05, 0.1, classes) == 0.0  # a network at chance: no estimate
    assert noise_rate_estimate(0.0, 1.0, classes) == 0.9  # clipped
    # a long tail: the head class (90 % of the labels, 20 % flipped, known well) against a tail class
    # (50 % flipped, known less); one balanced accuracy would misjudge both
    evidence = torch.tensor([[900.0, 100.0], [720.0, 30.0], [100.0, 100.0], [90.0, 60.0]])
    head = noise_rate_estimate(0.8, 0.9, 2)
    tail = noise_rate_estimate(0.3, 0.6, 2)
    assert classwise_noise_rate(evidence) == pytest.approx(0.9 * head + 0.1 * tail)


def test_coteaching_estimates_the_rate_of_flipped_labels_in_epoch_two_and_keeps_it_in_checkpoints():
    """A network right on every clean label (lr 0: it stays so) meets labels of which 30 % were flipped: the
    estimate is 0.3; nothing is dropped before it, it survives a checkpoint, and the told rate is unused."""
    no_step = lambda model, optimizer=None: optimizer or torch.optim.SGD(model.parameters(), lr=0.0)  # noqa: E731
    method = set_up(create_method("coteaching", forget_rate=0.5, estimate_forget_rate=True, num_classes=NUM_CLASSES),
                    optimizer=no_step)
    generator = torch.Generator().manual_seed(3)
    images = torch.randn(100, 1, 3, 4, generator=generator)
    with torch.no_grad():
        true_labels = method.model(images).argmax(1)
    flipped = torch.arange(100) % 10 < 3
    given = torch.where(flipped, (true_labels + 1) % NUM_CLASSES, true_labels)
    assert step(method, (images, given), epoch=0.5).weights.sum() == 100  # nothing dropped: rate unknown yet
    for first in range(0, 100, 20):  # epoch 2 counts, a validation batch per step
        part = slice(first, first + 20)
        step(method, (images[part], given[part]), epoch=1.0 + first / 100, val=(images[part], true_labels[part]))
    half_way = roundtrip(method.state_dict())
    assert method.status() == "forget rate: estimating"
    method.choose_eval_model(None)
    assert method.forget_rate == pytest.approx(0.3) and method.status() == "forget rate 0.300, estimated"
    restored = set_up(create_method("coteaching", estimate_forget_rate=True, num_classes=NUM_CLASSES))
    restored.load_state_dict(roundtrip(method.state_dict()))
    assert restored.forget_rate == pytest.approx(0.3) and restored.keep_rate(10.0) == pytest.approx(0.7)
    resumed = set_up(create_method("coteaching", estimate_forget_rate=True, num_classes=NUM_CLASSES))
    resumed.load_state_dict(half_way)  # stopped inside epoch 2: the counts came back
    resumed.choose_eval_model(None)
    assert resumed.forget_rate == pytest.approx(0.3)


# ---------------------------------------------------------------- L2RW

def per_sample_gradient(model, images, labels):
    rows = []
    for i in range(labels.numel()):
        grads = torch.autograd.grad(F.cross_entropy(model(images[i:i + 1]), labels[i:i + 1]), model.parameters())
        rows.append(torch.cat([g.flatten() for g in grads]))
    return torch.stack(rows)


def test_l2rw_weights_follow_the_gradient_alignment_with_clean_validation():
    model = model_factory(0)
    images, labels = batch(10)
    val_images, val_labels = batch(11, size=16)
    weights = l2rw_weights(model, images, labels, val_images, val_labels, lr=LR)
    assert (weights >= 0).all() and weights.sum() == pytest.approx(1.0)
    # At eps = 0, -d L_val / d eps_i = lr <grad L_val, grad l_i>: w ∝ max(alignment, 0).
    val_gradient = per_sample_gradient(model, val_images, val_labels).mean(0)
    alignment = (per_sample_gradient(model, images, labels) @ val_gradient).clamp_min(0)
    assert 0 < (alignment > 0).sum() < BATCH  # some positive, some clipped to 0
    torch.testing.assert_close(weights, alignment / alignment.sum())


def test_l2rw_gives_a_mislabelled_sample_less_weight():
    # Orthogonal inputs keep the samples' gradients from mixing, so the weights reflect each sample's own
    # label: the mislabelled one's gradient opposes the clean validation loss on the same input.
    model = model_factory(0)
    generator = torch.Generator().manual_seed(12)
    orthonormal, _ = torch.linalg.qr(torch.randn(12, 8, generator=generator))
    images = (3 * orthonormal.T).reshape(8, 1, 3, 4)
    clean_labels = torch.randint(0, NUM_CLASSES, (8,), generator=generator)
    noisy_labels = clean_labels.clone()
    noisy_labels[0] = (clean_labels[0] + 1) % NUM_CLASSES
    assert (l2rw_weights(model, images, clean_labels, images, clean_labels, lr=LR) > 0).all()
    weights = l2rw_weights(model, images, noisy_labels, images, clean_labels, lr=LR)
    assert weights[0] == 0 or weights[0] < weights[1:].min()
    assert weights[1:].sum() > 0.9


def test_l2rw_all_zero_weights_when_nothing_helps_and_no_side_effects_on_the_model():
    model = bn_model_factory(0).train()
    images, labels = batch(13)
    before = copy.deepcopy(model.state_dict())
    weights = l2rw_weights(model, images, labels, images, labels, lr=0.0)  # lr 0: eps cannot change theta_hat
    torch.testing.assert_close(weights, torch.zeros(BATCH))
    weights = l2rw_weights(model, images, labels, *batch(14), lr=LR)
    assert weights.sum() == pytest.approx(1.0)
    for key, value in model.state_dict().items():  # running stats and num_batches_tracked untouched
        torch.testing.assert_close(value, before[key], rtol=0, atol=0, msg=key)
    assert all(p.grad is None for p in model.parameters())


# ---------------------------------------------------------------- MW-Net

def test_mwnet_meta_step_updates_meta_net_and_not_bn_statistics():
    method = set_up(create_method("mwnet", hidden=8, meta_lr=1e-2), factory=bn_model_factory)
    meta_before = copy.deepcopy(method.meta_net.state_dict())
    out = step(method, batch(15))
    changed = [not torch.equal(value, meta_before[key]) for key, value in method.meta_net.state_dict().items()]
    assert any(changed)
    assert ((out.weights > 0) & (out.weights < 1)).all()  # sigmoid output
    assert int(method.model[2].num_batches_tracked) == 1  # only the real forward touched the BN statistics
    state = roundtrip(method.state_dict())
    assert {"meta_net", "meta_optimizer"} <= set(state)
    restored = set_up(create_method("mwnet", hidden=8, meta_lr=1e-2), factory=bn_model_factory)
    restored.load_state_dict(state)
    for key, value in method.meta_net.state_dict().items():
        torch.testing.assert_close(restored.meta_net.state_dict()[key], value, rtol=0, atol=0)


# ---------------------------------------------------------------- oracle

def test_oracle_trains_only_on_clean_samples():
    clean_mask = np.ones(40, dtype=bool)
    clean_mask[[21, 24, 27]] = False
    method = set_up(create_method("oracle", clean_mask=clean_mask), optimizer=plain_sgd_factory)
    images, labels = batch(16)
    index = torch.arange(20, 30)
    keep = torch.as_tensor(clean_mask[20:30])
    expected = sgd_step_on(method.model, lambda m: F.cross_entropy(m(images[keep]), labels[keep]))
    out = step(method, (images, labels), index=index)
    torch.testing.assert_close(out.weights, keep.float())
    assert (out.weights[[1, 4, 7]] == 0).all()
    assert_same_params(method.model, expected)
    before = copy.deepcopy(method.model)
    step(method, (images[:3], labels[:3]), index=torch.tensor([21, 24, 27]))  # an all-noisy batch: no update
    assert_same_params(method.model, before)


# ---------------------------------------------------------------- built from the config, all the same way

def test_every_method_is_built_from_the_config_and_the_training_data():
    from search_helpers import SMOKE
    from law_hpc.data import build_data

    cfg = load_checked_config(SMOKE, ["data.train_size=1024", "methods.focal.gamma=1.5",
                                      "methods.coteaching.forget_rate=0.25"])
    data = build_data(cfg.data, purpose="train", seed=0, rank=0, world_size=1, device=torch.device("cpu"))
    built = {}
    for name in set(METHODS) - {"law"}:
        cfg.train.method = name
        built[name] = build_method(cfg, data)
        assert type(built[name]) is METHODS[name] and built[name].name == name
    assert built["focal"].gamma == 1.5 and built["coteaching"].forget_rate == 0.25
    expected = class_balanced_weights(data.train_label_counts, cfg.methods["class_balanced"]["beta"])
    np.testing.assert_allclose(built["class_balanced"].class_weights.numpy(), expected, rtol=1e-6)
    assert np.array_equal(built["oracle"].clean_mask.numpy(), data.train_clean_mask)
    assert built["self_paced"].total_epochs == cfg.optim.epochs
    assert built["ldam_drw"].drw_epoch == 0.8 * cfg.optim.epochs and built["gce"].q == cfg.methods["gce"]["q"] == 0.7
    cfg.train.method = "law"
    with pytest.raises(ValueError, match="needs a searched policy"):
        build_method(cfg, data)
    cfg.train.method = "nope"
    with pytest.raises(ValueError, match="unknown weighting method 'nope'"):
        build_method(cfg, data)


# ---------------------------------------------------------------- Confident Learning

def test_confident_learning_finds_the_mislabelled_samples():
    """On real Fashion-MNIST with 40 % of the labels replaced, the samples cleanlab flags from 4-fold out-of-sample
    predictions are mostly mislabelled (twice the chance rate), and most mislabelled ones are flagged."""
    from search_helpers import SMOKE
    from law_hpc.data import build_data
    from law_hpc.law.schedule import StageSchedule
    from law_hpc.models import model_from_config

    cfg = load_checked_config(SMOKE, ["data.train_size=1024", "optim.epochs=4", "train.method=confident_learning"])
    data = build_data(cfg.data, purpose="train", seed=0, rank=0, world_size=1, device=torch.device("cpu"))
    method = build_method(cfg, data)
    method.schedule = StageSchedule.from_config(cfg, iterations_per_epoch=data.train.batches_per_epoch, epochs=4)
    torch.manual_seed(0)
    set_up(method, lambda variant=0: model_from_config(cfg.model, 10, data.in_channels, data.image_size),
           lambda model, optimizer=None: torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9))
    flagged = method.find_label_issues().numpy()
    mislabelled = ~data.train_clean_mask
    precision, recall = mislabelled[flagged].mean(), flagged[mislabelled].mean()
    assert mislabelled.mean() > 0.3 and precision > 0.6 and recall > 0.6, (precision, recall)  # chance: 0.37


def test_confident_learning_refuses_a_fold_without_a_class():
    labels = np.array([0, 1, 0, 1, 0, 2])  # class 2 only at index 5: fold 1 of 2 (even indices) lacks it
    with pytest.raises(ValueError, match="fold 1 of 2 holds no sample of class"):
        create_method("confident_learning", stream=None, stream_seed=0, training_set=None, num_classes=3, folds=2,
                      labels=labels)


# ---------------------------------------------------------------- DivideMix

def test_dividemix_gmm_finds_the_low_loss_component():
    from law_hpc.methods.dividemix import clean_probability
    rng = np.random.default_rng(0)
    losses = np.concatenate([rng.normal(0.2, 0.05, 600), rng.normal(2.5, 0.4, 400)])  # 600 clean, 400 noisy
    clean = clean_probability(losses)
    assert (clean[:600] > 0.5).mean() > 0.97 and (clean[600:] < 0.5).mean() > 0.97
    assert np.all((clean >= 0) & (clean <= 1))


def test_dividemix_sharpening_and_co_divide():
    from law_hpc.methods.dividemix import sharpen
    p = torch.tensor([[0.6, 0.3, 0.1]])
    torch.testing.assert_close(sharpen(p, 1.0), p)  # T = 1: unchanged
    assert sharpen(p, 0.5)[0, 0] > 0.6 and torch.isclose(sharpen(p, 0.5).sum(), torch.tensor(1.0))
    images, labels = batch(1)
    method = set_up(create_method("dividemix", training_set=lambda: TrainingSet(images, labels), warmup_epochs=1.0))
    warm = step(method, (images, labels), epoch=0.5)
    assert method.clean is None and torch.all(warm.weights == 1)  # warm-up: plain cross-entropy, no division
    out = step(method, (images, labels), epoch=1.0)
    assert method.clean.shape == (2, BATCH) and method.divided_epoch == 1
    # the first network's step used the division of the second (co-divide): the weights it reports are those
    torch.testing.assert_close(out.weights, method.clean[1])
    before = method.clean.clone()
    step(method, (images, labels), epoch=1.5)  # same epoch: no new division
    assert torch.equal(method.clean, before)
