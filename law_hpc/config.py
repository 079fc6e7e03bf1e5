"""Typed configuration: dataclasses with a docstring per field, YAML files and `--set a.b=value`.

Every key a user can write is a field below (a weighting method's options: its `Options` in law_hpc/methods,
section methods.<name>); an unknown key or a value of the wrong type is a `ConfigError` naming the key. The defaults
ARE the default search (Fashion-MNIST, 40 % noise, the MLP that memorises noisy labels); `configs/fmnist_noisy_mlp.yaml`
states them explicitly and a test keeps the two equal.

This module is a leaf: it imports no torch and nothing else of law_hpc. Names that a registry or an owning module
decides (datasets, models, methods, noise modes, feature normalisations, ...) are checked against it at launch
(law_hpc/registry.py); `validate` here checks types and ranges.
"""
from __future__ import annotations

import copy
import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml


class ConfigError(ValueError):
    """A bad config key, type or value. The message names the key."""


@dataclass
class DataConfig:
    dataset: str = "fmnist"
    """A name registered in law_hpc.data: fmnist, cifar10, cifar100, imagenet (an ImageNet-style folder)."""
    root: str = "/usr/share/datasets/fashion-mnist"
    """Dataset location: IDX files (fmnist), the python pickle directory (cifar), or the folder
    holding train/ and val/ (imagenet)."""
    backend: str = "torch"
    """dali | torch: the training-batch pipeline (DALI on the GPU when CUDA is present, else on the CPU)."""
    dali_device: str = "auto"
    """auto | cpu | gpu: where DALI runs; gpu without CUDA is an error."""
    val_root: str = ""
    """Image folders: a folder of images whose labels you trust, <val_root>/<class>/*, with the class names of
    train/: the validation split (LAW's reward, the choice of the policy, the best model). Empty: val_size images
    carved out of the training folder, whose labels are then only as clean as the folder's."""
    test_root: str = ""
    """Image folders: labelled test images, <test_root>/<class>/* (class names of train/), for the test column
    only (never for a choice). Empty: data.root/val/ if it exists, else no test set (test accuracy NaN)."""
    search_train_size: int = 10000
    """Training images in the search subset (paper: 20k of CIFAR's 50k); 0 = all not used for validation."""
    val_size: int = 2000
    """Clean, class-balanced validation images held out of the training set (paper: 5k)."""
    train_size: int = 10000
    """Test phase: training images drawn from what validation leaves (0 = all of them)."""
    test_size: int = 0
    """Test images to evaluate on in the test phase; 0 = the whole test set."""
    noise_mode: str = "uniform_mix"
    """none | uniform_mix | flip | pair: uniform_mix replaces a label by a uniform random class (the true one
    included, as the paper and MW-Net), flip by another class (Co-teaching), pair by class (y + 1) mod C."""
    noise_rate: float = 0.4
    """Probability p that a training label is corrupted."""
    imbalance: str = "none"
    """none | discard | long_tail."""
    imbalance_factor: float = 100.0
    """long_tail: n_max / n_min."""
    discard_classes: list[int] = field(default_factory=lambda: [0, 1])
    """discard: the classes that lose samples (paper: 0 and 1)."""
    discard_keep: float = 0.04
    """discard: the fraction of those classes kept (paper: 4 %)."""
    augment: str = "none"
    """Training augmentation. In-memory datasets: none | crop_flip (pad-4 random crop + horizontal flip).
    Image folders: none (resize + centre crop, as evaluated) | flip (the same, flipped at random) |
    random_resized_crop (the ImageNet recipe, with a flip; crop_flip means the same). Digits, documents or
    scans whose class a flip or a crop changes want none."""
    batch_size: int = 128
    """Training batch per rank."""
    eval_batch_size: int = 1000
    """Batch for validation/test evaluation."""
    image_size: int = 224
    """imagenet: crop size."""
    per_class_images: int = 0
    """imagenet search subset: images per class (paper: 100); 0 = use search_train_size."""
    on_corrupt_image: str = "fail"
    """fail | skip: what one unreadable image does to a long job (always logged)."""
    num_workers: int = 1
    """Worker threads/processes of the data pipeline per rank."""
    decoded_cache_mb: int = 2048
    """Image folders with augment none and the torch backend: decode every file once into memory (resized,
    centre-cropped, uint8) when all of them fit this many MiB, so epochs read arrays, not files (the same batches);
    0 = never."""


