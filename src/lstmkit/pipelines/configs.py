"""The configs of the pipelines whose modules need an extra (tasks, forecast, speech,
translate), importable without it, so that the CLI reads every default from them before it
checks the extra."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar

from lstmkit.audio.augment import Augmentation
from lstmkit.audio.features import MAX_SPEED, MIN_SPEED, FrontEnd
from lstmkit.cells import CELL_NAMES, make_cell
from lstmkit.engines import check_engine_name
from lstmkit.models.forecaster import DISTRIBUTIONS
from lstmkit.models.seq2seq import ATTENTIONS
from lstmkit.nn.regularisers import check_chrono_max_value, check_init, init_names, regularisation
from lstmkit.tasks import AddingTask
from lstmkit.training import TrainingConfig
from lstmkit.training.config import check_field_types, check_positive_integers, settled


def check_network(cell: str, dropout: float, engine: str) -> None:
    """Refuse, when a pipeline's config is built, a cell, dropout or engine its network would refuse."""
    if isinstance(dropout, bool) or not 0 <= dropout < 1:
        raise ValueError(f"dropout is a probability in [0, 1), got {dropout!r}")
    if cell not in CELL_NAMES:
        raise ValueError(f"cell must be one of {', '.join(CELL_NAMES)}, got {cell!r}")
    check_engine_name(engine)


@dataclass(frozen=True)
class RegulariserSettings:
    """The layers' regularisers and initialisations (lstmkit.nn.regularisers), for the
    pipelines' configs. Off by default: the layers are then torch.nn's."""

    # Variational dropout on h_{t-1} in the recurrent product (Gal & Ghahramani 2016).
    recurrent_dropout: float = 0.0
    # Variational dropout on each layer's input.
    input_dropout: float = 0.0
    # z, or (z_c, z_h): units keep their previous value with this probability (Krueger et al. 2017).
    zoneout: float | tuple[float, float] = 0.0
    # DropConnect on weight_hh (Merity et al. 2017).
    weight_dropout: float = 0.0
    # "chrono" and/or "orthogonal"; empty: torch.nn's initialisation.
    init: tuple[str, ...] = ()
    # The longest dependency chrono initialisation prepares for; None: the training sequences' length.
    chrono_max: float | None = None

    def check_regularisers(self, cell: str, sequence_length: int) -> None:
        """Refuse, when the config is built, settings a layer of `cell` would refuse."""
        self.check_chrono_max(sequence_length)
        built, options = make_cell(cell), self.regularisers(sequence_length)
        regularisation(built, self.recurrent_dropout, self.input_dropout, self.zoneout, self.weight_dropout)
        check_init(built, self.init, options.get("chrono_max"), True, None)

    def check_chrono_max(self, sequence_length: int | None = None) -> None:
        """chrono_max shapes chrono initialisation alone: refuse it without, and, given the
        training sequences' length (its default), one at most 2, which no cell takes. Every
        config's first check of these settings: it first settles their forms (`settle_forms`)."""
        self.settle_forms()
        if self.chrono_max is not None and "chrono" not in self.init:
            raise ValueError(f"chrono_max (--chrono-max) goes with init 'chrono' (--init chrono); got chrono_max="
                             f"{self.chrono_max!r} with init {','.join(self.init) or 'none'}")
        if "chrono" in self.init and sequence_length is not None:
            try:
                check_chrono_max_value(self.regularisers(sequence_length)["chrono_max"])
            except ValueError as error:
                given = ("" if self.chrono_max is not None else
                         ", the training sequences' length, as --chrono-max is not given")
                raise ValueError(f"{error} (--chrono-max){given}") from None

    def settle_forms(self) -> None:
        """`init` as a tuple of names ("orthogonal" alone was read letter by letter) and a
        zoneout pair as a tuple (a list left the frozen config unhashable)."""
        object.__setattr__(self, "init", init_names(self.init))
        if isinstance(self.zoneout, list):
            object.__setattr__(self, "zoneout", tuple(self.zoneout))

    def regularisers(self, sequence_length: int) -> dict:
        """The keywords of lstmkit.Recurrent for these settings (the defaults left out, so that a
        checkpoint of a plain model names none)."""
        options = {"recurrent_dropout": self.recurrent_dropout, "input_dropout": self.input_dropout,
                   "zoneout": self.zoneout, "weight_dropout": self.weight_dropout, "init": list(self.init)}
        options = {name: value for name, value in options.items() if value}
        if "chrono" in self.init:
            options["chrono_max"] = self.chrono_max if self.chrono_max is not None else sequence_length
        return options


