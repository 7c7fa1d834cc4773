"""The configs of the pipelines whose modules need an extra (tasks, forecast, translate), importable
without it, so that the CLI reads every default from them before it checks the extra."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from lstmkit.cells import CELLS
from lstmkit.engines import ENGINE_CHOICES
from lstmkit.models.seq2seq import ATTENTIONS
from lstmkit.training import TrainingConfig


@dataclass(frozen=True)
class TaskTrainingConfig(TrainingConfig):
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

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("hidden_size", "batch_size", "test_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")


def as_names(value, what: str) -> tuple[str, ...]:
    """Column names from a name, a comma-separated string or a sequence of names."""
    if isinstance(value, str):
        return tuple(name.strip() for name in value.split(",") if name.strip())
    if not all(isinstance(name, str) for name in value):
        raise TypeError(f"{what} must be column names, got {value!r}")
    return tuple(value)


@dataclass(frozen=True)
class ForecasterConfig(TrainingConfig):
    """What to forecast and how the forecaster is built and trained (the training fields:
    see TrainingConfig).

    lookback defaults to 2 * max(horizon, season); season (the m of seasonal naive and MASE)
    to the one of the data's frequency (52 weekly, 12 monthly, 1 yearly). Training runs up
    to `epochs` (or `time_budget` seconds), keeping the epoch with the lowest loss on the
    latest `validation_fraction` of the windows and stopping `patience` epochs after it;
    without early_stopping it trains on every window for exactly `epochs`.
    """

    time: str = ""
    target: tuple[str, ...] = ()
    horizon: int = 0
    lookback: int | None = None
    season: int | None = None
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
    engine: str = "auto"

    # 200 epochs: with patience 50, early stopping ends most runs before.
    default_budget: ClassVar[tuple[str, float]] = ("epochs", 200)

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "target", as_names(self.target, "target"))
        object.__setattr__(self, "covariates", as_names(self.covariates, "covariates"))
        object.__setattr__(self, "future_covariates", as_names(self.future_covariates, "future_covariates"))
        if not self.time:
            raise ValueError("give the time column")
        if not self.target:
            raise ValueError("give at least one target column")
        for name in ("horizon", "hidden_size", "num_layers", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name in ("lookback", "season"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a positive integer or None, got {value!r}")
        if not 0 < self.interval < 1:
            raise ValueError(f"interval is the coverage of the prediction interval, in (0, 1); got {self.interval!r}")
        if not 0 < self.validation_fraction < 1:
            raise ValueError(f"validation_fraction must be in (0, 1), got {self.validation_fraction!r}")
        if isinstance(self.dropout, bool) or not 0 <= self.dropout < 1:
            raise ValueError(f"dropout is a probability in [0, 1), got {self.dropout!r}")
        if self.cell not in CELLS:
            raise ValueError(f"cell must be one of {', '.join(CELLS)}, got {self.cell!r}")
        if self.engine not in ENGINE_CHOICES:
            raise ValueError(f"engine must be one of {', '.join(ENGINE_CHOICES)}, got {self.engine!r}")


SELECTIONS = ("loss", "bleu")


@dataclass(frozen=True)
class TranslationConfig(TrainingConfig):
    """How a translation model is built and trained (the training fields: see TrainingConfig).
    Defaults: what fits Multi30k (29,000 short caption pairs) in an hour on 2 CPU cores."""

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
        for name in ("source_vocabulary_size", "target_vocabulary_size", "num_layers", "hidden_size", "batch_size",
                     "max_train_length"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.cell not in CELLS:
            raise ValueError(f"cell must be one of {', '.join(CELLS)}, got {self.cell!r}")
        if self.attention not in ATTENTIONS:
            raise ValueError(f"attention must be one of {', '.join(ATTENTIONS)}, got {self.attention!r}")
        if isinstance(self.dropout, bool) or not 0 <= self.dropout < 1:
            raise ValueError(f"dropout is a probability in [0, 1), got {self.dropout!r}")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing!r}")
        if self.tie_embeddings and self.embedding_size not in (None, self.hidden_size):
            raise ValueError("tie_embeddings shares the target embedding with the output layer, so embedding_size "
                             f"must equal hidden_size={self.hidden_size}, got {self.embedding_size}")
        if self.engine not in ENGINE_CHOICES:
            raise ValueError(f"engine must be one of {', '.join(ENGINE_CHOICES)}, got {self.engine!r}")
        if self.select not in SELECTIONS:
            raise ValueError(f"select must be one of {', '.join(SELECTIONS)}, got {self.select!r}")
        if self.select == "bleu" and not self.validation_bleu:
            raise ValueError("select='bleu' needs validation_bleu (the BLEU of each evaluation to select on)")


@dataclass(frozen=True)
class DecodingConfig:
    """How a translation model decodes (`lstmkit translate run / eval`, Translator)."""

    # Five hypotheses: most of what a wider beam finds, at a fifth of greedy decoding's speed.
    beam: int = 5
    # Subwords per translation, and at most twice the longest source of a batch plus 10 (a
    # model that has not learned to stop would otherwise run on).
    max_length: int = 200
    # An ended hypothesis scores log p / length^length_penalty: 1 is the per-token mean, which
    # keeps beam search from preferring short translations; 0 is the raw log-probability.
    length_penalty: float = 1.0

    def __post_init__(self) -> None:
        for name in ("beam", "max_length"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if isinstance(self.length_penalty, bool) or not 0 <= self.length_penalty <= 5:
            raise ValueError(f"length_penalty must be in [0, 5] (0: none, 1: per-token mean), "
                             f"got {self.length_penalty!r}")


@dataclass(frozen=True)
class DemoConfig:
    """`lstmkit demo`: rnn, gru and lstm on the adding problem."""

    # A lag the plain RNN cannot bridge and the gated cells can, within minutes on 2 CPU cores.
    T: int = 100
    # Seconds of training per cell: the gated cells solve T = 100 in one to two minutes.
    time_budget: float = 90.0
    seed: int = 0
    hidden_size: int = 128

    def training(self) -> TaskTrainingConfig:
        return TaskTrainingConfig(hidden_size=self.hidden_size, time_budget=self.time_budget, seed=self.seed)