@dataclass
class ModelConfig:
    name: str = "mlp"
    """A name registered in law_hpc.models (mlp, small_cnn, resnet18_cifar, resnet32_cifar, wrn28_10, ...)."""
    mlp_hidden: list[int] = field(default_factory=lambda: [512, 512])
    """mlp: widths of the hidden layers."""


@dataclass
class OptimConfig:
    """The training schedule: ONE definition for a search episode and for the test-phase training."""

    epochs: int = 20
    """Epochs of one complete training: every search episode and the test phase (search.epochs may differ
    only deliberately)."""
    lr: float = 0.05
    """Initial SGD learning rate of the classifiers."""
    momentum: float = 0.9
    """SGD momentum (paper 0.9)."""
    weight_decay: float = 5e-4
    """SGD weight decay (paper 2e-5)."""
    lr_decay_stages: list[int] = field(default_factory=lambda: [10])
    """Stages (1-based, of search.stages) at whose start the lr is multiplied by lr_decay (paper: 10, 13, 16 of 20)."""
    lr_decay: float = 0.1
    """Multiplier applied at each of lr_decay_stages."""
    warmup_epochs: float = 0.0
    """Linear lr warm-up in epochs (paper ImageNet: 2)."""


@dataclass
class SearchConfig:
    episodes: int = 40
    """L: complete trainings of a fresh classifier pair per searcher."""
    epochs: int = 0
    """0 = optim.epochs: a search episode is exactly the final training. Any other value is a deliberate
    difference (a cheaper search): printed, recorded in metrics.h5 and policy.h5, and law_hpc.train then
    needs train.allow_schedule_mismatch."""
    stages: int = 10
    """T_max: stages per training, equal numbers of iterations (paper: 20); the test phase uses them too."""
    warmup_stages: int = 1
    """Leading stages trained unweighted (w = 1) and not acted upon (paper: 4 of 20)."""
    allow_resize: bool = True
    """Resume on another number of searchers (N_a) than the checkpoints were written by, say on fewer nodes
    after a node failure: the strategy model continues, the replay buffers are pooled and dealt out again, and
    every searcher starts the next episode with a fresh pair (the episode under way is given up). False: such a
    resume is refused."""
    eval_every: int = 4
    """Every eval_every-th episode (and the last) acts with the deterministic actor, without exploration
    noise; the actor of the evaluation episode whose target ends furthest above its reference on the
    validation split is the one saved to policy.h5."""
    pair_mode: str = "sequential"
    """sequential | threads | fused: how the target and reference nets step on each batch: one after the other,
    in two threads, or as one stacked network (torch.func.vmap: one forward and one backward for both, one
    batched kernel per layer on a GPU; BatchNorm statistics and SGD state stay per net, checkpoints are the
    sequential mode's). A net that cannot be fused (dropout, what vmap rejects) steps sequentially, with the
    reason printed. sequential is the default: on CPU cores fused is slower (README, tools/bench_search.py)."""
    reward_scale: float = 1.0
    """s in r_w = s * exp(k * ce / ne) (Eq. 9)."""
    reward_k: float = 1.0
    """k in r_w = s * exp(k * ce / ne) (Eq. 9)."""
    smoothing: float = 0.9
    """EMA factor of l_smooth and acc_smooth in the stage state."""
    patience: int = 1
    """Stop the search once this many evaluation episodes in a row found no better validation gap than the
    best so far (its policy.h5 stands); 0 = run every episode (the paper configs). Never before
    search.min_episodes. 1 measured on noisy_mlp for N_a = 1, 2, 4: the same test accuracy as 80
    searcher-episodes with 16-48 (README, search cost)."""
    min_episodes: int = 8
    """The floor of search.patience: episodes always run (random ones and the first evaluations included)."""
    max_iters_per_epoch: int = 0
    """Cap on iterations per epoch (0 = the whole split); for smoke runs."""
    data_variants: list[str] = field(default_factory=list)
    """Searcher r trains on the data of entry r % len: data keys that differ from `data`, separated by ';'
    (e.g. "noise_rate=0.2", "noise_mode=none;noise_rate=0;imbalance=long_tail"). The averaged gradients (Eq. 7)
    and the mean evaluation gap then ask one policy to serve every variant; [] = every searcher on `data`."""


