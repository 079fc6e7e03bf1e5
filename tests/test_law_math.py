"""The method's math against hand-computed values (paper Eq. 3-13, law_spec.md)."""
import math

import numpy as np
import pytest
import torch

from law_hpc.law.ddpg import DDPG, ExplorationNoise, ReplayBuffer, fdu_minibatch_count
from law_hpc.law.features import batch_density, item_features, zscore
from law_hpc.law.policy import ACTION_DIM, StrategyModel, sample_weights, weighted_mean_loss
from law_hpc.law.schedule import StageSchedule
from law_hpc.law.reward import reward_weight, stage_reward


def test_features_match_hand_computed_values():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    labels = torch.tensor([0, 0, 1])
    log_freq = torch.log(torch.tensor([0.75, 0.25]))
    f = item_features(logits, labels, log_freq)

    # raw columns computed by hand
    loss = [math.log(1 + math.exp(-2)), math.log(1 + math.e), math.log(2)]
    def ent(a, b):
        p = math.exp(a) / (math.exp(a) + math.exp(b)); q = 1 - p
        return -(p * math.log(p) + q * math.log(q))
    entropy = [ent(2, 0), ent(0, 1), ent(1, 1)]
    # cosine similarities: v0=(1,0), v1=(0,1), v2=(1,1)/sqrt2
    c = 1 / math.sqrt(2)
    density = [(0 + c) / 2, (0 + c) / 2, (c + c) / 2]
    raw = torch.tensor([loss, entropy, density], dtype=torch.float64).T
    expected = (raw - raw.mean(0)) / raw.std(0, unbiased=False).clamp_min(1e-6)
    # entropy of rows 0 and 1 differ; density of rows 0, 1 equal -> equal z-scores
    assert f.shape == (3, 4)
    assert torch.allclose(f[:, :3].double(), expected, atol=1e-5)
    assert torch.allclose(f[:, :3].mean(0), torch.zeros(3), atol=1e-6)
    # the label feature is the data set's log(C * freq), not normalised with the batch
    torch.testing.assert_close(f[:, 3], torch.log(2 * torch.tensor([0.75, 0.75, 0.25])))
    balanced = item_features(logits, labels, torch.log(torch.tensor([0.501, 0.499])))
    assert balanced[:, 3].abs().max() < 0.01  # nearly balanced classes: no class ordering out of count noise


def test_density_is_cosine_so_the_logits_scale_does_not_change_it():
    logits = torch.randn(8, 5)
    assert torch.allclose(batch_density(logits), batch_density(10 * logits), atol=1e-6)


def test_a_constant_column_zscores_to_zero():
    assert torch.equal(zscore(torch.ones(5, 2)), torch.zeros(5, 2))  # never NaN


def test_weights_in_open_interval_and_one_for_zero_action():
    torch.manual_seed(0)
    features = zscore(torch.randn(1000, 4))  # normalised per batch, as the method does
    assert torch.equal(sample_weights(features, torch.zeros(ACTION_DIM)), torch.ones(1000))
    weights = sample_weights(features, torch.tensor([0.7, -0.3, 0.2, 0.1, 0.05]))
    assert (weights > 0).all() and (weights < 2).all()
    extreme = sample_weights(torch.full((1, 4), -10.0), torch.tensor([1.0, 1.0, 1.0, 1.0, -1.0]))
    assert 0 < extreme.item() < 1e-15  # tiny but never exactly 0
    # K = 1 + tanh(theta . f + b) (Eq. 3) for one row by hand
    row = features[0]
    expected = 1 + math.tanh(0.7 * row[0] - 0.3 * row[1] + 0.2 * row[2] + 0.1 * row[3] + 0.05)
    assert weights[0].item() == pytest.approx(expected, rel=1e-5)


def test_weighted_loss_normalisations():
    losses = torch.tensor([1.0, 2.0, 3.0])
    weights = torch.tensor([0.5, 1.0, 1.5])
    assert weighted_mean_loss(losses, weights, "mean").item() == pytest.approx((0.5 + 2 + 4.5) / 3)
    assert weighted_mean_loss(losses, weights, "sum_w").item() == pytest.approx(7.0 / 3.0)


