"""benchmarks/lm_word.py's split: the files both lstmkit and pytorch/examples read."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "lm_word.py"
spec = importlib.util.spec_from_file_location("lm_word", SCRIPT)
lm_word = importlib.util.module_from_spec(spec)
spec.loader.exec_module(lm_word)


def test_split_keeps_line_order_and_replaces_words_training_never_uses():
    text = "\n".join(["a b", "b c", "c a", "a a", "b b", "c c", "a b", "b a", "d a", "a e f"]) + "\n"
    train, valid, test = lm_word.split_lines(text)
    assert train == "a b\nb c\nc a\na a\nb b\nc c\na b\nb a\n"
    assert valid == "<unk> a\n"
    assert test == "a <unk> <unk>\n"


def test_split_of_a_text_too_short_is_refused():
    with pytest.raises(ValueError, match=r"the text has 2 lines; the split \(0.8, 0.1, 0.1\) needs at least one"):
        lm_word.split_lines("a\nb\n")


def test_split_writes_the_examples_three_files(tmp_path):
    source = tmp_path / "text.txt"
    source.write_text("".join(f"w{i % 7} w{i % 3}\n" for i in range(20)), encoding="utf-8")
    lm_word.write_split(str(source), str(tmp_path / "data"))
    parts = [(tmp_path / "data" / name).read_text(encoding="utf-8") for name in ("train.txt", "valid.txt", "test.txt")]
    assert [part.count("\n") for part in parts] == [16, 2, 2]
    assert "".join(parts) == source.read_text(encoding="utf-8")  # every word of w0..w6 appears in training