@dataclass
class StrategyConfig:
    embed_dim: int = 16
    """d: size of the learned stage embedding e_T."""
    hidden: int = 64
    """Width of the actor and critic MLPs (4 linear layers each)."""
    actor_lr: float = 1e-4
    """Adam lr of the actor and the stage embedding (paper 1e-5, for its thousands of episodes; the paper
    configs keep it). 1e-3 saturated the actor within a few episodes here."""
    critic_lr: float = 1e-3
    """Adam lr of the critic (paper 1e-4; see actor_lr)."""
    gamma: float = 0.9
    """Discount of the TD target (Eq. 12)."""
    tau: float = 0.01
    """Soft-update rate of the target actor/critic."""
    target_networks: bool = True
    """Use target copies mu', Q' in the TD target (standard DDPG); false = the paper's literal Q, mu."""
    action_bound: str = "tanh"
    """tanh | none: the actor's output is action_scale * tanh(.) (theta_T, b in [-scale, scale], the paper's
    bounded actor), or action_scale * (.) unbounded, with action_penalty * |a| added to the actor loss (the
    authors' code)."""
    action_scale: float = 4.0
    """Scale of the actor's output (see action_bound); > 0. With rank features a strong policy needs
    |theta| of 2-4 (paper: 1)."""
    action_terms: list[str] = field(default_factory=lambda: ["loss", "label"])
    """The terms of theta_T . f + b the actor sets (loss, entropy, density, label, bias); the others are held at
    0. The paper: all five. With the bias and sum_w the search drifted to b at its bound (all weights alike);
    loss and label cover noisy labels and rare classes."""
    action_penalty: float = 0.0
    """Weight of the action-norm penalty in the actor loss (the authors' code: 0.001 with an unbounded actor)."""
    init_policy: str = ""
    """A policy.h5 whose actor and stage embedding start the search (warm start or fine-tuning); "" = fresh."""
    random_episodes: int = 4
    """The first random_episodes episodes (evaluation episodes aside) act with a random action per searcher,
    uniform within the bounds on the active terms and held for the whole episode (the critic first sees the
    whole action space, as DDPG's usual random warm-up); then the actor acts with exploration noise."""
    exploration: str = "ou"
    """gaussian | ou: exploration noise added to a_T during search (OU: correlated over the stages of an
    episode, whose effects accumulate; independent noise per stage mostly averages out)."""
    noise_sigma: float = 0.3
    """Std of the exploration noise's increments in the first episode."""
    noise_decay: float = 0.97
    """Noise std multiplier per episode."""
    buffer_capacity: int = 10000
    """FIFO replay buffer capacity (transitions per searcher)."""
    fdu_epochs: int = 4
    """Full Data Update: passes over the whole buffer at every stage end (Algorithm 1)."""
    fdu_batch: int = 32
    """Full Data Update minibatch size."""
    weight_norm: str = "sum_w"
    """mean | sum_w: mean_i(K_i l_i) (the paper) or sum K_i l_i / sum K_i (the authors' code)."""
    feature_norm: str = "rank"
    """zscore | rank | val_rank: each item feature is z-scored over the batch (the paper), or replaced by its
    within-batch rank (ties averaged), z-scored; val_rank: as rank, but the loss is ranked among the clean validation
    set's per-sample losses at the last stage end (a threshold that follows the noise rate; needs
    search.warmup_stages >= 1, and "bias" in action_terms to place the threshold)."""