def test_reward_formula():
    assert reward_weight(5, 10, scale=2.0, k=3.0) == pytest.approx(2.0 * math.exp(1.5))
    assert stage_reward(0.8, 0.75, 5, 10, 2.0, 3.0) == pytest.approx(2.0 * math.exp(1.5) * 0.05)
    assert stage_reward(0.7, 0.75, 0, 10, 1.0, 1.0) == pytest.approx(-0.05)


def test_stage_schedule_lr_and_warmup():
    schedule = StageSchedule(stages=20, warmup_stages=4, iterations_per_epoch=100, epochs=200, base_lr=0.1,
                             lr_decay_stages=(10, 13, 16), lr_decay=0.1)
    assert schedule.iterations_per_stage == 1000
    assert [schedule.is_weighted(t) for t in (0, 3, 4)] == [False, False, True]
    assert schedule.stage_lr(8) == pytest.approx(0.1)  # stage 9 (1-based)
    assert schedule.stage_lr(9) == pytest.approx(0.01)  # stage 10
    assert schedule.stage_lr(15) == pytest.approx(1e-4)  # stage 16
    assert schedule.epoch_at_end(19) == pytest.approx(200)
    warm = StageSchedule(4, 1, 10, 4, 0.4, warmup_epochs=2)
    assert warm.lr_at(0) == pytest.approx(0.4 / 20)
    assert warm.lr_at(25) == pytest.approx(0.4)
    assert [warm.stage_of_step(s) for s in (0, 9, 10, 39, 45)] == [0, 0, 1, 3, 3]
    assert list(warm.stage_steps(2)) == list(range(20, 30))


def _model_and_ddpg(target_networks=True, gamma=0.9):
    torch.manual_seed(0)
    model = StrategyModel(stages=5, embed_dim=4, hidden=16, action_scale=1.0)
    return model, DDPG(model, 1e-3, 1e-3, gamma=gamma, tau=0.5, target_networks=target_networks)


def _batch(done):
    return {"stage": torch.tensor([1]), "scalars": torch.tensor([[0.5, 0.3]]), "action": torch.zeros(1, 5),
            "reward": torch.tensor([0.25]), "next_stage": torch.tensor([2]),
            "next_scalars": torch.tensor([[0.4, 0.35]]), "done": torch.tensor([done])}


@pytest.mark.parametrize("target_networks", [True, False])
def test_td_target_with_and_without_done(target_networks):
    model, ddpg = _model_and_ddpg(target_networks)
    if target_networks:  # make the targets differ from the online nets to see which is used
        with torch.no_grad():
            for p in model.critic_target.parameters():
                p.add_(0.1)
    enc, act, cri = ((model.encoder_target, model.actor_target, model.critic_target) if target_networks
                     else (model.encoder, model.actor, model.critic))
    with torch.no_grad():
        s_next = enc(torch.tensor([2]), torch.tensor([[0.4, 0.35]]))
        q_next = cri(s_next, act(s_next)).item()
    assert ddpg.td_target(_batch(0.0)).item() == pytest.approx(0.25 + 0.9 * q_next, rel=1e-5)
    assert ddpg.td_target(_batch(1.0)).item() == pytest.approx(0.25)


def _fill(buffer, n, rng):
    for i in range(n):
        buffer.add(stage=i % 5, scalars=rng.random(2), action=rng.random(5), reward=rng.random(),
                   next_stage=(i + 1) % 5, next_scalars=rng.random(2), done=float(i % 5 == 4))


def test_fdu_runs_epochs_times_ceil_minibatches_and_averages_gradients():
    model, ddpg = _model_and_ddpg()
    calls = []
    ddpg.average_gradients = lambda params: calls.append(len(params))
    buffer = ReplayBuffer(capacity=100)
    _fill(buffer, 37, np.random.default_rng(0))
    stats = ddpg.full_data_update(buffer, fdu_epochs=3, fdu_batch=8, rng=np.random.default_rng(1))
    assert stats.minibatches == 3 * math.ceil(37 / 8) == fdu_minibatch_count(37, 3, 8)
    # ONE grouped averaging per minibatch, over critic + actor + embedding parameters
    n_params = len(list(model.critic.parameters())) + len(model.actor_parameters())
    assert calls == [n_params] * stats.minibatches


