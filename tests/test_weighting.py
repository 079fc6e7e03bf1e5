"""One weighting path: the test phase reproduces a search's evaluation episode, batch by batch.

The search's target step, the test phase's LAW and the drop-in LAWLoss all weight through law/weighting.py. Given
the seeds of a search's evaluation episode (its initialisation and batch order), the test phase trained with that
episode's policy.h5 must act the same actions stage by stage and compute bit-identical weights for every batch.
Both real entry points run in subprocesses; a recorder around `WeightingRule.weights` (which still runs) writes
down every (action, weights) it computed.
"""
import subprocess
import sys

import numpy as np
import pytest
import torch

from law_hpc.io.metrics import read_stages
from law_hpc.io.policy_file import load_policy
from law_hpc.law.features import FEATURE_NAMES, item_features, log_class_frequencies
from law_hpc.law.settings import PolicySettings, strategy_model
from law_hpc.law.weighting import WeightingRule
from law_hpc.registry import load_checked_config
from law_hpc.weighter import LAWLoss, PolicyWeighter
from search_helpers import REPO, SMOKE

EVALUATION_EPISODE = 1  # configs/smoke.yaml: 2 episodes, the second evaluates the actor that becomes policy.h5

RECORDING = """
import sys, torch
from law_hpc.law import weighting
recorded, original = [], weighting.WeightingRule.weights
def recording(self, logits, labels, action, per_sample_loss):
    weights = original(self, logits, labels, action, per_sample_loss)
    recorded.append((action.detach().cpu().clone(), weights.detach().cpu().clone()))
    return weights
weighting.WeightingRule.weights = recording
{steer}
from law_hpc.{entry} import main
code = main(sys.argv[2:])
torch.save(recorded, sys.argv[1])
sys.exit(code)
"""

# the test phase's two seeds, steered to the search's for one searcher's episode (rank 0)
STEER_TO_EPISODE = f"""
import law_hpc.train
from law_hpc.seeding import derive_seed
search_seed = {{"train-init": "init", "train-data": "data"}}
law_hpc.train.derive_seed = lambda seed, purpose, *rest: derive_seed(seed, search_seed[purpose], 0, {EVALUATION_EPISODE})
"""


