"""search.pair_mode = fused: the same training as two separate nets, per-net state, fallback, checkpoints.

Tolerance: the stacked kernels (batched matmuls, grouped convolutions) sum in another order than the
unbatched ones, so a fused net matches its sequential twin to float32 rounding (|diff| <= 1e-5 after a few
steps of the small nets), not bit for bit; inside the fused pair, target and reference stay bit-identical.
"""
import copy

import numpy as np
import pytest
import torch
from torch import nn

from law_hpc.config import load_config
from law_hpc.data import build_data
from law_hpc.engine.pair import ClassifierPair
from law_hpc.law.weighting import WeightingRule
from law_hpc.models import create_model
from search_helpers import SMOKE, assert_same_results, interrupt_after_rows, run_search

ATOL = 1e-5


@pytest.fixture(scope="module")
def smoke_data():
    cfg = load_config(SMOKE)
    return build_data(cfg.data, purpose="search", seed=0, rank=0, world_size=1, device=torch.device("cpu"))


def _pair(factory, mode, seed=123):
    return ClassifierPair.create(factory, seed, torch.device("cpu"), 0.05, 0.9, 5e-4, mode)


def _model(name, data):
    return lambda: create_model(name, data.num_classes, data.in_channels, data.image_size)


def _max_difference(net_a, net_b) -> float:
    return max(float((a.double() - b.double()).abs().max())
               for a, b in zip(net_a.state_dict().values(), net_b.state_dict().values()))


@pytest.fixture
def one_thread():
    """One intra-op thread: with two, oneDNN's grouped-convolution backward on some CPUs (seen on an AMD EPYC) sums in
    another order than two plain convolutions, and after 6 SGD steps the nets differ by ~2e-3, not by rounding."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("model", ["small_cnn", "mlp"])
def test_fused_at_zero_action_trains_like_two_separate_nets(smoke_data, model, one_thread):
    features = WeightingRule(torch.zeros(smoke_data.num_classes))
    stats, pairs = {}, {}
    for mode in ("sequential", "fused"):
        pairs[mode] = _pair(_model(model, smoke_data), mode)
        stats[mode] = pairs[mode].train_stage(smoke_data.train.iterate(7), range(6), lambda s: 0.05, None, features)
    fused, sequential = pairs["fused"], pairs["sequential"]
    assert fused.mode == "fused" and fused.stacked is not None
    for (name, p_t), p_r in zip(fused.target_net.state_dict().items(), fused.reference_net.state_dict().values()):
        assert torch.equal(p_t, p_r), name  # BN running statistics and step counts included
    assert _max_difference(fused.target_net, sequential.target_net) <= ATOL
    assert _max_difference(fused.reference_net, sequential.reference_net) <= ATOL
    assert stats["fused"].loss_target == stats["fused"].loss_reference
    assert stats["fused"].loss_target == pytest.approx(stats["sequential"].loss_target, abs=ATOL)
    assert fused.evaluate(smoke_data.val) == sequential.evaluate(smoke_data.val)


def test_fused_resnet_step_matches_and_keeps_batchnorm_per_net():
    factory = lambda: create_model("resnet32_cifar", 10, 3, 32)
    pairs = {mode: _pair(factory, mode) for mode in ("sequential", "fused")}
    images, labels = torch.randn(16, 3, 32, 32, generator=torch.Generator().manual_seed(0)), torch.arange(16) % 10
    action = torch.tensor([-1.0, 0.0, 0.0, 0.5, 0.1])
    features = WeightingRule(torch.zeros(10))
    out = {mode: pair.step(images, labels, 0.05, action, features) for mode, pair in pairs.items()}
    fused, sequential = pairs["fused"], pairs["sequential"]
    assert fused.mode == "fused"
    assert torch.allclose(out["fused"][2], out["sequential"][2], atol=1e-5)  # K_T of the target's features
    assert _max_difference(fused.target_net, sequential.target_net) <= ATOL
    assert _max_difference(fused.reference_net, sequential.reference_net) <= ATOL
    target_bn, reference_bn = fused.target_net[1], fused.reference_net[1]
    assert int(target_bn.num_batches_tracked) == 1
    assert torch.equal(target_bn.running_mean, reference_bn.running_mean)  # the same batch, the same init
    assert not torch.equal(fused.target_net[0].weight, fused.reference_net[0].weight)  # weighted vs plain


class _DataDependent(nn.Module):
    """A net vmap cannot batch: its forward asks the host for a value."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(784, 10)

    def forward(self, x):
        logits = self.linear(x.flatten(1))
        return logits * (2.0 if logits.abs().max().item() > 100 else 1.0)