def test_fdu_learns_a_reward_that_prefers_an_action():
    """The actor moves towards the action the reward prefers: the critic and actor steps are wired right."""
    torch.manual_seed(0)
    model = StrategyModel(stages=3, embed_dim=4, hidden=32, action_scale=1.0)
    ddpg = DDPG(model, actor_lr=1e-3, critic_lr=1e-2, gamma=0.0, tau=0.1)
    rng = np.random.default_rng(0)
    buffer = ReplayBuffer(capacity=1000)
    for _ in range(400):
        action = rng.uniform(-1, 1, 5)
        buffer.add(stage=1, scalars=[0.5, 0.5], action=action, reward=-(action[0] - 0.6) ** 2,
                   next_stage=2, next_scalars=[0.5, 0.5], done=1.0)
    before = model.act(1, (0.5, 0.5))[0].item()
    for _ in range(15):
        ddpg.full_data_update(buffer, 1, 64, rng)
    after = model.act(1, (0.5, 0.5))[0].item()
    assert abs(after - 0.6) < abs(before - 0.6) - 0.2


def test_replay_buffer_fifo_capacity_and_rejects_non_finite():
    buffer = ReplayBuffer(capacity=4)
    _fill(buffer, 6, np.random.default_rng(0))
    assert len(buffer) == 4
    assert list(buffer.arrays["stage"]) == [2, 3, 4, 0]  # the two oldest dropped
    with pytest.raises(ValueError, match="non-finite"):
        buffer.add(stage=0, scalars=[0, 0], action=[0, 0, 0, 0, 0], reward=float("nan"), next_stage=1,
                   next_scalars=[0, 0], done=0.0)
    assert len(buffer) == 4
    restored = ReplayBuffer(capacity=4)
    restored.load_state_dict(buffer.state_dict())
    assert all(np.array_equal(restored.arrays[k], buffer.arrays[k]) for k in buffer.arrays)


def test_exploration_noise_decays_and_is_reproducible():
    noise = ExplorationNoise("gaussian", sigma=1.0, decay=0.5)
    a = noise.sample(0, np.random.default_rng(3))
    b = noise.sample(2, np.random.default_rng(3))
    assert np.allclose(b, a * 0.25)
    ou = ExplorationNoise("ou", sigma=0.2, decay=1.0)
    first = ou.sample(0, np.random.default_rng(1))
    second = ou.sample(0, np.random.default_rng(1))
    assert not np.allclose(first, second)  # OU carries state across stages
    ou.reset()
    assert np.allclose(ou.sample(0, np.random.default_rng(1)), first)


def test_rank_feature_normalisation_matches_a_hand_computation():
    from law_hpc.law.features import batch_ranks
    losses = torch.tensor([0.3, 2.5, 0.3, 9.0])  # a heavy tail and a tie
    # ranks from 0, ties averaged: 0.3 and 0.3 share (0 + 1) / 2
    assert torch.equal(batch_ranks(losses[:, None])[:, 0], torch.tensor([0.5, 2.0, 0.5, 3.0]))
    logits = torch.zeros(4, 3)
    labels = torch.zeros(4, dtype=torch.long)
    logits[:, 0] = -losses  # cross-entropy grows with the loss column, so the loss feature ranks as `losses`
    features = item_features(logits, labels, torch.zeros(3), norm="rank")
    ranks = torch.tensor([0.5, 2.0, 0.5, 3.0])
    expected = (ranks - ranks.mean()) / ranks.std(unbiased=False)  # centred [-1, 0.5, -1, 1.5], std 1.06
    torch.testing.assert_close(features[:, 0], expected)
    zscored = item_features(logits, labels, torch.zeros(3), norm="zscore")[:, 0]
    assert zscored[3] > 1.6 and features[3, 0] < zscored[3]  # the tail sample is no outlier in rank space
    with pytest.raises(ValueError, match="unknown feature normalisation"):
        item_features(logits, labels, torch.zeros(3), norm="minmax")