def _recorded_run(entry: str, out, args, steer: str = ""):
    code = RECORDING.format(entry=entry, steer=steer)
    proc = subprocess.run([sys.executable, "-c", code, str(out), *args], capture_output=True, text=True,
                          timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return torch.load(out)


VAL_RANK = ["--set", "strategy.feature_norm=val_rank", "--set", "strategy.action_terms=[loss,label,bias]"]


@pytest.mark.slow
@pytest.mark.parametrize("settings", [[], VAL_RANK], ids=["batch_rank", "val_rank"])
def test_the_test_phase_reproduces_an_evaluation_episode_batch_by_batch(tmp_path, settings):
    # val_rank: both rank the losses among the validation losses each measures at the stage end before
    cfg = load_checked_config(SMOKE)
    search_dir = tmp_path / "search"
    searched = _recorded_run("search", tmp_path / "search.pt",
                             ["--run-dir", str(search_dir), "--config", str(SMOKE), *settings])
    assert load_policy(search_dir / "policy.h5").settings.feature_norm == ("val_rank" if settings else "rank")
    # the episode's weighted batches: the last (stages - warm-up) stages of each episode call the rule
    per_episode = len(searched) // cfg.search.episodes
    episode = searched[EVALUATION_EPISODE * per_episode:(EVALUATION_EPISODE + 1) * per_episode]
    trained = _recorded_run("train", tmp_path / "train.pt", [
        "--run-dir", str(tmp_path / "train"), "--config", str(SMOKE),
        "--policy", str(search_dir / "policy.h5"), "--set", f"data.train_size={cfg.data.search_train_size}"],
        steer=STEER_TO_EPISODE)

    assert len(trained) == len(episode) > 0
    for step, ((action_s, weights_s), (action_t, weights_t)) in enumerate(zip(episode, trained)):
        assert torch.equal(action_s, action_t), f"batch {step}: action {action_s.tolist()} vs {action_t.tolist()}"
        assert torch.equal(weights_s, weights_t), f"batch {step}: weights differ by {(weights_s - weights_t).abs().max()}"
    # per stage: the actions the search logged for that episode are the ones the test phase acted
    stages = read_stages(search_dir / "metrics.h5")
    rows = (stages["episode"] == EVALUATION_EPISODE) & (stages["rank"] == 0) & (stages["weighted"] == 1)
    acted = np.unique(np.stack([action.numpy() for action, _ in trained]), axis=0)
    assert len(acted) == rows.sum() and np.array_equal(np.sort(stages["action"][rows], axis=0), np.sort(acted, axis=0))
    assert len({tuple(a) for a in stages["action"][rows]}) > 1, "one action for every stage: the stage state was not used"


def small_settings(**chosen) -> PolicySettings:
    """The settings of a small policy (2 stages, 3 classes) with `chosen` ones."""
    return PolicySettings(**{"stages": 2, "embed_dim": 4, "hidden": 8, "action_scale": 2.0, "action_bound": "tanh",
                             "weight_norm": "sum_w", "num_classes": 3, "epochs": 1, "lr_decay_stages": (), **chosen})


def test_the_drop_in_loss_weights_as_the_search_rule():
    torch.manual_seed(0)
    logits, labels = torch.randn(32, 3), torch.randint(0, 3, (32,))
    counts = [50, 30, 20]
    settings = small_settings(warmup_stages=0, action_terms=("loss", "label"), feature_norm="rank")
    weighter = PolicyWeighter(strategy_model(settings), settings, log_class_frequencies(counts))
    law_loss = LAWLoss(PolicyWeighter(strategy_model(settings), settings, log_class_frequencies(counts)), 10)
    law_loss.weighter.model.load_state_dict(weighter.model.state_dict())
    rule = WeightingRule.from_settings(settings, torch.as_tensor(log_class_frequencies(counts)))
    per_sample = torch.nn.functional.cross_entropy(logits, labels, reduction="none")
    action = weighter.action(0)
    expected = rule.weights(logits, labels, action, per_sample)
    assert torch.equal(weighter.weights(logits, labels, 0, per_sample), expected)
    assert torch.equal(law_loss(logits, labels, 0), rule.loss(per_sample, expected))


@pytest.mark.parametrize("norm", ["zscore", "rank"])
def test_features_a_policy_does_not_use_are_not_computed_and_change_nothing(norm):
    torch.manual_seed(1)
    logits, labels = torch.randn(64, 5), torch.randint(0, 5, (64,))
    log_freq = torch.log(torch.tensor([0.4, 0.3, 0.1, 0.1, 0.1]))
    every = item_features(logits, labels, log_freq, norm=norm)
    only = item_features(logits, labels, log_freq, norm=norm, terms=("loss", "label"))
    used = [FEATURE_NAMES.index("loss"), FEATURE_NAMES.index("label")]
    # each feature is normalised on its own (equal up to the reduction order of a narrower tensor)
    torch.testing.assert_close(only[:, used], every[:, used], rtol=0, atol=1e-6)
    assert torch.count_nonzero(only[:, [FEATURE_NAMES.index("entropy"), FEATURE_NAMES.index("density")]]) == 0


def test_a_val_rank_policy_in_your_loop_needs_the_validation_losses():
    torch.manual_seed(0)
    logits, labels = torch.randn(32, 3), torch.randint(0, 3, (32,))
    counts = [50, 30, 20]
    settings = small_settings(warmup_stages=1, action_terms=("loss", "label", "bias"), feature_norm="val_rank")
    law_loss = LAWLoss(PolicyWeighter(strategy_model(settings), settings, log_class_frequencies(counts)), 10)
    law_loss.weighter.model.actor.make_constant([-1.5, 0, 0, 0, 1.0])  # down-weight high losses, b = 1
    assert law_loss.weighter.needs_validation_losses
    law_loss(logits, labels, 0)  # the warm-up stage weighs 1: nothing measured yet, nothing needed
    with pytest.raises(ValueError, match="per-sample losses"):
        law_loss.observe_validation(0.5)
    validation_losses = torch.nn.functional.cross_entropy(torch.randn(100, 3), torch.randint(0, 3, (100,)),
                                                          reduction="none")
    law_loss.observe_validation(0.5, validation_losses)
    per_sample = torch.nn.functional.cross_entropy(logits, labels, reduction="none")
    rule = WeightingRule.from_settings(settings, torch.as_tensor(log_class_frequencies(counts)))
    rule.observe_validation_losses(validation_losses)
    expected = rule.weights(logits, labels, law_loss.weighter.action(1), per_sample)
    assert torch.equal(law_loss.weighter.weights(logits, labels, 1, per_sample), expected)
    # the weights follow where each loss sits among the validation losses, not within the batch
    shifted = WeightingRule.from_settings(settings, torch.as_tensor(log_class_frequencies(counts)))
    shifted.observe_validation_losses(validation_losses + 10)  # every training loss now looks clean
    assert shifted.weights(logits, labels, law_loss.weighter.action(1), per_sample).min() > expected.min()
