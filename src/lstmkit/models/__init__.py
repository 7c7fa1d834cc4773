"""Small heads over a recurrent stack."""

from lstmkit.models.sequence import SequenceModel, SequenceModelConfig

__all__ = ["SequenceModel", "SequenceModelConfig"]