# The cells `lstmkit task`, `probe gradients` and `demo` compare unless told otherwise: the plain
# RNN and the two gated cells, which the long-time-lag experiments set against each other.
COMPARED_CELLS = ("rnn", "gru", "lstm")


@dataclass(frozen=True)
class TaskTrainingConfig(TrainingConfig, RegulariserSettings):
    """How every cell is trained on a long-time-lag task (the training fields: see
    TrainingConfig, whose defaults are the long-lag literature's: Adam (AdamW without weight
    decay) at a constant 1e-3, gradient clipping at norm 1)."""

    hidden_size: int = 128
    # Sequences per step, as in the long-lag literature.
    batch_size: int = 50
    # Test sequences, drawn from their own seed.
    test_size: int = 1000
    # A cell stops at the first evaluation that solves the task.
    stop_when_solved: bool = True

    # Ten minutes per cell: the adding problem at T = 200 needs about that on 2 CPU cores.
    default_budget: ClassVar[tuple[str, float]] = ("time_budget", 600.0)
    # A task draws new sequences at every step: its data have no epochs.
    budgets: ClassVar[tuple[str, ...]] = ("steps", "time_budget")
    # nt-asgd averages once the validation loss stops improving; a task has none.
    optimizers: ClassVar[tuple[str, ...]] = ("adamw", "sgd")

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive_integers(self, ("hidden_size", "batch_size", "test_size"))  # 2.5 failed in the model
        # both act once a validation loss stops improving; a task has none (fresh sequences every
        # step, and a test set that says when the task is solved)
        if self.optimizer == "nt-asgd":
            raise ValueError("optimizer='nt-asgd' (--optimizer nt-asgd) starts averaging once the validation loss "
                             "stops improving, and a task has no validation loss: use 'adamw' or 'sgd', with "
                             "ema_decay (--ema-decay) to average the weights")
        if self.patience is not None:
            raise ValueError(f"patience acts once the validation loss stops improving, and a task has none (it "
                             f"stops when solved, or at its budget); got patience={self.patience!r}")
        self.check_chrono_max()
        # probabilities out of range no cell takes (recurrent_dropout=2.0 was told to leave rnn out of
        # the cells); what depends on the cell (a zoneout pair, chrono) is checked as each is built
        regularisation(make_cell("lstm"), self.recurrent_dropout, self.input_dropout, self.zoneout, self.weight_dropout)


def as_names(value, what: str) -> tuple[str, ...]:
    """Column names from a name, a comma-separated string or a sequence of names."""
    if isinstance(value, str):
        return tuple(name.strip() for name in value.split(",") if name.strip())
    names = tuple(value) if isinstance(value, Iterable) else (value,)
    if not all(isinstance(name, str) for name in names):
        raise TypeError(f"{what} must be column names, got {value!r}")
    return names


def baseline_names(value, none_means: str = "predict then forecasts by the network") -> tuple[str, ...]:
    """Baseline names (lstmkit.series.BASELINES) from a name, a comma-separated string or a
    sequence of names, each checked; "none" is none (what that means where they are given:
    `none_means`)."""
    from lstmkit.series.baselines import BASELINES

    names = as_names(value, "baselines")
    if names == ("none",):
        return ()
    unknown = [name for name in names if name not in BASELINES]
    if unknown:
        raise ValueError(f"baselines must be among {', '.join(BASELINES)} (or none, alone: {none_means}), got "
                         f"{', '.join(map(repr, unknown))}")
    return names


# What a forecaster's network corrects (ForecasterConfig.base).
BASES = ("seasonal", "last", "auto")


# The settings of a forecaster that act on its validation loss.
VALIDATION_SETTINGS = ("patience", "validation_fraction", "on_plateau")