@dataclass
class TrainConfig:
    """The test phase (`python -m law_hpc.train`): one network on the full corrupted training set."""

    method: str = "uniform"
    """The weighting method: a name registered in law_hpc.methods (--help of law_hpc.train lists them), with its
    options in methods.<name>. `--policy FILE` sets law."""
    policy: str = ""
    """law: the searched policy.h5 (set by --policy)."""
    allow_schedule_mismatch: bool = False
    """law: train with a policy searched on another schedule (epochs, stages, warm-up, lr decay stages);
    off, such a policy is refused."""
    scale_lr: bool = True
    """Data-parallel: multiply optim.lr by the number of ranks (with optim.warmup_epochs of warm-up)."""
    base_loss: str = "ce"
    """The per-sample loss LAW's weights multiply, in the search (target and reference alike: the reward
    measures what the weights add to it) and in its test phase: ce | logit_adjusted | balanced_softmax | gce
    (their options: methods.logit_adjusted.tau, methods.gce.q and tau). A policy records it."""
    calibrate: bool = False
    """At the last epoch's end, fit a map of the evaluated model's log-probabilities on the validation split
    (temperature and class bias, or also a class-to-class matrix where the split has more images than it has
    entries), kept only where 5-fold cross-validation on that split says it raises the accuracy
    (law_hpc/models/calibration.py); its logged validation accuracy is the cross-validated one. Any method;
    `--policy default` sets it."""


@dataclass
class LogConfig:
    """What rank 0 writes beside metrics.h5 / train.h5."""

    tensorboard: bool = False
    """Also write TensorBoard scalars (run_dir/tensorboard) from rank 0; needs the tensorboard package."""


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    strategy: StrategyConfig = field(default_factory=StrategyConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    methods: dict[str, dict] = field(default_factory=dict)
    """The options of each weighting method (methods.<name>.<option>), used when train.method names it: the
    fields of the method's `Options` (law_hpc/methods), checked at launch, where every method's are filled in."""
    log: LogConfig = field(default_factory=LogConfig)
    seed: int = 0
    """Base seed: every random stream derives from (seed, rank, episode, ...)."""
    deterministic: bool = True
    """torch deterministic algorithms (exact resume on CPU)."""
    threads_per_rank: int = 0
    """torch intra-op threads per rank; 0 = OMP_NUM_THREADS or SLURM_CPUS_PER_TASK if set, else the cores this
    process may use (its CPU affinity) / ranks on the node."""
    allow_cpu: bool = False
    """Run on the CPU although GPUs were allocated (Slurm) or an NVIDIA driver is loaded and CUDA is unavailable;
    off, that is an error (exit 2) rather than a silent CPU run."""
    checkpoint_every_stage: bool = True
    """Write a per-rank checkpoint at every stage end."""
    stop_check_seconds: float = 60.0
    """A stop request (SIGUSR1/SIGTERM: Slurm's --signal before the time limit, scancel, requeue) is agreed on by
    the ranks within about this many seconds of training, mid-stage (test phase: mid-epoch) if need be, and a
    checkpoint written there resumes exactly: the ranks poll a shared flag every so many iterations, from the
    slowest rank's iteration time. 0 (with stop_check_iterations 0) = at stage (epoch) ends only. A Slurm
    --signal lead time must cover this, one iteration and writing a checkpoint."""
    stop_check_iterations: int = 0
    """At most this many iterations between those polls (0 = no cap): the bound in iterations."""

    @property
    def search_epochs(self) -> int:
        """Epochs of a search episode: optim.epochs, unless search.epochs deliberately differs."""
        return self.search.epochs or self.optim.epochs


def _coerce(key: str, value, typ):
    """Check/convert `value` to the annotated type `typ`; raise ConfigError naming `key`."""
    origin = typing.get_origin(typ)
    if origin is list:
        (item_type,) = typing.get_args(typ)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key '{key}': expected a list, got {value!r}")
        return [_coerce(f"{key}[{i}]", v, item_type) for i, v in enumerate(value)]
    if typ is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"config key '{key}': expected true/false, got {value!r}")
    if typ is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"config key '{key}': expected an integer, got {value!r}")
    if typ is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"config key '{key}': expected a number, got {value!r}")
    if typ is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"config key '{key}': expected a string, got {value!r}")
    raise ConfigError(f"config key '{key}': unsupported type {typ}")


