"""What a policy needs to act as it did in its search: `PolicySettings`, written to and read from policy.h5.

The actor's shapes (stages, embedding, width, action bounds and terms), the weighting rule (feature
normalisation, how weights enter the loss, the base loss), the stage state's smoothing, and the recipe the
policy was searched on: the schedule (epochs, stages, warm-up, lr decay stages), the augmentation and the
number of classes. A training on another recipe sees other stages than the search did.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

from .features import FEATURE_NORMS
from .losses import BASE_LOSSES
from .policy import ACTION_BOUNDS, ACTION_TERMS, WEIGHT_NORMS, StrategyModel


@dataclass(frozen=True)
class PolicySettings:
    stages: int
    """T_max: the stages the actor's stage embedding has."""
    embed_dim: int
    """d of the stage embedding e_T."""
    hidden: int
    """Width of the actor's layers."""
    action_scale: float
    """The bound (tanh) or scale (none) of the actor's output."""
    action_bound: str
    """ACTION_BOUNDS: tanh (bounded) or none."""
    action_terms: tuple[str, ...]
    """The entries of a_T the actor sets (ACTION_TERMS); the others are 0."""
    weight_norm: str
    """WEIGHT_NORMS: how the weights enter the batch loss (Eq. 7)."""
    feature_norm: str
    """FEATURE_NORMS: how the item features are normalised."""
    warmup_stages: int
    """Leading unweighted stages."""
    num_classes: int
    """Classes of the data the policy was searched on (its label feature's length)."""
    epochs: int
    """Epochs of a search episode: the training the stages cut."""
    lr_decay_stages: tuple[int, ...]
    """1-based stages where the lr decays."""
    smoothing: float = 0.9
    """EMA factor of the stage state's l_smooth and acc_smooth."""
    augment: str | None = None
    """data.augment of the search; None: not recorded (files of early versions)."""
    base_loss: str = "ce"
    """train.base_loss: the per-sample loss the weights multiply (BASE_LOSSES)."""

    def __post_init__(self):
        checks = [(self.action_bound in ACTION_BOUNDS, "action_bound", ACTION_BOUNDS),
                  (set(self.action_terms) <= set(ACTION_TERMS), "action_terms", ACTION_TERMS),
                  (self.weight_norm in WEIGHT_NORMS, "weight_norm", WEIGHT_NORMS),
                  (self.feature_norm in FEATURE_NORMS, "feature_norm", FEATURE_NORMS),
                  (self.base_loss in BASE_LOSSES, "base_loss", BASE_LOSSES)]
        for ok, name, known in checks:
            if not ok:
                raise ValueError(f"{name} {getattr(self, name)!r} is not one of {', '.join(known)}")

    @classmethod
    def from_config(cls, cfg, num_classes: int) -> "PolicySettings":
        """The settings of a policy searched with `cfg` (a law_hpc.config.Config) on `num_classes` classes."""
        st = cfg.strategy
        return cls(stages=cfg.search.stages, embed_dim=st.embed_dim, hidden=st.hidden, action_scale=st.action_scale,
                   action_bound=st.action_bound, action_terms=tuple(st.action_terms), weight_norm=st.weight_norm,
                   feature_norm=st.feature_norm, warmup_stages=cfg.search.warmup_stages, num_classes=num_classes,
                   epochs=cfg.search_epochs, lr_decay_stages=tuple(cfg.optim.lr_decay_stages),
                   smoothing=cfg.search.smoothing, augment=cfg.data.augment, base_loss=cfg.train.base_loss)

    @classmethod
    def from_mapping(cls, mapping: dict) -> "PolicySettings":
        """From a file's attributes (absent optional fields take their defaults)."""
        names = {field.name for field in fields(cls)}
        values = {key: value for key, value in mapping.items() if key in names}
        values["action_terms"] = tuple(values["action_terms"])
        values["lr_decay_stages"] = tuple(int(stage) for stage in values["lr_decay_stages"])
        return cls(**values)

    def recipe(self) -> dict[str, object]:
        """The training the policy was searched for, as config keys: its schedule, base loss and augmentation."""
        recipe = {"optim.epochs": self.epochs, "search.stages": self.stages, "search.warmup_stages": self.warmup_stages,
                  "optim.lr_decay_stages": list(self.lr_decay_stages), "train.base_loss": self.base_loss}
        if self.augment is not None:
            recipe["data.augment"] = self.augment
        return recipe

    def actor_shape(self) -> dict[str, object]:
        """What decides the actor's parameters: a warm start needs the same."""
        return {"stages": self.stages, "embed_dim": self.embed_dim, "hidden": self.hidden,
                "action_scale": self.action_scale, "action_bound": self.action_bound, "action_terms": self.action_terms}


def strategy_model(settings: PolicySettings) -> StrategyModel:
    """A fresh StrategyModel of the shapes in `settings`."""
    return StrategyModel(settings.stages, settings.embed_dim, settings.hidden, settings.action_scale,
                         settings.action_bound, settings.action_terms)