@dataclass(frozen=True)
class ForecasterConfig(TrainingConfig):
    """What to forecast and how the forecaster is built and trained (the training fields:
    see lstmkit.training.config.TrainingConfig).

    lookback (the steps the encoder reads) defaults to 2 * max(horizon, season); season to the
    one of the data's frequency (52 weekly, 12 monthly, 1 yearly). season is the m of seasonal naive and MASE and, with
    `base` "seasonal" and a lookback that holds a season, of the seasonal-naive forecast the
    network corrects (ForecastNetwork). Training runs up to `epochs` (or `time_budget`
    seconds), keeping the epoch with the lowest loss on the latest `validation_fraction` of the
    windows and stopping `patience` epochs after it; without early_stopping it trains on every
    window for exactly `epochs`.
    """

    time: str = ""
    target: tuple[str, ...] = ()
    horizon: int = 0
    # None: 2 x max(horizon, season), the rule the single tables were measured with. A shorter
    # encoder trains more windows a second: on M4 hourly, 48 (with extra_seasons 168, whose base
    # still reads two weeks) scored OWA 0.453 where 96 scored 0.457 (README, "Many series").
    lookback: int | None = None
    season: int | None = None
    # More seasonal periods the base may take (models.forecaster.ForecastNetwork.base), e.g. 168
    # (a week of hours) beside m = 24: per window, whichever period's seasonal naive forecast the
    # window's own latest steps best. Windows then hold 2 x the longest period of history (the
    # encoder still reads `lookback` steps). Empty by default: a period a series does not have
    # only costs history. On M4 hourly (README): OWA 0.495 with 168 and 0.590 without in 5
    # minutes of training, 0.469 against 0.534 in 35.
    extra_seasons: tuple[int, ...] = ()
    # The base of the longest period (the week of extra_seasons 168, else m) is the median of
    # its last this many cycles (models.forecaster.ForecastNetwork.base), so one unusual cycle,
    # a holiday in last week's hours, is not copied into the forecast; windows hold this many
    # cycles. None: 2 with extra_seasons, whose windows hold two cycles anyway; 1 (seasonal
    # naive) without. On M4 hourly with 168 (README, "Many series"), two weeks' base alone
    # scored better at each of six origins (0.496 against 0.526 at the last), and the network
    # on it OWA 0.425 against 0.458; the median of the last days scored worse at each origin
    # (0.706 against 0.629: days of the week are not alike).
    base_cycles: int | None = None
    covariates: tuple[str, ...] = ()
    future_covariates: tuple[str, ...] = ()
    calendar: bool = True
    cell: str = "lstm"
    # Series are short (hundreds to thousands of rows): a small network, or it memorises them.
    hidden_size: int = 64
    num_layers: int = 2
    dropout: float = 0.1
    # The validation windows of a short series are few and noisy: wait long.
    patience: int | None = 50
    early_stopping: bool = True
    validation_fraction: float = 0.1
    batch_size: int = 32
    weight_decay: float = 1e-4
    interval: float = 0.9
    # Networks trained side by side from different initial weights, forecasting together (the
    # median of their centres; models.forecaster.ForecastEnsemble): on M4 weekly three scored
    # OWA 0.787-0.819 (three seeds) where one scored 0.803-0.836 (README). Each costs a
    # network's time, so a time budget trains each for less: 1, one network, unless asked.
    ensemble: int = 1
    # The head's distribution, trained by its likelihood (models.forecaster.DISTRIBUTIONS).
    # None: "laplace" for a long table (id=...), whose M4 scores are mean absolute errors: on
    # M4 weekly it scored OWA 0.814 against the normal's 0.939 (README, "Many series"); "normal"
    # for one table, the distribution its examples were measured with.
    distribution: str | None = None
    engine: str = "auto"
    # Long tables (many series, one global network): the column of the series ids (None: one
    # wide table, a network per table).
    id: str | None = None
    # Each series' own normalisation (lstmkit.series.scaling.SeriesScaling). Measured on M4's
    # last-horizon split (README, "Many series": one seed, short runs, the network then
    # correcting the last value), the model's OWA with standard / log / seasonal: hourly (100
    # series) 0.897 / 0.982 / 0.902, weekly 0.950 / 0.943 / (= log, m = 1): standard is best or
    # within 0.01 of it on both. Several names train one network per normalisation, in the
    # order given, each on an equal share of the time budget left, and average their
    # forecasts (a ScalingEnsemble): on M4 hourly the two networks of standard and log, each
    # 0.469 alone, averaged to 0.462 (README); it costs a network per name, so one unless
    # asked.
    normalisation: tuple[str, ...] = ("standard",)
    # The baselines the forecast `predict` uses is chosen among and combined with: M4's
    # benchmarks and ETS; a long table always computes Naive2 too, for OWA. "arima" is opt-in:
    # statsforecast's AutoARIMA took ~100 s per M4 hourly series (m = 24) on 2 busy cores,
    # hours for the 414.
    baselines: tuple[str, ...] = ("naive", "seasonal_naive", "naive2", "theta", "ets")
    # What the network's head corrects (models.forecaster.ForecastNetwork): "seasonal", the
    # window's seasonal-naive forecast, or "last", its last value (the same when m = 1 or the
    # lookback is shorter than m); "auto" trains both, sharing a time budget, and keeps the one
    # with the lower mean absolute error on the validation windows (the validation likelihood
    # chose wrongly on sunspots; without validation windows: seasonal). Neither wins everywhere
    # (backtest MASE, seeds 0-3 unless said): AirPassengers seasonal 0.59-0.71 (seeds 0-2), last
    # 1.95 (seed 0); sunspots with m = 11 seasonal 1.08-1.18, last 0.65-0.86; US macro (m = 4,
    # seasonally adjusted) seasonal 1.27-1.48, last 1.14-1.30. None: "auto" for one table, whose
    # networks train in seconds to minutes; "seasonal" for a long table, whose hours of training
    # would double (M4 hourly, 5 min: OWA 0.598, last value 0.730).
    base: str | None = None
    # An epoch of a long table is this many windows drawn afresh (hundreds of series have
    # hundreds of thousands of windows): early stopping then looks often enough.
    epoch_windows: int = 4096

    # A forecaster is scored at the end of each epoch (`patience` counts epochs): the training
    # core's step interval has no meaning here, and is refused rather than ignored.
    eval_every: None = None

    # 200 epochs: with patience 50, early stopping ends most runs before.
    default_budget: ClassVar[tuple[str, float]] = ("epochs", 200)

    def __post_init__(self) -> None:
        if self.eval_every is not None:
            raise ValueError(f"eval_every does not apply to a forecaster: it is evaluated at the end of each epoch "
                             f"(patience counts epochs); got eval_every={self.eval_every!r}")
        super().__post_init__()
        object.__setattr__(self, "target", as_names(self.target, "target"))
        object.__setattr__(self, "covariates", as_names(self.covariates, "covariates"))
        object.__setattr__(self, "future_covariates", as_names(self.future_covariates, "future_covariates"))
        if not isinstance(self.time, str) or not self.time:
            raise ValueError(f"time must name the time column, got {self.time!r}")
        if not self.target:
            raise ValueError("give at least one target column")
        if self.base_cycles is None:
            object.__setattr__(self, "base_cycles", 2 if self.extra_seasons else 1)
        check_positive_integers(self, ("horizon", "hidden_size", "num_layers", "batch_size", "ensemble", "base_cycles"))
        for name in ("lookback", "season"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a positive integer or None, got {value!r}")
        extra = self.extra_seasons
        if isinstance(extra, str):  # "24,168", as target and covariates take names: read letter by letter
            extra = tuple(int(part) if part.strip().isascii() and part.strip().isdigit() else part.strip()
                          for part in extra.split(",") if part.strip())
        extra = settled(tuple(extra)) if isinstance(extra, Iterable) else (extra,)  # a NumPy array's too
        object.__setattr__(self, "extra_seasons", extra)
        if any(isinstance(period, bool) or not isinstance(period, int) or period < 2 for period in self.extra_seasons):
            raise ValueError(f"extra_seasons must be periods of at least 2 steps, got {self.extra_seasons!r}")
        if len(set(self.extra_seasons)) < len(self.extra_seasons) or self.season in self.extra_seasons:
            said = f"m = {self.season}" if self.season else "m"
            raise ValueError(f"extra_seasons are periods besides season ({said}), each once; got "
                             f"{self.extra_seasons!r}")
        from lstmkit.series.intervals import percent  # here: lstmkit.series imports pandas, which layers need not

        if not 0 < self.interval < 1 or percent(self.interval) == "100":
            raise ValueError(f"interval is the coverage of the prediction interval, in (0, 1); got {self.interval!r}"
                             + (", which is 100% to the 15 digits of its columns' names" if 0 < self.interval < 1
                                else ""))
        if not 0 < self.validation_fraction < 1:
            raise ValueError(f"validation_fraction must be in (0, 1), got {self.validation_fraction!r}")
        check_network(self.cell, self.dropout, self.engine)
        if self.distribution is None:
            object.__setattr__(self, "distribution", "normal" if self.id is None else "laplace")
        if self.distribution not in DISTRIBUTIONS:
            raise ValueError(f"distribution must be one of {', '.join(DISTRIBUTIONS)}, got {self.distribution!r}")
        if self.base is None:
            object.__setattr__(self, "base", "auto" if self.id is None else "seasonal")
        if self.base not in BASES:
            raise ValueError(f"base must be one of {', '.join(BASES)}, got {self.base!r}")
        if self.base == "last" and self.extra_seasons:
            raise ValueError(f"extra_seasons (--extra-seasons) are periods the seasonal base may take; base 'last' "
                             f"corrects the last value: give base 'seasonal' or 'auto' with them, got extra_seasons="
                             f"{self.extra_seasons!r} with base 'last'")
        self.check_without_validation()
        self.check_long_table()

    @property
    def resumable_changes(self) -> tuple[str, ...]:
        """TrainingConfig's; without early stopping, also the settings of validation, which act on
        nothing there (a refit begun by a version that kept the user's goes on with the defaults)."""
        return (*TrainingConfig.resumable_changes, *(() if self.early_stopping else VALIDATION_SETTINGS))

    def season_of(self, frequency_season: int, frequency: str) -> int:
        """m: `season` where given, else `frequency_season`, the data's `frequency`'s, which
        extra_seasons may not repeat either (a period listed twice)."""
        if self.season:
            return self.season
        if frequency_season in self.extra_seasons:
            raise ValueError(f"extra_seasons are periods besides season (m = {frequency_season}, that of the data's "
                             f"frequency {frequency}); got {self.extra_seasons!r}: leave {frequency_season} out")
        return frequency_season

    def check_without_validation(self) -> None:
        """Without early stopping no window validates: the settings that act on the validation
        loss would do nothing, and are refused rather than ignored."""
        if self.early_stopping:
            return
        acting = [f"{name}={getattr(self, name)!r}" for name in VALIDATION_SETTINGS
                  if getattr(self, name) not in (None, getattr(ForecasterConfig, name))]
        acting += ["optimizer='nt-asgd'"] if self.optimizer == "nt-asgd" else []
        if acting:
            raise ValueError(f"{', '.join(acting)} act{'s' if len(acting) == 1 else ''} on the validation windows, "
                             "which early_stopping=False leaves out: keep early stopping, or leave them out")

    def check_long_table(self) -> None:
        from lstmkit.series.scaling import NORMALISATIONS

        object.__setattr__(self, "baselines", baseline_names(self.baselines))
        if self.id is not None and (not isinstance(self.id, str) or not self.id):
            raise ValueError(f"id is the column of the series ids, got {self.id!r}")
        if self.id is not None and len(self.target) != 1:
            raise ValueError(f"a long table (id={self.id!r}) has one target column, got {', '.join(self.target)}")
        if self.id is not None and (self.covariates or self.future_covariates):
            given = [f"{setting} {', '.join(getattr(self, setting))} (--{setting.replace('_', '-')})"
                     for setting in ("covariates", "future_covariates") if getattr(self, setting)]
            raise ValueError(f"covariates are not read from a long table (id={self.id!r}) yet; got "
                             f"{' and '.join(given)}: leave them out")
        if self.id is not None and not self.calendar:
            raise ValueError(f"a long table (id={self.id!r}) has no calendar features to turn off: its network reads "
                             "only the series' values, so calendar=False (--no-calendar) does nothing there")
        if self.id in (self.time, *self.target):
            raise ValueError(f"id, time and target must be three columns, got id={self.id!r} twice")
        object.__setattr__(self, "normalisation", as_names(self.normalisation, "normalisation"))
        unknown = [name for name in self.normalisation if name not in NORMALISATIONS]
        if not self.normalisation or unknown or len(set(self.normalisation)) < len(self.normalisation):
            raise ValueError(f"normalisation must be one or more different names among {', '.join(NORMALISATIONS)}, "
                             f"got {','.join(self.normalisation) or 'none'}")
        if self.id is None and self.normalisation != ("standard",):
            raise ValueError(f"normalisation applies to long tables (id=...), got {','.join(self.normalisation)} "
                             "without id: one table is standardised column by column")
        if len(self.normalisation) > 1 and self.base == "auto":
            raise ValueError(f"normalisation {','.join(self.normalisation)} trains a network per normalisation, and "
                             "base 'auto' two per normalisation: choose base 'seasonal' or 'last'")
        if isinstance(self.epoch_windows, bool) or not isinstance(self.epoch_windows, int) or self.epoch_windows < 1:
            raise ValueError(f"epoch_windows must be a positive integer, got {self.epoch_windows!r}")
        if self.id is None and self.epoch_windows != ForecasterConfig.epoch_windows:
            raise ValueError(f"epoch_windows (--epoch-windows) is the windows drawn per epoch of a long table "
                             f"(id=...), got {self.epoch_windows} without id: an epoch of one table is all its windows")


# A forecaster trained on every window, none held out to validate (fit's refit of one table,
# and one an older version saved so): the settings that act on the validation loss at their defaults.
WITHOUT_VALIDATION = {name: getattr(ForecasterConfig, name) for name in VALIDATION_SETTINGS}

SELECTIONS = ("loss", "bleu")


@dataclass(frozen=True)
class TranslationConfig(TrainingConfig, RegulariserSettings):
    """How a translation model is built and trained (the training fields: see
    lstmkit.training.config.TrainingConfig).
    Defaults: what fits Multi30k (29,000 short caption pairs) in an hour on 2 CPU cores. The
    regularisers (RegulariserSettings) act on the encoder, a lstmkit.Recurrent stack; the
    decoder's cells, stepped one at a time, take none of them."""

    # Subword pieces per language (sentencepiece unigram, learned from the training text):
    # 8,000 covers Multi30k's frequent words whole and spells the rest in pieces.
    source_vocabulary_size: int = 8000
    target_vocabulary_size: int = 8000
    cell: str = "lstm"
    # One layer of 256 per encoder direction and in the decoder: what trains several epochs
    # within an hour on 2 CPU cores; more layers learn less in the same time there.
    num_layers: int = 1
    hidden_size: int = 256
    # None: as hidden_size (tied embeddings need the two equal).
    embedding_size: int | None = None
    # Luong's general score: one product per step, as good as the additive one on short captions.
    attention: str = "luong"
    # Embeddings, between layers and before the output: 29,000 pairs overfit without it.
    dropout: float = 0.3
    # Szegedy et al. 2016 / Vaswani et al. 2017: 0.1 helps BLEU though it raises perplexity.
    label_smoothing: float = 0.1
    # The output layer shares the target embedding (Press & Wolf 2017): fewer weights to learn.
    tie_embeddings: bool = True
    # Sentence pairs per step (shared among torchrun's processes).
    batch_size: int = 64
    # Longer training pairs (in subwords, either side) are left out: they cost memory, teach little.
    max_train_length: int = 100
    # Validation BLEU (greedy decoding) at each evaluation, for the learning curves.
    validation_bleu: bool = True
    # What marks the best checkpoint: the validation "loss" (each evaluation scores it), or
    # "bleu", the metric of the task (label smoothing makes the two disagree late in training).
    select: str = "loss"
    engine: str = "auto"
    # Above Adam's 1e-3: with warm-up and cosine decay 2e-3 is stable and learns faster.
    lr: float = 2e-3
    warmup: int = 200
    # The cosine ends at a tenth of the peak rate.
    min_lr_fraction: float = 0.1
    # None: evaluate (and checkpoint) at the end of each epoch.
    eval_every: int | None = None

    # The budget: an hour of CPU training.
    default_budget: ClassVar[tuple[str, float]] = ("time_budget", 3600.0)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive_integers(self, ("source_vocabulary_size", "target_vocabulary_size", "num_layers", "hidden_size",
                                       "batch_size", "max_train_length"))
        if self.embedding_size is not None:
            check_positive_integers(self, ("embedding_size",))
        check_network(self.cell, self.dropout, self.engine)
        if self.attention not in ATTENTIONS:
            raise ValueError(f"attention must be one of {', '.join(ATTENTIONS)}, got {self.attention!r}")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing!r}")
        if self.tie_embeddings and self.embedding_size not in (None, self.hidden_size):
            raise ValueError("tie_embeddings shares the target embedding with the output layer, so embedding_size "
                             f"(--embedding-size) must equal hidden_size={self.hidden_size} (--hidden-size), got "
                             f"{self.embedding_size}; or untie them (--untied-embeddings)")
        self.check_regularisers(self.cell, self.max_train_length)
        if self.select not in SELECTIONS:
            raise ValueError(f"select must be one of {', '.join(SELECTIONS)}, got {self.select!r}")
        if self.select == "bleu" and not self.validation_bleu:
            raise ValueError("select='bleu' (--select bleu) needs validation_bleu, the BLEU of each evaluation to "
                             "select on, which --no-validation-bleu turns off")


