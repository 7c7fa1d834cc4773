"""What the configs of the models with embeddings share: the embedding size, the tie, dropout."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import ClassVar


class EmbeddingConfig:
    """A mixin of a model config dataclass with the fields `hidden_size`, `embedding_size`
    (None: as hidden_size), the probabilities `dropouts` names (`dropout` at least) and a
    tying option named `tie_option`, which shares `tie_shares` (so the embedding must be as
    wide as the hidden state)."""

    tie_option: ClassVar[str]
    tie_shares: ClassVar[str]
    dropouts: ClassVar[tuple[str, ...]] = ("dropout",)

    def check_embedding(self) -> None:
        if getattr(self, self.tie_option) and self.embedding_size not in (None, self.hidden_size):
            raise ValueError(
                f"{self.tie_option} shares {self.tie_shares}, so embedding_size must equal "
                f"hidden_size={self.hidden_size}, got embedding_size={self.embedding_size}"
            )
        for name in self.dropouts:
            value = getattr(self, name)
            if isinstance(value, bool) or not 0 <= value < 1:
                raise ValueError(f"{name} must be in [0, 1), got {value!r}")

    @property
    def embedding_dim(self) -> int:
        return self.hidden_size if self.embedding_size is None else self.embedding_size

    def to_dict(self) -> dict:
        """The settings as config.json stores them (tuples as lists), so that a loaded
        configuration compares equal to the one saved."""
        return json.loads(json.dumps(asdict(self)))
