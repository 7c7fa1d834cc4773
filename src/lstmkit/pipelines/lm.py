"""Language modelling: train on a text, sample from the model, score a text with it.

    train  text -> vocabulary -> contiguous streams -> truncated BPTT with AdamW -> checkpoints
    sample checkpoint + prime text -> temperature / top-k sampling -> text
    eval   checkpoint + text -> loss (nats/token), perplexity, bits per character

A run folder holds `best/` (the checkpoint with the lowest validation loss so far), `last/`
(the latest, with everything needed to continue: optimizer moments, the hidden state carried
between windows, the data position and the random-number state), `metrics.csv` and
`results.json`. Both checkpoints are written at every evaluation, atomically, so a run killed
at any moment resumes from its last evaluation and, resumed, computes exactly what it would
have computed uninterrupted.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from lstmkit.checkpoint import load_checkpoint, read_extra_file, read_extra_tensors, save_checkpoint
from lstmkit.files import write_csv, write_json
from lstmkit.models.language import LanguageModel, LanguageModelConfig
from lstmkit.progress import Progress
from lstmkit.text import Vocabulary, load_corpus, token_streams

VOCABULARY_FILE = "vocabulary.json"
TRAINING_FILE = "training.safetensors"
METRIC_COLUMNS = ("step", "epoch", "tokens", "seconds", "lr", "train_loss", "val_loss", "val_ppl", "val_bpc")
MIN_LR_FRACTION = 0.1  # the cosine schedule ends at a tenth of the peak learning rate
# What a resumed run must keep: the model's shape, and what defines the data positions.
RESUME_FIXED = ("level", "min_frequency", "validation_fraction", "cell", "layers", "hidden", "embedding",
                "tie_weights", "seq_len", "batch")


@dataclass(frozen=True)
class LMTrainingConfig:
    """How a language model is built and trained. Exactly one budget: steps, epochs or
    time_budget (seconds of training, evaluations excluded)."""

    level: str = "char"
    min_frequency: int = 1
    validation_fraction: float = 0.1
    cell: str = "lstm"
    layers: int = 2
    hidden: int = 512
    embedding: int | None = None
    dropout: float = 0.2
    tie_weights: bool = False
    seq_len: int = 100
    batch: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.01
    clip: float = 5.0
    warmup: int = 100
    steps: int | None = None
    epochs: float | None = None
    time_budget: float | None = None
    eval_every: int = 200
    seed: int = 0
    engine: str = "auto"

    def __post_init__(self) -> None:
        budgets = [name for name in ("steps", "epochs", "time_budget") if getattr(self, name) is not None]
        if len(budgets) != 1:
            raise ValueError(f"give exactly one budget of steps, epochs or time_budget; got {budgets or 'none'}")
        for name in ("layers", "hidden", "seq_len", "batch", "eval_every", "min_frequency"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("steps", "epochs", "time_budget", "lr", "clip"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be positive, got {value}")
        if self.warmup < 0 or self.weight_decay < 0:
            raise ValueError(f"warmup and weight_decay must be non-negative, got {self.warmup} and {self.weight_decay}")

    def model_config(self, vocabulary_size: int) -> LanguageModelConfig:
        return LanguageModelConfig(
            self.cell, vocabulary_size, self.hidden, self.layers, self.embedding, self.dropout, self.tie_weights,
            self.engine,
        )


@dataclass
class RunState:
    """Where a run is: its step, data position (epoch, window), tokens and seconds so far, the
    schedule's length, the best validation loss and every evaluation. Saved in last/ so that
    --resume continues from it."""

    step: int = 0
    epoch: int = 0
    window: int = 0
    tokens: int = 0
    train_seconds: float = 0.0
    total_steps: int | None = None
    best_val_loss: float = math.inf
    best_step: int = 0
    history: list[dict] = field(default_factory=list)


@dataclass(frozen=True)
class TextScores:
    """How well a model predicts a text."""

    loss: float
    perplexity: float
    bits_per_character: float
    tokens: int

    @classmethod
    def from_loss(cls, loss: float, tokens: int, characters_per_token: float) -> TextScores:
        return cls(loss, math.exp(loss), loss / math.log(2) / characters_per_token, tokens)


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


def learning_rate(config: LMTrainingConfig, step: int, total_steps: int | None) -> float:
    """Linear warm-up over `warmup` steps, then cosine decay to a tenth of the peak at
    `total_steps` (held at the peak until the total is known)."""
    if step < config.warmup:
        return config.lr * (step + 1) / config.warmup
    if total_steps is None:
        return config.lr
    progress = min(1.0, (step - config.warmup) / max(1, total_steps - config.warmup))
    return config.lr * (MIN_LR_FRACTION + (1 - MIN_LR_FRACTION) * 0.5 * (1 + math.cos(math.pi * progress)))


def train_language_model(
    text: str | Path,
    out: str | Path,
    config: LMTrainingConfig,
    validation: str | Path | None = None,
    resume: bool = False,
) -> LMRun:
    """Train (or, with resume, continue training) a language model on a text file."""
    out = Path(out)
    corpus = load_corpus(text, validation, config.level, config.min_frequency, config.validation_fraction)
    train_windows = token_streams(corpus.train, config.batch, config.seq_len, "the training text")
    validation_windows = token_streams(corpus.validation, config.batch, config.seq_len, "the validation text")
    characters_per_token = corpus.validation_characters / corpus.validation.numel()

    if resume:
        model, optimizer, progress, state = restore_run(out, config, corpus.vocabulary)
    else:
        if (out / "last").exists() or (out / "best").exists():
            raise ValueError(f"{out} already holds a run; pass resume=True (--resume) to continue it, or choose another folder")
        torch.manual_seed(config.seed)
        model = LanguageModel(config.model_config(len(corpus.vocabulary)))
        optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        progress, state = RunState(), None
    if config.epochs is not None:
        progress.total_steps = math.ceil(config.epochs * len(train_windows))
    elif config.steps is not None:
        progress.total_steps = config.steps

    report = Progress(f"lm {config.cell} {config.layers}x{config.hidden}", progress.total_steps,
                      first_step=progress.step)
    losses_since_evaluation: list[float] = []
    model.train()
    while not budget_spent(config, progress):
        if progress.window == len(train_windows):  # a new pass over the streams starts from no state
            progress.epoch, progress.window, state = progress.epoch + 1, 0, None
        inputs, targets = train_windows.window(progress.window)
        started = time.perf_counter()
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(config, progress.step, progress.total_steps)
        logits, state = model(inputs, detach(state))
        loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip)
        optimizer.step()
        progress.train_seconds += time.perf_counter() - started
        progress.step, progress.window, progress.tokens = progress.step + 1, progress.window + 1, progress.tokens + targets.numel()
        losses_since_evaluation.append(loss.item())
        report.update(progress.step, loss=loss.item(), tokens_per_s=progress.tokens / progress.train_seconds)
        if progress.total_steps is None and config.time_budget is not None and progress.step == config.eval_every:
            progress.total_steps = int(config.time_budget / (progress.train_seconds / progress.step))
        if progress.step % config.eval_every == 0 or budget_spent(config, progress):
            evaluate_and_save(model, optimizer, state, progress, losses_since_evaluation, validation_windows,
                              characters_per_token, corpus.vocabulary, config, out)
            losses_since_evaluation = []
    report.close(progress.step, best_val_loss=progress.best_val_loss)
    best = min(progress.history, key=lambda row: row["val_loss"])
    run = LMRun(out, best["val_loss"], best["val_ppl"], best["val_bpc"], progress.step, progress.train_seconds,
                progress.tokens / max(progress.train_seconds, 1e-9), progress.history)
    write_json(out / "results.json", {
        "best_val_loss": run.best_val_loss,
        "best_val_ppl": run.best_val_perplexity,
        "best_val_bpc": run.best_val_bpc,
        "best_step": progress.best_step,
        "tokens_per_second": run.tokens_per_second,
        "steps": run.steps,
        "epochs": progress.step / len(train_windows),
        "seconds": run.seconds,
        "config": asdict(config),
    })
    return run


def budget_spent(config: LMTrainingConfig, progress: RunState) -> bool:
    if config.time_budget is not None:
        return progress.train_seconds >= config.time_budget
    return progress.step >= progress.total_steps


def detach(state):
    """The state carried into the next window, cut from the previous window's graph."""
    if state is None:
        return None
    return tuple(part.detach() for part in state) if isinstance(state, tuple) else state.detach()


