"""Config: YAML + --set, unknown keys and wrong types named, the default config file equals the defaults, names
checked against their registries at launch, and the config module a leaf (no torch, nothing else of law_hpc)."""
import subprocess
import sys
from pathlib import Path

import pytest

from law_hpc.config import Config, ConfigError, load_config, override_keys, to_yaml
from law_hpc.registry import checked, load_checked_config

CONFIGS = Path(__file__).parent.parent / "configs"


def test_default_yaml_equals_builtin_defaults():
    assert to_yaml(load_checked_config(CONFIGS / "fmnist_noisy_mlp.yaml")) == to_yaml(checked(Config()))


def test_the_config_module_is_a_leaf():
    code = ("import sys, law_hpc.config; "
            "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('law_hpc.') and m != 'law_hpc.config'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_loads_and_validates(path):
    cfg = load_checked_config(path)
    assert cfg.search.warmup_stages < cfg.search.stages


def test_paper_settings_in_cifar_config():
    cfg = load_config(CONFIGS / "cifar10_noisy_resnet18.yaml")
    assert (cfg.optim.lr, cfg.optim.momentum, cfg.optim.weight_decay) == (0.1, 0.9, 2e-5)
    assert cfg.optim.lr_decay_stages == [10, 13, 16] and cfg.search.stages == 20 and cfg.optim.epochs == 200
    assert cfg.search_epochs == 200 and cfg.data.train_size == 0  # search episodes = the test-phase training
    assert (cfg.data.search_train_size, cfg.data.val_size, cfg.data.noise_rate) == (20000, 5000, 0.4)
    assert (cfg.strategy.actor_lr, cfg.strategy.critic_lr) == (1e-5, 1e-4)


def test_set_overrides_with_types():
    overrides = ["search.episodes=3", "data.noise_rate=0.2", "data.noise_mode=flip", "optim.lr_decay_stages=[2, 3]",
                 "strategy.target_networks=false", "optim.lr=1e-3", "data.imbalance=none", "methods.gce.q=1e-1",
                 "methods.coteaching.forget_epochs=5"]
    cfg = load_checked_config(None, overrides)
    assert cfg.search.episodes == 3 and cfg.data.noise_rate == 0.2 and cfg.data.noise_mode == "flip"
    assert cfg.optim.lr_decay_stages == [2, 3] and cfg.strategy.target_networks is False
    assert cfg.optim.lr == 1e-3 and cfg.data.imbalance == "none"
    assert cfg.methods["gce"] == {"q": 0.1, "tau": 0.0} and cfg.methods["coteaching"]["forget_epochs"] == 5
    assert cfg.methods["focal"] == {"gamma": 2.0}  # every method's options resolved, defaults filled in
    assert override_keys(overrides)[:2] == ["search.episodes", "data.noise_rate"]


@pytest.mark.parametrize("assignment, named", [
    ("search.episodez=3", "search.episodez"),
    ("nosection.x=1", "nosection"),
    ("search.episodes=three", "search.episodes"),
    ("data.noise_rate=abc", "data.noise_rate"),
    ("data.backend=tensorflow", "data.backend"),
    ("data.dataset=mnist", "data.dataset"),
    ("model.name=resnet7", "model.name"),
    ("train.method=bogus", "train.method"),
    ("search.warmup_stages=50", "search.warmup_stages"),
    ("strategy.target_networks=3", "strategy.target_networks"),
    ("strategy.feature_norm=minmax", "strategy.feature_norm"),
    ("strategy.feature_norm=class_val_rank", "strategy.feature_norm"),  # removed: docs/experiments.md
    ("strategy.density=dot", "strategy.density"),  # removed
    ("search.reward=gap_change", "search.reward"),  # removed
    ("strategy.action_terms=[loss, size]", "strategy.action_terms"),
    ("strategy.action_scale=0", "strategy.action_scale"),
    ("strategy.action_scale=-2", "strategy.action_scale"),
    ("strategy.action_bound=sigmoid", "strategy.action_bound"),
    ("search.pair_mode=stacked", "search.pair_mode"),
    ("train.epochs=3", "train.epochs"),  # one epoch count: optim.epochs
    ("data.augment=random_resized_crop", "data.augment"),  # an image folder's, not in-memory data's
    ("search.data_variants=[noise_rat=0.2]", "search.data_variants"),
    ("search.data_variants=[noise_rate=2]", "search.data_variants"),
    ("search.data_variants=[noise_mode=twice]", r"search.data_variants\[0\].noise_mode"),
    ("methods.gce.qq=0.5", "methods.gce.qq"),
    ("methods.gce.q=half", "methods.gce.q"),
    ("methods.nomethod.x=1", "methods.nomethod"),
    ("methods.law.guard_peers=[gce,nomethod]", "methods.law.guard_peers"),
    ("methods.law.guard_peers=[law]", "methods.law.guard_peers"),  # the guard's peers are other methods
])
def test_bad_overrides_name_the_key(assignment, named):
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        load_checked_config(None, [assignment])


def test_every_pair_mode_is_a_valid_choice():
    from law_hpc.engine.pair import PAIR_MODES

    for mode in PAIR_MODES:
        assert load_checked_config(None, [f"search.pair_mode={mode}"]).search.pair_mode == mode


def test_bad_yaml_files(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("search:\n  episodes: 2\n  bogus: 1\n")
    with pytest.raises(ConfigError, match="search.bogus"):
        load_config(bad)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    bad.write_text("data: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    bad.write_text("methods:\n  gce: 0.5\n")
    with pytest.raises(ConfigError, match="'methods'"):
        load_config(bad)


def test_data_variants_give_each_searcher_its_data():
    from law_hpc.config import searcher_data
    cfg = load_config(None, ["search.data_variants=[noise_rate=0.2, noise_mode=none;imbalance=long_tail]"])
    assert searcher_data(cfg, 0).noise_rate == 0.2 and searcher_data(cfg, 0).imbalance == cfg.data.imbalance
    assert searcher_data(cfg, 1).noise_mode == "none" and searcher_data(cfg, 1).imbalance == "long_tail"
    assert searcher_data(cfg, 2) == searcher_data(cfg, 0)  # rank r takes entry r % len
    assert cfg.data.noise_rate == load_config().data.noise_rate  # the config itself is untouched
    plain = load_config()
    assert searcher_data(plain, 3) is plain.data  # no variants: the data section itself


def test_val_rank_needs_a_warm_up_stage():
    # the first weighted stage ranks losses among those measured at the end of the stage before it
    with pytest.raises(ConfigError, match=r"search\.warmup_stages.*val_rank"):
        load_config(None, ["strategy.feature_norm=val_rank", "search.warmup_stages=0"])
    assert load_config(None, ["strategy.feature_norm=val_rank"]).search.warmup_stages == 1
