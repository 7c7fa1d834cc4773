"""Language modelling: train on a text, sample from the model, score a text with it.

    train  text -> vocabulary -> contiguous streams -> truncated BPTT in the training core
           (lstmkit.training: AdamW, warm-up and cosine decay, clipping, checkpoints)
    sample checkpoint + prime text -> temperature / top-k sampling -> text
    eval   checkpoint + text -> loss (nats/token), perplexity, bits per character

A run folder holds `best/` (the checkpoint with the lowest validation loss so far), `last/`
(the latest, with everything needed to continue: optimizer moments, the hidden state carried
between windows and the random-number state), `metrics.csv` and `results.json`. Both
checkpoints are written at every evaluation, atomically, so a run killed at any moment
resumes from its last evaluation and, resumed, computes exactly what it would have computed
uninterrupted.
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Iterator
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils import _pytree as pytree

from lstmkit.caller import warn_at_caller
from lstmkit.checkpoint import (
    CheckpointError,
    CheckpointKind,
    checkpoint_folder,
    load_model_checkpoint,
    read_extra_json,
)
from lstmkit.engines import check_engine_name
from lstmkit.files import as_path
from lstmkit.models.language import LanguageModel, LanguageModelConfig
from lstmkit.models.modes import evaluating
from lstmkit.pipelines.configs import RegulariserSettings
from lstmkit.pipelines.lm_evaluation import CachePointer, DynamicEvaluation, score_dynamically, score_with_cache
from lstmkit.received import received
from lstmkit.text import LEVELS, Corpus, Vocabulary, line_feeds, load_corpus, read_text, token_streams
from lstmkit.text.vocabulary import warn_unknown
from lstmkit.training import Job, Processes, Trainer, TrainingConfig, check_run_folder, resolve_device
from lstmkit.training.device import runnable_engines
from lstmkit.training.loop import check_same_settings, resumed_settings
from lstmkit.training.config import (SEED_RANGE, check_config, check_field_types, check_positive_integers,
                                     set_as_tuple)
from lstmkit.training.isolation import isolated_from_caller
from lstmkit.training.progress import Progress

# Named sets of settings, for `lstmkit lm train --recipe NAME`; flags given beside one win.
RECIPES = {
    # AWD-LSTM's regularisers and optimiser (Merity et al. 2018, their WikiText-2 values), on
    # the level's model: locked dropout around the layers (0.4: their dropout on the output,
    # and with 0.3 below their dropouti on the embedding) and on each layer's input (0.3: their
    # dropouth between the layers), embedding dropout 0.1, DropConnect on the recurrent weights
    # 0.5, AR 2, TAR 1, tied embedding and decoder, variable-length windows, and NT-ASGD at a
    # constant rate of 30 with gradients clipped at 0.25, weight decay 1.2e-6.
    "awd": {"locked_dropout": True, "dropout": 0.4, "input_dropout": 0.3, "embedding_dropout": 0.1,
            "weight_dropout": 0.5, "activation_regularisation": 2.0, "temporal_activation_regularisation": 1.0,
            "tie_weights": True, "variable_length": True, "optimizer": "nt-asgd", "lr": 30.0, "clip": 0.25,
            "weight_decay": 1.2e-6, "warmup": 0, "min_lr_fraction": 1.0},
}
# The defaults that depend on the tokens, each chosen by measurement (BENCHMARKS.md,
# "Language-model defaults"); a value given, or set by a recipe, wins.
LEVEL_DEFAULTS = {
    "char": {
        # Karpathy's char-rnn: 2 x 512, windows of 100 characters; in 30 minutes on 2 CPU cores
        # it scored best on Tiny Shakespeare (README), with torch's initialisation (init_range
        # 0). A vocabulary of ~65 gains nothing from tying.
        "num_layers": 2, "hidden_size": 512, "tie_weights": False, "init_range": 0.0,
        "seq_len": 100, "batch_size": 64,
        # AdamW above Adam's 1e-3: warm-up and cosine decay keep 2e-3 stable and it learns
        # faster; character models' gradients spike at rare characters, a clip of 5 bounds them.
        "optimizer": "adamw", "lr": 2e-3, "weight_decay": 0.01, "clip": 5.0, "warmup": 100,
    },
    "word": {
        # Zaremba et al.'s small model, as pytorch/examples trains it (windows of 35, 20
        # streams), with the decoder tied to the embedding (Press & Wolf 2017) and both drawn
        # from U(−0.1, 0.1): each cut test perplexity on the word-level splits at 10 minutes.
        "num_layers": 2, "hidden_size": 256, "tie_weights": True, "init_range": 0.1,
        "seq_len": 35, "batch_size": 20,
        # Plain SGD, clipped at 0.25 (the example's clip): AdamW reached the same validation
        # perplexity but a 12 % higher test perplexity. A rate of 40, twice the example's, beat
        # 20 on both corpora in fewer steps; 60 was too much (BENCHMARKS.md).
        "optimizer": "sgd", "lr": 40.0, "weight_decay": 0.0, "clip": 0.25, "warmup": 0,
    },
}
# With a time budget under these seconds and no size given, the level's model is this size
# instead: a large model takes too few steps in a short budget (BENCHMARKS.md, "Language-model
# defaults").
SHORT_BUDGETS = {"char": (600.0, {"num_layers": 1, "hidden_size": 256})}
VOCABULARY_FILE = "vocabulary.json"
METRIC_COLUMNS = ("step", "epoch", "tokens", "seconds", "lr", "train_loss", "val_loss", "val_ppl", "val_bpc")
# exp() of a loss above this overflows a float: the perplexity is then inf.
LARGEST_EXPONENT = math.log(sys.float_info.max)

__all__ = ["LMRun", "LMTrainingConfig", "TextScores", "TrainedLanguageModel", "load_language_model",
           "train_language_model"]


@dataclass(frozen=True)
class LMTrainingConfig(TrainingConfig, RegulariserSettings):
    """How a language model is built and trained (the training fields: see
    lstmkit.training.config.TrainingConfig).

    Fields left None take the level's defaults (LEVEL_DEFAULTS, README "Language-model
    defaults"): at char level a 2 x 512 LSTM trained by AdamW (1 x 256 under a time_budget of
    less than 600 s, where neither num_layers nor hidden_size is given, SHORT_BUDGETS); at word
    level a 2 x 256 LSTM with tied weights trained by SGD. A `recipe` sets its settings where
    the field holds its default, so a value equal to the default is taken as not given unless
    `recipe_keeps` names it (the command line names every flag given beside --recipe, so that a
    flag given always wins). As for every config, the defaults are
    resolved when it is built: dataclasses.replace keeps them, so build a new config to change
    the level or the budget."""

    level: str = "char"
    # Word level: rarer words become <unk>; 1 keeps every word.
    min_frequency: int = 1
    # The text's last 10% validates, unless a separate validation text is given.
    validation_fraction: float = 0.1
    cell: str = "lstm"
    # None: the level's default (LEVEL_DEFAULTS; with a short time budget, SHORT_BUDGETS).
    num_layers: int | None = None
    hidden_size: int | None = None
    # None: as hidden_size (weight tying needs the two equal).
    embedding_size: int | None = None
    # Between the layers and around them: a 1 MB text overfits a 2 x 512 LSTM without it, and
    # at word level 0.2 beat 0.3 on Multi30k by more than it lost on Tiny Shakespeare (BENCHMARKS.md).
    dropout: float = 0.2
    # The dropout around the layers with one mask per sequence (AWD-LSTM's locked dropout).
    locked_dropout: bool = False
    # Whole words dropped from the embedding per batch (AWD-LSTM: 0.1).
    embedding_dropout: float = 0.0
    # AR: this times the mean square of the top layer's dropped outputs joins the loss (AWD-LSTM: 2).
    activation_regularisation: float = 0.0
    # TAR: this times the mean square of h_t − h_{t−1} of the top layer joins the loss (AWD-LSTM: 1).
    temporal_activation_regularisation: float = 0.0
    # The embedding shared with the decoder (Press & Wolf 2017). None: the level's default.
    tie_weights: bool | None = None
    # U(−r, r) for the embedding and decoder (LanguageModelConfig.init_range). None: the level's default.
    init_range: float | None = None
    # A named set of settings (RECIPES) for every setting left at its default; None: none.
    recipe: str | None = None
    # The recipe's settings it leaves as given though they hold their default (a flag given).
    recipe_keeps: tuple[str, ...] = ()
    # Steps of truncated backpropagation through time. None: the level's default.
    seq_len: int | None = None
    # Windows of random length around seq_len, the step's rate scaled by length / seq_len
    # (AWD-LSTM's variable-length BPTT; StreamWindows.random_lengths).
    variable_length: bool = False
    # Parallel streams of the text per step. None: the level's default.
    batch_size: int | None = None
    # Cluster boundaries of an adaptive softmax (LanguageModelConfig); () keeps the full one,
    # as a character vocabulary (below the first boundary) does anyway.
    adaptive_softmax_cutoffs: tuple[int, ...] = ()
    engine: str = "auto"
    # The optimizer and its settings. None: the level's default (LEVEL_DEFAULTS).
    optimizer: str | None = None
    lr: float | None = None
    weight_decay: float | None = None
    clip: float | None = None
    warmup: int | None = None
    # The cosine ends at a tenth of the peak rate.
    min_lr_fraction: float = 0.1
    # 200 steps: an evaluation of the 111k-character validation text every ~2 minutes on CPU.
    eval_every: int = 200

    # Which flags were given beside the recipe may differ on resume: the settings they gave are compared.
    resumable_changes: ClassVar[tuple[str, ...]] = (*TrainingConfig.resumable_changes, "recipe_keeps")
    level_defaults: ClassVar[dict[str, dict]] = LEVEL_DEFAULTS
    short_budget_defaults: ClassVar[dict[str, tuple[float, dict]]] = SHORT_BUDGETS
    # Ten passes over a text: enough for Tiny Shakespeare to start overfitting.
    default_budget: ClassVar[tuple[str, float]] = ("epochs", 10.0)

    def __post_init__(self) -> None:
        check_field_types(self)  # before the defaults below compare them
        if isinstance(self.recipe_keeps, str):  # read letter by letter, each refused as no setting
            raise TypeError(f"recipe_keeps must be a tuple of setting names, got {self.recipe_keeps!r}; "
                            f"give ({self.recipe_keeps!r},)")
        set_as_tuple(self, "recipe_keeps", "setting names")
        set_as_tuple(self, "adaptive_softmax_cutoffs", "token ranks")
        if self.recipe is not None:
            if self.recipe not in RECIPES:
                raise ValueError(f"recipe must be one of {', '.join(RECIPES)}, got {self.recipe!r}")
            unknown = [name for name in self.recipe_keeps if name not in RECIPES[self.recipe]]
            if unknown:
                raise ValueError(f"recipe_keeps names settings of the recipe {self.recipe!r} "
                                 f"({', '.join(RECIPES[self.recipe])}), got {', '.join(map(repr, unknown))}")
            defaults = {field.name: field.default for field in dataclasses.fields(self)}
            for name, value in RECIPES[self.recipe].items():
                if name not in self.recipe_keeps and getattr(self, name) == defaults[name]:
                    object.__setattr__(self, name, value)
        elif self.recipe_keeps:
            raise ValueError(f"recipe_keeps names settings a recipe leaves as given; no recipe is given, got "
                             f"recipe_keeps={self.recipe_keeps!r}")
        if self.level not in LEVELS:
            raise ValueError(f"level must be one of {', '.join(LEVELS)}, got {self.level!r}")
        check_engine_name(self.engine)
        if self.init_range is not None and not 0 <= self.init_range < math.inf:
            raise ValueError(f"init_range must be a non-negative number (0: torch's initialisation), "
                             f"got {self.init_range!r}")
        defaults = LEVEL_DEFAULTS[self.level]
        tie_weights_given = self.tie_weights is not None
        if self.num_layers is None and self.hidden_size is None:  # on resume, the run's (`sized_like`)
            defaults = {**defaults, **budget_size(self.level, self.time_budget)}
        if self.adaptive_softmax_cutoffs:  # an adaptive softmax has no one decoder matrix to tie
            defaults = {**defaults, "tie_weights": False}
        for name, value in defaults.items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, value)
        super().__post_init__()
        # integers: 16.0 reached torch, or a slice, and failed there, far from the setting that held it
        check_positive_integers(self, ("num_layers", "hidden_size", "seq_len", "batch_size", "min_frequency"))
        if self.embedding_size is not None:
            check_positive_integers(self, ("embedding_size",))
        if not 0 < self.validation_fraction < 1:
            raise ValueError(f"validation_fraction must be in (0, 1), got {self.validation_fraction!r}")
        if self.level == "char" and self.min_frequency != 1:  # a character vocabulary keeps every character
            raise ValueError(f"min_frequency (--min-frequency) applies at word level (--level word) only; got "
                             f"{self.min_frequency} at char level")
        if self.tie_weights and self.embedding_size not in (None, self.hidden_size):
            default = "" if tie_weights_given else f" (at {self.level} level the default)"
            raise ValueError(f"tie_weights{default} shares the embedding with the decoder, so "
                             f"embedding_size (--embedding-size) must equal hidden_size={self.hidden_size}, got "
                             f"{self.embedding_size}; or untie them (--no-tie-weights)")
        self.check_regularisers(self.cell, self.seq_len)
        self.model_config(vocabulary_size=1)  # the model's own checks (dropouts, tied sizes), now
        for name in ("activation_regularisation", "temporal_activation_regularisation"):
            value = getattr(self, name)
            if isinstance(value, bool) or not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a non-negative number, got {value!r}")

    def model_config(self, vocabulary_size: int) -> LanguageModelConfig:
        return LanguageModelConfig(
            self.cell, vocabulary_size, self.hidden_size, self.num_layers, self.embedding_size, self.dropout,
            self.tie_weights, self.engine, regularisers=self.regularisers(self.seq_len),
            embedding_dropout=self.embedding_dropout, locked_dropout=self.locked_dropout,
            adaptive_softmax_cutoffs=self.adaptive_softmax_cutoffs, init_range=self.init_range or None,
        )


@dataclass(frozen=True)
class TextScores:
    """How well a model predicts a text."""

    loss: float
    perplexity: float
    bits_per_character: float
    tokens: int

    @classmethod
    def from_loss(cls, loss: float, tokens: int, characters_per_token: float) -> TextScores:
        perplexity = math.inf if loss > LARGEST_EXPONENT else math.exp(loss)  # nan stays nan
        return cls(loss, perplexity, loss / math.log(2) / characters_per_token, tokens)


@dataclass
class LMRun:
    """The outcome of `lstmkit.lm.train`: the best validation scores under the names that
    results.json and metrics.csv give them."""

    out: Path
    best_val_loss: float
    best_val_ppl: float
    best_val_bpc: float
    steps: int
    seconds: float
    tokens_per_second: float
    history: list[dict]
    device: str
    precision: str
    processes: int


def check_cutoffs(cutoffs: tuple[int, ...], vocabulary_size: int) -> None:
    """The adaptive softmax's boundaries given against the corpus's vocabulary: those at or
    above its size are dropped (LanguageModelConfig.cutoffs) with a warning; all of them is an
    error, as it would leave the full softmax, untied, where neither was asked for."""
    dropped = [cutoff for cutoff in cutoffs if cutoff >= vocabulary_size]
    if not dropped:
        return
    if len(dropped) == len(cutoffs):
        raise ValueError(f"adaptive_softmax_cutoffs (--adaptive-softmax-cutoffs) {list(cutoffs)} all lie at or above "
                         f"the vocabulary's {vocabulary_size:,} tokens: an adaptive softmax of one cluster is the full "
                         f"softmax; give boundaries below {vocabulary_size:,}, or none")
    kept = [cutoff for cutoff in cutoffs if cutoff < vocabulary_size]
    warn_at_caller(f"adaptive_softmax_cutoffs (--adaptive-softmax-cutoffs) {dropped} lie at or above the vocabulary's "
                   f"{vocabulary_size:,} tokens: dropped, the clusters bounded by {kept}")


class LanguageModelJob(Job):
    """Truncated BPTT over `batch_size` contiguous streams of the text: step s trains on
    window s mod (windows per pass), the hidden state carried from the previous window
    (detached) and reset at the start of each pass. With `variable_length`, pass p's windows
    have random lengths drawn from the seed and p (the same in every process and after a
    resume). Several processes each take an equal share of the streams."""

    item = "token"

    def __init__(self, corpus: Corpus, config: LMTrainingConfig, processes: Processes, device: torch.device) -> None:
        processes.check_divides(config.batch_size, "batch_size (--batch-size, the streams)")
        self.config, self.processes, self.device, self.vocabulary = config, processes, device, corpus.vocabulary
        split = "validation" not in corpus.sources  # the validation part split off the training text's end
        self.train_windows = token_streams(corpus.train, config.batch_size, config.seq_len, "the training text",
                                           "more text, or a smaller --validation-fraction" if split else "more text")
        more = ("more text, a larger --validation-fraction, or a validation file (--valid)" if split else
                "a longer validation file (--valid)")
        self.validation_windows = token_streams(corpus.validation, config.batch_size, config.seq_len,
                                                "the validation text", more)
        steps = self.train_windows.streams.shape[1] - 1  # the tokens each stream predicts; once both texts hold
        if config.seq_len > steps:
            warn_at_caller(f"seq_len (--seq-len) {config.seq_len} is longer than each of the {config.batch_size} "
                           f"training streams ({steps:,} tokens to predict): every window is a whole stream; give a "
                           "shorter seq_len" + " or a smaller batch_size (--batch-size)" * (config.batch_size > 1))
        self.characters_per_token = corpus.validation_characters / corpus.validation.numel()
        self.sources = corpus.sources
        check_cutoffs(config.adaptive_softmax_cutoffs, len(corpus.vocabulary))
        torch.manual_seed(config.seed)
        self.model = LanguageModel(config.model_config(len(corpus.vocabulary)))
        self.label = f"lm {config.cell} {config.num_layers}x{config.hidden_size}"
        self.state = None
        self.passes: list[list[tuple[int, int]]] = []  # with variable_length: each pass's windows

    def steps_per_epoch(self) -> int:
        """The windows of a pass (with variable_length, of the first pass: the others differ by a few)."""
        return len(self.window_plan(0)) if self.config.variable_length else len(self.train_windows)

    def window_plan(self, pass_index: int) -> list[tuple[int, int]]:
        """The (start, length) windows of pass `pass_index` with variable_length."""
        while len(self.passes) <= pass_index:
            self.passes.append(self.train_windows.random_lengths(self.config.seed * 1_000_003 + len(self.passes)))
        return self.passes[pass_index]

    def training_window(self, step: int) -> tuple[int, int]:
        """The (start, length) of step `step`'s window in the streams."""
        if not self.config.variable_length:
            index = step % len(self.train_windows)
            return index * self.config.seq_len, self.config.seq_len
        pass_index = 0
        while step >= len(self.window_plan(pass_index)):
            step -= len(self.window_plan(pass_index))
            pass_index += 1
        return self.window_plan(pass_index)[step]

    def learning_rate_scale(self, step: int) -> float:
        """length / seq_len of the step's window with variable_length (AWD-LSTM: a short
        window takes a short step), else 1."""
        return self.training_window(step)[1] / self.config.seq_len if self.config.variable_length else 1.0

    def train_loss(self, model, step: int) -> tuple[Tensor, int]:
        start, length = self.training_window(step)
        if start == 0:  # a new pass over the streams starts from no state
            self.state = None
        inputs, targets = (self.processes.shard(part, 1).to(self.device)
                           for part in self.train_windows.span(start, length))
        config = self.config
        loss, self.state, hidden, dropped = model(inputs, detach(self.state), return_hidden=True, targets=targets)
        if config.activation_regularisation:                      # AR: α · mean(dropped h_t²)
            loss = loss + config.activation_regularisation * dropped.float().pow(2).mean()
        # TAR: β · mean((h_t − h_{t−1})²); a one-step window (the last of a pass of random
        # lengths can be one) has no pair, and adds nothing rather than the mean of nothing.
        if config.temporal_activation_regularisation and hidden.shape[0] > 1:
            loss = loss + config.temporal_activation_regularisation * (hidden[1:] - hidden[:-1]).float().pow(2).mean()
        return loss, targets.numel()

    def evaluate(self) -> dict[str, float]:
        scores = evaluate_windows(self.model, self.validation_windows, self.characters_per_token)
        return {"val_loss": scores.loss, "val_ppl": scores.perplexity, "val_bpc": scores.bits_per_character}

    def state_tensors(self) -> dict[str, Tensor]:
        parts = () if self.state is None else (self.state if isinstance(self.state, tuple) else (self.state,))
        return {f"state.{index}": self.processes.gather(part.detach(), 1) for index, part in enumerate(parts)}

    def load_state_tensors(self, tensors: dict[str, Tensor]) -> None:
        """The carried state, in the parameters' dtype: a run under bfloat16 autocast carries
        bfloat16 states, which a float32 run resumed from it could not take."""
        dtype = next(self.model.parameters()).dtype
        parts = [self.processes.shard(tensors[f"state.{index}"], 1).to(self.device, dtype)
                 for index in range(2) if f"state.{index}" in tensors]
        self.state = None if not parts else (tuple(parts) if len(parts) == 2 else parts[0])

    def checkpoint_config(self) -> dict:
        return {"kind": LANGUAGE_MODEL.name, "model": self.model.config.to_dict()}

    def checkpoint_files(self) -> dict[str, str]:
        return {VOCABULARY_FILE: json.dumps(self.vocabulary.to_dict(), ensure_ascii=False)}

    def data_fingerprint(self) -> dict[str, dict]:
        return self.sources

    def check_resumable(self, saved: dict, directory: Path) -> None:
        """A resumed run must have the vocabulary it started with (runs saved before data
        fingerprints were recorded are checked by this alone)."""
        if read_vocabulary(directory) != self.vocabulary:
            raise ValueError(f"the text's vocabulary differs from the one {directory.parent} was trained on: "
                             "resume with the same text")


