"""Text for language models: tokens, vocabularies, files, splits, streams."""

from __future__ import annotations

import codecs
import gzip
import re
import warnings

import pytest
import torch

from lstmkit.text import END_OF_LINE, UNKNOWN, Vocabulary, load_corpus, read_text, split_text, token_streams, tokenize
from lstmkit.text.corpus import StreamWindows, to_streams
from lstmkit.text.parallel import read_lines


def test_tokenize_by_hand():
    assert tokenize("ab\nc", "char") == ["a", "b", "\n", "c"]
    assert tokenize("to be\nor not\n", "word") == ["to", "be", END_OF_LINE, "or", "not", END_OF_LINE]
    assert tokenize("a\n\nb", "word") == ["a", END_OF_LINE, END_OF_LINE, "b"]


def test_character_vocabulary_round_trip():
    vocabulary = Vocabulary.build("hello\nworld", "char")
    assert vocabulary.tokens == ("\n", "d", "e", "h", "l", "o", "r", "w")
    assert vocabulary.encode("hold").tolist() == [3, 5, 4, 1]
    assert vocabulary.decode([3, 5, 4, 1]) == "hold"


def test_word_vocabulary_with_minimum_frequency():
    vocabulary = Vocabulary.build("the cat\nthe dog\nthe cat", "word", min_frequency=2)
    assert vocabulary.tokens == (UNKNOWN, END_OF_LINE, "cat", "the")
    assert vocabulary.encode("the dog\ncat").tolist() == [3, 0, 1, 2]
    assert vocabulary.decode([3, 2, 1, 1, 3]) == "the cat\n\nthe"


def test_a_vocabulary_by_frequency_puts_the_most_frequent_first_and_ties_sorted():
    """An adaptive softmax's head is its first tokens: they must be the most frequent."""
    text = "b a c\nc c b\nd"  # c 3, b 2, a 1, d 1; 2 line breaks
    words = Vocabulary.build(text, "word", by_frequency=True)
    assert words.tokens == (UNKNOWN, END_OF_LINE, "c", "b", "a", "d")
    assert Vocabulary.build(text, "word").tokens == (UNKNOWN, END_OF_LINE, "a", "b", "c", "d")
    assert Vocabulary.build("abbccc", "char", by_frequency=True).tokens == ("c", "b", "a")


def test_a_minimum_frequency_that_keeps_no_word_or_few_is_named():
    """It trained a model of <unk> and <eol> alone, without a word said."""
    text = "the cat\nthe dog\nthe cat"  # the 3, cat 2, dog 1: 6 words
    with pytest.raises(ValueError, match=re.escape(
            "min_frequency (--min-frequency) 4 keeps no word of the training text: its most frequent word appears 3 "
            "time(s); give a min_frequency of at most 3")):
        Vocabulary.build(text, "word", min_frequency=4)
    with pytest.warns(RuntimeWarning, match=re.escape("min_frequency (--min-frequency) 3 reads 57.1% of the training "
                                                      "text's words as <unk>")):
        Vocabulary.build(text + "\nfox", "word", min_frequency=3)  # cat, dog and fox: 4 of 7 words


def test_tokenize_checks_its_text_and_level():
    """"byte" split nothing and returned the text whole; None failed inside."""
    with pytest.raises(ValueError, match=re.escape("level must be one of char, word, got 'byte'")):
        tokenize("abc", "byte")
    with pytest.raises(TypeError, match=re.escape("text must be a str, got NoneType")):
        tokenize(None, "char")


def test_unknown_characters_are_named():
    vocabulary = Vocabulary.build("abc", "char")
    with pytest.raises(ValueError, match=re.escape("the prime text has characters the model's vocabulary lacks: "
                                                   "'Z' (U+005A), 'é' (U+00E9)")):
        vocabulary.encode("aZé", "the prime text")


def test_vocabulary_serialises():
    vocabulary = Vocabulary.build("one two\ntwo", "word")
    assert Vocabulary.from_dict(vocabulary.to_dict()) == vocabulary