# sacreBLEU's tokenisers that need nothing beyond sacrebleu itself (ja-mecab, ko-mecab and the
# spm ones need another package or a download); the first, 13a, is its default, how WMT scores English.
BLEU_TOKENIZERS = ("13a", "intl", "zh", "char", "none")


@dataclass(frozen=True)
class DecodingConfig:
    """How a translation model decodes (`lstmkit translate run / eval`, Translator)."""

    # Five hypotheses: most of what a wider beam finds, at a fifth of greedy decoding's speed.
    beam: int = 5
    # Subwords per translation, and at most twice its source's length plus 10 (a model that has
    # not learned to stop would otherwise run on).
    max_length: int = 200
    # An ended hypothesis scores log p / length^length_penalty: 1 is the per-token mean, which
    # keeps beam search from preferring short translations; 0 is the raw log-probability.
    length_penalty: float = 1.0

    def __post_init__(self) -> None:
        check_field_types(self)
        check_positive_integers(self, ("beam", "max_length"))
        if isinstance(self.length_penalty, bool) or not 0 <= self.length_penalty <= 5:
            raise ValueError(f"length_penalty (--length-penalty) must be in [0, 5] (0: none, 1: per-token mean), "
                             f"got {self.length_penalty!r}")
        if self.beam == 1 and self.length_penalty != DecodingConfig.length_penalty:
            raise ValueError(f"length_penalty (--length-penalty) weighs beam search's ended hypotheses; greedy "
                             f"decoding (beam 1) has one and takes no penalty: give a beam above 1, got "
                             f"length_penalty={self.length_penalty!r} with beam 1")


