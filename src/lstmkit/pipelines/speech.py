"""Speech recognition: a bidirectional recurrent stack trained with CTC on a manifest of
utterances; transcribe files with it; score it on a manifest.

    train       manifest -> log-mel frames (computed once per run) -> padded batches ->
                AcousticModel -> CTC loss, in the training core (AdamW, warm-up and cosine
                decay, clipping, budgets, checkpoints and --resume); every eval_every steps an
                evaluation: validation CTC loss, WER, CER and exact-match accuracy
    transcribe  run folder + audio files -> greedy or prefix-beam decoding -> text
    eval        run folder + manifest -> wer, cer, utterances, accuracy (jiwer)

Every file of a manifest is read, checked (readable, mono, long enough for its transcript)
and turned into frames before training starts, so a bad file stops the run at once, named.
"""

from __future__ import annotations

import functools
import hashlib
import os
import threading
import unicodedata
from collections import Counter, OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from lstmkit.audio.augment import Augmentation
from lstmkit.audio.features import AudioError, FrontEnd
from lstmkit.audio.manifest import ManifestError, Utterance, read_manifest, tidy_transcript
from lstmkit.caller import warn_at_caller
from lstmkit.checkpoint import CheckpointError, CheckpointKind, checkpoint_folder, load_model_checkpoint
from lstmkit.extras import extra_imports
from lstmkit.files import FIGURE_SUFFIXES, as_path, check_not_read, check_output_file, fingerprint
from lstmkit.models.acoustic import (
    BLANK, AcousticModel, AcousticModelConfig, Lexicon, checked_beam, ctc_frames_needed, greedy_decode,
    prefix_beam_search, stacked_length,
)
from lstmkit.models.modes import evaluating
from lstmkit.pipelines.configs import SpeechConfig
from lstmkit.received import received
from lstmkit.text.parallel import sentence_list
from lstmkit.training.config import check_config, offset_seed
from lstmkit.training import Job, Processes, Trainer, check_resumed_settings, check_run_folder, resolve_device
from lstmkit.training.device import runnable_engines
from lstmkit.training.job import warn_if_one_batch_holds_all
from lstmkit.training.isolation import isolated_from_caller

with extra_imports("speech", __name__):
    import jiwer

# Utterances per forward pass when scoring: as many as memory allows without padding waste.
EVALUATION_BATCH = 64

__all__ = ["Alphabet", "SpeechConfig", "SpeechRecognizer", "SpeechRun", "load_speech_model", "score_transcripts",
           "train_speech_model"]


@dataclass(frozen=True)
class Alphabet:
    """The characters a model writes; label 0 is the CTC blank, character i is label i + 1."""

    characters: str

    @classmethod
    def of(cls, texts: Sequence[str]) -> Alphabet:
        return cls("".join(sorted(set("".join(texts)))))

    def __len__(self) -> int:
        return len(self.characters) + 1  # with the blank

    def encode(self, text: str, where: object) -> list[int]:
        unknown = sorted(set(text) - set(self.characters))
        if unknown:
            raise ManifestError(f"{where}: the transcript {text!r} has characters the model does not know "
                                f"({''.join(unknown)!r}; it knows {self.characters!r})")
        return [self.characters.index(character) + 1 for character in text]

    def decode(self, labels: Sequence[int]) -> str:
        """The transcript of `labels`, tidied as a manifest's are (a stray space written at an
        end, or two between words, would score WER 0 but count against CER and accuracy)."""
        return tidy_transcript("".join(self.characters[label - 1] for label in labels))

    def lexicon(self, words: Sequence[str]) -> Lexicon:
        """The lexicon of `words`, a space between two words of a transcript."""
        separator = self.characters.index(" ") + 1 if " " in self.characters else None
        return Lexicon([self.encode(word, "the lexicon") for word in words], separator)


