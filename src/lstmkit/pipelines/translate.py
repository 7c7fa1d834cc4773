"""Machine translation: train an encoder-decoder with attention, translate, score with BLEU.

    train  parallel files -> subword vocabularies (sentencepiece) -> length-bucketed batches
           -> teacher forcing with label smoothing in the training core (lstmkit.training)
    run    checkpoint + sentences -> beam search (or greedy) -> detokenised sentences
    eval   checkpoint + sources + references -> sacreBLEU corpus BLEU and chrF, with signatures

A run folder holds `best/` (the lowest validation loss so far, or the highest validation BLEU
with select="bleu") and `last/` (with what --resume
needs), each with the two subword models as base64 text, `metrics.csv` (training and
validation loss, validation perplexity and greedy BLEU at each evaluation), `results.json`
and `curves.png`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from lstmkit.caller import warn_at_caller
from lstmkit.checkpoint import (
    CheckpointError,
    CheckpointKind,
    check_kind,
    checkpoint_folder,
    existing,
    load_model_checkpoint,
    read_config,
    read_extra_text,
)
from lstmkit.extras import extra_imports
from lstmkit.files import as_path
from lstmkit.models.modes import evaluating
from lstmkit.models.seq2seq import Seq2Seq, Seq2SeqConfig
from lstmkit.pipelines.configs import BLEU_TOKENIZERS, DecodingConfig, TranslationConfig
from lstmkit.received import received
from lstmkit.text.parallel import ParallelText, read_lines, read_parallel, sentence_list
from lstmkit.training.config import check_config, offset_seed
from lstmkit.training import Job, Processes, Trainer, check_resumed_settings, check_run_folder, resolve_device
from lstmkit.training.device import runnable_engines
from lstmkit.training.job import warn_if_one_batch_holds_all
from lstmkit.training.isolation import isolated_from_caller
from lstmkit.training.progress import Progress

with extra_imports("translate", __name__):
    import sacrebleu

    from lstmkit import plots
    from lstmkit.text.subwords import BOS_ID, EOS_ID, PAD_ID, Subwords, check_vocabulary_sizes

SUBWORD_FILES = {"source": "source.spm.b64", "target": "target.spm.b64"}
CURVES_FILE = "curves.png"  # the run's learning curves, beside its checkpoints
# exp() of a loss above this overflows a float: the perplexity is then inf.
LARGEST_EXPONENT = 700.0
# Sentences decoded at once by `translate` (beam search decodes beam times as many rows).
DECODE_BATCH = 64

__all__ = ["TranslationConfig", "TranslationRun", "TranslationScores", "Translator", "load_translator",
           "train_translation"]


@dataclass(frozen=True)
class Vocabularies:
    source: Subwords
    target: Subwords

    def encode(self, pairs: ParallelText) -> tuple[list[list[int]], list[list[int]]]:
        return encode_sources(self.source, pairs.sources), self.target.encode(pairs.targets)


def encode_sources(subwords: Subwords, sentences: list[str]) -> list[list[int]]:
    """Subword ids ending with the end token: never empty, and the encoder sees where a sentence ends."""
    return [ids + [EOS_ID] for ids in subwords.encode(sentences)]


def source_batch(sequences: list[list[int]], device: torch.device) -> tuple[Tensor, Tensor]:
    """(S, B) source ids padded with PAD_ID, and the lengths (B,)."""
    lengths = torch.tensor([len(ids) for ids in sequences])
    return padded(sequences, device), lengths


def padded(sequences: list[list[int]], device: torch.device) -> Tensor:
    """(T, B): the sequences as columns, padded with PAD_ID."""
    batch = torch.full((max(len(ids) for ids in sequences), len(sequences)), PAD_ID, dtype=torch.long)
    for column, ids in enumerate(sequences):
        batch[: len(ids), column] = torch.tensor(ids, dtype=torch.long)
    return batch.to(device)


def target_batch(sequences: list[list[int]], device: torch.device) -> tuple[Tensor, Tensor]:
    """Teacher forcing: the decoder reads <s> y_1..y_n and predicts y_1..y_n </s>."""
    return padded([[BOS_ID, *ids] for ids in sequences], device), padded([[*ids, EOS_ID] for ids in sequences], device)


def bucketed_batches(lengths: list[tuple[int, int]], batch_size: int, seed: int, processes: int = 1) -> list[list[int]]:
    """One epoch's batches: the pairs shuffled, cut into pools of 50 batches, each pool sorted
    by length (so a batch's sentences are of similar length and little of it is padding), cut
    into batches of the sizes Processes.batch_sizes gives `processes`, and the batches
    shuffled. The count is the same for every seed."""
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(lengths), generator=generator).tolist()
    pool = 50 * batch_size  # a multiple of the batch: only the last batch can be short
    by_length = [index for start in range(0, len(order), pool)
                 for index in sorted(order[start:start + pool], key=lambda index: lengths[index], reverse=True)]
    pooled = torch.tensor(by_length, dtype=torch.int64)
    batches = [batch.tolist() for batch in pooled.split(Processes(0, processes).batch_sizes(len(order), batch_size))]
    return [batches[index] for index in torch.randperm(len(batches), generator=generator).tolist()]


def decode_ids(model: Seq2Seq, sources: list[list[int]], beam: int, max_length: int, length_penalty: float,
               batch_size: int = DECODE_BATCH, progress: Progress | None = None) -> list[list[int]]:
    """Target ids for each source (ids ending with the end token), decoded in batches of
    similar lengths; beam 1 decodes greedily. A translation stops at `max_length` subwords,
    or at twice its source's length (its end token included) plus 10 if that is fewer, whatever
    else is in its batch.
    The sentences decoded go to `progress` after each batch."""
    device = next(model.parameters()).device
    order = sorted(range(len(sources)), key=lambda index: len(sources[index]), reverse=True)
    outputs: list[list[int]] = [[] for _ in sources]
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        source, lengths = source_batch([sources[index] for index in chunk], device)
        limits = (2 * lengths + 10).clamp(max=max_length)
        if beam == 1:
            decoded = model.greedy(source, lengths, limits)
        else:
            decoded = model.beam_search(source, lengths, beam, limits, length_penalty)
        for index, ids in zip(chunk, decoded, strict=True):
            outputs[index] = ids
        if progress is not None:
            progress.update(start + len(chunk), None)
    if progress is not None:
        progress.close(len(sources), None)
    return outputs


def check_scoring(tokenize: object, lowercase: object) -> None:
    """sacreBLEU's options, checked: a tokeniser it has without extra packages, a bool."""
    if not isinstance(tokenize, str) or tokenize not in BLEU_TOKENIZERS:
        raise ValueError(f"tokenize must be one of {', '.join(BLEU_TOKENIZERS)}, got {tokenize!r}")
    if not isinstance(lowercase, bool):  # "no" would read as true
        raise TypeError(f"lowercase must be True or False, got {received(lowercase)}")


def corpus_scores(hypotheses: list[str], references: list[str], tokenize: str = BLEU_TOKENIZERS[0],
                  lowercase: bool = False) -> tuple[sacrebleu.metrics.BLEU, ...]:
    """(BLEU metric, its score, chrF metric, its score) of detokenised text: sacreBLEU's defaults,
    cased and 13a-tokenised, or its `tokenize` and `lowercase` options (the signatures say which;
    `check_scoring` checks them)."""
    bleu = sacrebleu.metrics.BLEU(tokenize=tokenize, lowercase=lowercase)
    chrf = sacrebleu.metrics.CHRF(lowercase=lowercase)
    return bleu, bleu.corpus_score(hypotheses, [references]), chrf, chrf.corpus_score(hypotheses, [references])


class TranslationJob(Job):
    """Teacher forcing over length-bucketed batches of sentence pairs: epoch e's batches are
    shuffled from seed + e, so step s's batch depends on s alone and --resume needs no state.
    Several processes each take an equal share of a batch's sentences."""

    item = "token"

    def __init__(self, train: ParallelText, valid: ParallelText, vocabularies: Vocabularies,
                 config: TranslationConfig, processes: Processes, device: torch.device) -> None:
        processes.check_divides(config.batch_size, "batch_size (--batch-size, sentence pairs)")
        self.config, self.processes, self.device, self.vocabularies = config, processes, device, vocabularies
        sources, targets = vocabularies.encode(train)
        kept = [index for index, (source, target) in enumerate(zip(sources, targets, strict=True))  # the source
                if len(source) > 1 and target and max(len(source) - 1, len(target)) <= config.max_train_length]
        # ends with the end token, which max_train_length does not count (it left out pairs of exactly as many)
        if not kept:
            raise ValueError(f"no training pair has both sides non-empty and at most {config.max_train_length} "
                             "subwords (max_train_length, --max-train-length)")
        processes.check_shares(len(kept), "training pairs")  # a process without one failed at `max()` of none
        self.sources, self.targets = [sources[index] for index in kept], [targets[index] for index in kept]
        self.left_out = len(train) - len(kept)
        if self.left_out:  # said now, not after the hour of training it shapes
            warn_at_caller(f"left out {self.left_out:,} of {len(train):,} training pairs with an empty side or over "
                           f"{config.max_train_length} subwords (max_train_length, --max-train-length)")
        warn_if_one_batch_holds_all(config.batch_size, len(kept), "pairs")
        self.lengths = [(len(source), len(target)) for source, target in zip(self.sources, self.targets, strict=True)]
        mean_source = sum(length for length, _ in self.lengths) / len(self.lengths)
        self.valid_sources, self.valid_targets = vocabularies.encode(valid)
        self.valid_references = valid.targets
        self.valid_empty = [not source.strip() for source in valid.sources]  # translated as "", as `translate` does
        self.fingerprints = {**train.fingerprints, **valid.fingerprints}
        self.epoch_batches: tuple[int, list[list[int]]] = (-1, [])
        torch.manual_seed(config.seed)
        self.model = Seq2Seq(model_config(config, len(vocabularies.source), len(vocabularies.target),
                                          max(1, round(mean_source))))
        self.label = f"translate {config.cell} {config.num_layers}x{config.hidden_size} {config.attention}"
        self.evaluate_every_epoch = config.eval_every is None
        if config.select == "bleu":
            self.selection_metric, self.higher_is_better = "val_bleu", True

    def steps_per_epoch(self) -> int:
        return len(self.processes.batch_sizes(len(self.sources), self.config.batch_size))

    def batch(self, step: int) -> list[int]:
        epoch, index = divmod(step, self.steps_per_epoch())
        if self.epoch_batches[0] != epoch:
            self.epoch_batches = (epoch, bucketed_batches(self.lengths, self.config.batch_size,
                                                          offset_seed(self.config.seed, epoch),
                                                          self.processes.world_size))
        return self.epoch_batches[1][index]

    def train_loss(self, model, step: int) -> tuple[Tensor, int]:
        share = self.batch(step)[self.processes.rank::self.processes.world_size]
        source, lengths = source_batch([self.sources[index] for index in share], self.device)
        target_in, target_out = target_batch([self.targets[index] for index in share], self.device)
        logits = model(source, lengths, target_in)
        loss = F.cross_entropy(logits.flatten(0, 1).float(), target_out.flatten(), ignore_index=PAD_ID,
                               label_smoothing=self.config.label_smoothing)
        return loss, int((target_out != PAD_ID).sum())

    def evaluate(self) -> dict[str, float]:
        loss = validation_loss(self.model, self.valid_sources, self.valid_targets)
        scores = {"val_loss": loss, "val_ppl": math.exp(loss) if loss <= LARGEST_EXPONENT else math.inf}
        if self.config.validation_bleu:
            scores["val_bleu"] = corpus_scores(self.validation_translations(), self.valid_references)[1].score
        return scores

    def validation_translations(self) -> list[str]:
        """The greedy translations of the validation sources, "" for an empty one, as
        `Translator.translate` gives them: val_bleu is what `eval --beam 1` scores."""
        decoded = decode_ids(self.model, self.valid_sources, beam=1, max_length=DecodingConfig.max_length,
                             length_penalty=DecodingConfig.length_penalty)
        return ["" if empty else translation
                for empty, translation in zip(self.valid_empty, self.vocabularies.target.decode(decoded), strict=True)]

    def checkpoint_config(self) -> dict:
        return {"kind": TRANSLATION_MODEL.name, "model": self.model.config.to_dict()}

    def checkpoint_files(self) -> dict[str, str]:
        return {SUBWORD_FILES["source"]: self.vocabularies.source.to_text(),
                SUBWORD_FILES["target"]: self.vocabularies.target.to_text()}

    def data_fingerprint(self) -> dict[str, dict]:
        return self.fingerprints

    def check_resumable(self, saved: dict, directory: Path) -> None:
        if read_vocabularies(directory) != self.vocabularies:
            raise ValueError(f"the subword vocabularies differ from those {directory.parent} was trained with")


def model_config(config: TranslationConfig, source_size: int, target_size: int, source_length: int) -> Seq2SeqConfig:
    """The model `config` describes; `source_length` (subwords, the training sources' mean) is
    what chrono initialisation of the encoder prepares for unless chrono_max says."""
    return Seq2SeqConfig(config.cell, source_size, target_size, config.hidden_size, config.num_layers,
                         config.embedding_size, config.attention, config.dropout, config.tie_embeddings,
                         PAD_ID, BOS_ID, EOS_ID, config.engine, regularisers=config.regularisers(source_length))


def validation_loss(model: Seq2Seq, sources: list[list[int]], targets: list[list[int]], batch_size: int = 128) -> float:
    """Mean cross-entropy (nats per target token, end token included) under teacher forcing."""
    device = next(model.parameters()).device
    order = sorted(range(len(sources)), key=lambda index: len(sources[index]))
    total, count = 0.0, 0
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        source, lengths = source_batch([sources[index] for index in chunk], device)
        target_in, target_out = target_batch([targets[index] for index in chunk], device)
        logits = model(source, lengths, target_in)
        total += F.cross_entropy(logits.flatten(0, 1).float(), target_out.flatten(), ignore_index=PAD_ID,
                                 reduction="sum").item()
        count += int((target_out != PAD_ID).sum())
    return total / count


TRANSLATION_MODEL = CheckpointKind(
    "translation", "a translation model", "model",
    ("source_vocabulary_size", "target_vocabulary_size", "hidden_size", "embedding_size"),
    lambda section: Seq2Seq(Seq2SeqConfig(**section)),
)


def read_vocabularies(directory: Path) -> Vocabularies:
    """The two subword vocabularies saved with a checkpoint."""
    return Vocabularies(*(read_subwords(directory, SUBWORD_FILES[side]) for side in ("source", "target")))


def read_subwords(directory: Path, name: str) -> Subwords:
    text = read_extra_text(directory, name)
    try:
        return Subwords.from_text(text)
    except (ValueError, RuntimeError) as error:  # not base64; not a sentencepiece model
        raise CheckpointError(f"{existing(directory) / name} is not a subword vocabulary "
                              f"(a base64 sentencepiece model): {error}") from None


@dataclass
class TranslationRun:
    """The outcome of `lstmkit.translate.train`."""

    out: Path
    best_val_loss: float
    best_val_bleu: float | None
    steps: int
    seconds: float
    tokens_per_second: float
    left_out: int
    history: list[dict]
    device: str
    precision: str
    processes: int


@isolated_from_caller
def train_translation(source: str | Path, target: str | Path, valid_source: str | Path, valid_target: str | Path,
                      out: str | Path, config: TranslationConfig, resume: bool = False) -> TranslationRun:
    """Train (or, with resume, continue) a translation model from `source` to `target` sentences
    (plain or gzip, line k of each a pair), selecting on the validation pair of files. The
    subword vocabularies are learned from the training text (on resume: read from last/)."""
    check_config(config, TranslationConfig, "lstmkit.translate.TrainingConfig")
    out = as_path(out, "the run's folder")
    check_run_folder(out, resume, TRANSLATION_MODEL.name, (CURVES_FILE,))  # before the vocabularies are learned
    if resume:
        check_resumed_settings(out, config)
    train = read_parallel(source, target)
    valid = read_parallel(valid_source, valid_target, ("valid_source", "valid_target"), "translation")
    if resume and existing(out / "last").exists():
        last = existing(out / "last")
        check_kind(last, read_config(last), TRANSLATION_MODEL.name, f"a {TRANSLATION_MODEL.name!r} run to resume")
        vocabularies = read_vocabularies(last)
    else:
        check_vocabulary_sizes({  # both at once, by flag
            "source text (--source-vocabulary-size)": (train.sources, config.source_vocabulary_size),
            "target text (--target-vocabulary-size)": (train.targets, config.target_vocabulary_size)})
        vocabularies = Vocabularies(
            Subwords.learn(train.sources, config.source_vocabulary_size, config.seed, "source text"),
            Subwords.learn(train.targets, config.target_vocabulary_size, config.seed, "target text"))
    trainer = Trainer(config)
    job = TranslationJob(train, valid, vocabularies, config, trainer.processes, trainer.device)
    run = trainer.run(job, out, resume)
    if trainer.processes.main:
        plots.translation_curves(run.history, f"{job.label}: {Path(source).name} → {Path(target).name}",
                                 out / CURVES_FILE)
    best = run.best or {}
    return TranslationRun(out, best.get("val_loss", math.nan), best.get("val_bleu"), run.steps, run.seconds,
                          run.items_per_second, job.left_out, run.history, run.device, run.precision, run.processes)


@dataclass
class TranslationScores:
    """sacreBLEU's corpus BLEU and chrF of a model's translations against references."""

    bleu: float
    chrf: float
    sentences: int
    beam: int
    signature: str
    chrf_signature: str
    seconds: float
    translations: list[str]

    def to_dict(self) -> dict:
        return {"bleu": self.bleu, "chrf": self.chrf, "sentences": self.sentences, "beam": self.beam,
                "signature": self.signature, "chrf_signature": self.chrf_signature,
                "sentences_per_second": self.sentences / max(self.seconds, 1e-9)}


@dataclass
class Alignment:
    """The attention of one translation: weights[t, s] is how much target subword t drew on
    source subword s (each row sums to 1)."""

    source: list[str]
    target: list[str]
    weights: Tensor


@dataclass
class Translator:
    """A trained model with its subword vocabularies, ready to translate and be scored."""

    model: Seq2Seq
    vocabularies: Vocabularies
    config: dict

    def translate(self, sentences: list[str], beam: int = DecodingConfig.beam,
                  max_length: int = DecodingConfig.max_length,
                  length_penalty: float = DecodingConfig.length_penalty, progress: bool = False) -> list[str]:
        """One detokenised translation per sentence, an empty one for an empty sentence (beam
        1: greedy decoding; the defaults and their reasons: DecodingConfig); with `progress`,
        the sentences decoded so far on stderr (a bar on a terminal, a line every 30 s in a log)."""
        DecodingConfig(beam, max_length, length_penalty)  # checks them
        if not isinstance(progress, bool):
            raise TypeError(f"progress must be True or False, got {received(progress)}")
        sentences = [sentence.strip() for sentence in sentence_list(sentences, "sentences")]
        given = [index for index, sentence in enumerate(sentences) if sentence]
        translations = [""] * len(sentences)
        if given:
            sources = encode_sources(self.vocabularies.source, [sentences[index] for index in given])
            shown = Progress(f"translate beam {beam}", len(sources), unit="sentence") if progress else None
            with torch.no_grad(), evaluating(self.model):  # a model in training mode translates without dropout
                decoded = decode_ids(self.model, sources, beam, max_length, length_penalty, progress=shown)
            for index, translation in zip(given, self.vocabularies.target.decode(decoded), strict=True):
                translations[index] = translation
        return translations

    def score(self, sources: list[str], references: list[str], beam: int = DecodingConfig.beam,
              max_length: int = DecodingConfig.max_length,
              length_penalty: float = DecodingConfig.length_penalty, tokenize: str = BLEU_TOKENIZERS[0],
              lowercase: bool = False, progress: bool = False) -> TranslationScores:
        """Translate `sources` and score the translations against `references` (one per source)
        with sacrebleu's corpus BLEU (its `tokenize`r) and chrF, `lowercase` or cased; with
        `progress`, the sentences decoded so far on stderr (`translate`)."""
        sources, references = sentence_list(sources, "sources"), sentence_list(references, "references")
        if len(sources) != len(references):
            raise ValueError(f"{len(sources):,} sources and {len(references):,} references: each source needs one")
        if not sources:
            raise ValueError("no sentences to score: give at least one source and its reference")
        check_scoring(tokenize, lowercase)  # before the decoding, which takes a while
        started = time.perf_counter()
        translations = self.translate(sources, beam, max_length, length_penalty, progress)
        seconds = time.perf_counter() - started
        bleu, bleu_score, chrf, chrf_score = corpus_scores(translations, references, tokenize, lowercase)
        return TranslationScores(bleu_score.score, chrf_score.score, len(sources), beam, str(bleu.get_signature()),
                                 str(chrf.get_signature()), seconds, translations)

    def align(self, sentence: str, beam: int = DecodingConfig.beam, max_length: int = DecodingConfig.max_length,
              length_penalty: float = DecodingConfig.length_penalty) -> Alignment:
        """The attention weights of the model's translation of `sentence` (its subwords and
        the end token on both sides), read by feeding that translation back through the decoder."""
        if not isinstance(sentence, str):
            raise TypeError(f"sentence must be a string, got {type(sentence).__name__}")
        if self.model.attention is None:
            raise ValueError("this model has no attention (trained with attention 'none'): there is nothing to draw")
        if not sentence.strip():  # translate() gives it an empty translation; there is no attention to read
            raise ValueError("the sentence is empty: an empty sentence has no attention to draw")
        DecodingConfig(beam, max_length, length_penalty)  # checks them
        vocabularies, device = self.vocabularies, next(self.model.parameters()).device
        source_ids = encode_sources(vocabularies.source, [sentence.strip()])
        with torch.no_grad(), evaluating(self.model):
            target_ids = decode_ids(self.model, source_ids, beam, max_length, length_penalty)
            source, lengths = source_batch(source_ids, device)
            target_in, _ = target_batch(target_ids, device)
            _, weights = self.model(source, lengths, target_in, return_attention=True)
        return Alignment(vocabularies.source.pieces(source_ids[0]),
                         vocabularies.target.pieces(target_ids[0]) + ["</s>"], weights[:, 0].float().cpu())


@isolated_from_caller  # a load builds the model, drawing initial weights it replaces
def load_translator(directory: str | Path, device: str | torch.device = "cpu") -> Translator:
    """A trained model from a run folder (its best/ checkpoint) or a checkpoint folder, on `device`."""
    directory = checkpoint_folder(directory)
    config, model = load_model_checkpoint(directory, TRANSLATION_MODEL)
    vocabularies = read_vocabularies(directory)
    for side in ("source", "target"):
        size, expected = len(getattr(vocabularies, side)), getattr(model.config, f"{side}_vocabulary_size")
        if size != expected:
            raise CheckpointError(f"{existing(directory) / SUBWORD_FILES[side]} has {size} subwords, but the model's "
                                  f"{side}_vocabulary_size is {expected}")
    device = resolve_device(str(device))
    model.to(device)
    runnable_engines(model, device)  # a model trained with engine="triton" on a GPU runs on a CPU too
    model.eval()
    return Translator(model, vocabularies, config)


def read_sentences(path: str | Path) -> list[str]:
    """The lines of a plain or gzip UTF-8 file to translate, checked as the training files are,
    except that blank lines (each translated as an empty line) may be all it holds."""
    return read_lines(path, blank_lines=True)[0]