def budget_size(level: str, time_budget: float | None) -> dict[str, int]:
    """The model size of `level` for a run given no size and `time_budget` seconds."""
    seconds, size = SHORT_BUDGETS.get(level, (0.0, {}))
    default = {name: LEVEL_DEFAULTS[level][name] for name in ("num_layers", "hidden_size")}
    return size if (time_budget or math.inf) < seconds else default


def sized_like(config: LMTrainingConfig, out: Path) -> LMTrainingConfig:
    """`config` to resume the run in `out` with: where both the run and `config` have the size
    their budgets chose (no size given), the run's (a run begun under a short budget, resumed
    with a longer one, keeps its model); every other setting is checked against the run's here,
    before the command says what it resumes."""
    training = resumed_settings(out)
    if training is None:
        return config
    size = {name: training.get(name) for name in ("num_layers", "hidden_size")}
    chosen = {"num_layers": config.num_layers, "hidden_size": config.hidden_size}
    budgets_chose = (chosen == budget_size(config.level, config.time_budget)
                     and training.get("level") == config.level
                     and size == budget_size(config.level, training.get("time_budget")))
    config = dataclasses.replace(config, **size) if budgets_chose and size != chosen else config
    check_same_settings(training, config, out)
    return config


@isolated_from_caller
def train_language_model(
    text: str | Path,
    out: str | Path,
    config: LMTrainingConfig,
    validation: str | Path | None = None,
    resume: bool = False,
) -> LMRun:
    """Train (or, with resume, continue training) a language model on a text file; under
    torchrun, in every process, each on its share of the streams."""
    check_config(config, LMTrainingConfig, "lstmkit.lm.TrainingConfig")
    if validation is not None and not resume and config.validation_fraction != LMTrainingConfig.validation_fraction:
        raise ValueError(f"validation_fraction holds out the end of the training text, and a validation file is given "
                         f"({validation}): give one of them, got validation_fraction={config.validation_fraction!r}")
    out = as_path(out, "the run's folder")
    check_run_folder(out, resume, LANGUAGE_MODEL.name)  # before the corpus is read
    if resume:
        config = sized_like(config, out)
    # An adaptive softmax's head is the tokens below its first boundary: the most frequent
    # (torch.nn.AdaptiveLogSoftmaxWithLoss); sorted, "the" fell in its last cluster, and a
    # 300-step run trained 2.5 x as long to a loss 0.5 nats worse.
    last = out / "last"
    corpus = load_corpus(text, validation, config.level, config.min_frequency, config.validation_fraction,
                         by_frequency=bool(config.adaptive_softmax_cutoffs),
                         resumed=read_vocabulary(last) if resume and (last / VOCABULARY_FILE).is_file() else None)
    trainer = Trainer(config)
    job = LanguageModelJob(corpus, config, trainer.processes, trainer.device)
    run = trainer.run(job, out, resume)
    best = run.best
    return LMRun(out, best["val_loss"], best["val_ppl"], best["val_bpc"], run.steps, run.seconds,
                 run.items_per_second, run.history, run.device, run.precision, run.processes)