@dataclass
class Utterances:
    """The frames, labels and transcripts of a manifest's utterances."""

    paths: list[Path]
    texts: list[str]
    frames: list[Tensor]  # (frames, n_mels) each
    labels: list[list[int]]
    # each utterance's frames at the perturbed speeds that still fit its transcript (() without)
    versions: list[tuple[Tensor, ...]]

    def __len__(self) -> int:
        return len(self.paths)

    def batch(self, indices: Sequence[int], augmentation: Augmentation | None = None,
              seed: int = 0) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Padded frames (T, B, n_mels), their lengths, the concatenated labels and their lengths.
        With `augmentation`, the utterances as training hears them (`draw`)."""
        chosen = [self.frames[i] if augmentation is None else self.draw(i, augmentation, seed) for i in indices]
        frames = torch.nn.utils.rnn.pad_sequence(chosen)
        lengths = torch.tensor([len(frames) for frames in chosen])
        targets = torch.tensor([label for i in indices for label in self.labels[i]])
        return frames, lengths, targets, torch.tensor([len(self.labels[i]) for i in indices])

    def draw(self, i: int, augmentation: Augmentation, seed: int) -> Tensor:
        """Utterance i as training hears it: one of its versions (the original or a perturbed
        speed), warped and masked, all drawn from (seed, i) alone, so that the draw does not depend
        on the batch or on how many processes share it."""
        generator = torch.Generator().manual_seed(hash((seed, i)) % 2**63)
        frames = self.frames[i]
        if self.versions[i]:
            frames = (frames, *self.versions[i])[int(torch.randint(len(self.versions[i]) + 1, (), generator=generator))]
        return augmentation(frames, generator) if augmentation.active else frames


# The most bytes of frames kept between uses (the least recently used go first): FSDD's 3,000
# recordings at three speeds take ~150 MB, so a run's manifests and its evaluations afterwards
# compute each file once; a long-lived process transcribing ever new files holds no more.
FRAME_CACHE_BYTES = 512 * 2**20


class FrameCache:
    """Frames computed in this process, by file (path, size, modification time), front end and
    speed, the least recently used dropped beyond FRAME_CACHE_BYTES. Frames are shared, not
    copied: the loaders only read them. Threads at once compute apart and keep their books in
    turn: two that computed one file counted its bytes twice, and the count, never coming back
    down, emptied the cache at each file once past the limit."""

    def __init__(self, limit: int) -> None:
        self.limit, self.bytes, self.entries = limit, 0, OrderedDict()
        self.books = threading.Lock()

    def get(self, key: tuple, compute: Callable[[], tuple[Tensor, int | None]]) -> tuple[Tensor, int | None]:
        with self.books:
            if key in self.entries:
                self.entries.move_to_end(key)
                return self.entries[key]
        computed = compute()
        with self.books:
            if key in self.entries:  # another thread computed it meanwhile
                self.entries.move_to_end(key)
                return self.entries[key]
            self.entries[key] = computed
            self.bytes += computed[0].nbytes
            while self.bytes > self.limit and len(self.entries) > 1:
                self.bytes -= self.entries.popitem(last=False)[1][0].nbytes
        return computed


FRAMES = FrameCache(FRAME_CACHE_BYTES)


def forked() -> None:
    """A child forked while another thread kept the cache's books would wait for them for ever."""
    FRAMES.books = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=forked)


def utterance_frames(path: Path, front_end: FrontEnd, speed: float = 1.0) -> tuple[Tensor, int | None]:
    """A file's frames at a speed (cached, shared) and its own rate when it was resampled."""
    if not path.is_file():  # the front end's reading says what the path is instead (no such file, a folder)
        return front_end.features(path, speed)
    status = path.stat()
    key = (str(path.resolve()), status.st_size, status.st_mtime_ns, front_end, speed)
    return FRAMES.get(key, lambda: front_end.features(path, speed))