@pytest.mark.parametrize("content, message", [
    (b"", "is empty: a language model needs text to learn from or to score"),
    (b"   \n\t\n", "holds only whitespace"),
    (b"text\x00\x01binary",
     "is not text: it contains NUL bytes (the first at offset 4, on line 1); expected a UTF-8 text file"),
    (b"caf\xe9 latin-1", "is not UTF-8 text: byte 0xe9 at offset 3 (line 1) does not decode"),
    (b"one\ntwo\nthr\xe9e", "byte 0xe9 at offset 11 (line 3) does not decode"),
    (b"one\rtwo\rthr\xe9e", "byte 0xe9 at offset 11 (line 3) does not decode"),  # old Mac line ends
    (b"\xef\xbb\xbfone\ncaf\xe9", "byte 0xe9 at offset 10 (line 2) does not decode"),  # counted after the mark
    # iconv -t UTF-16LE and -t UTF-16BE write no byte-order mark: it was called binary
    ("Hello\nworld".encode("utf-16-le"),
     "looks like UTF-16LE text without a byte-order mark (a NUL byte in every other place), not UTF-8: convert it "
     "with iconv -f UTF-16LE -t UTF-8"),
    ("Grüße 天气".encode("utf-16-be"), "looks like UTF-16BE text without a byte-order mark"),
    # Windows Notepad's "Unicode" and PowerShell 5's `>`: it was called binary, for its NUL bytes
    ("Hello".encode("utf-16"), "is UTF-16 text (its byte-order mark is FF FE), not UTF-8: save it as UTF-8, or "
                               "convert it with iconv -f UTF-16 -t UTF-8"),
    ("Hello".encode("utf-16-be").join([b"\xfe\xff", b""]), "is UTF-16 text (its byte-order mark is FE FF)"),
    ("Hello".encode("utf-32"), "is UTF-32 text (its byte-order mark is FF FE 00 00)"),
])
def test_bad_files(tmp_path, content, message):
    path = tmp_path / "input.txt"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=re.escape(message)):
        read_text(path)


def test_a_byte_order_mark_is_not_part_of_the_text(tmp_path):
    path = tmp_path / "input.txt"
    path.write_bytes("\ufeffhello hello".encode())
    assert read_text(path) == "hello hello"


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist \\(expected a UTF-8 text file\\)"):
        read_text(tmp_path / "nothing.txt")
    with pytest.raises(ValueError, match=re.escape(f"{tmp_path} is a folder (expected a UTF-8 text file)")):
        read_text(tmp_path)


def test_split_keeps_the_last_tenth_and_words_whole():
    text = "abcdefghij" * 10
    assert split_text(text, 0.1, "char") == (text[:90], text[90:])
    train, validation = split_text("one two\nthree four\nfive six\n", 0.5, "word")
    assert (train, validation) == ("one two\nthree four\n", "five six\n")
    # A text of one line splits at the white space after the cut.
    assert split_text("one two three four five six", 0.5, "word") == ("one two three ", "four five six")
    # So does a cut in the last line, whose line break ends the text.
    assert split_text("one two\nthree four five six seven eight\n", 0.3, "word") == (
        "one two\nthree four five six seven ", "eight\n")
    # And a cut in the last word, back to the white space before it (it left no validation).
    assert split_text("hello world this is one line\n", 0.1, "word") == ("hello world this is one ", "line\n")
    assert split_text("a b c d e f g h i j" + "\n" * 14, 0.3, "word") == ("a b c d e f g h i ", "j" + "\n" * 14)
    with pytest.raises(ValueError, match=re.escape("validation_fraction must be in (0, 1), got 1.5")):
        split_text(text, 1.5, "char")
    with pytest.raises(ValueError, match="^" + re.escape(  # a FASTA line at word level was "too short to split"
            "the text is a single word (100 characters without white space), which word level cannot split into "
            "training and validation parts; train it at character level (--level char)") + "$"):
        split_text(text + "\n", 0.1, "word")


def test_corpus_from_a_file_and_a_validation_file(tmp_path):
    (tmp_path / "train.txt").write_text("abab\nabab\n", encoding="utf-8")
    (tmp_path / "valid.txt").write_text("ba!\n", encoding="utf-8")
    corpus = load_corpus(tmp_path / "train.txt", tmp_path / "valid.txt")
    assert corpus.vocabulary.tokens == ("\n", "!", "a", "b"), "the alphabet of both texts"
    assert corpus.validation.tolist() == [3, 2, 1, 0]
    assert (corpus.train_characters, corpus.validation_characters) == (10, 4)


def test_validation_words_the_training_text_lacks_are_counted_at_load(tmp_path):
    """Word level: the validation perplexity scores them as <unk>; training once said nothing of
    them (`lm eval` on the same text warned)."""
    (tmp_path / "train.txt").write_text("the cat sat\nthe cat\n", encoding="utf-8")
    (tmp_path / "valid.txt").write_text("the dog ran\n", encoding="utf-8")
    with pytest.warns(UserWarning, match=re.escape(
            "2 of the validation text's 4 tokens (50.0%) are not in the model's vocabulary and are scored as <unk>: "
            "the validation loss and perplexity are not those of these words")):
        corpus = load_corpus(tmp_path / "train.txt", tmp_path / "valid.txt", "word")
    assert corpus.validation.tolist().count(corpus.vocabulary.index[UNKNOWN]) == 2
    with warnings.catch_warnings():  # characters: the alphabet of both texts, nothing unknown
        warnings.simplefilter("error")
        load_corpus(tmp_path / "train.txt", tmp_path / "valid.txt", "char")