def detach(state):
    """The state carried into the next window, cut from the previous window's graph."""
    if state is None:
        return None
    return tuple(part.detach() for part in state) if isinstance(state, tuple) else state.detach()


def evaluate_windows(model: LanguageModel, windows, characters_per_token: float,
                     progress: Progress | None = None) -> TextScores:
    """Mean loss over every target of the windows, the state carried from window to window;
    the tokens scored reported to `progress` after each window."""
    device = next(model.parameters()).device
    total, count, state = 0.0, 0, None
    with torch.no_grad(), evaluating(model):
        for inputs, targets in windows:
            logits, state = model(inputs.to(device), state)
            total += F.cross_entropy(logits.flatten(0, 1).float(), targets.to(device).flatten(), reduction="sum").item()
            count += targets.numel()
            if progress is not None:
                progress.update(count, None)
    if progress is not None:
        progress.close(count, None)
    return TextScores.from_loss(total / count, count, characters_per_token)


LANGUAGE_MODEL = CheckpointKind(
    "language_model", "a language model", "model", ("vocabulary_size", "hidden_size", "embedding_size"),
    lambda section: LanguageModel(LanguageModelConfig(**section)),
)


@dataclass
class TrainedLanguageModel:
    """A trained model with its vocabulary and checkpoint config, ready to sample and score."""

    model: LanguageModel
    vocabulary: Vocabulary
    config: dict

    def sample(self, prime: str = "", length: int = 500, temperature: float = 1.0, top_k: int | None = None,
               seed: int | None = None, top_p: float | None = None) -> str:
        """`prime` followed by `length` sampled tokens (`sample_pieces`): `temperature` below 1
        sharpens the distribution, `top_k` keeps the k likeliest, `top_p` the likeliest holding
        that probability mass, `seed` makes it repeatable."""
        return "".join(self.sample_pieces(prime, length, temperature, top_k, seed, top_p))

    def sample_pieces(self, prime: str = "", length: int = 500, temperature: float = 1.0, top_k: int | None = None,
                      seed: int | None = None, top_p: float | None = None) -> Iterator[str]:
        """The text `sample` returns, piece by piece as it is drawn (the prime, then each
        token's text), to print as it comes, as char-rnn does."""
        return sample_pieces(self.model, self.vocabulary, prime, length, temperature, top_k, seed, top_p)

    def evaluate(self, text: str | os.PathLike, cache: CachePointer | None = None,
                 dynamic: DynamicEvaluation | None = None, progress: bool = False) -> TextScores:
        """Scores of every token of `text` (a str is the text itself; a pathlib.Path, the text
        file it names) after the first: the model's own, or under the continuous cache pointer,
        or with dynamic evaluation (lstmkit.pipelines.lm_evaluation); with `progress`, the
        tokens scored so far on stderr (a bar on a terminal, a line every 30 s in a log)."""
        if not isinstance(progress, bool):
            raise TypeError(f"progress must be True or False, got {received(progress)}")
        if isinstance(text, os.PathLike):
            text = read_text(text)
        elif isinstance(text, str) and "\n" not in text and os.path.isfile(text):  # a char model failed at its '/'
            warn_at_caller(f"evaluate() scores a str as the text itself, and {text!r} names a file: to score the "
                           f"file, pass pathlib.Path({text!r})")
        for name, value, kind in (("cache", cache, CachePointer), ("dynamic", dynamic, DynamicEvaluation)):
            if value is not None and not isinstance(value, kind):
                raise TypeError(f"{name} must be a {kind.__name__} (lstmkit.pipelines.lm_evaluation) or None, got "
                                f"{value!r}; e.g. {name}={kind.__name__}()")
        if cache is not None and dynamic is not None:
            raise ValueError("score with the cache pointer or with dynamic evaluation, one at a time")
        text = line_feeds(text) if isinstance(text, str) else text  # as a file's line ends are read
        tokens = text_tokens(self.vocabulary, text)
        way = "" if cache is None and dynamic is None else " with the cache pointer" if cache else " dynamically"
        shown = Progress(f"lm eval{way}", tokens.numel() - 1, unit="token") if progress else None
        if cache is None and dynamic is None:
            scores = evaluate_tokens(self.model, tokens, len(text) / tokens.numel(), shown)
        else:
            total, count = (score_with_cache(self.model, tokens, cache, progress=shown) if cache is not None else
                            score_dynamically(self.model, tokens, dynamic, shown))
            scores = TextScores.from_loss(total / count, count, len(text) / tokens.numel())
        if math.isnan(scores.loss):  # reported as a score, exit status 0
            raise ValueError("the model's loss on this text is nan: its weights hold values that are not numbers (a "
                             "damaged checkpoint?)")
        return scores


