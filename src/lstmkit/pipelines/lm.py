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

import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from lstmkit.checkpoint import load_trained, load_weights, read_extra_file
from lstmkit.models.language import LanguageModel, LanguageModelConfig
from lstmkit.text import Corpus, Vocabulary, load_corpus, token_streams
from lstmkit.training import Job, Processes, Trainer, TrainingConfig, learning_rate, resolve_device

VOCABULARY_FILE = "vocabulary.json"
METRIC_COLUMNS = ("step", "epoch", "tokens", "seconds", "lr", "train_loss", "val_loss", "val_ppl", "val_bpc")
# exp() of a loss above this overflows a float: the perplexity is then inf.
LARGEST_EXPONENT = math.log(sys.float_info.max)

__all__ = ["LMRun", "LMTrainingConfig", "TextScores", "TrainedLanguageModel", "learning_rate",
           "load_language_model", "train_language_model"]


@dataclass(frozen=True)
class LMTrainingConfig(TrainingConfig):
    """How a language model is built and trained (the training fields: see TrainingConfig).
    Defaults: a 2 x 512 character-level LSTM, the configuration that scored best on Tiny
    Shakespeare in 30 minutes on 2 CPU cores (README)."""

    level: str = "char"
    # Word level: rarer words become <unk>; 1 keeps every word.
    min_frequency: int = 1
    # The text's last 10% validates, unless a separate validation text is given.
    validation_fraction: float = 0.1
    cell: str = "lstm"
    num_layers: int = 2
    hidden_size: int = 512
    # None: as hidden_size (weight tying needs the two equal).
    embedding_size: int | None = None
    # Between the layers and around them: a 1 MB text overfits a 2 x 512 LSTM without it.
    dropout: float = 0.2
    tie_weights: bool = False
    # Steps of truncated backpropagation through time (Karpathy's char-rnn).
    seq_len: int = 100
    # Parallel streams of the text per step.
    batch_size: int = 64
    engine: str = "auto"
    # Above Adam's 1e-3: warm-up and cosine decay keep 2e-3 stable and it learns faster.
    lr: float = 2e-3
    weight_decay: float = 0.01
    # Character models' gradients spike at rare characters; 5 keeps the steps bounded.
    clip: float = 5.0
    warmup: int = 100
    # The cosine ends at a tenth of the peak rate.
    min_lr_fraction: float = 0.1
    # 200 steps: an evaluation of the 111k-character validation text every ~2 minutes on CPU.
    eval_every: int = 200

    # Ten passes over a text: enough for Tiny Shakespeare to start overfitting.
    default_budget: ClassVar[tuple[str, float]] = ("epochs", 10.0)

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("num_layers", "hidden_size", "seq_len", "batch_size", "min_frequency"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")

    def model_config(self, vocabulary_size: int) -> LanguageModelConfig:
        return LanguageModelConfig(
            self.cell, vocabulary_size, self.hidden_size, self.num_layers, self.embedding_size, self.dropout,
            self.tie_weights, self.engine,
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
        perplexity = math.exp(loss) if loss <= LARGEST_EXPONENT else math.inf
        return cls(loss, perplexity, loss / math.log(2) / characters_per_token, tokens)


@dataclass
class LMRun:
    """The outcome of `train_language_model`."""

    out: Path
    best_val_loss: float
    best_val_perplexity: float
    best_val_bpc: float
    steps: int
    seconds: float
    tokens_per_second: float
    history: list[dict]
    device: str
    precision: str
    processes: int


class LanguageModelJob(Job):
    """Truncated BPTT over `batch_size` contiguous streams of the text: step s trains on
    window s mod (windows per pass), the hidden state carried from the previous window
    (detached) and reset at the start of each pass. Several processes each take an equal
    share of the streams."""

    item = "token"

    def __init__(self, corpus: Corpus, config: LMTrainingConfig, processes: Processes, device: torch.device) -> None:
        processes.check_divides(config.batch_size, "batch_size (the streams)")
        self.config, self.processes, self.device, self.vocabulary = config, processes, device, corpus.vocabulary
        self.train_windows = token_streams(corpus.train, config.batch_size, config.seq_len, "the training text")
        self.validation_windows = token_streams(corpus.validation, config.batch_size, config.seq_len,
                                                "the validation text")
        self.characters_per_token = corpus.validation_characters / corpus.validation.numel()
        self.sources = corpus.sources
        torch.manual_seed(config.seed)
        self.model = LanguageModel(config.model_config(len(corpus.vocabulary)))
        self.label = f"lm {config.cell} {config.num_layers}x{config.hidden_size}"
        self.state = None

    def steps_per_epoch(self) -> int:
        return len(self.train_windows)

    def train_loss(self, model, step: int) -> tuple[Tensor, int]:
        window = step % len(self.train_windows)
        if window == 0:  # a new pass over the streams starts from no state
            self.state = None
        inputs, targets = (self.processes.shard(part, 1).to(self.device) for part in self.train_windows.window(window))
        logits, self.state = model(inputs, detach(self.state))
        return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten()), targets.numel()

    def evaluate(self) -> dict[str, float]:
        scores = evaluate_windows(self.model, self.validation_windows, self.characters_per_token)
        return {"val_loss": scores.loss, "val_ppl": scores.perplexity, "val_bpc": scores.bits_per_character}

    def state_tensors(self) -> dict[str, Tensor]:
        parts = () if self.state is None else (self.state if isinstance(self.state, tuple) else (self.state,))
        return {f"state.{index}": self.processes.gather(part.detach(), 1) for index, part in enumerate(parts)}

    def load_state_tensors(self, tensors: dict[str, Tensor]) -> None:
        parts = [self.processes.shard(tensors[f"state.{index}"], 1).to(self.device)
                 for index in range(2) if f"state.{index}" in tensors]
        self.state = None if not parts else (tuple(parts) if len(parts) == 2 else parts[0])

    def checkpoint_config(self) -> dict:
        return {"kind": "language_model", "model": self.model.config.to_dict()}

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


def train_language_model(
    text: str | Path,
    out: str | Path,
    config: LMTrainingConfig,
    validation: str | Path | None = None,
    resume: bool = False,
) -> LMRun:
    """Train (or, with resume, continue training) a language model on a text file; under
    torchrun, in every process, each on its share of the streams."""
    out = Path(out)
    corpus = load_corpus(text, validation, config.level, config.min_frequency, config.validation_fraction)
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


def evaluate_windows(model: LanguageModel, windows, characters_per_token: float) -> TextScores:
    """Mean loss over every target of the windows, the state carried from window to window."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    total, count, state = 0.0, 0, None
    with torch.no_grad():
        for inputs, targets in windows:
            logits, state = model(inputs.to(device), state)
            total += F.cross_entropy(logits.flatten(0, 1).float(), targets.to(device).flatten(), reduction="sum").item()
            count += targets.numel()
    model.train(was_training)
    return TextScores.from_loss(total / count, count, characters_per_token)


@dataclass
class TrainedLanguageModel:
    """A trained model with its vocabulary and checkpoint config, ready to sample and score."""

    model: LanguageModel
    vocabulary: Vocabulary
    config: dict

    def sample(self, prime: str = "", length: int = 500, temperature: float = 1.0, top_k: int | None = None,
               seed: int | None = None) -> str:
        return sample_text(self.model, self.vocabulary, prime, length, temperature, top_k, seed)

    def evaluate(self, text: str) -> TextScores:
        return evaluate_text(self.model, self.vocabulary, text)


def load_language_model(directory: str | Path, cell: str | None = None,
                        device: str | torch.device = "cpu") -> TrainedLanguageModel:
    """A trained model from a run folder (its best/ checkpoint) or a checkpoint folder, on
    `device` whatever device trained it; `cell`, if given, must be the model's cell."""
    directory, config, tensors = load_trained(directory, "language_model", "a language model")
    model_config = LanguageModelConfig(**config["model"])
    if cell is not None and model_config.cell != cell:
        raise ValueError(f"{directory} holds a {model_config.cell!r} language model, not a {cell!r} one")
    model = LanguageModel(model_config)
    load_weights(model, tensors, directory)
    model.to(resolve_device(str(device)))
    model.eval()
    return TrainedLanguageModel(model, read_vocabulary(directory), config)


def read_vocabulary(directory: Path) -> Vocabulary:
    return Vocabulary.from_dict(json.loads(read_extra_file(directory, VOCABULARY_FILE)))


def evaluate_text(model: LanguageModel, vocabulary: Vocabulary, text: str, window: int = 1000) -> TextScores:
    """Score every token of `text` after the first, in one stream (the state carried along)."""
    tokens = vocabulary.encode(text, "the text to evaluate")
    if tokens.numel() < 2:
        raise ValueError(f"the text to evaluate has {tokens.numel()} token(s); at least 2 are needed")
    stream = token_streams(tokens, 1, window, "the text to evaluate")
    return evaluate_windows(model, stream, len(text) / tokens.numel())


def sample_text(model: LanguageModel, vocabulary: Vocabulary, prime: str = "", length: int = 500,
                temperature: float = 1.0, top_k: int | None = None, seed: int | None = None) -> str:
    """`prime` followed by `length` sampled tokens. Each token is drawn from the model's
    distribution sharpened by `temperature` (< 1 sharper) and cut to the `top_k` likeliest.
    Without a prime, sampling starts after a line break."""
    if length < 0:
        raise ValueError(f"length must be non-negative, got {length}")
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    if top_k is not None and not 1 <= top_k <= len(vocabulary):
        raise ValueError(f"top_k must be in [1, {len(vocabulary)}] (the vocabulary size), got {top_k}")
    generator = torch.Generator()
    generator.manual_seed(seed if seed is not None else torch.seed())
    if prime:
        tokens = vocabulary.encode(prime, "the prime text")
    elif vocabulary.level == "word" or "\n" in vocabulary.index:
        tokens = vocabulary.encode("\n")
    else:  # a text without line breaks: start from its first token
        tokens = torch.tensor([0])
    if tokens.numel() == 0:
        raise ValueError("the prime text holds no tokens")
    model.eval()
    device = next(model.parameters()).device
    sampled = []
    with torch.no_grad():
        logits, state = model(tokens.unsqueeze(1).to(device))
        last = logits[-1, 0].float().cpu()  # drawn on the CPU: the same sample on any device
        for _ in range(length):
            scaled = last / temperature
            if top_k is not None:
                cutoff = torch.topk(scaled, top_k).values[-1]
                scaled = scaled.masked_fill(scaled < cutoff, -math.inf)
            token = torch.multinomial(torch.softmax(scaled, -1), 1, generator=generator)
            sampled.append(int(token))
            logits, state = model(token.view(1, 1).to(device), state)
            last = logits[-1, 0].float().cpu()
    generated = vocabulary.decode(sampled)
    if not prime:
        return generated
    joins_words = vocabulary.level == "word" and generated and not generated.startswith("\n") and not prime.endswith("\n")
    return prime + (" " if joins_words else "") + generated