def test_val_rank_places_each_loss_among_the_validation_losses():
    from law_hpc.law.features import validation_ranks
    validation = torch.tensor([0.1, 0.2, 0.4, 0.8])  # sorted per-sample validation losses
    # u = fraction of validation losses below (ties half): 0, 1/8 (ties 0.1), 1/2, 1 -> sqrt(12) (u - 1/2)
    losses = torch.tensor([0.05, 0.1, 0.3, 5.0])
    expected = 12 ** 0.5 * (torch.tensor([0.0, 0.125, 0.5, 1.0]) - 0.5)
    torch.testing.assert_close(validation_ranks(losses, validation), expected)
    # in item_features: the loss column is that, whatever the batch holds; the other columns are batch ranks
    logits = torch.zeros(4, 3)
    labels = torch.zeros(4, dtype=torch.long)
    logits[:, 0] = -losses  # cross-entropy grows with `losses`
    per_sample_loss = torch.nn.functional.cross_entropy(logits, labels, reduction="none")
    features = item_features(logits, labels, torch.zeros(3), norm="val_rank", validation_losses=validation)
    torch.testing.assert_close(features[:, 0], validation_ranks(per_sample_loss, validation))
    ranked = item_features(logits, labels, torch.zeros(3), norm="rank")
    torch.testing.assert_close(features[:, 1:], ranked[:, 1:])
    # a batch of only clean-looking losses keeps them all below the validation median: no batch fraction is dropped
    low = item_features(logits - 10 * torch.eye(3)[0], labels, torch.zeros(3), norm="val_rank",
                        validation_losses=torch.full((8,), 50.0))[:, 0]
    assert (low < 0).all() and ranked[:, 0].max() > 0
    with pytest.raises(ValueError, match="none were measured"):
        item_features(logits, labels, torch.zeros(3), norm="val_rank")


def test_action_bounds_terms_and_the_norm_penalty():
    torch.manual_seed(0)
    bounded = StrategyModel(stages=3, embed_dim=4, hidden=16, action_scale=2.0, action_bound="tanh")
    with torch.no_grad():
        bounded.actor.net[-1].bias.fill_(50.0)  # far beyond the bound before the tanh
    action = bounded.act(1, (0.5, 0.5))
    assert torch.all(action <= 2.0) and torch.all(action > 1.99)
    unbounded = StrategyModel(stages=3, embed_dim=4, hidden=16, action_scale=2.0, action_bound="none",
                              action_terms=("loss", "bias"))
    with torch.no_grad():
        unbounded.actor.net[-1].bias.fill_(50.0)
    action = unbounded.act(1, (0.5, 0.5))
    assert action[0] > 99 and action[4] > 99 and torch.all(action[1:4] == 0)  # only loss and bias move
    unbounded.actor.make_constant([-4.0, 0, 0, 0, 0.5])
    torch.testing.assert_close(unbounded.act(2, (1.0, 0.1)), torch.tensor([-4.0, 0, 0, 0, 0.5]))
    with pytest.raises(ValueError, match="holds at 0"):
        unbounded.actor.make_constant([0, 1.0, 0, 0, 0])
    # With a critic that ignores the action, the penalty alone moves the actor: |a| shrinks.
    ddpg = DDPG(unbounded, actor_lr=1e-2, critic_lr=0.0, gamma=0.9, tau=0.5, action_penalty=1.0)
    with torch.no_grad():
        for p in unbounded.critic.parameters():
            p.zero_()
    batch = {**_batch(done=1.0), "action": torch.zeros(1, 5)}
    before = unbounded.act(1, (0.5, 0.3)).norm()
    for _ in range(20):
        ddpg.update_minibatch(batch)
    assert unbounded.act(1, (0.5, 0.3)).norm() < before
    without = StrategyModel(stages=3, embed_dim=4, hidden=16, action_scale=2.0, action_bound="none")
    without.load_state_dict(unbounded.state_dict())
    DDPG(without, actor_lr=1e-2, critic_lr=0.0, gamma=0.9, tau=0.5).update_minibatch(batch)
    torch.testing.assert_close(without.act(1, (0.5, 0.3)), unbounded.act(1, (0.5, 0.3)))  # no penalty, no pull