@isolated_from_caller  # a load builds the model, drawing initial weights it replaces
def load_language_model(directory: str | Path, cell: str | None = None,
                        device: str | torch.device = "cpu") -> TrainedLanguageModel:
    """A trained model from a run folder (its best/ checkpoint) or a checkpoint folder, on
    `device` whatever device trained it; `cell`, if given, must be the model's cell."""
    directory = checkpoint_folder(directory)
    config, model = load_model_checkpoint(directory, LANGUAGE_MODEL)
    if cell is not None and model.config.cell != cell:
        raise ValueError(f"{directory} holds a {model.config.cell!r} language model, not a {cell!r} one")
    vocabulary = read_vocabulary(directory)
    if len(vocabulary) != model.config.vocabulary_size:
        raise CheckpointError(f"{directory / VOCABULARY_FILE} has {len(vocabulary)} tokens, but the model's "
                              f"vocabulary_size is {model.config.vocabulary_size}")
    device = resolve_device(str(device))
    model.to(device)
    runnable_engines(model, device)  # a model trained with engine="triton" on a GPU runs on a CPU too
    model.eval()
    return TrainedLanguageModel(model, vocabulary, config)


def read_vocabulary(directory: Path) -> Vocabulary:
    """The vocabulary saved with a checkpoint."""
    data = read_extra_json(directory, VOCABULARY_FILE)
    try:
        return Vocabulary.from_dict(data)
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{directory / VOCABULARY_FILE} is not a vocabulary "
                              f"(expected an object with 'level' and 'tokens'): {error!r}") from None


