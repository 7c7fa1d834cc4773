"""The settings of the training core, shared by every pipeline's config.

A pipeline's config is a dataclass that extends `TrainingConfig` with its data and model
settings and overrides the defaults that differ for it (each with its reason). The CLI reads
every default from the config class, so a default is written once.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, fields
from typing import ClassVar

import numpy as np

from lstmkit.training.device import check_device_name
from lstmkit.received import received
from lstmkit.training.optimizers import OPTIMIZERS

BUDGETS = ("steps", "epochs", "time_budget")
# torch.manual_seed takes a 64-bit unsigned seed.
SEED_RANGE = (0, 2**64 - 1)

# Settings a resumed run may change: its budget, when it evaluates and stops, and where, in
# which precision and on which engine it runs (a run begun on a GPU continues on a CPU). Any other change would make
# the resumed run another run than the one it continues, and --resume refuses it. A pipeline's
# config adds its own stopping goal (`TrainingConfig.resumable_changes`).
RESUMABLE_CHANGES = ("steps", "epochs", "time_budget", "eval_every", "patience", "device", "precision", "engine")
PRECISIONS = ("32", "bf16", "16")
# What a run does once `patience` evaluations pass without a better validation loss.
PLATEAU_ACTIONS = ("stop", "anneal")
# The annotations (as written) whose values are checked to be numbers before their ranges are,
# so that a string such as "0.1" is named, not compared deep inside (each field's own check then
# names a fraction where an integer belongs, or a value out of range); and switches,
# checked to be True or False, since a string such as "no" would read as true.
FIELD_TYPES = {"int": "an integer", "int | None": "an integer or None", "float": "a number",
               "float | None": "a number or None", "bool": "True or False", "bool | None": "True, False or None"}
# Names that older checkpoints and results files used for settings that now have one spelling.
LEGACY_NAMES = {"hidden": "hidden_size", "layers": "num_layers", "batch": "batch_size", "embedding": "embedding_size",
                "learning_rate": "lr"}
# Settings added since runs were first saved whose default now differs from what runs saved
# before them did: the value those runs had, so that --resume of one compares it (and a loader
# gives it to the config that has the setting).
ADDED_SETTINGS = {"base_cycles": 1}


@dataclass(frozen=True)
class TrainingConfig:
    """How a model is trained: an optimizer (AdamW by default) with linear warm-up and cosine
    decay, gradient clipping, a budget, periodic evaluation, a device, a precision.

    The learning rate at step s (0-based) is

        lr_s = lr · (s + 1) / warmup                              for s < warmup
        lr_s = lr · (f + (1 − f) · ½ (1 + cos(π · p_s)))           after,

    with f = `min_lr_fraction` and p_s the share of the budget spent since the warm-up: of its
    steps, (s − warmup) / (S − warmup) with S the step limit, or, under a time budget, of its
    seconds, (t_s − t_w) / (T − t_w) with t_s the training seconds before step s, t_w those at
    the warm-up's end and T the budget (the larger of the two where both are set; the peak
    `lr` where neither is). f = 1 holds the rate constant.

    With `on_plateau` "anneal", once `patience` evaluations (n steps) pass without a better
    validation loss at step s_a, p_s = max(p_s, p_a + (1 − p_a) · (s − s_a + 1) / n): the rate
    decays the rest of the way to its floor over the n steps from s_a, and training stops there.

    Budgets: each of `steps`, `epochs` and `time_budget` (seconds of training, evaluations
    excluded) that is set ends training when it is spent, the first one first. With none set,
    the pipeline's `default_budget` applies.

    Defaults that depend on other fields (the budget, a pipeline's level or table) are resolved
    when a config is built and stored in its fields: dataclasses.replace keeps them, so
    `replace(TrainingConfig(), time_budget=600)` still stops at the default 1,000 steps; build a
    new config from the settings instead.
    """

    # AdamW adapts each weight's step and needs little tuning; "sgd", and "nt-asgd" (SGD that
    # turns to averaging the weights once validation stalls, Merity et al. 2018), are the
    # optimizers AWD-LSTM's recipe was tuned with (training/optimizers.py).
    optimizer: str = "adamw"
    # NT-ASGD averages once the validation loss is worse than the best of all evaluations but
    # this many latest ones (AWD-LSTM's "nonmono": 5).
    asgd_patience: int = 5
    # With a value in (0, 1): AdamW or SGD keep an exponential moving average of the weights,
    # each step weighing the last ~1 / (1 − ema_decay) steps (optimizers.update_moving_average),
    # and evaluations, best/ and the final model use it, as NT-ASGD's average. None: no average,
    # the weights as the last step left them.
    ema_decay: float | None = None
    # The peak learning rate; 1e-3 is Adam's own default (Kingma & Ba 2015).
    lr: float = 1e-3
    # Decoupled weight decay (Loshchilov & Hutter 2019); 0 makes AdamW exactly Adam.
    weight_decay: float = 0.0
    # Global gradient-norm clip: recurrent gradients can explode (Pascanu et al. 2013).
    clip: float = 1.0
    # Steps of linear warm-up; Adam's early moment estimates are noisy.
    warmup: int = 0
    # The cosine ends at this fraction of the peak rate; 1.0 keeps the rate constant.
    min_lr_fraction: float = 1.0
    steps: int | None = None
    epochs: float | None = None
    time_budget: float | None = None
    # Steps between evaluations (and checkpoints, where the pipeline writes them).
    eval_every: int = 100
    # Evaluations without a better validation loss before training stops; None: never.
    patience: int | None = None
    # At that plateau: "stop", or "anneal": decay the rate the rest of the way to its floor over
    # `patience` more evaluations, then stop. A cosine stretched over a long time budget is
    # still high when validation stalls; stopping there keeps weights never trained at a low
    # rate, and gives up the budget left.
    on_plateau: str = "stop"
    # Seed of the weights and of the data order (the pipelines seed with it; a Job of one's own
    # seeds its model itself: the trainer reseeds only each torchrun process's dropout stream).
    seed: int = 0
    # "auto" is CUDA when this machine has it, else the CPU.
    device: str = "auto"
    # "32" (float32), "bf16" or "16" (float16, with a gradient scaler) under torch.autocast.
    precision: str = "32"

    # The budget when none is set: (name, value). Pipelines override it with their reason.
    default_budget: ClassVar[tuple[str, float]] = ("steps", 1000)
    # The budgets a pipeline takes: one whose data never end (a task draws new sequences at
    # every step) has no epochs.
    budgets: ClassVar[tuple[str, ...]] = BUDGETS
    # The optimizers a pipeline takes: nt-asgd needs a validation loss to watch.
    optimizers: ClassVar[tuple[str, ...]] = OPTIMIZERS
    # The settings a resumed run may change.
    resumable_changes: ClassVar[tuple[str, ...]] = RESUMABLE_CHANGES

    def __post_init__(self) -> None:
        check_field_types(self)
        for name in set(BUDGETS) - set(self.budgets):
            if getattr(self, name) is not None:
                raise ValueError(f"{name} is not a budget here: give one of {', '.join(self.budgets)} (got "
                                 f"{name}={getattr(self, name)!r})")
        if all(getattr(self, name) is None for name in BUDGETS):
            object.__setattr__(self, *self.default_budget)
        for name in ("steps", "eval_every", "patience", "warmup", "seed", "asgd_patience"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, int):
                raise ValueError(f"{name} must be an integer, got {value!r}")
        for name in ("steps", "epochs", "time_budget", "lr", "clip", "eval_every", "patience"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be positive, got {value!r}")
        for name in ("epochs", "time_budget", "lr", "weight_decay"):
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        if not SEED_RANGE[0] <= self.seed <= SEED_RANGE[1]:
            raise ValueError(f"seed (--seed) must be in [0, 2**64 - 1] (what torch.manual_seed takes), got {self.seed}")
        if self.asgd_patience < 1:
            raise ValueError(f"asgd_patience must be at least 1, got {self.asgd_patience}")
        if self.optimizer != "nt-asgd" and self.asgd_patience != TrainingConfig.asgd_patience:
            raise ValueError(f"asgd_patience (--asgd-patience) acts with optimizer='nt-asgd' (--optimizer nt-asgd) only; "
                             f"got {self.asgd_patience} with optimizer={self.optimizer!r}")
        if self.ema_decay is not None and not 0 < self.ema_decay < 1:
            raise ValueError(f"ema_decay (--ema-decay) must be in (0, 1) (0.999 averages about the last 1,000 steps), "
                             f"got {self.ema_decay!r}")
        if self.ema_decay is not None and self.optimizer == "nt-asgd":
            raise ValueError(f"ema_decay (--ema-decay) averages AdamW's or SGD's weights; nt-asgd averages its own: "
                             f"give one of them, got ema_decay={self.ema_decay!r} with optimizer='nt-asgd'")
        if self.on_plateau not in PLATEAU_ACTIONS:
            raise ValueError(f"on_plateau (--on-plateau) must be one of {', '.join(PLATEAU_ACTIONS)}, got "
                             f"{self.on_plateau!r}")
        if self.on_plateau == "anneal" and (self.patience is None or self.min_lr_fraction == 1):
            raise ValueError("on_plateau='anneal' (--on-plateau anneal) decays the rate to min_lr_fraction once "
                             "patience evaluations pass without improving: it needs a patience (--patience) and a "
                             f"min_lr_fraction (--min-lr-fraction) below 1, got patience={self.patience!r}, "
                             f"min_lr_fraction={self.min_lr_fraction!r}")
        for name in ("warmup", "weight_decay"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be non-negative, got {getattr(self, name)!r}")
        if not 0 <= self.min_lr_fraction <= 1:
            raise ValueError(f"min_lr_fraction (--min-lr-fraction) must be in [0, 1], got {self.min_lr_fraction!r}")
        if type(self.precision) is int and str(self.precision) in PRECISIONS:  # precision=32, as Lightning takes it
            object.__setattr__(self, "precision", str(self.precision))
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        check_device_name(self.device)


def check_positive_integers(settings: object, names: tuple[str, ...]) -> None:
    """Refuse, naming it and its value, any of the attributes `names` of `settings` (a config)
    that is not an integer of at least 1 (a bool is not one)."""
    for name in names:
        value = getattr(settings, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def flag_value(value: object) -> str:
    """A setting's value as its flag takes it: a tuple or list comma-separated (--init
    chrono,orthogonal), anything else as it prints."""
    return ",".join(map(str, value)) if isinstance(value, tuple | list) else str(value)


def current_names(settings: dict) -> dict:
    """`settings` (a saved config) with the names older versions used replaced by today's."""
    return {LEGACY_NAMES.get(name, name): value for name, value in settings.items()}


