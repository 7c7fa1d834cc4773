"""Text for language models: vocabularies, corpora, contiguous token streams."""

from lstmkit.text.corpus import Corpus, StreamWindows, line_feeds, load_corpus, read_text, split_text, token_streams
from lstmkit.text.vocabulary import END_OF_LINE, LEVELS, UNKNOWN, Vocabulary, tokenize

__all__ = [
    "END_OF_LINE",
    "LEVELS",
    "UNKNOWN",
    "Corpus",
    "StreamWindows",
    "Vocabulary",
    "line_feeds",
    "load_corpus",
    "read_text",
    "split_text",
    "token_streams",
    "tokenize",
]