def text_tokens(vocabulary: Vocabulary, text: str) -> Tensor:
    """The tokens of a text to score: at least two (an input and a target)."""
    tokens = vocabulary.encode(text, "the text to evaluate")
    if tokens.numel() < 2:
        raise ValueError(f"the text to evaluate has {tokens.numel()} token(s); at least 2 are needed")
    warn_unknown(vocabulary, text, tokens, "the text", "are scored as <unk>: the loss is not the loss of those words, and the bits per character, "
                 "which spread it over their characters too, are below the text's (not comparable with a character "
                 "model's)")
    return tokens


def evaluate_tokens(model: LanguageModel, tokens: Tensor, characters_per_token: float,
                    progress: Progress | None = None, window: int = 1000) -> TextScores:
    """Score every token of `tokens` after the first, in one stream (the state carried along)."""
    stream = token_streams(tokens, 1, window, "the text to evaluate")
    return evaluate_windows(model, stream, characters_per_token, progress)


def nucleus(scores: Tensor, top_p: float) -> Tensor:
    """`scores` with all but the likeliest tokens whose probabilities first reach `top_p` in sum
    set to -inf (the likeliest is always kept)."""
    probabilities, order = torch.softmax(scores, -1).sort(descending=True)
    before = probabilities.cumsum(-1) - probabilities  # the mass of the likelier tokens
    kept = torch.zeros_like(scores, dtype=torch.bool)
    kept[order[before < top_p]] = True
    return scores.masked_fill(~kept, -math.inf)