def _apply(obj, mapping: dict, prefix: str = "") -> None:
    hints = typing.get_type_hints(type(obj))
    names = {f.name for f in dataclasses.fields(obj)}
    for key, value in mapping.items():
        full = f"{prefix}{key}"
        if key not in names:
            raise ConfigError(f"unknown config key '{full}' (known: {', '.join(sorted(names))})")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ConfigError(f"config key '{full}': expected a section (mapping), got {value!r}")
            _apply(current, value, f"{full}.")
        elif typing.get_origin(hints[key]) is dict:
            setattr(obj, key, _merge_sections(full, current, value))
        else:
            setattr(obj, key, _coerce(full, value, hints[key]))


def _merge_sections(key: str, current: dict, value) -> dict:
    """The section of sections `current` (methods: {method: {option: value}}) updated by `value`; the options stay
    as given until a method's `Options` checks them (coerce_options)."""
    if not isinstance(value, dict) or not all(isinstance(section, dict) for section in value.values()):
        raise ConfigError(f"config key '{key}': expected a mapping of sections (<name>: {{<option>: <value>}}), "
                          f"got {value!r}")
    merged = copy.deepcopy(current)
    for name, options in value.items():
        merged.setdefault(str(name), {}).update(options)
    return merged


def coerce_options(prefix: str, options_type: type, mapping: dict):
    """An `options_type` dataclass from `mapping` (e.g. methods.gce: {"q": 0.5}); absent fields keep their defaults.
    A value given on the command line (--set) arrives as text and is read as its field's type. ConfigError names
    `prefix`.<key>."""
    hints = typing.get_type_hints(options_type)
    names = [f.name for f in dataclasses.fields(options_type)]
    values = {}
    for key, value in mapping.items():
        full = f"{prefix}.{key}"
        if key not in names:
            raise ConfigError(f"unknown config key '{full}' (known: {', '.join(sorted(names)) or 'none'})")
        if isinstance(value, str) and hints[key] is not str:
            value = _read_text(full, value, hints[key])
        values[key] = _coerce(full, value, hints[key])
    return options_type(**values)


def _read_text(key: str, raw: str, typ):
    """Text given for a field of type `typ`: YAML's reading of it, or a number where `typ` is float."""
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as err:
        raise ConfigError(f"config key '{key}': cannot parse value '{raw}': {err}") from None
    if typ is float and isinstance(value, str):
        try:
            return float(raw)
        except ValueError:
            raise ConfigError(f"config key '{key}': expected a number, got '{raw}'") from None
    return value


def _set_override(cfg: Config, assignment: str) -> None:
    dotted, raw = _split_assignment(assignment)
    parts = dotted.split(".")
    if parts[0] == "methods" and len(parts) == 3:  # read by the method's Options, which knows the option's type
        _apply(cfg, {"methods": {parts[1]: {parts[2]: raw}}})
        return
    field_type = _field_type(cfg, parts)
    value = _read_text(dotted, raw, field_type) if raw != "" and field_type is not str else raw
    nested: dict = {}
    cursor = nested
    for part in parts[:-1]:
        cursor = cursor.setdefault(part, {})
    cursor[parts[-1]] = value
    _apply(cfg, nested)


def _split_assignment(assignment: str) -> tuple[str, str]:
    """--set KEY=VALUE: (the dotted key, the value's text)."""
    if "=" not in assignment:
        raise ConfigError(f"--set expects key=value, got '{assignment}'")
    dotted, raw = assignment.split("=", 1)
    return dotted.strip(), raw


def set_key(cfg: Config, dotted: str, value) -> None:
    """Set the config key `dotted` (section.key) to `value`, coerced to the key's type as a YAML value would be."""
    nested: dict = {}
    cursor = nested
    *sections, name = dotted.split(".")
    for part in sections:
        cursor = cursor.setdefault(part, {})
    cursor[name] = value
    _apply(cfg, nested)


def get_key(cfg: Config, dotted: str):
    """The value of the config key `dotted` (section.key)."""
    value = cfg
    for part in dotted.split("."):
        value = getattr(value, part)
    return value


def override_keys(overrides) -> list[str]:
    """The dotted keys that `--set` assignments name, in order: what a user set explicitly."""
    return [_split_assignment(assignment)[0] for assignment in overrides]


def _field_type(cfg, parts):
    obj = cfg
    for part in parts[:-1]:
        obj = getattr(obj, part, None)
        if not dataclasses.is_dataclass(obj):
            return None
    return typing.get_type_hints(type(obj)).get(parts[-1])


