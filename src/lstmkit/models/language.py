"""Embedding, recurrent stack, linear decoder: a character- or word-level language model."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

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

    cell: str
    vocabulary_size: int
    hidden_size: int = 512
    num_layers: int = 2
    embedding_size: int | None = None
    dropout: float = 0.2
    tie_weights: bool = False
    engine: str = "auto"
    cell_options: dict = field(default_factory=dict)

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
        )
        self.dropout = nn.Dropout(config.dropout)
        self.decoder = nn.Linear(config.hidden_size, config.vocabulary_size)
        if config.tie_weights:
            self.decoder.weight = self.embedding.weight

    @property
    def tied_weight(self) -> str | None:
        """The parameter that is another's tensor (saved once): the decoder's, when tied."""
        return "decoder.weight" if self.config.tie_weights else None

    def forward(self, tokens: Tensor, state=None) -> tuple[Tensor, object]:
        """tokens (T, B) -> (logits (T, B, vocabulary), final state)."""
        output, state = self.recurrent(self.dropout(self.embedding(tokens)), state)
        return self.decoder(self.dropout(output)), state
