"""The per-sample losses of law_hpc.law.losses and the peers built on them, on cases whose answer is known."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from law_hpc.data.types import Batch
from law_hpc.law import losses
from law_hpc.methods import create_method
from test_methods import batch, model_factory, set_up, step

COUNTS = (60, 30, 10)
NEAR_BALANCED = (1046, 971, 956)  # the label counts of a noisy random subset of balanced classes


def logits_and_labels(seed: int = 0, size: int = 32, classes: int = 3):
    generator = torch.Generator().manual_seed(seed)
    return 3 * torch.randn(size, classes, generator=generator), torch.randint(0, classes, (size,), generator=generator)


def test_logit_adjustment_on_balanced_classes_is_cross_entropy_and_favours_rare_classes_otherwise():
    logits, labels = logits_and_labels()
    balanced = losses.log_prior((40, 40, 40))
    torch.testing.assert_close(losses.logit_adjusted(logits, labels, balanced), losses.cross_entropy(logits, labels))
    # on a long tail, a sample of the rarest class costs more than plain CE, one of the commonest less
    skewed = losses.logit_adjusted(logits, labels, losses.log_prior(COUNTS))
    plain = losses.cross_entropy(logits, labels)
    assert (skewed[labels == 2] > plain[labels == 2]).all() and (skewed[labels == 0] < plain[labels == 0]).all()
    # tau scales the shift: tau = 0 is CE
    torch.testing.assert_close(losses.logit_adjusted(logits, labels, losses.log_prior(COUNTS), tau=0.0), plain)


def test_balanced_softmax_trains_as_logit_adjustment_at_tau_one():
    la, bs = (set_up(create_method(name, class_counts=COUNTS)) for name in ("logit_adjusted", "balanced_softmax"))
    for seed in range(3):
        torch.testing.assert_close(step(la, batch(seed)).loss, step(bs, batch(seed)).loss)
    for p, q in zip(la.model.parameters(), bs.model.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)


def test_gce_tends_to_cross_entropy_as_q_goes_to_zero_and_is_mae_at_one():
    logits, labels = logits_and_labels(1)
    cross_entropy = losses.cross_entropy(logits, labels)
    torch.testing.assert_close(losses.generalized_cross_entropy(logits, labels, q=1e-6), cross_entropy,
                               rtol=1e-4, atol=1e-5)
    p_true = F.softmax(logits, 1).gather(1, labels[:, None]).squeeze(1)
    torch.testing.assert_close(losses.generalized_cross_entropy(logits, labels, q=1.0), 1 - p_true)
    # bounded by 1/q, where CE grows without bound on a confidently wrong sample
    wrong = torch.tensor([[30.0, 0.0, 0.0]]), torch.tensor([2])
    assert losses.generalized_cross_entropy(*wrong, q=0.7) <= 1 / 0.7 < losses.cross_entropy(*wrong)
    with pytest.raises(ValueError, match="q must be in"):
        create_method("gce", q=0.0)


def test_ldam_margins_follow_the_inverse_fourth_root_and_zero_margins_are_cross_entropy():
    margins = losses.ldam_margins(COUNTS, max_margin=0.5)
    np.testing.assert_allclose(margins.numpy(), 0.5 * (np.array(COUNTS) / 10.0) ** -0.25, rtol=1e-6)
    logits, labels = logits_and_labels(2)
    torch.testing.assert_close(losses.ldam(logits, labels, torch.zeros(3)), losses.cross_entropy(logits, labels))
    # the margin lowers the true logit: the loss only grows, most for the rarest class
    gap = losses.ldam(logits, labels, margins) - losses.cross_entropy(logits, labels)
    assert (gap > 0).all() and gap[labels == 2].mean() > gap[labels == 0].mean()


def test_ldam_drw_weights_nothing_before_the_deferred_epoch_and_by_class_after():
    method = set_up(create_method("ldam_drw", class_counts=COUNTS, total_epochs=10.0), model_factory)
    images, labels = batch(4)
    logits, samples = method.model(images), Batch(images, labels, torch.arange(labels.numel()))
    assert method.sample_weights(logits, samples, epoch=7.9) is None
    weights = method.sample_weights(logits, samples, epoch=8.0)
    assert torch.equal(weights, method.class_weights[labels])
    assert method.class_weights[2] > method.class_weights[1] > method.class_weights[0]


def test_elr_targets_follow_the_predictions_and_without_lambda_it_is_cross_entropy():
    method = set_up(create_method("elr", train_size=10, num_classes=3, beta=0.7, lam=3.0), model_factory)
    images, labels = batch(5)
    samples = Batch(images, labels, torch.arange(10))
    logits = method.model(images)
    loss = method.per_sample_loss(logits, samples)
    p = F.softmax(logits.detach(), 1).clamp(1e-4, 1 - 1e-4)
    p = p / p.sum(1, keepdim=True)
    torch.testing.assert_close(method.targets, 0.3 * p)  # from zero: (1 - beta) p after one step
    torch.testing.assert_close(loss, losses.cross_entropy(logits, labels) + 3.0 * torch.log1p(-(0.3 * p * p).sum(1)))
    assert (loss < losses.cross_entropy(logits, labels)).all()  # log(1 - <t, p>) < 0: agreeing lowers the loss
    plain = create_method("elr", train_size=10, num_classes=3, lam=0.0)
    torch.testing.assert_close(plain.per_sample_loss(logits, samples), losses.cross_entropy(logits, labels))


def test_elr_with_tau_adjusts_its_cross_entropy_on_a_long_tail_and_is_plain_elr_on_balanced_classes():
    images, labels = batch(5)
    samples = Batch(images, labels, torch.arange(10))
    counts = [60, 30, 10]
    adjusted = set_up(create_method("elr", train_size=10, num_classes=3, lam=0.0, tau=1.0, class_counts=counts),
                      model_factory)
    logits = adjusted.model(images)
    torch.testing.assert_close(adjusted.per_sample_loss(logits, samples),
                               losses.logit_adjusted(logits, labels, losses.log_prior(counts), 1.0))
    balanced = create_method("elr", train_size=10, num_classes=3, lam=3.0, tau=1.0, class_counts=NEAR_BALANCED)
    plain = create_method("elr", train_size=10, num_classes=3, lam=3.0)
    assert torch.equal(balanced.per_sample_loss(logits, samples), plain.per_sample_loss(logits, samples))


def test_gce_with_tau_is_lq_of_the_adjusted_softmax_on_a_long_tail_and_plain_gce_on_balanced_classes():
    logits, labels = logits_and_labels()
    adjusted = create_method("gce", q=0.7, tau=1.0, class_counts=COUNTS)
    shifted = logits + losses.log_prior(COUNTS)
    expected = (1 - F.softmax(shifted, dim=1).gather(1, labels[:, None]).squeeze(1) ** 0.7) / 0.7
    torch.testing.assert_close(adjusted.per_sample_loss(logits, Batch(logits, labels, torch.arange(32))), expected)
    assert not torch.allclose(expected, losses.generalized_cross_entropy(logits, labels, 0.7))
    # the base loss gce with methods.gce.tau is the same loss (the LAW weighting and the guard's twin)
    torch.testing.assert_close(losses.base_loss("gce", COUNTS, q=0.7, gce_tau=1.0)(logits, labels), expected)
    balanced = create_method("gce", q=0.7, tau=1.0, class_counts=NEAR_BALANCED)
    assert torch.equal(balanced.per_sample_loss(logits, Batch(logits, labels, torch.arange(32))),
                       losses.generalized_cross_entropy(logits, labels, 0.7))