def test_unfusable_nets_fall_back_to_sequential_with_a_reason(smoke_data, capsys):
    dropout = _pair(lambda: nn.Sequential(nn.Flatten(), nn.Dropout(0.5), nn.Linear(784, 10)), "fused")
    assert dropout.mode == "sequential" and "Dropout(p=0.5)" in dropout.fallback_reason
    probed = _pair(_DataDependent, "fused")
    sequential = _pair(_DataDependent, "sequential")
    features = WeightingRule(torch.zeros(smoke_data.num_classes))
    for pair in (probed, sequential):
        pair.train_stage(smoke_data.train.iterate(7), range(3), lambda s: 0.05, None, features)
    assert probed.mode == "sequential" and probed.fallback_reason
    assert _max_difference(probed.target_net, sequential.target_net) == 0.0  # the probe changed nothing
    printed = capsys.readouterr().out
    assert "cannot fuse" in printed and "Dropout" in printed


def test_fused_checkpoint_is_the_sequential_format_and_resumes_exactly(smoke_data):
    factory = _model("small_cnn", smoke_data)
    features = WeightingRule(torch.zeros(smoke_data.num_classes))
    action = np.array([-1.0, 0.0, 0.0, 0.0, 0.0], dtype=np.float32)
    whole = _pair(factory, "fused")
    batches = smoke_data.train.iterate(7)
    whole.train_stage(batches, range(3), lambda s: 0.05, action, features)
    state = copy.deepcopy(whole.state_dict())  # as written to disk (the optimizers' state is live)
    whole.train_stage(batches, range(3, 5), lambda s: 0.05, action, features)

    reference_format = _pair(factory, "sequential").state_dict()
    assert state.keys() == reference_format.keys()
    for part in ("target_net", "reference_net"):
        assert {k: v.shape for k, v in state[part].items()} == {k: v.shape for k, v in reference_format[part].items()}
        for value in state[part].values():  # its own storage: a checkpoint does not hold both nets twice
            assert value.untyped_storage().nbytes() == value.numel() * value.element_size()
    resumed = _pair(factory, "fused", seed=999)
    resumed.load_state_dict(state)
    batches = smoke_data.train.iterate(7, start_step=3)
    resumed.train_stage(batches, range(3, 5), lambda s: 0.05, action, features)
    assert _max_difference(whole.target_net, resumed.target_net) == 0.0
    assert _max_difference(whole.reference_net, resumed.reference_net) == 0.0
    unfused = _pair(factory, "sequential", seed=999)
    unfused.load_state_dict(state)  # a fused checkpoint resumes in the sequential mode too
    assert _max_difference(unfused.target_net, _pair_from(state, factory).target_net) == 0.0


def _pair_from(state, factory):
    pair = _pair(factory, "sequential")
    pair.load_state_dict(state)
    return pair


@pytest.mark.slow
def test_fused_search_interrupted_and_resumed_equals_uninterrupted(tmp_path):
    fused = ["search.pair_mode=fused"]
    full = tmp_path / "full"
    proc = run_search(full, overrides=fused)
    assert proc.returncode == 0, proc.stderr[-3000:]
    stopped = tmp_path / "stopped"
    code, output = interrupt_after_rows(stopped, rows=3, overrides=fused)
    assert code == 75, output[-3000:]
    proc = run_search(stopped, overrides=fused)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resumed" in proc.stdout
    assert_same_results(full, stopped)


class _TrainOnlyDataDependent(_DataDependent):
    """Fusable in eval mode; in train mode its forward asks the host for a value."""

    def forward(self, x):
        return super().forward(x) if self.training else self.linear(x.flatten(1))


def test_the_probe_tries_train_mode_without_touching_batchnorm_statistics(smoke_data):
    probed = _pair(_TrainOnlyDataDependent, "fused")
    probed.step(*next(iter(smoke_data.val.batches())), 0.05, None, WeightingRule(torch.zeros(10)))
    assert probed.mode == "sequential" and probed.fallback_reason
    batchnorm = _pair(_model("small_cnn", smoke_data), "fused")
    before = copy.deepcopy(batchnorm.state_dict())
    batchnorm._probe_fusion(next(iter(smoke_data.val.batches()))[0])
    assert batchnorm.mode == "fused"
    assert _max_difference(batchnorm.target_net, _pair_from(before, _model("small_cnn", smoke_data)).target_net) == 0.0