def validate(cfg: Config) -> None:
    """Check types' ranges and the keys' combinations; raise ConfigError naming the key. (Names a registry decides
    are checked at launch: law_hpc/registry.py.)"""
    s, d, st = cfg.search, cfg.data, cfg.strategy
    checks = [
        (s.episodes >= 1, "search.episodes", "must be >= 1"),
        (cfg.optim.epochs >= 1, "optim.epochs", "must be >= 1"),
        (s.epochs >= 0, "search.epochs", "must be >= 0 (0 = optim.epochs)"),
        (s.eval_every >= 1, "search.eval_every", "must be >= 1"),
        (s.patience >= 0 and s.min_episodes >= 0, "search.patience", "patience and min_episodes must be >= 0"),
        (st.action_scale > 0, "strategy.action_scale", "must be > 0"),
        (st.action_penalty >= 0, "strategy.action_penalty", "must be >= 0"),
        (st.random_episodes >= 0, "strategy.random_episodes", "must be >= 0"),
        (bool(st.action_terms), "strategy.action_terms", "must be a non-empty list"),
        (s.stages >= 1, "search.stages", "must be >= 1"),
        (0 <= s.warmup_stages < s.stages, "search.warmup_stages", "must be in [0, search.stages)"),
        (s.warmup_stages >= 1 or st.feature_norm != "val_rank", "search.warmup_stages",
         f"must be >= 1 with strategy.feature_norm={st.feature_norm} (the first weighted stage ranks losses among "
         "those measured on the validation set at the end of the stage before)"),
        (0.0 <= d.noise_rate <= 1.0, "data.noise_rate", "must be in [0, 1]"),
        (d.batch_size >= 2, "data.batch_size", "must be >= 2 (density needs two samples)"),
        (d.val_size >= 1, "data.val_size", "must be >= 1"),
        (0.0 < d.discard_keep <= 1.0, "data.discard_keep", "must be in (0, 1]"),
        (d.imbalance_factor >= 1.0, "data.imbalance_factor", "must be >= 1"),
        (st.fdu_batch >= 1 and st.fdu_epochs >= 0, "strategy.fdu_batch", "fdu_batch >= 1, fdu_epochs >= 0"),
        (st.buffer_capacity >= 1, "strategy.buffer_capacity", "must be >= 1"),
        (0.0 <= st.tau <= 1.0, "strategy.tau", "must be in [0, 1]"),
        (0.0 <= s.smoothing < 1.0, "search.smoothing", "must be in [0, 1)"),
    ]
    for ok, key, why in checks:
        if not ok:
            raise ConfigError(f"config key '{key}': {why}")
    for variant in range(len(s.data_variants)):
        searcher_data(cfg, variant)


def searcher_data(cfg: Config, rank: int) -> "DataConfig":
    """The data section searcher `rank` trains on: `data` with search.data_variants[rank % len] applied."""
    if not cfg.search.data_variants:
        return cfg.data
    variant = cfg.search.data_variants[rank % len(cfg.search.data_variants)]
    varied = copy.deepcopy(cfg)
    varied.search.data_variants = []
    try:
        for assignment in filter(None, (part.strip() for part in variant.split(";"))):
            _set_override(varied, f"data.{assignment}")
        validate(varied)  # the variant as a whole
    except ConfigError as err:
        raise ConfigError(f"config key 'search.data_variants' ('{variant}'): {err}") from None
    return varied.data


def load_config(path: str | Path | None = None, overrides: list[str] | tuple = ()) -> Config:
    """Defaults, then the YAML file at `path` (if any), then `key=value` overrides; validated."""
    cfg = Config()
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            mapping = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"config file {path} is not valid YAML: {err}") from None
        if not isinstance(mapping, dict):
            raise ConfigError(f"config file {path}: top level must be a mapping of sections")
        _apply(cfg, mapping)
    for assignment in overrides:
        _set_override(cfg, assignment)
    validate(cfg)
    return cfg


def to_dict(cfg: Config) -> dict:
    return dataclasses.asdict(cfg)


def to_yaml(cfg: Config) -> str:
    """The resolved config as YAML (stored in metrics.h5 and compared on resume)."""
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)

