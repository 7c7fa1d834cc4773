"""Embedding, recurrent stack, linear decoder: a character- or word-level language model."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lstmkit.models.embedding import EmbeddingConfig
from lstmkit.cells import saved_cell_name
from lstmkit.nn import Recurrent


@dataclass(frozen=True)
class LanguageModelConfig(EmbeddingConfig):
    """Everything needed to rebuild a LanguageModel (saved as JSON with its checkpoint).

    `embedding_size` defaults to `hidden_size`; weight tying needs the two equal.
    """

    tie_option: ClassVar[str] = "tie_weights"
    tie_shares: ClassVar[str] = "the embedding with the decoder"
    dropouts: ClassVar[tuple[str, ...]] = ("dropout", "embedding_dropout")

    cell: str
    vocabulary_size: int
    hidden_size: int = 512
    num_layers: int = 2
    embedding_size: int | None = None
    dropout: float = 0.2
    tie_weights: bool = False
    engine: str = "auto"
    cell_options: dict = field(default_factory=dict)
    # Keywords of lstmkit.Recurrent: recurrent_dropout, zoneout, init, ...
    regularisers: dict = field(default_factory=dict)
    # Whole words (rows of the embedding) dropped per batch (Gal & Ghahramani 2016; AWD-LSTM).
    embedding_dropout: float = 0.0
    # The dropout around the layers with one mask per sequence, shared by every step, and none
    # per element between them, where the layers' input_dropout is AWD-LSTM's dropouth.
    locked_dropout: bool = False
    # An adaptive softmax (Grave et al. 2017) with these cluster boundaries, most frequent
    # tokens first: training computes the head and only the clusters the targets fall in.
    # Boundaries at or above the vocabulary size are dropped; none left: the full softmax.
    adaptive_softmax_cutoffs: tuple[int, ...] = ()
    # The embedding and a linear decoder drawn from U(−r, r), the decoder's bias zero, as the
    # word-level recipes do (Zaremba et al. 2014, pytorch/examples, AWD-LSTM: 0.1): with
    # torch's N(0, 1) embedding a tied decoder starts with logits of size sqrt(hidden_size).
    # None keeps torch's initialisation.
    init_range: float | None = None

    def __post_init__(self) -> None:
        self.check_embedding()
        cutoffs = self.adaptive_softmax_cutoffs
        if isinstance(cutoffs, (str, bytes)) or not all(isinstance(cutoff, int) and not isinstance(cutoff, bool)
                                                          for cutoff in cutoffs):
            raise ValueError(f"adaptive_softmax_cutoffs must be integers, got {cutoffs!r}")
        if list(cutoffs) != sorted(set(cutoffs)) or any(cutoff < 1 for cutoff in cutoffs):
            raise ValueError(f"adaptive_softmax_cutoffs (--adaptive-softmax-cutoffs) must be increasing positive "
                             f"integers, got {list(cutoffs)}")
        object.__setattr__(self, "adaptive_softmax_cutoffs", tuple(cutoffs))  # a list when read from JSON
        if self.init_range is not None and (isinstance(self.init_range, bool) or not 0 < self.init_range < math.inf):
            raise ValueError(f"init_range must be a positive number or None, got {self.init_range!r}")
        if self.tie_weights and cutoffs:
            raise ValueError(
                "tie_weights (--tie-weights) shares the embedding with a linear decoder, and "
                f"adaptive_softmax_cutoffs={list(cutoffs)} (--adaptive-softmax-cutoffs) makes the decoder an adaptive "
                "softmax; give one of them"
            )

    @property
    def cutoffs(self) -> tuple[int, ...]:
        """The adaptive softmax's boundaries that fall inside the vocabulary (empty: full softmax)."""
        return tuple(cutoff for cutoff in self.adaptive_softmax_cutoffs if cutoff < self.vocabulary_size)