def load_utterances(manifest: str | Path, front_end: FrontEnd, alphabet: Alphabet | None, stack: int,
                    speeds: tuple[float, ...] = (), labelled: bool = True) -> tuple[Utterances, Alphabet]:
    """Every utterance of a manifest, read, checked and turned into frames, and into frames at
    each of `speeds` where those still fit its transcript; the alphabet of its transcripts when
    none is given. Files at another rate are resampled, and a warning says so. Unless
    `labelled` is False (transcripts only scored, not learned: no labels, and so no check that
    the alphabet spells a transcript and the file is long enough for it)."""
    utterances = read_manifest(manifest)
    alphabet = alphabet or Alphabet.of([utterance.text for utterance in utterances])
    frames, labels, versions, resampled = [], [], [], []
    for utterance in utterances:
        features, rate = utterance_frames(utterance.path, front_end)
        if rate is not None:
            resampled.append((utterance.path, rate))
        label = []
        if labelled:
            label = alphabet.encode(utterance.text, f"{manifest}, {utterance.path}")
            check_long_enough(utterance, len(features), label, front_end, stack)
        frames.append(features)
        labels.append(label)
        perturbed = (utterance_frames(utterance.path, front_end, speed)[0] for speed in speeds)
        versions.append(tuple(version for version in perturbed
                              if stacked_length(len(version), stack) >= ctc_frames_needed(label)))
    if resampled:
        path, rate = resampled[0]
        warn_at_caller(f"{len(resampled)} file(s) of {manifest} resampled to {front_end.sample_rate} Hz, the "
                       f"model's rate (e.g. {path} at {rate} Hz)")
    unwritable = [utterance.text for utterance in utterances if set(utterance.text) - set(alphabet.characters)]
    if unwritable:  # only where not `labelled`: encode refuses them otherwise
        unknown = sorted(set("".join(unwritable)) - set(alphabet.characters))
        warn_at_caller(f"{len(unwritable)} transcript(s) of {manifest} hold characters the model never writes "
                       f"({''.join(unknown)!r}, e.g. {unwritable[0]!r}), so they count as errors; it writes "
                       f"{alphabet.characters!r}")
    paths, texts = [u.path for u in utterances], [u.text for u in utterances]
    return Utterances(paths, texts, frames, labels, versions), alphabet


def check_long_enough(utterance: Utterance, frames: int, labels: list[int], front_end: FrontEnd, stack: int) -> None:
    """CTC needs a step per label (and a blank between repeats): a file too short for its
    transcript could never be learned, and its loss would be infinite."""
    steps, needed = stacked_length(frames, stack), ctc_frames_needed(labels)
    if steps < needed:
        raise AudioError(f"{utterance.path}: too short for its transcript {utterance.text!r}: its {frames} frames "
                         f"(one per {1000 / front_end.frame_rate:g} ms) give {steps} model steps (frames / stack "
                         f"{stack}), and the transcript needs {needed}")


@dataclass
class SpeechRun:
    """The outcome of `lstmkit.speech.train`."""

    out: Path
    best: dict | None
    steps: int
    seconds: float
    utterances_per_second: float
    history: list[dict]
    device: str
    precision: str
    processes: int