def test_a_validation_text_the_model_trains_on_is_warned_of(tmp_path):
    """`lm train a.txt --valid a.txt` (or its gzip, or its last part) reported a training
    perplexity (2.99 where the held-out one was 7.19) as the validation one, without a word."""
    lines = [f"line {index} of the text, with words enough to fill it\n" for index in range(40)]
    train = tmp_path / "train.txt"
    train.write_text("".join(lines), encoding="utf-8")
    (tmp_path / "tail.txt").write_text("".join(lines[30:]), encoding="utf-8")
    (tmp_path / "other.txt").write_text("".join(lines[30:]).replace("line", "verse"), encoding="utf-8")
    for validation, same in ((train, "is the training text"), (tmp_path / "tail.txt", "is part of the training text")):
        with pytest.warns(UserWarning, match=re.escape(
                f"the validation text {validation} {same} ({train}): its scores measure how well the model fits "
                "text it trained on, not text it has not seen, and best/ keeps the model that fits it most; give a "
                "text of its own, or leave the validation file out to hold out the last 10% of the training text")):
            load_corpus(train, validation, "char")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_corpus(train, tmp_path / "other.txt", "char")


def test_stream_windows_by_hand():
    streams = to_streams(torch.arange(21), 2)
    assert streams.tolist() == [list(range(10)), list(range(10, 20))]
    windows = StreamWindows(streams, 4)
    assert len(windows) == 3
    inputs, targets = windows.window(0)
    assert inputs.t().tolist() == [[0, 1, 2, 3], [10, 11, 12, 13]]
    assert targets.t().tolist() == [[1, 2, 3, 4], [11, 12, 13, 14]]
    inputs, targets = windows.window(2)
    assert inputs.t().tolist() == [[8], [18]] and targets.t().tolist() == [[9], [19]]


def test_too_little_text_for_the_batch():
    with pytest.raises(ValueError, match=re.escape("the training text has 5 tokens; 4 streams need at least 8 "
                                                   "(an input and a target each): lower --batch-size or give more text")):
        token_streams(torch.arange(5), 4, 10, "the training text")
    with pytest.raises(ValueError, match="^" + re.escape(  # a batch of one is not to be lowered
            "the validation text has 1 token; 1 stream needs at least 2 (an input and a target each): give more "
            "text") + "$"):
        token_streams(torch.arange(1), 1, 10, "the validation text")


def test_gzip_and_a_byte_order_mark_are_read_as_the_text_they_hold(tmp_path):
    """Both pipelines read a gzip file by its first bytes, and drop an editor's byte-order mark
    (translate once kept it as the first character of the first sentence)."""
    text = "ein Hund\nzwei Katzen\n"
    (tmp_path / "bom.de").write_bytes(codecs.BOM_UTF8 + text.encode())
    (tmp_path / "plain.gz").write_bytes(gzip.compress(text.encode()))
    assert read_lines(tmp_path / "bom.de")[0] == read_lines(tmp_path / "plain.gz")[0] == ["ein Hund", "zwei Katzen"]
    (tmp_path / "text.txt.gz").write_bytes(gzip.compress(codecs.BOM_UTF8 + text.encode()))
    assert read_text(tmp_path / "text.txt.gz") == text
    (tmp_path / "windows.txt").write_bytes(text.replace("\n", "\r\n").encode())  # no '\r' token at character level
    assert read_text(tmp_path / "windows.txt") == text
    (tmp_path / "mac.txt").write_bytes(text.replace("\n", "\r").encode())  # old Mac line ends: sampled as '\r'
    assert read_text(tmp_path / "mac.txt") == text
    (tmp_path / "broken.gz").write_bytes(gzip.compress(text.encode())[:12])
    with pytest.raises(ValueError, match=re.escape(f"{tmp_path / 'broken.gz'} is not a readable gzip file")):
        read_text(tmp_path / "broken.gz")


def test_text_not_in_composed_form_is_warned_of_naming_the_first_line(tmp_path):
    """ü written composed and decomposed was read as two characters, without a word."""
    path = tmp_path / "input.txt"
    path.write_text("fünf\nzwei\r\ndrei Bu\u0308cher\nvier\n", encoding="utf-8")
    with pytest.warns(UserWarning, match=re.escape(
            f"{path}: 1 line(s) write a letter otherwise than in Unicode's composed form, NFC, which the text also "
            "writes (the first: line 3, 'Bu\\u0308cher', whose 'u\\u0308' is written '\\xfc' too): one letter written "
            "both ways counts as two different characters")):
        assert read_text(path) == "fünf\nzwei\ndrei Bu\u0308cher\nvier\n"
    # Written one way only, or not NFC for another reason (an en quad, a CJK compatibility ideograph): no warning
    path.write_text("drei fu\u0308nf\nhello\u2000world \uf900\n", encoding="utf-8")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_text(path) == "drei fu\u0308nf\nhello\u2000world \uf900\n"
