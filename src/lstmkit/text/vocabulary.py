"""Vocabularies: characters, or whitespace-separated words with an end-of-line token."""

from __future__ import annotations

import unicodedata
from collections import Counter
from dataclasses import dataclass, field

import torch
from torch import Tensor

from lstmkit.caller import warn_at_caller

LEVELS = ("char", "word")
UNKNOWN = "<unk>"
END_OF_LINE = "<eol>"
# More of the training text's words than this share left out by min_frequency (read as <unk>)
# earns a warning: the model then mostly learns to predict <unk>.
MOST_UNKNOWN = 0.5


def tokenize(text: str, level: str) -> list[str]:
    """Characters, or words split on whitespace with END_OF_LINE for every line break."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    if level not in LEVELS:
        raise ValueError(f"level must be one of {', '.join(LEVELS)}, got {level!r}")
    if level == "char":
        return list(text)
    *lines, last = text.split("\n")
    tokens = []
    for line in lines:
        tokens.extend(line.split())
        tokens.append(END_OF_LINE)
    tokens.extend(last.split())
    return tokens


@dataclass(frozen=True)
class Vocabulary:
    """The tokens a language model knows, in index order.

    Character level: every character of the training text. Word level: every word seen at
    least `min_frequency` times, END_OF_LINE, and UNKNOWN for the rest. In sorted order, or,
    `by_frequency`, the most frequent first (ties sorted), as an adaptive softmax wants them:
    its head is the tokens below its first boundary.
    """

    level: str
    tokens: tuple[str, ...]
    index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.level not in LEVELS:
            raise ValueError(f"level must be one of {', '.join(LEVELS)}, got {self.level!r}")
        object.__setattr__(self, "index", {token: position for position, token in enumerate(self.tokens)})

    @classmethod
    def build(cls, text: str, level: str, min_frequency: int = 1, by_frequency: bool = False) -> Vocabulary:
        if level not in LEVELS:
            raise ValueError(f"level must be one of {', '.join(LEVELS)}, got {level!r}")
        if min_frequency < 1:
            raise ValueError(f"min_frequency must be at least 1, got {min_frequency}")
        counts = Counter(tokenize(text, level))
        kept = sorted((token for token, count in counts.items() if count >= min_frequency),
                      key=(lambda token: (-counts[token], token)) if by_frequency else None)
        if level == "word":
            check_words_kept(counts, min_frequency)
            kept = [UNKNOWN, END_OF_LINE] + [token for token in kept if token not in (UNKNOWN, END_OF_LINE)]
        return cls(level, tuple(kept))

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, text: str, what: str = "text") -> torch.Tensor:
        """Token indices of `text`, int64. Unknown words become UNKNOWN; an unknown character
        is an error naming it (a character model has no way to represent it)."""
        if not isinstance(text, str):
            hint = ": decode it first (data.decode('utf-8'))" if isinstance(text, (bytes, bytearray)) else ""
            raise TypeError(f"{what} must be a str, got {type(text).__name__}{hint}")
        tokens = tokenize(text, self.level)
        if self.level == "word":
            unknown = self.index[UNKNOWN]
            return torch.tensor([self.index.get(token, unknown) for token in tokens], dtype=torch.int64)
        missing = sorted(set(tokens) - set(self.index))
        if missing:
            shown = ", ".join(f"{character!r} (U+{ord(character):04X})" for character in missing[:10])
            more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
            raise ValueError(f"{what} has characters the model's vocabulary lacks: {shown}{more}"
                             f"{self.composed_hint(text, missing)}")
        return torch.tensor([self.index[token] for token in tokens], dtype=torch.int64)

    def composed_hint(self, text: str, missing: list[str]) -> str:
        """Where `text` is written decomposed (NFD: an accent as a mark after its letter, Hangul
        as its jamo) and composing it reads more of it: which it then reads, which it would lack
        that it does not now (a letter its mark composes into), and how many stay missing (listed
        once, above)."""
        composed = unicodedata.normalize("NFC", text)
        if composed == text:
            return ""
        left = sorted(set(tokenize(composed, self.level)) - set(self.index))
        created = set(tokenize(composed, self.level)) - set(tokenize(text, self.level))
        if len(left) >= len(missing) or not created & set(self.index):  # composing makes nothing readable
            return ""
        if not left:
            return ("; the text is written decomposed: composed, unicodedata.normalize('NFC', text), it lacks none of "
                    "them")
        def shown(characters: list[str]) -> str:
            return ", ".join(f"{character!r} (U+{ord(character):04X})" for character in characters)

        hint = (f"; part of the text is written decomposed: composed, unicodedata.normalize('NFC', text), it would "
                f"no longer lack {shown([character for character in missing if character not in left])}")
        new = [character for character in left if character not in missing]
        if new:
            hint += f", but would lack {shown(new)}"
        still = len(left) - len(new)
        return hint + (f", and still {still} other character{'s' if still != 1 else ''}" if still else "")

    def decode(self, indices: list[int]) -> str:
        """The text of token indices: characters joined, or words joined by spaces with
        END_OF_LINE as a line break."""
        tokens = [self.tokens[position] for position in indices]
        if self.level == "char":
            return "".join(tokens)
        lines, line = [], []
        for token in tokens:
            if token == END_OF_LINE:
                lines.append(" ".join(line))
                line = []
            else:
                line.append(token)
        lines.append(" ".join(line))
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"level": self.level, "tokens": list(self.tokens)}

    @classmethod
    def from_dict(cls, data: dict) -> Vocabulary:
        return cls(data["level"], tuple(data["tokens"]))


def check_words_kept(counts: Counter, min_frequency: int) -> None:
    """Refuse a min_frequency that keeps no word of the text; warn when it sends most of the
    text's words to <unk>."""
    words = {token: count for token, count in counts.items() if token not in (UNKNOWN, END_OF_LINE)}
    if not words:
        return
    most = max(words.values())
    if most < min_frequency:
        raise ValueError(f"min_frequency (--min-frequency) {min_frequency} keeps no word of the training text: "
                         f"its most frequent word appears {most:,} time(s); give a min_frequency of at most {most}")
    left_out = sum(count for count in words.values() if count < min_frequency) / sum(words.values())
    if left_out > MOST_UNKNOWN:
        warn_at_caller(f"min_frequency (--min-frequency) {min_frequency} reads {left_out:.1%} of the training "
                       "text's words as <unk> "
                       "(the model then mostly learns to predict <unk>); give a lower min_frequency", RuntimeWarning)


def warn_unknown(vocabulary: Vocabulary, text: str, tokens: Tensor, what: str, consequence: str) -> None:
    """Warn where a word vocabulary read some of `what`'s words as <unk>, saying the `consequence`;
    a text's own <unk> (Penn Treebank and WikiText write it for the words they left out) is no
    such word."""
    if UNKNOWN not in vocabulary.index:
        return
    written = sum(word == UNKNOWN for word in tokenize(text, vocabulary.level))
    unknown = int((tokens == vocabulary.index[UNKNOWN]).sum()) - written
    if unknown:
        warn_at_caller(f"{unknown:,} of {what}'s {tokens.numel():,} tokens ({unknown / tokens.numel():.1%}) are not in "
                       f"the model's vocabulary and {consequence}")