def evaluate_windows(model: LanguageModel, windows, characters_per_token: float) -> TextScores:
    """Mean loss over every target of the windows, the state carried from window to window."""
    was_training = model.training
    model.eval()
    total, count, state = 0.0, 0, None
    with torch.no_grad():
        for inputs, targets in windows:
            logits, state = model(inputs, state)
            total += F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="sum").item()
            count += targets.numel()
    model.train(was_training)
    return TextScores.from_loss(total / count, count, characters_per_token)


def evaluate_and_save(model, optimizer, state, progress: RunState, losses: list[float], validation_windows,
                      characters_per_token: float, vocabulary: Vocabulary, config: LMTrainingConfig, out: Path) -> None:
    """Score the validation text, record it, and write best/ (if better), last/ and metrics.csv."""
    scores = evaluate_windows(model, validation_windows, characters_per_token)
    progress.history.append({
        "step": progress.step, "epoch": progress.epoch, "tokens": progress.tokens,
        "seconds": round(progress.train_seconds, 2), "lr": optimizer.param_groups[0]["lr"],
        "train_loss": sum(losses) / max(len(losses), 1), "val_loss": scores.loss, "val_ppl": scores.perplexity,
        "val_bpc": scores.bits_per_character,
    })
    if scores.loss < progress.best_val_loss:
        progress.best_val_loss, progress.best_step = scores.loss, progress.step
        save_run_checkpoint(out / "best", model, vocabulary, config, progress)
    save_run_checkpoint(out / "last", model, vocabulary, config, progress, training_tensors(optimizer, model, state))
    write_csv(out / "metrics.csv", METRIC_COLUMNS, [[row[column] for column in METRIC_COLUMNS] for row in progress.history])


