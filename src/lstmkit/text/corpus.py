"""Text in, token streams out: reading and checking files, splitting, contiguous streams."""

from __future__ import annotations

import math
import random
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from torch import Tensor

from lstmkit.caller import warn_at_caller
from lstmkit.files import check_input_file, decoded_utf8, fingerprint, gunzipped, warn_unless_composed
from lstmkit.text.vocabulary import Vocabulary, warn_unknown


def line_feeds(text: str) -> str:
    """`text` with Windows' line ends (CR LF) and old Macs' (CR) as line feeds, as Python's text
    files read them."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


def read_text(path: str | Path) -> str:
    """The contents of a UTF-8 text file, plain or gzip, with Windows (CR LF) and old Mac (CR)
    line ends read as line feeds, or an error that says what is wrong with it."""
    path = check_input_file(path, "a UTF-8 text file")
    data = gunzipped(path.read_bytes(), path)  # a pipe too, such as <(tail -c 100000 input.txt)
    if not data:
        raise ValueError(f"{path} is empty: a language model needs text to learn from or to score")
    text = decoded_utf8(data, path, "a UTF-8 text file")
    if not text.strip():
        raise ValueError(f"{path} holds only whitespace: a language model needs text to learn from or to score")
    text = line_feeds(text)
    if not unicodedata.is_normalized("NFC", text):
        warn_unless_composed(enumerate(text.split("\n"), start=1), path)
    return text


@dataclass(frozen=True)
class Corpus:
    """A tokenised training and validation text.

    `*_characters` count the characters of each text, for bits per character; `sources`
    fingerprints the texts read ("text", and "validation" when it is a file of its own).
    """

    vocabulary: Vocabulary
    train: Tensor
    validation: Tensor
    train_characters: int
    validation_characters: int
    sources: dict[str, dict]


LINE_BREAK, WHITE_SPACE = re.compile("\n"), re.compile(r"\s")


def split_text(text: str, validation_fraction: float, level: str) -> tuple[str, str]:
    """The first (1 - fraction) of the characters for training, the rest for validation (the
    split moved, at word level, to the next line break, or where no text follows that one (the
    cut falls in the last line) to the next white space, or where the cut falls in the last word,
    back to the white space before it, so that no word is cut)."""
    if not 0 < validation_fraction < 1:
        raise ValueError(f"validation_fraction must be in (0, 1), got {validation_fraction}")
    split = int(len(text) * (1 - validation_fraction))
    if level == "word":
        boundaries = (LINE_BREAK.search(text, split), WHITE_SPACE.search(text, split))
        split = next((boundary.end() for boundary in boundaries
                      if boundary is not None and text[boundary.end():].strip()), None)
        if split is None:  # the cut falls in the last word, or in the white space after it
            words = text.rstrip()
            space = WHITE_SPACE.search(words[::-1])  # the last white space before the last word
            split = len(words) - space.start() if space else len(text)
    train, validation = text[:split], text[split:]
    if level == "word" and not WHITE_SPACE.search(text.strip()):  # 20,000 letters of DNA were "too short"
        raise ValueError(f"the text is a single word ({len(text.strip()):,} characters without white space), which "
                         "word level cannot split into training and validation parts; train it at character level "
                         "(--level char)")
    if not train.strip() or not validation.strip():
        raise ValueError(
            f"the text is too short to split: {len(text)} characters leave an empty training or validation part"
        )
    return train, validation


# A validation text at least this long found within the training text was trained on (a short
# one, a line or a name, may be there by chance).
SEEN_TEXT = 200


def load_corpus(
    train_path: str | Path,
    validation_path: str | Path | None = None,
    level: str = "char",
    min_frequency: int = 1,
    validation_fraction: float = 0.1,
    by_frequency: bool = False,
    resumed: Vocabulary | None = None,
) -> Corpus:
    """Read, split (the last `validation_fraction` validates, unless a validation file is
    given), build the vocabulary (its tokens most frequent first with `by_frequency`, for an
    adaptive softmax, else sorted) and tokenise. `resumed`: the vocabulary of the run being
    resumed, whose order is kept where it holds the same tokens in another (an earlier lstmkit
    numbered an adaptive softmax's words alphabetically), with a warning.

    Character level: the vocabulary is every character of both texts (an alphabet leaks
    nothing). Word level: words of the training text only; unseen words become <unk>.
    """
    text = read_text(train_path)
    sources = {"text": fingerprint(text.encode("utf-8"))}
    if validation_path is None:
        train_text, validation_text = split_text(text, validation_fraction, level)
    else:
        train_text, validation_text = text, read_text(validation_path)
        sources["validation"] = fingerprint(validation_text.encode("utf-8"))
        if len(validation_text) >= SEEN_TEXT and validation_text in train_text:
            same = "is the training text" if validation_text == train_text else "is part of the training text"
            warn_at_caller(f"the validation text {validation_path} {same} ({train_path}): its scores measure how "
                           "well the model fits text it trained on, not text it has not seen, and best/ keeps the "
                           "model that fits it most; give a text of its own, or leave the validation file out to "
                           f"hold out the last {validation_fraction:.0%} of the training text")
    vocabulary = Vocabulary.build(
        train_text + validation_text if level == "char" else train_text, level, min_frequency, by_frequency
    )
    if resumed is not None and resumed.tokens != vocabulary.tokens and set(resumed.tokens) == set(vocabulary.tokens):
        vocabulary = resumed
        warn_at_caller("the run resumed keeps its tokens numbered alphabetically, as an earlier lstmkit numbered them "
                       "when it began: its adaptive softmax's head holds the first tokens of the alphabet, not the "
                       "most frequent, which costs it loss (0.5 nats after 300 steps on Tiny Shakespeare); a run "
                       "begun now in another folder (--out) numbers them most frequent first")
    validation_tokens = vocabulary.encode(validation_text, "the validation text")
    warn_unknown(vocabulary, validation_text, validation_tokens, "the validation text",
                 "are scored as <unk>: the validation loss and perplexity are not those of these words, and the bits "
                 "per character, which spread the loss over their characters too, are below the text's (not "
                 "comparable with a character model's)")
    return Corpus(
        vocabulary,
        vocabulary.encode(train_text, "the training text"),
        validation_tokens,
        len(train_text),
        len(validation_text),
        sources,
    )


def to_streams(tokens: Tensor, batch_size: int) -> Tensor:
    """(batch_size, length): the tokens cut into batch_size contiguous streams of equal length
    (the few left over are dropped)."""
    length = tokens.numel() // batch_size
    return tokens[: length * batch_size].view(batch_size, length)


@dataclass(frozen=True)
class StreamWindows:
    """Truncated-backpropagation windows over contiguous streams.

    Window k holds inputs streams[:, k L : k L + L] and the tokens one step later as
    targets; the state at the end of window k starts window k + 1.
    """

    streams: Tensor
    seq_len: int

    def __post_init__(self) -> None:
        if self.streams.shape[1] < 2:
            raise ValueError(
                f"each stream needs at least 2 tokens (an input and its target), got {self.streams.shape[1]}"
            )

    def __len__(self) -> int:
        return math.ceil((self.streams.shape[1] - 1) / self.seq_len)

    def window(self, index: int) -> tuple[Tensor, Tensor]:
        """(inputs, targets), each (L, batch), time-major."""
        return self.span(index * self.seq_len, self.seq_len)

    def span(self, start: int, length: int) -> tuple[Tensor, Tensor]:
        """The window of `length` steps from `start` (shorter at the streams' end)."""
        stop = min(start + length, self.streams.shape[1] - 1)
        return self.streams[:, start:stop].t(), self.streams[:, start + 1 : stop + 1].t()

    def random_lengths(self, seed: int) -> list[tuple[int, int]]:
        """One pass over the streams in windows of random length, as (start, length): AWD-LSTM's
        variable-length backpropagation through time (Merity et al. 2018), where each window
        is L (with probability 0.95) or L/2, plus normal noise of deviation 5, at least 5
        steps (or L, if shorter) and at most L + 40. The windows' boundaries then move from
        pass to pass, so every token is learnt from contexts of every length."""
        generator = random.Random(seed)
        last, start, windows = self.streams.shape[1] - 1, 0, []
        while start < last:
            base = self.seq_len if generator.random() < 0.95 else self.seq_len / 2
            length = max(min(5, self.seq_len), int(generator.gauss(base, 5)))
            length = min(length, self.seq_len + 40, last - start)
            windows.append((start, length))
            start += length
        return windows

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        return (self.window(index) for index in range(len(self)))


def token_streams(tokens: Tensor, batch_size: int, seq_len: int, what: str, more: str = "more text") -> StreamWindows:
    """Windows over `tokens` cut into `batch_size` streams, or an error naming what is short
    and how to give `more`."""
    needed = 2 * batch_size
    if tokens.numel() < needed:
        raise ValueError(
            f"{what} has {tokens.numel()} token{'s' * (tokens.numel() != 1)}; {batch_size} stream"
            f"{'s' * (batch_size != 1)} need{'s' * (batch_size == 1)} at least {needed} "
            f"(an input and a target each): {'lower --batch-size or ' * (batch_size > 1)}give {more}"
        )
    return StreamWindows(to_streams(tokens, batch_size), seq_len)