def sample_pieces(model: LanguageModel, vocabulary: Vocabulary, prime: str = "", length: int = 500,
                  temperature: float = 1.0, top_k: int | None = None, seed: int | None = None,
                  top_p: float | None = None) -> Iterator[str]:
    """`prime` followed by `length` sampled tokens, as pieces of text: the prime, then each
    token's text as it is drawn (checked, and the prime read, at the call). Each token is drawn from the model's
    distribution sharpened by `temperature` (< 1 sharper; 0: the likeliest token, greedy
    decoding) and cut to the `top_k` likeliest (all of them for a `top_k` at least the
    vocabulary's size, as nanoGPT clips it), then to the likeliest whose probabilities first
    reach `top_p` in sum (nucleus sampling, Holtzman et al. 2020, as Hugging Face's top_p).
    Without a prime, sampling starts after a line break; a prime's Windows and old Mac line
    ends are line feeds, as a text file's are (`read_text`)."""
    for name, value in (("length", length), ("top_k", top_k), ("seed", seed)):
        if (value is not None or name == "length") and (isinstance(value, bool)
                                                        or not isinstance(value, numbers.Integral)):
            raise TypeError(f"{name} must be an integer, got {received(value)}")
    if length < 0:
        raise ValueError(f"length must be non-negative, got {length}")
    if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real) or not 0 <= temperature < math.inf:
        raise ValueError(f"temperature must be a finite number >= 0 (0: greedy), got {temperature!r}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be at least 1, got {top_k}")
    if top_p is not None and (isinstance(top_p, bool) or not isinstance(top_p, numbers.Real) or not 0 < top_p <= 1):
        raise ValueError(f"top_p must be a number in (0, 1], the probability mass kept, got {top_p!r}")
    if seed is not None and not SEED_RANGE[0] <= seed <= SEED_RANGE[1]:
        raise ValueError(f"seed (--seed) must be in [{SEED_RANGE[0]}, 2**64 - 1], got {seed}")
    length, top_k, seed = (None if value is None else int(value) for value in (length, top_k, seed))  # NumPy's too
    generator = torch.Generator()
    # without a seed, one drawn from torch's global generator: torch.manual_seed repeats the
    # sample, and the caller's stream moves on as after any random operation (torch.seed() reseeded it)
    generator.manual_seed(seed if seed is not None else int(torch.randint(2**63 - 1, ()).item()))
    if not isinstance(prime, str):
        raise TypeError(f"prime must be a str, got {type(prime).__name__}")
    prime = line_feeds(prime)
    if prime:
        tokens = vocabulary.encode(prime, "the prime text")
        warn_unknown(vocabulary, prime, tokens, "the prime", "are read as <unk>")
    elif vocabulary.level == "word" or "\n" in vocabulary.index:
        tokens = vocabulary.encode("\n")
    else:  # a text without line breaks: start from its first token
        tokens = torch.tensor([0])
    if tokens.numel() == 0:
        raise ValueError("the prime text holds no tokens")
    return drawn_pieces(model, vocabulary, prime, tokens, length, temperature, top_k, top_p, generator)