def training_tensors(optimizer: torch.optim.Optimizer, model: LanguageModel, state) -> dict[str, Tensor]:
    """Optimizer moments by parameter name, the carried hidden state and the RNG state."""
    names = {id(parameter): name for name, parameter in model.named_parameters()}
    tensors = {}
    for parameter, moments in optimizer.state.items():
        for key, value in moments.items():
            tensors[f"optimizer.{names[id(parameter)]}.{key}"] = value
    parts = () if state is None else (state if isinstance(state, tuple) else (state,))
    for index, part in enumerate(parts):
        tensors[f"state.{index}"] = part
    tensors["rng.torch"] = torch.get_rng_state()
    return tensors


def model_tensors(model: LanguageModel) -> dict[str, Tensor]:
    """The weights, a tied decoder weight stored once (as the embedding)."""
    tensors = model.state_dict()
    if model.config.tie_weights:
        del tensors["decoder.weight"]
    return tensors


def save_run_checkpoint(directory: Path, model: LanguageModel, vocabulary: Vocabulary, config: LMTrainingConfig,
                        progress: RunState, extra: dict[str, Tensor] | None = None) -> None:
    checkpoint_config = {
        "kind": "language_model",
        "model": model.config.to_dict(),
        "training": asdict(config),
        "progress": {**asdict(progress), "best_val_loss": progress.best_val_loss
                     if math.isfinite(progress.best_val_loss) else None},
    }
    save_checkpoint(directory, checkpoint_config, model_tensors(model),
                    extra_files={VOCABULARY_FILE: json.dumps(vocabulary.to_dict(), ensure_ascii=False)},
                    extra_tensors={TRAINING_FILE: extra} if extra is not None else None)