class LanguageModel(nn.Module):
    """Predicts the next token: embedding -> dropout -> recurrent layers (dropout between
    them, unless it is locked) -> dropout -> linear decoder to one logit per vocabulary entry, or an adaptive
    softmax (torch.nn.AdaptiveLogSoftmaxWithLoss) to one log-probability per entry."""

    def __init__(self, config: LanguageModelConfig) -> None:
        super().__init__()
        cell = saved_cell_name(config.cell, type(config).__name__)
        self.config = config
        self.embedding = nn.Embedding(config.vocabulary_size, config.embedding_dim)
        self.recurrent = Recurrent(
            cell, config.embedding_dim, config.hidden_size, config.num_layers,
            # with locked dropout, none per element between the layers: the stack's input_dropout is
            # AWD-LSTM's dropouth there, one mask per sequence like the dropout around the layers
            dropout=config.dropout if config.num_layers > 1 and not config.locked_dropout else 0.0,
            engine=config.engine, **config.cell_options,
            **config.regularisers,
        )
        self.dropout = nn.Dropout(config.dropout)
        if config.cutoffs:
            self.decoder = nn.AdaptiveLogSoftmaxWithLoss(config.hidden_size, config.vocabulary_size,
                                                         list(config.cutoffs))
        else:
            self.decoder = nn.Linear(config.hidden_size, config.vocabulary_size)
        if config.init_range is not None:
            nn.init.uniform_(self.embedding.weight, -config.init_range, config.init_range)
            if isinstance(self.decoder, nn.Linear):
                nn.init.uniform_(self.decoder.weight, -config.init_range, config.init_range)
                nn.init.zeros_(self.decoder.bias)
        if config.tie_weights:
            self.decoder.weight = self.embedding.weight

    @property
    def tied_weight(self) -> str | None:
        """The parameter that is another's tensor (saved once): the decoder's, when tied."""
        return "decoder.weight" if self.config.tie_weights else None

    def forward(self, tokens: Tensor, state=None, return_hidden: bool = False, targets: Tensor | None = None):
        """tokens (T, B) -> (scores (T, B, vocabulary), final state): logits, or
        log-probabilities with an adaptive softmax (a softmax of either is the distribution).
        With `targets` (T, B), the mean cross-entropy over them in place of the scores (the
        adaptive softmax then computes only the clusters they fall in). With return_hidden
        also the top layer's h_t (T, B, hidden) before and after its dropout (for AR and TAR)."""
        output, state = self.hidden(tokens, state)
        dropped = self.drop(output)
        result = self.scores(dropped) if targets is None else self.loss(dropped, targets)
        return (result, state, output, dropped) if return_hidden else (result, state)

    def scores(self, features: Tensor) -> Tensor:
        """The decoder's scores of every vocabulary entry for features (T, B, hidden)."""
        if isinstance(self.decoder, nn.AdaptiveLogSoftmaxWithLoss):
            return self.decoder.log_prob(features.flatten(0, 1)).view(*features.shape[:2], -1)
        return self.decoder(features)

    def loss(self, features: Tensor, targets: Tensor) -> Tensor:
        """The mean cross-entropy of `targets` (T, B) given features (T, B, hidden), in float32."""
        if isinstance(self.decoder, nn.AdaptiveLogSoftmaxWithLoss):
            return self.decoder(features.flatten(0, 1), targets.flatten()).loss.float()
        return F.cross_entropy(self.decoder(features).flatten(0, 1).float(), targets.flatten())

    def hidden(self, tokens: Tensor, state=None) -> tuple[Tensor, object]:
        """tokens (T, B) -> (the top layer's h_t (T, B, hidden), final state): what the
        decoder reads, and what a cache pointer compares."""
        return self.recurrent(self.drop(self.embed(tokens)), state)

    def embed(self, tokens: Tensor) -> Tensor:
        """The embeddings, whole words dropped in training with embedding_dropout: a word's
        row is zero for the whole batch, the others scaled by 1/(1 − p)."""
        p = self.config.embedding_dropout
        if not (self.training and p):
            return self.embedding(tokens)
        weight = self.embedding.weight
        kept = torch.bernoulli(weight.new_full((weight.shape[0], 1), 1 - p)) / (1 - p)
        return F.embedding(tokens, weight * kept)

    def drop(self, features: Tensor) -> Tensor:
        """The dropout around the layers: per element, or with locked_dropout one mask per
        sequence for every step of features (T, B, ·)."""
        p = self.config.dropout
        if not (self.config.locked_dropout and self.training and p):
            return self.dropout(features)
        mask = torch.bernoulli(features.new_full(features.shape[1:], 1 - p)) / (1 - p)
        return features * mask