class SpeechJob(Job):
    """CTC over padded batches of utterances of similar length, drawn anew each epoch (those of
    epoch e from seed and e alone, so a resumed run draws the same batches); scored every
    eval_every steps on the validation utterances. Several processes each take a share of a batch."""

    item = "utterance"
    selection_metric = "val_wer"  # best/ is the checkpoint with the fewest word errors (the first of equals)
    goal_remedy = "resume without --stop-when-perfect to continue"

    def __init__(self, train: Utterances, validation: Utterances, alphabet: Alphabet, config: SpeechConfig,
                 sources: dict[str, dict], processes: Processes, device: torch.device) -> None:
        processes.check_divides(config.batch_size, "batch_size (--batch-size, utterances)")  # 1: an empty share
        processes.check_shares(len(train), "training utterances")
        warn_if_one_batch_holds_all(config.batch_size, len(train), "utterances")
        self.train, self.validation, self.alphabet, self.config = train, validation, alphabet, config
        self.sources, self.processes, self.device = sources, processes, device
        self.front_end, self.augmentation = config.front_end(), config.augmentation()
        # the words of the training transcripts, saved for decoding with a lexicon
        self.words = sorted({word for text in train.texts for word in text.split()})
        mean_steps = sum(len(frames) for frames in train.frames) / len(train) / config.stack
        torch.manual_seed(config.seed)
        self.model = AcousticModel(AcousticModelConfig(
            config.cell, config.n_mels, len(alphabet), config.hidden_size, config.num_layers, config.stack,
            config.dropout, config.engine, regularisers=config.regularisers(max(1, round(mean_steps))),
        ))
        self.loss = torch.nn.CTCLoss(blank=BLANK, zero_infinity=False)
        self.label = f"speech {config.cell} {config.num_layers}x{config.hidden_size} bidirectional"
        self.batches: tuple[int, list[Tensor]] = (-1, [])  # (epoch, its batches)

    def steps_per_epoch(self) -> int:
        return len(self.processes.batch_sizes(len(self.train), self.config.batch_size))

    def epoch_batches(self, epoch: int) -> list[Tensor]:
        """The batches of an epoch: utterances of similar length together (little padding),
        sorted by length jittered by up to a quarter, then cut and shuffled, all drawn from
        seed and epoch."""
        generator = torch.Generator().manual_seed(offset_seed(self.config.seed, epoch))
        lengths = torch.tensor([len(frames) for frames in self.train.frames], dtype=torch.float64)
        jittered = lengths * (1 + 0.25 * torch.rand(len(lengths), generator=generator, dtype=torch.float64))
        batches = jittered.argsort().split(self.processes.batch_sizes(len(lengths), self.config.batch_size))
        return [batches[i] for i in torch.randperm(len(batches), generator=generator)]

    def train_loss(self, model, step: int) -> tuple[Tensor, int]:
        epoch, position = divmod(step, self.steps_per_epoch())
        if self.batches[0] != epoch:
            self.batches = (epoch, self.epoch_batches(epoch))
        chosen = self.processes.shard(self.batches[1][position])
        frames, lengths, targets, target_lengths = self.train.batch(chosen.tolist(), self.augmentation,
                                                                    seed=hash((self.config.seed, epoch)))
        log_probs, steps = model(frames.to(self.device), lengths.to(self.device))
        return self.loss(log_probs, targets, steps.cpu(), target_lengths), len(chosen)

    def evaluate(self) -> dict[str, float]:
        losses, hypotheses = decode_utterances(self.model, self.validation, self.config.beam)
        scores = score_transcripts(self.validation.texts, [self.alphabet.decode(h) for h in hypotheses])
        return {"val_loss": sum(losses) / len(losses), "val_wer": scores["wer"], "val_cer": scores["cer"],
                "val_accuracy": scores["accuracy"]}

    def goal_reached(self, scores: dict[str, float]) -> str | None:
        if self.config.stop_when_perfect and scores["val_accuracy"] == 1.0:
            return "transcribed every validation utterance exactly, which ends a run under --stop-when-perfect"
        return None

    def checkpoint_config(self) -> dict:
        return {"kind": SPEECH_MODEL.name, "model": self.model.config.to_dict(),
                "front_end": self.front_end.to_dict(), "alphabet": self.alphabet.characters,
                "words": self.words}

    def data_fingerprint(self) -> dict[str, dict]:
        return self.sources

    def check_resumable(self, saved: dict, directory: Path) -> None:
        if saved.get("alphabet") != self.alphabet.characters:
            raise ValueError(f"the transcripts' characters ({self.alphabet.characters!r}) differ from those "
                             f"{directory.parent} was trained on ({saved.get('alphabet')!r}): resume with the same data")


