"""A CTC acoustic model: frame stacking, a bidirectional recurrent stack, a linear layer over
the characters and the CTC blank (Graves et al. 2006, 2013). And the two CTC decoders, the
second optionally held to the words of a lexicon.

    frames (T, B, F) --stack k--> (ceil(T/k), B, k·F) --Recurrent(bidirectional)--> (T', B, 2H)
           --Linear--> log-probabilities (T', B, characters + 1), the blank at index 0
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lstmkit.cells import saved_cell_name
from lstmkit.nn import Recurrent

BLANK = 0


@dataclass(frozen=True)
class AcousticModelConfig:
    """Everything needed to rebuild an AcousticModel (saved as JSON with its checkpoint)."""

    cell: str
    input_size: int
    vocabulary_size: int  # the characters and the blank
    hidden_size: int = 128
    num_layers: int = 2
    stack: int = 2
    dropout: float = 0.0
    engine: str = "auto"
    # Keywords of lstmkit.Recurrent: recurrent_dropout, zoneout, init, ...
    regularisers: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


class AcousticModel(nn.Module):
    """Stacks every `stack` consecutive frames into one (shorter sequences: faster, and the
    recurrent layers see 20-30 ms at a step), runs a bidirectional recurrent stack over the
    padded batch with `lengths=`, and returns per-step log-probabilities over the vocabulary
    (blank first) with the sequences' new lengths."""

    def __init__(self, config: AcousticModelConfig) -> None:
        super().__init__()
        cell = saved_cell_name(config.cell, type(config).__name__)
        self.config = config
        self.recurrent = Recurrent(
            cell, config.input_size * config.stack, config.hidden_size, config.num_layers,
            dropout=config.dropout if config.num_layers > 1 else 0.0, bidirectional=True, engine=config.engine,
            **config.regularisers,
        )
        self.head = nn.Linear(2 * config.hidden_size, config.vocabulary_size)

    def forward(self, frames: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """frames (T, B, input_size), lengths (B,) -> log-probabilities (T', B, V), lengths (B,)."""
        stacked, lengths = stack_frames(frames, lengths, self.config.stack)
        output, _ = self.recurrent(stacked, lengths=lengths)
        logits = self.head(output)  # float32 at least: a float64 model's log-probabilities stay float64
        return F.log_softmax(logits.to(torch.promote_types(logits.dtype, torch.float32)), -1), lengths


def stack_frames(frames: Tensor, lengths: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Every k consecutive frames concatenated into one, the tail padded with zeros:
    (T, B, F) -> (ceil(T/k), B, k·F), lengths -> ceil(lengths / k)."""
    if k == 1:
        return frames, lengths
    steps, batch, size = frames.shape
    padded = F.pad(frames, (0, 0, 0, 0, 0, -steps % k))
    stacked = padded.view(-1, k, batch, size).permute(0, 2, 1, 3).reshape(-1, batch, k * size)
    return stacked, torch.div(lengths + k - 1, k, rounding_mode="floor")


def stacked_length(frames: int, k: int) -> int:
    return math.ceil(frames / k)


def ctc_frames_needed(labels: list[int]) -> int:
    """The fewest steps CTC can align `labels` to: one per label, plus a blank between each
    pair of equal neighbours."""
    return len(labels) + sum(1 for a, b in zip(labels, labels[1:]) if a == b)


def greedy_decode(log_probs: Tensor | np.ndarray, blank: int = BLANK) -> list[int]:
    """The best path, collapsed: the likeliest label at each step (T, V), repeats merged, then
    blanks removed."""
    best = np.asarray(log_probs).argmax(-1)
    return [int(label) for position, label in enumerate(best)
            if label != blank and (position == 0 or label != best[position - 1])]


class Lexicon:
    """The words a transcript may hold (label sequences) and the label between two words (None:
    a transcript is one word). A labelling is allowed while it spells complete words, each
    followed by one separator, then the start of a word; it is complete when it ends on a
    whole word."""

    def __init__(self, words: Iterable[Sequence[int]], separator: int | None) -> None:
        self.words = frozenset(tuple(word) for word in words)
        if not self.words or () in self.words:
            raise ValueError("a lexicon needs at least one word, and no empty one")
        if separator is not None and any(separator in word for word in self.words):
            raise ValueError(f"a lexicon's words cannot hold its separator (label {separator})")
        self.separator = separator
        self.prefixes = {word[:length] for word in self.words for length in range(len(word) + 1)}

    def last_word(self, labels: Sequence[int]) -> tuple[int, ...]:
        """The labels after the last separator (all of them without one)."""
        for position in range(len(labels) - 1, -1, -1):
            if labels[position] == self.separator:
                return tuple(labels[position + 1:])
        return tuple(labels)

    def allows(self, labels: Sequence[int]) -> bool:
        """Whether `labels`, whose labels before the last are allowed, is allowed."""
        if labels and labels[-1] == self.separator:
            return self.complete(labels[:-1])
        return self.last_word(labels) in self.prefixes

    def complete(self, labels: Sequence[int]) -> bool:
        return bool(labels) and self.last_word(labels) in self.words

    def finishings(self, labels: Sequence[int]) -> list[tuple[int, ...]]:
        """`labels` (allowed) with its last word, finished or not, replaced by each word."""
        before = tuple(labels[:len(labels) - len(self.last_word(labels))])
        return [before + word for word in sorted(self.words)]


def checked_beam(beam: object) -> int:
    """`beam` as an int: a positive integer (a NumPy one too), not a bool."""
    if isinstance(beam, bool) or not isinstance(beam, numbers.Integral) or beam < 1:
        raise ValueError(f"beam must be a positive integer, got {beam!r}")
    return int(beam)


def prefix_beam_search(log_probs: Tensor | np.ndarray, beam: int, blank: int = BLANK,
                       lexicon: Lexicon | None = None) -> list[int]:
    """The likeliest labelling found by CTC prefix beam search over (T, V) log-probabilities
    (Graves 2012, ch. 7; Hannun et al. 2014, without a language model).

    Each prefix keeps two log-probabilities: of the paths so far that end in a blank, and of
    those that end in its last label. At each step a prefix is extended by a blank (stays,
    into "ends in blank"), by its last label (stays, from "ends in that label"; or extends, from
    "ends in blank") or by another label (extends); the `beam` prefixes with the highest total
    survive. The labels tried as extensions are the step's likeliest few (every one under a
    lexicon), ties in index order, as greedy decoding breaks them; a prefix's last label always
    stays (left out where it was not among the likeliest, a held prefix lost the paths that stay
    on it, and a less likely labelling won). Unlike the best path, it sums the probability of
    every path of a labelling: with
    beam 1 it still keeps the likeliest prefix rather than the likeliest label, and so equals
    greedy decoding only where each step's likeliest label is clearly likeliest.

    With a `lexicon`, every label is tried at every step, a prefix the lexicon does not allow is
    never made, and the beam also keeps the likeliest complete prefix when none of its `beam` is
    complete. After the last step the last word of each prefix of the beam, finished or not, is
    replaced by every word of the lexicon, and the labelling with the highest CTC likelihood
    wins (`labelling_log_likelihoods`, exact): a short word completed early ("six") does not
    beat a likelier one the beam held unfinished ("seve"), or had let go of. Only where none
    fits in the steps is the likeliest prefix returned as it is."""
    beam = checked_beam(beam)
    log_probs = np.asarray(log_probs, dtype=np.float64)
    beams: dict[tuple[int, ...], tuple[float, float]] = {(): (0.0, -math.inf)}  # prefix -> (blank, label)
    for step in log_probs:
        following: dict[tuple[int, ...], list[float]] = {}

        def add(prefix: tuple[int, ...], ends_blank: float, ends_label: float) -> None:
            old = following.setdefault(prefix, [-math.inf, -math.inf])
            old[0], old[1] = np.logaddexp(old[0], ends_blank), np.logaddexp(old[1], ends_label)

        # the labels worth extending by: every one under a lexicon, which may forbid the likeliest
        candidates = (range(len(step)) if lexicon is not None
                      else np.argsort(-step, kind="stable")[: max(beam, 2) + 1])
        for prefix, (p_blank, p_label) in beams.items():
            total = np.logaddexp(p_blank, p_label)
            add(prefix, total + step[blank], -math.inf)
            last = prefix[-1] if prefix else None
            if last is not None:
                add(prefix, -math.inf, p_label + step[last])  # a repeat merges
            for label in candidates:
                label = int(label)
                if label == blank:
                    continue
                extended = prefix + (label,)  # the beam's prefixes are allowed: only extensions are checked
                allowed = lexicon is None or lexicon.allows(extended)
                if label == last:
                    if allowed:
                        add(extended, -math.inf, p_blank + step[label])  # after a blank, a new label
                elif allowed:
                    add(extended, -math.inf, total + step[label])
        ranked = sorted(following.items(), key=lambda item: -np.logaddexp(*item[1]))
        kept = ranked[:beam]
        if lexicon is not None and not any(lexicon.complete(prefix) for prefix, _ in kept):
            kept += [item for item in ranked[beam:] if lexicon.complete(item[0])][:1]
        beams = {prefix: (scores[0], scores[1]) for prefix, scores in kept}
    if lexicon is not None:
        finished = sorted({labels for prefix in beams for labels in lexicon.finishings(prefix)})
        scores = labelling_log_likelihoods(log_probs, finished, blank)
        if np.isfinite(scores).any():
            return list(finished[int(np.argmax(scores))])
    best = max(beams.items(), key=lambda item: np.logaddexp(*item[1]))
    return list(best[0])


def labelling_log_likelihoods(log_probs: np.ndarray, labellings: Sequence[Sequence[int]],
                              blank: int = BLANK) -> np.ndarray:
    """log P(labels | x) under CTC for each of `labellings` (non-empty), the sum over every
    path of the labelling, from (T, V) log-probabilities, in one call of torch's CTC loss
    (which is its negative); -inf where a labelling needs more steps than there are."""
    steps = len(log_probs)
    losses = F.ctc_loss(torch.from_numpy(log_probs)[:, None].expand(-1, len(labellings), -1),
                        torch.tensor([label for labels in labellings for label in labels]),
                        torch.full((len(labellings),), steps), torch.tensor([len(labels) for labels in labellings]),
                        blank=blank, reduction="none")
    return -losses.numpy()
