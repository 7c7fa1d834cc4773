"""Subword vocabularies learned from the training text with sentencepiece (Kudo & Richardson
2018), kept as text so that a checkpoint holds them without pickle.

A vocabulary is a sentencepiece unigram model trained on raw, untokenised sentences. Its
settings make the round trip lossless: no normalisation (`identity`), white space kept as it
is, and byte fallback, so that a character never seen in training is spelled in UTF-8 bytes
rather than lost to an unknown token. `decode(encode(s)) == s` for every line `s` (lines are
stripped of surrounding white space when read) without a control character other than tab:
sentencepiece's own mark for a space, U+2581, is escaped (ESCAPE), and a decoded text is one
line of text, its line breaks and other control characters (which byte pieces spell; a terminal
would act on them) turned into spaces, so that output has a line per input line.
"""

from __future__ import annotations

import base64
import io
import re

from lstmkit.caller import warn_at_caller
from lstmkit.extras import extra_imports

with extra_imports("translate", __name__):
    import sentencepiece

# The ids every vocabulary reserves: padding first, so that zero-filled tensors are padding.
PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3
RESERVED = ("<pad>", "<unk>", "<s>", "</s>")
# Byte fallback: a piece for each byte value.
BYTES = 256
# sentencepiece reads U+2581 as its mark for a space: the text's own is written ESCAPE + 1 (and
# ESCAPE itself as ESCAPE twice), characters of Unicode's private use area, spelled in bytes.
SPACE_MARK, ESCAPE, ESCAPED_MARK = "\u2581", "\ue000", "\ue001"
ESCAPED = re.compile(f"{ESCAPE}[{ESCAPE}{ESCAPED_MARK}]")
# The C0 and C1 control characters but tab (line breaks, and the bytes a terminal acts on), and
# Unicode's line and paragraph separators, where str.splitlines and editors break a line too.
CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")
# Half of a UTF-16 pair, alone: no character (bytes read with errors="surrogateescape", os.fsdecode).
SURROGATE = re.compile("[\ud800-\udfff]")


class Subwords:
    """A sentencepiece model: text <-> subword ids, and its serialized proto as base64 text."""

    def __init__(self, model_proto: bytes) -> None:
        self.model_proto = model_proto
        self.processor = sentencepiece.SentencePieceProcessor(model_proto=model_proto)

    @classmethod
    def learn(cls, sentences: list[str], vocabulary_size: int, seed: int = 0, what: str = "text") -> Subwords:
        """A unigram vocabulary of at most `vocabulary_size` pieces learned from `sentences`;
        fewer when the text holds fewer (the limit is soft), with a warning naming `what`."""
        sentences = [sentence for sentence in sentences if sentence]
        if not sentences:
            raise ValueError("the training text holds no sentences to learn a subword vocabulary from")
        check_vocabulary_sizes({what: (sentences, vocabulary_size)})
        sentences = [escape(sentence) for sentence in sentences]
        model = io.BytesIO()
        sentencepiece.set_random_generator_seed(seed)
        sentencepiece.SentencePieceTrainer.train(
            sentence_iterator=iter(sentences), model_writer=model, vocab_size=vocabulary_size,
            model_type="unigram", character_coverage=1.0, byte_fallback=True,
            normalization_rule_name="identity", remove_extra_whitespaces=False, hard_vocab_limit=False,
            pad_id=PAD_ID, unk_id=UNK_ID, bos_id=BOS_ID, eos_id=EOS_ID, num_threads=1,
            max_sentence_length=1 << 16, minloglevel=2,
        )
        learned = cls(model.getvalue())
        if len(learned) < vocabulary_size:
            warn_at_caller(f"the {what} gave {len(learned):,} subword pieces, fewer than the {vocabulary_size:,} asked "
                           "for: it holds no more")
        return learned

    @classmethod
    def from_text(cls, text: str) -> Subwords:
        return cls(base64.b64decode(text.encode("ascii"), validate=True))

    def to_text(self) -> str:
        """The model proto as base64: a text file of the checkpoint."""
        return base64.b64encode(self.model_proto).decode("ascii")

    def __len__(self) -> int:
        return self.processor.get_piece_size()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Subwords) and other.model_proto == self.model_proto

    def encode(self, sentences: list[str]) -> list[list[int]]:
        for position, sentence in enumerate(sentences):
            found = SURROGATE.search(sentence)
            if found:  # sentencepiece's own message named neither the sentence nor the character
                raise ValueError(
                    f"sentence {position + 1} holds U+{ord(found.group()):04X} at character {found.start() + 1}, a "
                    "lone surrogate, which is no character (bytes read with errors='surrogateescape' or "
                    "os.fsdecode that were not UTF-8): decode the bytes in their own encoding")
        return self.processor.encode([escape(sentence) for sentence in sentences])

    def decode(self, ids: list[list[int]]) -> list[str]:
        """One line of text per id list (sentencepiece returns a string, not a list, for none)."""
        return [CONTROL.sub(" ", unescape(text)) for text in self.processor.decode(ids)] if ids else []

    def pieces(self, ids: list[int]) -> list[str]:
        """The subwords of `ids`, as drawn on an attention matrix."""
        return [self.processor.id_to_piece(index) for index in ids]



def check_vocabulary_sizes(texts: dict[str, tuple[list[str], int]]) -> None:
    """Refuse, naming each text at once ("the target text (--target-vocabulary-size)"), a
    vocabulary size below what a text's unigram model needs: the reserved pieces, a piece per
    byte for unseen characters, one per character of the text, and one more."""
    short = []
    for what, (sentences, vocabulary_size) in texts.items():
        smallest = len(RESERVED) + BYTES + len(set("".join(map(escape, sentences))) - {" "}) + 1
        if vocabulary_size < smallest:
            short.append(f"the {what} needs at least {smallest:,}, got {vocabulary_size:,}")
    if short:
        raise ValueError(f"a subword vocabulary too small: {'; '.join(short)} ({len(RESERVED)} pieces reserved, "
                         f"{BYTES} bytes for unseen characters, one per character of the text)")


def escape(text: str) -> str:
    """`text` with U+2581 and ESCAPE escaped, which sentencepiece keeps as they are."""
    return text.replace(ESCAPE, ESCAPE + ESCAPE).replace(SPACE_MARK, ESCAPE + ESCAPED_MARK)


def unescape(text: str) -> str:
    """The inverse of `escape` (an ESCAPE a model wrote alone stays)."""
    return ESCAPED.sub(lambda match: ESCAPE if match.group() == ESCAPE + ESCAPE else SPACE_MARK, text)