def decode_utterances(model: AcousticModel, utterances: Utterances, beam: int, loss: bool = True,
                      lexicon: Lexicon | None = None) -> tuple[list[float], list[list[int]]]:
    """Each utterance's CTC loss (per label) and decoded labels, in batches of similar length."""
    parameter = next(model.parameters())  # frames in its dtype: a model moved to float64 or bfloat16 runs
    order = sorted(range(len(utterances)), key=lambda i: len(utterances.frames[i]))
    losses, hypotheses = [0.0] * len(utterances), [[]] * len(utterances)
    for start in range(0, len(order), EVALUATION_BATCH):
        chosen = order[start:start + EVALUATION_BATCH]
        frames, lengths, targets, target_lengths = utterances.batch(chosen)
        with torch.no_grad():
            log_probs, steps = model(frames.to(parameter.device, parameter.dtype), lengths.to(parameter.device))
            if loss:
                per_utterance = torch.nn.functional.ctc_loss(log_probs, targets, steps.cpu(), target_lengths,
                                                             blank=BLANK, reduction="none")
        log_probs = log_probs.to("cpu", torch.promote_types(log_probs.dtype, torch.float32))  # NumPy has no bfloat16
        for column, index in enumerate(chosen):
            if loss:
                losses[index] = per_utterance[column].item() / max(1, len(utterances.labels[index]))
            hypotheses[index] = decode(log_probs[: steps[column], column], beam, lexicon)
    return losses, hypotheses


def decode(log_probs: Tensor, beam: int, lexicon: Lexicon | None = None) -> list[int]:
    """Greedy (beam 1) or prefix beam search over one utterance's (T, V) log-probabilities;
    with a lexicon, always the search (of `beam` prefixes), held to the lexicon's words."""
    beam = checked_beam(beam)  # before greedy decoding takes True for 1
    if len(log_probs) == 0:  # no step: nothing said (torch's CTC loss, which scores a lexicon's words, refuses it)
        return []
    if beam == 1 and lexicon is None:
        return greedy_decode(log_probs)
    return prefix_beam_search(log_probs, beam, lexicon=lexicon)


def checked_log_probs(log_probs: object, labels: int) -> Tensor:
    """One utterance's log-probabilities (steps, `labels`), a tensor or NumPy array, checked,
    on the CPU in float32 at least (NumPy, which the search runs in, has no bfloat16)."""
    if isinstance(log_probs, np.ndarray):  # a copy: a reversed view or a read-only array is taken too
        log_probs = torch.from_numpy(np.array(log_probs))
    if not isinstance(log_probs, Tensor) or not log_probs.is_floating_point():
        given = f"a tensor of {log_probs.dtype}" if isinstance(log_probs, Tensor) else received(log_probs)
        raise TypeError(f"expected one utterance's log-probabilities, a floating-point tensor of shape (steps, "
                        f"{labels}), got {given}")
    if log_probs.dim() != 2 or log_probs.shape[1] != labels:
        batched = log_probs.dim() == 3 and log_probs.shape[2] == labels
        raise ValueError(f"expected one utterance's log-probabilities of shape (steps, {labels}), got shape "
                         f"{tuple(log_probs.shape)}" + ("; the model's own output is (steps, batch, labels): give one "
                                                       "utterance's, log_probs[:, 0]" if batched else ""))
    return log_probs.to("cpu", torch.promote_types(log_probs.dtype, torch.float32))


def score_transcripts(references: Sequence[str], hypotheses: Sequence[str]) -> dict[str, float]:
    """Word and character error rates (jiwer: edit operations over reference length, every
    utterance pooled), the number of utterances, and the fraction transcribed exactly, both
    sides' white space tidied first as a manifest's is, so that all three agree on what is exact."""
    references, hypotheses = sentence_list(references, "references"), sentence_list(hypotheses, "hypotheses")
    references, hypotheses = ([tidy_transcript(text) for text in texts] for texts in (references, hypotheses))
    if len(references) != len(hypotheses) or not references:
        raise ValueError(f"expected one hypothesis per reference, at least one of each; got {len(references)} "
                         f"reference(s) and {len(hypotheses)} hypothesis(es)")
    return {"wer": jiwer.wer(references, hypotheses), "cer": jiwer.cer(references, hypotheses),
            "utterances": len(references),
            "accuracy": sum(r == h for r, h in zip(references, hypotheses)) / len(references)}