def drawn_pieces(model: LanguageModel, vocabulary: Vocabulary, prime: str, tokens: Tensor, length: int,
                 temperature: float, top_k: int | None, top_p: float | None,
                 generator: torch.Generator) -> Iterator[str]:
    """`sample_pieces`' pieces, its arguments checked. Each step runs without gradients and in
    evaluation mode, and the caller's modes are back before each piece is handed over. The state
    carried from piece to piece is kept in the weights' dtype: one drawn under the caller's
    autocast came back in bfloat16, and the next piece drawn without it failed on it."""
    device, dtype = next(model.parameters()).device, next(model.parameters()).dtype
    yield prime
    # a word model's words are joined by spaces: one between the prime and the first, unless
    # either side of the join is white space already (the prime "the cat " got two)
    follows_word = bool(prime) and not prime[-1].isspace()
    with torch.no_grad(), evaluating(model):
        logits, state = model(tokens.unsqueeze(1).to(device))
        state = pytree.tree_map(lambda part: part.to(dtype), state)
    last = logits[-1, 0].float().cpu()  # drawn on the CPU: the same sample on any device
    for _ in range(length):
        scaled = last / temperature if temperature > 0 else None
        if scaled is not None and torch.isfinite(scaled).all():
            if top_k is not None and top_k < len(vocabulary):
                cutoff = torch.topk(scaled, top_k).values[-1]
                scaled = scaled.masked_fill(scaled < cutoff, -math.inf)
            if top_p is not None and top_p < 1:
                scaled = nucleus(scaled, top_p)
            token = torch.multinomial(torch.softmax(scaled, -1), 1, generator=generator)
        else:  # temperature 0, or so low that the scores overflow (or, subnormals flushed, divide by 0)
            token = last.argmax().view(1)
        text = vocabulary.decode([int(token)])
        if vocabulary.level == "word":  # words within a line joined by spaces, as `Vocabulary.decode` joins them
            text, follows_word = (" " + text if follows_word and text != "\n" else text), text != "\n"
        yield text
        with torch.no_grad(), evaluating(model):
            logits, state = model(token.view(1, 1).to(device), state)
            state = pytree.tree_map(lambda part: part.to(dtype), state)
        last = logits[-1, 0].float().cpu()
