"""Embedding, recurrent stack, linear decoder: a character- or word-level language model."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lstmkit.models.embedding import EmbeddingConfig
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
    # The dropout around the layers with one mask per sequence, shared by every step (AWD-LSTM).
    locked_dropout: bool = False

    def __post_init__(self) -> None:
        self.check_embedding()


class LanguageModel(nn.Module):
    """Predicts the next token: embedding -> dropout -> recurrent layers (dropout between
    them) -> dropout -> linear decoder to one logit per vocabulary entry."""

    def __init__(self, config: LanguageModelConfig) -> None:
        super().__init__()
        self.config = config
        self.embedding = nn.Embedding(config.vocabulary_size, config.embedding_dim)
        self.recurrent = Recurrent(
            config.cell, config.embedding_dim, config.hidden_size, config.num_layers,
            dropout=config.dropout if config.num_layers > 1 else 0.0, engine=config.engine, **config.cell_options,
            **config.regularisers,
        )
        self.dropout = nn.Dropout(config.dropout)
        self.decoder = nn.Linear(config.hidden_size, config.vocabulary_size)
        if config.tie_weights:
            self.decoder.weight = self.embedding.weight

    @property
    def tied_weight(self) -> str | None:
        """The parameter that is another's tensor (saved once): the decoder's, when tied."""
        return "decoder.weight" if self.config.tie_weights else None

    def forward(self, tokens: Tensor, state=None, return_hidden: bool = False):
        """tokens (T, B) -> (logits (T, B, vocabulary), final state), and with return_hidden
        the top layer's h_t (T, B, hidden) before and after its dropout (for AR and TAR)."""
        output, state = self.hidden(tokens, state)
        dropped = self.drop(output)
        logits = self.decoder(dropped)
        return (logits, state, output, dropped) if return_hidden else (logits, state)

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