def check_isolated_words(references: Sequence[str]) -> None:
    """Refuse references of more than one word, which a confusion table cannot count."""
    several = next((reference for reference in references if len(reference.split()) != 1), None)
    if several is not None:
        raise ValueError(f"a confusion table needs one word per reference; this manifest has utterances of several "
                         f"(e.g. {several!r})")


def confusion_table(references: Sequence[str], transcripts: Sequence[str]) -> str:
    """A table of how often each reference word was transcribed as each word (rows: what was
    said; columns: what was written, "(other)" for a transcript that is no reference word), in
    the order the words first appear. For isolated words only; a reference word "other" is a
    word like any (words hold no brackets: the catch-all column cannot be one)."""
    check_isolated_words(references)
    words = list(dict.fromkeys(references))
    counts = Counter((reference, transcript if transcript in words else None)
                     for reference, transcript in zip(references, transcripts))
    columns = [*words, None]
    width = max(shown_width(word) for word in words + [str(len(references))])
    widths = [width] * len(words) + [max(width, len("(other)"))]
    labels = [*words, "(other)"]
    lines = [" " * width + " | " + " ".join(right_aligned(label, each)
                                             for label, each in zip(labels, widths, strict=True))]
    for reference in words:
        cells = [str(counts[reference, column] or ".") for column in columns]
        lines.append(f"{right_aligned(reference, width)} | "
                     + " ".join(right_aligned(cell, each) for cell, each in zip(cells, widths, strict=True)))
    return "\n".join(lines)


def shown_width(text: str) -> int:
    """The columns `text` takes on a terminal: none for a mark or a format character
    (combining U+0308, Devanagari's anusvara), two for a wide one (Chinese, Japanese, Korean)."""
    return sum(0 if unicodedata.category(character) in ("Mn", "Me", "Cf")
               else 2 if unicodedata.east_asian_width(character) in "WF" else 1 for character in text)


def right_aligned(text: str, width: int) -> str:
    return " " * (width - shown_width(text)) + text


def audio_fingerprint(utterances: Utterances) -> dict:
    """The size and SHA-256 of the audio files of `utterances`, in the manifest's order, read
    one at a time (files.fingerprint of them all, without holding them all)."""
    digest, size = hashlib.sha256(), 0
    for path in utterances.paths:
        data = path.read_bytes()
        digest.update(data)
        size += len(data)
    return {"bytes": size, "sha256": digest.hexdigest()}


@isolated_from_caller
def train_speech_model(train: str | Path, out: str | Path, config: SpeechConfig,
                       validation: str | Path | None = None, resume: bool = False) -> SpeechRun:
    """Train (or, with resume, continue training) a recogniser on the utterances of the manifest
    `train`, scored on those of `validation` (without one, on the training utterances: a
    check of fit, not of generalisation)."""
    check_config(config, SpeechConfig, "lstmkit.speech.SpeechConfig")
    out = as_path(out, "the run's folder")  # required: the run object holds no model
    check_run_folder(out, resume, SPEECH_MODEL.name)  # before the audio is read
    if resume:
        check_resumed_settings(out, config)
    front_end = config.front_end()
    train_set, alphabet = load_utterances(train, front_end, None, config.stack, config.speed_perturbation)
    validation_set = train_set if validation is None else load_utterances(validation, front_end, alphabet,
                                                                           config.stack)[0]
    if validation is None:
        warn_at_caller(f"no validation manifest: the validation scores and the best checkpoint are those of the "
                       f"training utterances ({train}), which measure fit, not recognition of new speech; give one "
                       "(--valid) to score on held-out speakers or recordings")
    # each manifest and the audio it lists: a resumed run refuses the same manifest over other recordings
    sources = {"train": fingerprint(Path(train).read_bytes()), "train audio": audio_fingerprint(train_set)}
    if validation is not None:
        sources |= {"validation": fingerprint(Path(validation).read_bytes()),
                    "validation audio": audio_fingerprint(validation_set)}
    trainer = Trainer(config)
    job = SpeechJob(train_set, validation_set, alphabet, config, sources, trainer.processes, trainer.device)
    run = trainer.run(job, out, resume)
    return SpeechRun(out, run.best, run.steps, run.seconds, run.items_per_second,
                     run.history, run.device, run.precision, run.processes)