@dataclass(frozen=True)
class DemoConfig:
    """`lstmkit demo`: rnn, gru and lstm on the adding problem."""

    # A lag the plain RNN cannot bridge and the gated cells can, within minutes on 2 CPU cores.
    T: int = 100
    # Steps of training per cell, not seconds, so that every machine shows the same race: the
    # GRU solves T = 100 in about 1,200 steps and the LSTM in about 3,000 (2,900 and 3,100 on two
    # machines; README).
    steps: int = 5000
    # Seconds per cell at most, so that a slow machine still ends in minutes.
    time_budget: float = 300.0
    seed: int = 0
    hidden_size: int = 128

    def __post_init__(self) -> None:
        check_field_types(self)
        AddingTask(self.T)  # the task's own checks, and the training's, before the demo is announced
        self.training()

    def training(self) -> TaskTrainingConfig:
        return TaskTrainingConfig(hidden_size=self.hidden_size, steps=self.steps, time_budget=self.time_budget,
                                  seed=self.seed)


@dataclass(frozen=True)
class SpeechConfig(TrainingConfig, RegulariserSettings):
    """How a CTC speech recogniser hears, is built and is trained (the training fields: see
    TrainingConfig). Defaults: spoken digits (FSDD, 8 kHz) on 2 CPU cores."""

    # FSDD's rate; files at another rate are resampled to it.
    sample_rate: int = 8000
    # 40 mel bands: the usual resolution of CTC front ends below 16 kHz.
    n_mels: int = 40
    # 25 ms windows every 10 ms: the standard speech frame.
    window_ms: float = 25.0
    hop_ms: float = 10.0
    # Two 10 ms frames per recurrent step: half the steps, and FSDD's shortest word (0.14 s,
    # 14 frames) still has the 7 steps CTC needs for "three" (t h r e _ e).
    stack: int = 2
    cell: str = "lstm"
    # 2 x 128 per direction: learns the 10 digits in minutes on 2 CPU cores.
    num_layers: int = 2
    hidden_size: int = 128
    # Between the layers: 2,250 training utterances overfit a 2 x 128 stack without it.
    dropout: float = 0.2
    batch_size: int = 32
    engine: str = "auto"
    # Above Adam's 1e-3: CTC spends its first steps emitting only blanks; warm-up keeps 3e-3 stable.
    lr: float = 3e-3
    warmup: int = 100
    min_lr_fraction: float = 0.1
    # CTC's gradients spike while its alignments form; 5 bounds the steps without slowing them.
    clip: float = 5.0
    # About 1.5 passes over FSDD's 2,250 training utterances: an evaluation every minute or two on CPU.
    eval_every: int = 100
    # Decoding at evaluation: 1 is greedy (best path); more runs prefix beam search.
    beam: int = 1
    # Stop at the first evaluation that transcribes every validation utterance exactly.
    stop_when_perfect: bool = False
    # A run stopped by it continues without it.
    resumable_changes: ClassVar[tuple[str, ...]] = (*TrainingConfig.resumable_changes, "stop_when_perfect")
    # Speed perturbation (Ko et al. 2015; Kaldi's 0.9,1.1): each training utterance is also heard
    # at these speeds (faster and higher, or slower and lower), and each draw takes one of its
    # versions, the original included, with equal chances. Off (()): it costs a front-end pass per
    # speed; what it bought on FSDD is in the README.
    speed_perturbation: tuple[float, ...] = ()
    # Augmentation of the training utterances. VTLP: the bands warped by up to this factor
    # (0: none). SpecAugment (0 masks: none): two masks of up to 8 of the 40 bands and two of up
    # to 10 frames (0.1 s) each. Without the masks the stack learns FSDD's training set by heart
    # in 3 minutes (CTC loss 0.0003) and stays at 97 % on its test split; with them, 98.8 %
    # after 20 minutes (README, "Results on FSDD").
    frequency_warp: float = 0.0
    frequency_masks: int = 2
    frequency_mask_width: int = 8
    time_masks: int = 2
    time_mask_width: int = 10

    # The 20 minutes of CPU training the isolated-digit target allows.
    default_budget: ClassVar[tuple[str, float]] = ("time_budget", 1200.0)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive_integers(self, ("stack", "num_layers", "hidden_size", "batch_size", "beam"))
        check_network(self.cell, self.dropout, self.engine)
        self.front_end()  # checks the rate, the bands, the window and the hop
        self.augmentation()  # checks the warp and the masks
        given = self.speed_perturbation  # named in the messages as the user gave it
        if isinstance(given, list):  # as JSON gives it back (results.json, config.json)
            object.__setattr__(self, "speed_perturbation", tuple(given))
        speeds = self.speed_perturbation
        if not isinstance(speeds, tuple) or any(isinstance(speed, bool) or not isinstance(speed, (int, float))
                                                or not MIN_SPEED <= speed <= MAX_SPEED or speed == 1 for speed in speeds):
            raise ValueError(f"speed_perturbation (--speed-perturbation) must be a tuple of speeds in [{MIN_SPEED}, "
                             f"{MAX_SPEED}] other than 1 (the original is always used), e.g. (0.9, 1.1), or 0.9,1.1 "
                             f"on the command line, got {given!r}")
        if len(set(speeds)) < len(speeds):  # each draw takes the original or one speed with equal chances
            raise ValueError(f"speed_perturbation (--speed-perturbation) gives a speed twice, which would weigh it "
                             f"double; give each once, got {given!r}")
        if self.frequency_mask_width > self.n_mels:
            raise ValueError("frequency_mask_width (--frequency-mask-width) must be at most n_mels (--n-mels, "
                             f"{self.n_mels}), got {self.frequency_mask_width!r}")
        self.check_regularisers(self.cell, 100)

    def front_end(self) -> FrontEnd:
        return FrontEnd(self.sample_rate, self.n_mels, self.window_ms, self.hop_ms)

    def augmentation(self) -> Augmentation:
        return Augmentation(self.frequency_warp, self.frequency_masks, self.frequency_mask_width, self.time_masks,
                            self.time_mask_width)