def check_field_types(config) -> None:
    """Every field of the dataclass `config` annotated int or float (or None) holds a number
    (or None), not a string or a bool; every one annotated bool holds True or False. NumPy
    numbers in any field, alone or in a tuple or list, are settled into Python's first (the
    config is written as JSON)."""
    for field in fields(config):
        value, given = settled(getattr(config, field.name)), getattr(config, field.name)
        if value is not given:
            object.__setattr__(config, field.name, value)
        if field.type not in FIELD_TYPES:
            continue
        switch = field.type.startswith("bool")
        number = isinstance(value, bool) if switch else isinstance(value, numbers.Real) and not isinstance(value, bool)
        if not (number or (value is None and "None" in field.type)):
            raise TypeError(f"{field.name} must be {FIELD_TYPES[field.type]}, got {received(value)}")


def set_as_tuple(config, name: str, items: str) -> None:
    """The field `name` of the frozen dataclass `config` as a tuple (a list left the config
    unhashable); anything but a tuple or list refused, naming its `items` (a number ended in
    "'int' object is not iterable", a string was read letter by letter)."""
    value = getattr(config, name)
    if not isinstance(value, tuple | list):
        raise TypeError(f"{name} must be a tuple of {items}, got {received(value)}")
    object.__setattr__(config, name, tuple(value))


def settled(value: object) -> object:
    """`value` with NumPy numbers as Python's (np.int64(7) -> 7, np.bool_ -> bool), in a tuple
    or list too; `value` itself where it holds none. A float32 or float16 is the number it
    shows (np.float32(0.8) -> 0.8, not 0.800000011920929, which named a forecast's interval
    columns y_lower_80.0000011920929)."""
    if isinstance(value, np.floating) and value.dtype.itemsize < 8:
        return float(str(value))
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (tuple, list)) and any(isinstance(item, np.generic) for item in value):
        return type(value)(settled(item) for item in value)
    return value


def check_config(config, expected: type, name: str) -> None:
    """Refuse, before it is read, a config that is not an `expected` (None, a dict, another
    pipeline's), naming the class to build (`name`, as the user imports it)."""
    if not isinstance(config, expected):
        raise TypeError(f"config must be a {name}, got {type(config).__name__}")


def offset_seed(seed: int, offset: int) -> int:
    """`seed` + `offset` (an epoch's seed, a test set's), wrapped into torch's seeds, SEED_RANGE."""
    return (seed + offset) % (SEED_RANGE[1] + 1)