SPEECH_MODEL = CheckpointKind(
    "speech_model", "a speech recogniser", "model", ("input_size", "vocabulary_size", "hidden_size"),
    lambda section: AcousticModel(AcousticModelConfig(**section)),
)


@dataclass
class SpeechRecognizer:
    """A trained acoustic model with its front end and alphabet, ready to transcribe and score;
    `words`, those of its training transcripts, make the lexicon that `lexicon=True` holds
    transcripts to (None: a checkpoint saved before words were)."""

    model: AcousticModel
    front_end: FrontEnd
    alphabet: Alphabet
    words: tuple[str, ...] | None = None

    def lexicon(self, use: bool) -> Lexicon | None:
        if not isinstance(use, bool | np.bool_):  # "yes" or "no" was taken as True
            raise TypeError(f"lexicon must be True or False, got {received(use)}")
        return self.word_lexicon if use else None

    @functools.cached_property
    def word_lexicon(self) -> Lexicon:
        """The lexicon of `words`, built once."""
        if not self.words:
            raise CheckpointError("this checkpoint was saved without the words of its training transcripts, "
                                  "which the lexicon needs: train it again to decode with --lexicon")
        return self.alphabet.lexicon(self.words)

    def posteriors(self, path: str | Path) -> tuple[Tensor, Tensor, int | None]:
        """A file's frames (frames, n_mels), the model's per-step log-probabilities (steps, V)
        and the file's own rate when it was resampled; a warning for a silent file."""
        if not isinstance(path, (str, Path)):
            items = path.tolist() if hasattr(path, "tolist") else path  # a Series or an array of paths too
            several = isinstance(items, (list, tuple)) and all(isinstance(item, (str, Path)) for item in items)
            raise TypeError(f"expected the path of one audio file, got {type(path).__name__}; " + (
                "for several, call once per file: [recognizer.transcribe(path) for path in paths]" if several else
                "samples or a file object: write them to a file (soundfile.write) and give its path"))
        frames, rate = utterance_frames(Path(path), self.front_end)
        frames = frames.clone()  # the caller's own: the cache's stay as computed
        if not frames.any():  # normalised log-mel energies that never change: every sample the same
            warn_at_caller(f"{path} is silent (its spectrogram is the same in every frame): the transcript is "
                           "what the model makes of silence")
        parameter = next(self.model.parameters())
        with torch.no_grad(), evaluating(self.model):  # a model in training mode decodes without dropout
            log_probs, _ = self.model(frames.unsqueeze(1).to(parameter.device, parameter.dtype),
                                      torch.tensor([len(frames)], device=parameter.device))
        return frames, log_probs[:, 0].to("cpu", torch.promote_types(log_probs.dtype, torch.float32)), rate

    def decode(self, log_probs: Tensor, beam: int = 1, lexicon: bool = False) -> str:
        """The transcript of (steps, V) log-probabilities: greedy (beam 1) or prefix beam search,
        with `lexicon` held to the training transcripts' words."""
        return self.alphabet.decode(decode(checked_log_probs(log_probs, len(self.alphabet)), beam,
                                           self.lexicon(lexicon)))

    def transcribe(self, path: str | Path, beam: int = 1, lexicon: bool = False) -> str:
        """The transcript of one audio file (resampled to the model's rate, with a warning, where
        its own differs)."""
        _, log_probs, rate = self.posteriors(path)
        if rate is not None:
            warn_at_caller(f"{path} resampled from {rate} Hz to {self.front_end.sample_rate} Hz, the model's rate")
        return self.decode(log_probs, beam, lexicon)

    def evaluate(self, manifest: str | Path, beam: int = 1,
                 lexicon: bool = False) -> tuple[dict[str, float], list[str], list[str]]:
        """The scores of the model on a manifest, with its references and transcripts."""
        utterances, _ = load_utterances(manifest, self.front_end, self.alphabet, self.model.config.stack,
                                        labelled=False)  # a transcript the model cannot spell counts as an error
        with evaluating(self.model):
            _, hypotheses = decode_utterances(self.model, utterances, beam, loss=False, lexicon=self.lexicon(lexicon))
        transcripts = [self.alphabet.decode(labels) for labels in hypotheses]
        return score_transcripts(utterances.texts, transcripts), utterances.texts, transcripts

    def show(self, path: str | Path, image: str | Path, beam: int = 1, lexicon: bool = False) -> str:
        """Draw the file's log-mel spectrogram, the per-step label probabilities and the greedy
        CTC alignment (the likeliest label at each step) into the PNG `image`; the transcript, by
        `beam` and `lexicon`, which the title names where they may differ from that alignment."""
        from lstmkit.plots import draw_speech

        # as `transcribe --show` checks it: a recording or a checkpoint's weights were overwritten with PNG bytes
        check_output_file(image, "", FIGURE_SUFFIXES)
        check_not_read({"the image": image}, {"the audio file": path})
        frames, log_probs, _ = self.posteriors(path)
        transcript = self.decode(log_probs, beam, lexicon)
        decoding = ", ".join(([f"beam {beam}"] if beam > 1 else []) + (["lexicon"] if lexicon else []))
        title = f"{Path(path).name}: {transcript!r}" + (f" ({decoding})" if decoding else "")
        draw_speech(image, frames, log_probs.exp(), ["_", *self.alphabet.characters], self.model.config.stack,
                    self.front_end.frame_rate, title)
        return transcript