def restore_run(out: Path, config: LMTrainingConfig, vocabulary: Vocabulary):
    """Model, optimizer, progress and carried state of out/last, after checking that the run
    is the one `config` and the text describe."""
    if not (out / "last").exists() and not (out / ".last.previous").exists():
        raise FileNotFoundError(f"{out} holds no run to resume (no last/ checkpoint); start one without --resume")
    saved, _ = load_checkpoint(out / "last")
    check_same_run(saved, config, vocabulary, out)
    model = load_language_model(out / "last").model
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    extra = read_extra_tensors(out / "last", TRAINING_FILE)
    names = dict(model.named_parameters())
    for key, value in extra.items():
        if key.startswith("optimizer."):
            name, moment = key.removeprefix("optimizer.").rsplit(".", 1)
            optimizer.state[names[name]][moment] = value
    torch.set_rng_state(extra["rng.torch"])
    state_parts = [extra[f"state.{index}"] for index in range(2) if f"state.{index}" in extra]
    state = None if not state_parts else (tuple(state_parts) if len(state_parts) == 2 else state_parts[0])
    progress = RunState(**{**saved["progress"], "best_val_loss": saved["progress"]["best_val_loss"] or math.inf})
    return model, optimizer, progress, state


def check_same_run(saved: dict, config: LMTrainingConfig, vocabulary: Vocabulary, out: Path) -> None:
    """A resumed run must have the architecture, the data layout and the text it started with."""
    before = saved["training"]
    changed = [f"{name}: {before[name]!r} in the run, {getattr(config, name)!r} now"
               for name in RESUME_FIXED if before[name] != getattr(config, name)]
    if changed:
        raise ValueError(f"{out} was trained with other settings; --resume needs the same ones ({'; '.join(changed)})")
    saved_vocabulary = Vocabulary.from_dict(json.loads(read_extra_file(out / "last", VOCABULARY_FILE)))
    if saved_vocabulary != vocabulary:
        raise ValueError(f"the text's vocabulary differs from the one {out} was trained on: resume with the same text")


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


def load_language_model(directory: str | Path, cell: str | None = None) -> TrainedLanguageModel:
    """A trained model from a run folder (its best/ checkpoint) or a checkpoint folder; `cell`,
    if given, must be the model's cell."""
    directory = Path(directory)
    if (directory / "best").exists() or (directory / ".best.previous").exists():
        directory = directory / "best"
    config, tensors = load_checkpoint(directory)
    if config.get("kind") != "language_model":
        raise ValueError(f"{directory} holds a {config.get('kind')!r} checkpoint, not a language model")
    model_config = LanguageModelConfig(**config["model"])
    if cell is not None and model_config.cell != cell:
        raise ValueError(f"{directory} holds a {model_config.cell!r} language model, not a {cell!r} one")
    model = LanguageModel(model_config)
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    allowed_missing = ["decoder.weight"] if model_config.tie_weights else []
    if missing != allowed_missing or unexpected:
        raise ValueError(f"{directory}: weights do not fit the model (missing {missing}, unexpected {unexpected})")
    vocabulary = Vocabulary.from_dict(json.loads(read_extra_file(directory, VOCABULARY_FILE)))
    model.eval()
    return TrainedLanguageModel(model, vocabulary, config)


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
    sampled = []
    with torch.no_grad():
        logits, state = model(tokens.unsqueeze(1))
        last = logits[-1, 0]
        for _ in range(length):
            scaled = last / temperature
            if top_k is not None:
                cutoff = torch.topk(scaled, top_k).values[-1]
                scaled = scaled.masked_fill(scaled < cutoff, -math.inf)
            token = torch.multinomial(torch.softmax(scaled, -1), 1, generator=generator)
            sampled.append(int(token))
            logits, state = model(token.view(1, 1), state)
            last = logits[-1, 0]
    generated = vocabulary.decode(sampled)
    if not prime:
        return generated
    joins_words = vocabulary.level == "word" and generated and not generated.startswith("\n") and not prime.endswith("\n")
    return prime + (" " if joins_words else "") + generated