@isolated_from_caller  # a load builds the model, drawing initial weights it replaces
def load_speech_model(directory: str | Path, device: str | torch.device = "cpu") -> SpeechRecognizer:
    """A trained recogniser from a run folder (its best/ checkpoint) or a checkpoint folder."""
    directory = checkpoint_folder(directory)
    config, model = load_model_checkpoint(directory, SPEECH_MODEL)
    try:
        front_end, alphabet = FrontEnd(**config["front_end"]), Alphabet(config["alphabet"])
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{directory}/config.json lacks a valid front_end or alphabet: {error!r}") from None
    if len(alphabet) != model.config.vocabulary_size:
        raise CheckpointError(f"{directory}/config.json: the alphabet has {len(alphabet) - 1} characters, but "
                              f"the model's vocabulary_size is {model.config.vocabulary_size} (with the blank)")
    if front_end.n_mels != model.config.input_size:
        raise CheckpointError(f"{directory}/config.json: the front_end's n_mels is {front_end.n_mels}, but the model "
                              f"reads frames of input_size {model.config.input_size}")
    device = resolve_device(str(device))
    model.to(device)
    runnable_engines(model, device)  # a model trained with engine="triton" on a GPU runs on a CPU too
    model.eval()
    words = config.get("words")
    if words is not None and not (isinstance(words, list) and all(isinstance(word, str) and word for word in words)):
        raise CheckpointError(f"{directory}/config.json: words must be a list of non-empty strings, got {words!r}")
    return SpeechRecognizer(model, front_end, alphabet, tuple(words) if words is not None else None)
