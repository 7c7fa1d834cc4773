"""Machine translation: decoding, attention, subwords, a task learned exactly, checkpoints,
BLEU through the commands, and the messages of bad input files."""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import re
import json
import os
import random
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

pytest.importorskip("sentencepiece")
pytest.importorskip("sacrebleu")

from lstmkit import translate  # noqa: E402
from lstmkit.checkpoint import CheckpointError, model_tensors  # noqa: E402
from lstmkit.cli import main  # noqa: E402
from lstmkit.models.seq2seq import Seq2Seq, Seq2SeqConfig, top_ranked  # noqa: E402
from lstmkit.pipelines.configs import TranslationConfig  # noqa: E402
from lstmkit.pipelines.translate import (  # noqa: E402
    TranslationJob, Translator, Vocabularies, bucketed_batches, decode_ids, load_translator,
)
from lstmkit.files import fingerprint  # noqa: E402
from helpers import assert_keeps_random_state  # noqa: E402
from lstmkit.text.parallel import ParallelText, read_lines, read_parallel  # noqa: E402
from lstmkit.text.subwords import Subwords, check_vocabulary_sizes  # noqa: E402
from lstmkit.training import Processes, Trainer  # noqa: E402

@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Models this small gain nothing from a second thread, and on a loaded machine torch's
    threads wait on each other: the copy task trained in 6 s on one, in minutes on two."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


MULTI30K = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "multi30k"
LETTERS = "abcdefghijkl"


def random_model(attention: str, cell: str = "lstm", tie: bool = False, seed: int = 0) -> Seq2Seq:
    torch.manual_seed(seed)
    config = Seq2SeqConfig(cell, 20, 15, 16, 2, None, attention, 0.0, tie, 0, 2, 3)
    return Seq2Seq(config).eval()


def padded_source(lengths: list[int], seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    source = torch.randint(4, 20, (max(lengths), len(lengths)), generator=generator)
    for column, length in enumerate(lengths):
        source[length:, column] = 0
    return source, torch.tensor(lengths)


@pytest.mark.parametrize("attention, cell", [("luong", "lstm"), ("bahdanau", "gru"), ("none", "lstm"),
                                             ("luong", "layernorm")])
def test_beam_search_with_beam_1_is_greedy_decoding(attention, cell):
    model = random_model(attention, cell)
    with torch.no_grad():  # a random model ends at once: make the end token less likely
        model.output.bias[3] -= 1
    source, lengths = padded_source([7, 3, 5, 1, 6])
    greedy = model.greedy(source, lengths, 12)
    assert model.beam_search(source, lengths, beam=1, max_length=12) == greedy
    assert model.beam_search(source, lengths, beam=1, max_length=12, length_penalty=0.0) == greedy
    assert all(len(tokens) > 0 for tokens in greedy)


def test_beam_search_of_a_float64_model_scores_in_float64_as_greedy_decoding_ranks():
    """Beam search scored in float32 whatever the model: two tokens whose logits differ by less
    than float32 resolves were a tie there, which greedy decoding, in the model's float64, ranks."""
    model = random_model("luong").double()
    with torch.no_grad():
        model.output.weight.zero_()
        model.output.bias.fill_(-50.0)
        model.output.bias[[5, 9]] = torch.tensor([1.0, 1.0 + 1e-12], dtype=torch.float64)
    source, lengths = padded_source([4, 2])
    greedy = model.greedy(source, lengths, 3)
    assert greedy == [[9, 9, 9], [9, 9, 9]]
    assert model.beam_search(source, lengths, beam=2, max_length=3) == greedy


def test_top_ranked_breaks_exact_ties_lowest_index_first():
    scores = torch.tensor([[1.0, 3.0, 3.0, 0.0, 3.0, 5.0], [-torch.inf, 2.0, -torch.inf, 2.0, 2.0, 1.0]])
    values, index = top_ranked(scores, 3)
    assert values.tolist() == [[5.0, 3.0, 3.0], [2.0, 2.0, 2.0]] and index.tolist() == [[5, 1, 2], [1, 3, 4]]
    values, index = top_ranked(scores, 5)
    assert index.tolist() == [[5, 1, 2, 4, 0], [1, 3, 4, 5, 0]] and values[1, 4] == -torch.inf
    nan = torch.tensor([[1.0, torch.nan, 3.0, 3.0, 0.0, 3.0]])  # a diverged model's: first, as topk ranks it
    assert top_ranked(nan, 3)[1].tolist() == [[1, 2, 3]]
    # NaN at the cut, beside a row tied there (a diverged sentence in a batch), or more NaNs than k
    assert top_ranked(torch.tensor([[torch.nan, 0.0], [1.0, 1.0]]), 1)[1].tolist() == [[0], [0]]
    assert top_ranked(torch.tensor([[1.0, torch.nan, torch.nan, torch.nan]]), 2)[1].tolist() == [[1, 2]]
    for _ in range(20):  # no tie across the k-th place: topk's set, its ties put in order
        assert top_ranked(torch.tensor([[0.0, 2.0, 1.0, 2.0, 2.0, 3.0]]), 4)[1].tolist() == [[5, 1, 3, 4]]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_beam_1_breaks_exact_ties_as_greedy_decoding_does(dtype):
    """Tokens whose logits are equal (their output rows copied) tie exactly in every dtype:
    beam 1 takes the lowest, as argmax does, where topk took any of them."""
    model = random_model("luong", seed=2).to(dtype)
    with torch.no_grad():
        for copies in ([4, 7, 11], [5, 6, 8, 13]):
            model.output.weight[copies[1:]] = model.output.weight[copies[0]].clone()
            model.output.bias[copies] = model.output.bias[copies[0]] + 2
        model.output.bias[3] -= 2
    source, lengths = padded_source([7, 3, 5, 1, 6])
    greedy = model.greedy(source, lengths, 8)
    assert {token for tokens in greedy for token in tokens} & {4, 5} and not (
        {token for tokens in greedy for token in tokens} & {6, 7, 8, 11, 13})
    assert model.beam_search(source, lengths, beam=1, max_length=8) == greedy


def test_beam_search_runs_on_a_dynamically_quantised_model_as_greedy_decoding():
    """Scores took their dtype from `output.weight`, which a quantised Linear has no tensor of."""
    model = random_model("luong")
    with torch.no_grad():
        model.output.bias[3] -= 1
    quantised = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    assert type(quantised.output).__module__.startswith("torch.ao.nn.quantized")
    source, lengths = padded_source([7, 3, 5, 1, 6])
    greedy = quantised.greedy(source, lengths, 12)
    assert quantised.beam_search(source, lengths, beam=1, max_length=12) == greedy


def test_decoding_never_chooses_padding_or_the_start_token():
    """Neither is ever a target in training; a model that favours them decodes as if they were absent."""
    model = random_model("luong")
    with torch.no_grad():
        model.output.bias[3] -= 1
    source, lengths = padded_source([7, 3, 5, 1, 6])
    plain = [model.greedy(source, lengths, 12), model.beam_search(source, lengths, beam=3, max_length=12)]
    with torch.no_grad():
        model.output.bias[[0, 2]] += 100  # <pad> and <s>
    assert [model.greedy(source, lengths, 12), model.beam_search(source, lengths, beam=3, max_length=12)] == plain
    assert all(token not in (0, 2) for decoded in plain for tokens in decoded for token in tokens)
    assert any(len(tokens) > 0 for tokens in plain[1])


@pytest.mark.parametrize("name, value", [("bos_id", 500), ("eos_id", -1), ("pad_id", True)])
def test_special_tokens_outside_the_vocabulary_are_refused(name, value):
    """An edited config loaded, then failed with a bare IndexError in decoding, or never ended."""
    config = Seq2SeqConfig("lstm", 20, 15, 16, 2, None, "luong", 0.0, False, 0, 2, 3)
    with pytest.raises(ValueError, match=re.escape(f"{name} must be a token of the target vocabulary (0 to 14), "
                                                   f"got {value!r}")):
        Seq2SeqConfig(**{**config.__dict__, name: value})


@pytest.mark.parametrize("same_as_end", ["bos_id", "pad_id"])
def test_an_end_token_that_is_also_the_start_or_padding_still_ends_decoding(same_as_end):
    """fairseq's bos is its eos: masked as the start token, the end token was never chosen and
    every sentence ran to max_length."""
    torch.manual_seed(0)
    config = Seq2SeqConfig("lstm", 20, 15, 16, 2, None, "luong", 0.0, False, 0, 2, 3)
    config = Seq2SeqConfig(**{**config.__dict__, same_as_end: 3})
    model = Seq2Seq(config).eval()
    with torch.no_grad():
        model.output.bias[3] += 100  # the end at once
    source, lengths = padded_source([7, 3])
    assert model.greedy(source, lengths, 12) == [[], []]
    assert model.beam_search(source, lengths, beam=3, max_length=12) == [[], []]


def test_beam_search_finds_a_likelier_translation_than_greedy():
    """The raw log-probability (length_penalty 0) of the beam's choice is at least greedy's."""
    model = random_model("luong", seed=3)
    source, lengths = padded_source([6, 4, 5, 2], seed=4)

    def log_probability(tokens: list[int], column: int) -> float:
        target = torch.tensor([2, *tokens]).unsqueeze(1)
        with torch.no_grad():
            logits = model(source[:, column:column + 1], lengths[column:column + 1], target)
        log_probs = torch.log_softmax(logits[:, 0], dim=1)
        return float(log_probs.gather(1, torch.tensor([*tokens, 3]).unsqueeze(1)).sum())

    greedy = model.greedy(source, lengths, 10)
    beam = model.beam_search(source, lengths, beam=5, max_length=10, length_penalty=0.0)
    for column in range(4):
        if len(greedy[column]) < 10 and len(beam[column]) < 10:  # both ended: comparable
            assert log_probability(beam[column], column) >= log_probability(greedy[column], column) - 1e-5


@pytest.mark.parametrize("beam", [2, 3])
def test_beam_search_goes_on_while_a_live_hypothesis_beats_the_ended_ones(beam):
    """fairseq's rule alone (done once `beam` hypotheses in the top `beam` have ended) dropped
    the likeliest translation one step before its end, for unlikely ones that ended early: a
    confident copy model's beam 5 returned "nine five two five" where greedy copied the source.
    Here the decoder's logits depend on the previous token only: 4 then 5 then the end, each
    nearly certain, with the end token second after the start and after 4."""
    model = random_model("luong")
    table = torch.full((15, 15), -20.0)
    table[2, 4], table[2, 3] = 0.0, -5.0  # after the start token: 4, else the end
    table[4, 5], table[4, 3] = 0.0, -5.0
    table[5, 3] = 0.0
    model.step = lambda token, state, feed, memory: (table[token].clone(), state, feed, None)
    source, lengths = padded_source([3, 5])
    assert model.greedy(source, lengths, 10) == [[4, 5]] * 2
    for length_penalty in (0.0, 1.0):
        assert model.beam_search(source, lengths, beam, 10, length_penalty) == [[4, 5]] * 2


@pytest.mark.parametrize("attention", ["luong", "bahdanau"])
def test_attention_weights_sum_to_1_and_are_zero_on_padding(attention):
    model = random_model(attention)
    lengths = [7, 3, 5, 1]
    source, lengths_tensor = padded_source(lengths)
    target = torch.randint(4, 15, (4, 4))
    _, weights = model(source, lengths_tensor, target, return_attention=True)
    assert weights.shape == (4, 4, 7)
    torch.testing.assert_close(weights.sum(dim=2), torch.ones(4, 4))
    for column, length in enumerate(lengths):
        assert torch.all(weights[:, column, length:] == 0)
        assert torch.all(weights[:, column, :length] > 0)
    assert torch.all(weights[:, 3, 0] == 1)  # one source token takes all the attention


def test_padding_does_not_change_a_sentence_s_translation():
    """A sentence decodes the same alone as in a batch with longer ones (packed encoder, masks)."""
    model = random_model("bahdanau")
    source, lengths = padded_source([7, 3, 5])
    together = model.beam_search(source, lengths, beam=3, max_length=9)
    for column, length in enumerate([7, 3, 5]):
        alone = model.beam_search(source[:length, column:column + 1], lengths[column:column + 1], 3, 9)
        assert alone[0] == together[column]


def test_tied_embeddings_share_one_tensor_stored_once():
    model = random_model("luong", tie=True)
    assert model.output.weight is model.target_embedding.weight
    assert "output.weight" not in model_tensors(model)
    with pytest.raises(ValueError, match="embedding_size must equal hidden_size=16, got embedding_size=8"):
        Seq2SeqConfig("lstm", 20, 15, 16, 1, 8, "luong", 0.0, True, 0, 2, 3)


def test_subword_round_trip_is_lossless():
    lines = ["Ein Mann fährt Fahrrad.", "Zwei  Hunde spielen im Schnee!", "Eine Frau, 3 Kinder; (und) ein Café."] * 20
    subwords = Subwords.learn(lines, 300)
    unseen = ["Straße ŧ 😀 — «Ελλάδα»", "tabs\tand  double  spaces", "", "x"]
    for sentence in lines[:3] + unseen:
        assert subwords.decode(subwords.encode([sentence])) == [sentence]
    assert Subwords.from_text(subwords.to_text()) == subwords
    assert subwords.encode(lines[:1]) == Subwords.from_text(subwords.to_text()).encode(lines[:1])
    reasons = "(4 pieces reserved, 256 bytes for unseen characters, one per character of the text)"
    with pytest.raises(ValueError, match=re.escape(f"a subword vocabulary too small: the text needs at least 263, got "
                                                   f"100 {reasons}")):
        Subwords.learn(["ab a", "", "ba"], 100)  # 4 + 256 + a, b + 1
    with pytest.raises(ValueError, match=re.escape(  # both sides at once, as `translate train` names them
            "a subword vocabulary too small: the source text (--source-vocabulary-size) needs at least 263, got 262; "
            f"the target text (--target-vocabulary-size) needs at least 264, got 200 {reasons}")):
        check_vocabulary_sizes({"source text (--source-vocabulary-size)": (["ab"], 262),
                                "target text (--target-vocabulary-size)": (["x y z"], 200), "other": (["q"], 300)})
    with pytest.warns(UserWarning) as warned:
        asked_too_many = Subwords.learn(lines, 5000, what="source text")
    assert [str(warning.message) for warning in warned] == [
        f"the source text gave {len(asked_too_many):,} subword pieces, fewer than the 5,000 asked for: it holds no more"]


def test_a_lone_surrogate_is_named_with_its_sentence_not_failed_on_inside_sentencepiece():
    """sentencepiece said "List elements must be str or bytes", naming neither."""
    subwords = Subwords.learn(["Ein Hund läuft.", "Zwei Katzen."] * 20, 300)
    with pytest.raises(ValueError, match=re.escape(
            "sentence 2 holds U+DCC3 at character 10, a lone surrogate, which is no character (bytes read with "
            "errors='surrogateescape' or os.fsdecode that were not UTF-8): decode the bytes in their own encoding")):
        subwords.encode(["Ein Hund.", "Ein Hund \udcc3."])


def test_sentencepiece_s_space_mark_in_the_text_survives_the_round_trip():
    """sentencepiece reads U+2581 as a space: 'x▁y' came back 'x y', and a model could never
    write it. It is escaped (with the escape itself), in learning and in encoding."""
    lines = ["x\u2581y Hund", "\u2581start", "end\u2581", "a\ue000b", "\ue000\u2581\ue001\ue000\ue000"] * 10
    subwords = Subwords.learn(lines, 300)
    for sentence in lines[:5] + ["unseen \u2581\u2581 \ue001"]:
        assert subwords.decode(subwords.encode([sentence])) == [sentence]


def test_a_decoded_translation_is_one_line():
    """Byte pieces can spell a line break, which no training line holds: printed, it split one
    translation over several lines, and every later one was out of line with its source. They
    spelled other control characters into the output too (an undertrained model wrote \x0f)."""
    subwords = Subwords.learn(["Ein Mann fährt Fahrrad.", "Zwei Hunde."] * 20, 300)
    pieces = [subwords.processor.piece_to_id(piece) for piece in ("<0x0A>", "<0x0D>")]
    ids = subwords.encode(["Hunde"])[0]
    assert subwords.decode([ids + pieces + ids]) == ["Hunde" + "  " + " Hunde"]  # "▁Hunde" not first: its space
    controls = [subwords.processor.piece_to_id(f"<0x{byte:02X}>") for byte in (0x0F, 0x1B, 0x09, 0x7F)]
    c1 = [subwords.processor.piece_to_id(f"<0x{byte:02X}>") for byte in "\x85".encode()]  # NEL, in UTF-8
    # \x0f \x1b \t \x7f, then NEL
    assert subwords.decode([ids + controls + c1 + ids]) == ["Hunde" + "  \t " + " " + " Hunde"]
    separators = [subwords.processor.piece_to_id(f"<0x{byte:02X}>") for byte in "\u2028\u2029".encode()]
    assert subwords.decode([ids + separators + ids]) == ["Hunde" + "  " + " Hunde"]  # where splitlines breaks


def test_bucketed_batches_cover_every_pair_once_in_batches_of_similar_length():
    lengths = [(random.Random(index).randint(1, 40), 0) for index in range(1000)]
    counts = set()
    for seed in range(3):
        batches = bucketed_batches(lengths, 16, seed)
        assert sorted(index for batch in batches for index in batch) == list(range(1000))
        counts.add(len(batches))
        spread = sum(max(lengths[i][0] for i in batch) - min(lengths[i][0] for i in batch) for batch in batches)
        assert spread / len(batches) < 3  # random batches of 16 would spread over ~35
    assert counts == {63}
    assert bucketed_batches(lengths, 16, 0) == bucketed_batches(lengths, 16, 0)
    shared = bucketed_batches(lengths[:993], 16, 0, processes=2)  # 62 of 16 and 1 left over
    assert sorted(index for batch in shared for index in batch) == list(range(993))
    assert sorted(map(len, shared)) == [16] * 61 + [17] and len(Processes(0, 2).batch_sizes(993, 16)) == 62


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def test_bad_input_files_stop_with_messages_that_name_them(tmp_path):
    source = write_lines(tmp_path / "a.de", ["eins", "zwei", "drei"])
    target = write_lines(tmp_path / "a.en", ["one", "two"])
    with pytest.raises(ValueError) as error:
        read_parallel(source, target)
    assert str(error.value) == f"{source} has 3 lines and its target {target} has 2: line k of each must be a pair"
    empty = tmp_path / "empty.en"
    empty.write_bytes(b"")
    with pytest.raises(ValueError) as error:
        read_parallel(source, empty)
    assert str(error.value) == f"{empty} is empty: expected one sentence per line"
    blank = tmp_path / "blank.en.gz"
    blank.write_bytes(gzip.compress(b"\n \n"))
    with pytest.raises(ValueError, match=f"^{blank} is empty: expected one sentence per line$"):
        read_parallel(source, blank)
    binary = tmp_path / "model.bin"
    binary.write_bytes(b"PK\x03\x04\x00\x00binary")
    with pytest.raises(ValueError) as error:
        read_parallel(binary, target)
    assert str(error.value) == (f"{binary} is not text: it contains NUL bytes (the first at offset 4, on line 1); "
                                "expected UTF-8 text, plain or gzip")
    latin = tmp_path / "latin1.en"
    latin.write_bytes("café\n".encode("latin-1"))
    with pytest.raises(ValueError, match=f"^{latin} is not UTF-8 text: byte 0xe9 at offset 3 \\(line 1\\) does not "
                                         "decode$"):
        read_parallel(source, latin)
    with pytest.raises(FileNotFoundError, match="missing.de does not exist"):
        read_parallel(tmp_path / "missing.de", target)
    compressed = tmp_path / "b.en.gz"
    compressed.write_bytes(gzip.compress("one\ntwo\nthree\n".encode()))
    assert read_parallel(source, compressed).targets == ["one", "two", "three"]
    old_mac = tmp_path / "mac.en"  # carriage returns alone: read as one line of 3 ("has 1 lines")
    old_mac.write_bytes(b"one\rtwo\rthree\r")
    assert read_parallel(source, old_mac).targets == ["one", "two", "three"]
    inner = tmp_path / "inner.en"  # a carriage return inside a line, as sacrebleu reads it; or ending it: said
    inner.write_bytes(b"one\rtwo\r\nthree\n")
    with pytest.warns(UserWarning, match=re.escape(f"{inner}: 1 line(s) hold a carriage return inside them (the first: "
                                                   "line 1), read as part of the line as sacrebleu reads it")):
        assert read_parallel(write_lines(tmp_path / "two.de", ["eins", "zwei"]), inner).targets == ["one\rtwo", "three"]
    decomposed = write_lines(tmp_path / "nfd.en", ["fünf", "fu\u0308nf"])  # one word, to sacrebleu two
    with pytest.warns(UserWarning, match=re.escape(f"{decomposed}: 1 line(s) write a letter otherwise than in "
                                                   "Unicode's composed form, NFC, which the text also writes (the "
                                                   "first: line 2, 'fu\\u0308nf'")):
        assert read_parallel(write_lines(tmp_path / "two.de", ["eins", "zwei"]), decomposed).targets[1] == "fu\u0308nf"
    one = write_lines(tmp_path / "one.de", ["eins"])
    with pytest.raises(ValueError, match=f"^{one} has 1 line and its target {target} has 2: line k"):
        read_parallel(one, target)


def test_a_file_and_its_gzip_are_the_same_data_to_resume(tmp_path):
    """The fingerprint --resume compares is of the text a file holds, not of its bytes on disk."""
    text = "eins\nzwei\n".encode()
    (tmp_path / "a.de").write_bytes(text)
    (tmp_path / "a.de.gz").write_bytes(gzip.compress(text))
    (tmp_path / "b.de").write_bytes(text + b"drei\n")
    plain, packed, other = (read_lines(tmp_path / name)[1] for name in ("a.de", "a.de.gz", "b.de"))
    assert plain == packed == fingerprint(text) and other != plain


def test_the_train_command_reports_a_mismatch_with_exit_2(tmp_path, capsys):
    source = write_lines(tmp_path / "a.de", ["eins", "zwei", "drei"])
    target = write_lines(tmp_path / "a.en", ["one", "two"])
    with pytest.raises(SystemExit) as exit_:
        main(["translate", "train", "--source", str(source), "--target", str(target), "--valid-source", str(source),
              "--valid-target", str(target), "--out", str(tmp_path / "run")])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.endswith(
        f"lstmkit: error: {source} has 3 lines and its target {target} has 2: line k of each must be a pair\n")
    assert not (tmp_path / "run").exists()


def copy_task(directory: Path, pairs: int, seed: int) -> tuple[Path, Path]:
    """Strings of 2..6 distinct letters, each its own translation."""
    rng = random.Random(seed)
    sentences = [" ".join(rng.sample(LETTERS, rng.randint(2, 6))) for _ in range(pairs)]
    return write_lines(directory / f"{seed}.src", sentences), write_lines(directory / f"{seed}.tgt", sentences)


TINY = dict(source_vocabulary_size=300, target_vocabulary_size=300, hidden_size=64, dropout=0.0, label_smoothing=0.0,
            batch_size=32, lr=1e-2, warmup=0, min_lr_fraction=0.1, device="cpu")


def test_a_batch_larger_than_the_training_pairs_says_so(tmp_path):
    """It trained on all 20 pairs a step, with batch_size 32 recorded, and said nothing."""
    pairs = read_parallel(*copy_task(tmp_path, 20, 0))
    with pytest.warns(UserWarning):  # the vocabulary of 20 strings holds fewer than 300 pieces
        vocabularies = Vocabularies(Subwords.learn(pairs.sources, 300), Subwords.learn(pairs.targets, 300))
    config = TranslationConfig(**TINY, steps=1)
    with pytest.warns(UserWarning, match=re.escape(
            "batch_size 32 is more than the 20 training pairs: every step takes all 20, one step an epoch "
            "(--batch-size)")):
        job = TranslationJob(pairs, pairs, vocabularies, config, Processes(), torch.device("cpu"))
    assert job.steps_per_epoch() == 1
    one = read_parallel(*copy_task(tmp_path, 1, 1))
    with pytest.raises(ValueError, match=re.escape("training pairs: 1, fewer than the 2 processes that share them "
                                                   "(each needs one)")):
        TranslationJob(one, pairs, vocabularies, TranslationConfig(**{**TINY, "batch_size": 2}, steps=1),
                       Processes(0, 2), torch.device("cpu"))  # the process without one failed at max() of none


def test_validation_bleu_translates_an_empty_source_as_eval_does(tmp_path):
    """An empty validation source was decoded during training ("a b a." against eval's ""), so
    the logged BLEU (2.42) and `eval --beam 1` of the same checkpoint (2.41) differed."""
    pairs = read_parallel(*copy_task(tmp_path, 20, 0))
    valid = ParallelText(["a b", "", "c d e"], ["a b", "f g", "c d e"], {})
    with pytest.warns(UserWarning):  # the vocabulary of 20 strings holds fewer than 300 pieces
        vocabularies = Vocabularies(Subwords.learn(pairs.sources, 300), Subwords.learn(pairs.targets, 300))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # one batch holds every pair
        job = TranslationJob(pairs, valid, vocabularies, TranslationConfig(**TINY, steps=1), Processes(),
                             torch.device("cpu"))
    translator = Translator(job.model, vocabularies, {})
    translations = translator.translate(valid.sources, beam=1)
    assert translations[1] == "" and job.validation_translations() == translations
    assert job.evaluate()["val_bleu"] == translator.score(valid.sources, valid.targets, beam=1).bleu


class UntilSolved(TranslationJob):
    """Scores the exact matches of greedy and beam-3 translations too, selects on them, and
    stops once both translate every validation sentence exactly."""

    selection_metric = "val_errors"

    def evaluate(self) -> dict[str, float]:
        translator = Translator(self.model, self.vocabularies, {})
        sources, references = self.valid.sources, self.valid.targets * 2
        translations = translator.translate(sources, beam=1) + translator.translate(sources, beam=3)
        errors = sum(output != reference for output, reference in zip(translations, references, strict=True))
        return {**super().evaluate(), "val_errors": errors / len(translations)}

    def goal_reached(self, scores: dict[str, float]) -> str | None:
        return "translated every validation sentence exactly" if scores["val_errors"] == 0 else None


@pytest.fixture(scope="module")
def copy_run(tmp_path_factory):
    """A model trained on the training core to copy strings of 2..6 letters until it copies
    every validation string (seconds), kept in memory with the weights of best/. From 1,000
    training strings it generalises in ~20 epochs; from 600 it fit them all on one CPU and
    still miscopied one validation string after 300 epochs."""
    directory = tmp_path_factory.mktemp("copy")
    train, valid = copy_task(directory, 1000, 0), copy_task(directory, 60, 1)
    config = TranslationConfig(**TINY, epochs=300, validation_bleu=False)
    train_pairs, valid_pairs = read_parallel(*train), read_parallel(*valid)
    vocabularies = Vocabularies(Subwords.learn(train_pairs.sources, 300), Subwords.learn(train_pairs.targets, 300))
    trainer = Trainer(config)
    job = UntilSolved(train_pairs, valid_pairs, vocabularies, config, trainer.processes, trainer.device)
    job.valid = valid_pairs
    history = trainer.run(job, directory / "run", keep_best=True).history
    return directory / "run", Translator(job.model, vocabularies, {}), valid_pairs, history


def test_a_tiny_copy_task_is_learned_to_100_percent(copy_run):
    _, translator, valid, history = copy_run
    assert translator.translate(valid.sources, beam=1) == valid.targets
    assert translator.translate(valid.sources, beam=3) == valid.targets
    assert history[-1]["val_errors"] == 0 and history[-1]["epoch"] < 300
    assert history[-1]["val_loss"] < history[0]["val_loss"] / 10


def test_a_loaded_checkpoint_translates_identically(copy_run):
    out, trained, valid, _ = copy_run
    loaded = load_translator(out)
    sentences = valid.sources + ["a b c d e f g h a b", "h", "zz unseen"]
    assert loaded.translate(sentences, beam=4) == trained.translate(sentences, beam=4)
    for name, tensor in trained.model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[name], tensor), name
    assert loaded.vocabularies == trained.vocabularies


def test_a_damaged_checkpoint_is_refused_naming_the_file(copy_run, tmp_path):
    out, *_ = copy_run
    best = shutil.copytree(out / "best", tmp_path / "best")
    (best / "source.spm.b64").write_text("not base64!")
    with pytest.raises(CheckpointError, match=f"{best / 'source.spm.b64'} is not a subword vocabulary"):
        load_translator(best)
    (best / "source.spm.b64").unlink()
    with pytest.raises(CheckpointError, match="has no source.spm.b64: the checkpoint is incomplete"):
        load_translator(best)
    config = json.loads((best / "config.json").read_text())
    (best / "config.json").write_text(json.dumps({**config, "kind": "language_model"}))
    with pytest.raises(CheckpointError, match="holds a 'language_model' checkpoint, not a translation model"):
        load_translator(best)


def test_eval_of_a_perfect_translation_gives_bleu_100_and_writes_json(copy_run, tmp_path, capsys):
    out, _, valid, _ = copy_run
    scores = tmp_path / "scores.json"
    source, reference = write_lines(tmp_path / "v.src", valid.sources), write_lines(tmp_path / "v.tgt", valid.targets)
    assert main(["translate", "eval", str(out), "--source", str(source), "--reference", str(reference),
                 "--beam", "3", "--json", str(scores), "--out", str(tmp_path / "hypotheses.txt")]) == 0
    printed = capsys.readouterr().out
    assert (tmp_path / "hypotheses.txt").read_text(encoding="utf-8").splitlines() == valid.targets  # the copy task
    assert printed.startswith("BLEU 100.00  chrF 100.00  (60 sentences, beam 3,")
    written = json.loads(scores.read_text())
    assert {key: written[key] for key in ("bleu", "chrf", "sentences", "beam")} == \
        {"bleu": pytest.approx(100.0), "chrf": pytest.approx(100.0), "sentences": 60, "beam": 3}
    assert written["signature"].startswith("nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:")
    assert f"BLEU signature: {written['signature']}" in printed


def test_a_dash_as_an_output_file_is_stdout_not_a_file_named_dash(copy_run, tmp_path):
    """`--json -` wrote a file named `-` in the current folder; `-` is stdout there, as it is
    stdin for the files a command reads."""
    out, _, valid, _ = copy_run
    source, reference = write_lines(tmp_path / "v.src", valid.sources), write_lines(tmp_path / "v.tgt", valid.targets)
    completed = subprocess.run([sys.executable, "-m", "lstmkit", "translate", "eval", str(out), "--source",
                                str(source), "--reference", str(reference), "--json", "-"],
                               capture_output=True, text=True, cwd=tmp_path,
                               env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent / "src")})
    assert completed.returncode == 0, completed.stderr
    assert json.loads(completed.stdout)["bleu"] == pytest.approx(100.0)  # the data alone: the summary on stderr
    assert "BLEU 100.00  chrF 100.00" in completed.stderr and not (tmp_path / "-").exists()


def test_progress_reports_the_sentences_decoded_on_stderr(copy_run, capsys):
    _, translator, valid, _ = copy_run
    quiet = translator.translate(valid.sources, beam=2)
    assert capsys.readouterr().err == ""
    assert translator.translate(valid.sources, beam=2, progress=True) == quiet
    assert capsys.readouterr().err.startswith(f"translate beam 2: sentence {len(quiet)}/{len(quiet)} ")
    with pytest.raises(TypeError, match=re.escape("progress must be True or False, got 1 (int)")):
        translator.translate(valid.sources, progress=1)


def test_eval_scores_with_sacrebleus_tokenizer_and_case_options(copy_run, tmp_path, capsys):
    """--tokenize and --lowercase are sacrebleu's own options, named in the signature; shouting
    references score 0 cased and 100 lowercased against the copy task's exact translations."""
    import sacrebleu

    out, _, valid, _ = copy_run
    source = write_lines(tmp_path / "v.src", valid.sources[:20])
    shouted = [line.upper() for line in valid.targets[:20]]
    reference = write_lines(tmp_path / "v.tgt", shouted)
    scores = tmp_path / "scores.json"
    assert main(["translate", "eval", str(out), "--source", str(source), "--reference", str(reference), "--beam", "1",
                 "--tokenize", "intl", "--lowercase", "--json", str(scores)]) == 0
    written = json.loads(scores.read_text())
    expected = sacrebleu.metrics.BLEU(tokenize="intl", lowercase=True)
    assert written["bleu"] == pytest.approx(expected.corpus_score(valid.targets[:20], [shouted]).score) == pytest.approx(100)
    assert "|case:lc|" in written["signature"] and "|tok:intl|" in written["signature"]
    cased = load_translator(out).score(valid.sources[:20], shouted, beam=1)
    assert cased.bleu < 100 and "|case:mixed|" in cased.signature
    with pytest.raises(ValueError, match=re.escape("tokenize must be one of 13a, intl, zh, char, none, got 'ja-mecab'")):
        load_translator(out).score(valid.sources[:20], shouted, tokenize="ja-mecab")
    with pytest.raises(TypeError, match=re.escape("lowercase must be True or False, got 'no' (str)")):
        load_translator(out).score(valid.sources[:20], shouted, lowercase="no")
    capsys.readouterr()


def test_run_translates_a_file_and_draws_the_attention(copy_run, tmp_path, capsys):
    out, _, valid, _ = copy_run
    source = tmp_path / "v.src.gz"
    source.write_bytes(gzip.compress("".join(line + "\n" for line in valid.sources[:5]).encode()))
    picture = tmp_path / "attention.png"
    assert main(["translate", "run", str(out), str(source), "--beam", "2", "--show-attention", str(picture),
                 "--sentence", "2"]) == 0
    assert capsys.readouterr().out.splitlines() == valid.targets[:5]
    assert picture.read_bytes().startswith(b"\x89PNG")
    alignment = load_translator(out).align(valid.sources[1])
    words = valid.sources[1].split()
    assert len(alignment.target) == len(words) + 1 and alignment.weights.shape == (len(words) + 1, len(words) + 1)
    torch.testing.assert_close(alignment.weights.sum(dim=1), torch.ones(len(words) + 1))
    with pytest.raises(ValueError, match="^the sentence is empty: an empty sentence has no attention to draw$"):
        load_translator(out).align("  ")


def test_bad_decoding_options_stop_with_their_values(copy_run, capsys):
    out, translator, _, _ = copy_run
    with pytest.raises(ValueError, match="^beam must be a positive integer, got 0$"):
        translator.translate(["a b"], beam=0)
    code, message = 0, ""
    try:
        main(["translate", "run", str(out), "-", "--length-penalty", "-1"])
    except SystemExit as exit_:
        code, message = exit_.code, capsys.readouterr().err
    assert (code, message) == (2, "lstmkit: error: length_penalty (--length-penalty) must be in [0, 5] (0: none, 1: "
                                  "per-token mean), got -1.0\n")
    with pytest.raises(ValueError, match=re.escape(  # greedy decoding ignored it
            "length_penalty (--length-penalty) weighs beam search's ended hypotheses; greedy decoding (beam 1) has "
            "one and takes no penalty: give a beam above 1, got length_penalty=0.0 with beam 1")):
        translator.translate(["a b"], beam=1, length_penalty=0.0)


def test_run_reads_standard_input_one_sentence_per_line_feed(copy_run, monkeypatch, capsys):
    """Only a line feed ends a line (a form feed is white space), and an empty line gets an
    empty translation, as a file's lines do."""
    out, _, valid, _ = copy_run
    text = f"{valid.sources[0]}\n\n{valid.sources[1]}\x0c\n{valid.sources[2]}\n"
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(text.encode())))
    assert main(["translate", "run", str(out), "-", "--beam", "1"]) == 0
    translated = capsys.readouterr().out
    assert translated.split("\n") == [valid.targets[0], "", *valid.targets[1:3], ""]
    for stored in (gzip.compress(text.encode()), codecs.BOM_UTF8 + text.encode()):  # as a file may be stored
        monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(stored)))
        assert main(["translate", "run", str(out), "-", "--beam", "1"]) == 0
        assert capsys.readouterr().out == translated
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"Ein \xff Hund\n")))
    with pytest.raises(SystemExit) as stopped:
        main(["translate", "run", str(out), "-"])
    assert stopped.value.code == 2 and capsys.readouterr().err == (
        "lstmkit: error: stdin is not UTF-8 text: byte 0xff at offset 4 (line 1) does not decode\n")
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"\n\n")))  # blank lines: blank translations
    assert main(["translate", "run", str(out), "-"]) == 0
    assert capsys.readouterr().out == "\n\n"
    for data, message in [(b"", "stdin is empty: expected one sentence per line"),
                          (b"Ein Hund.\n\n", "--sentence 2 is an empty line: it has no attention to draw")]:
        monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(data)))
        with pytest.raises(SystemExit) as stopped:
            main(["translate", "run", str(out), "-", "--show-attention", str(out / "a.png"), "--sentence", "2"])
        assert stopped.value.code == 2 and capsys.readouterr().err == f"lstmkit: error: {message}\n"
    with pytest.raises(SystemExit) as stopped:
        main(["translate", "run", str(out), "-", "--sentence", "2"])
    assert capsys.readouterr().err == ("lstmkit: error: --sentence chooses the sentence whose attention "
                                       "--show-attention draws; give --show-attention\n")


def test_the_translate_api_takes_a_list_and_gives_a_list(copy_run):
    _, translator, valid, _ = copy_run
    assert translator.translate([]) == []
    assert translator.translate(["", valid.sources[0], "  "], beam=1) == ["", valid.targets[0], ""]
    with pytest.raises(TypeError, match=re.escape("sentences must be a list of strings, got one string ('a b'); "
                                                  "pass [sentence]")):
        translator.translate("a b")
    with pytest.raises(ValueError, match="^no sentences to score: give at least one source and its reference$"):
        translator.score([], [])
    # One string was scored as its characters ("3 sources and 1 references"); None failed inside.
    with pytest.raises(TypeError, match=re.escape("sources must be a list of strings, got one string ('ein'); "
                                                  "pass [sentence]")):
        translator.score("ein", ["a"])
    with pytest.raises(TypeError, match=re.escape("sentences must be a list of strings, got NoneType")):
        translator.translate(None)
    with pytest.raises(TypeError, match=re.escape("sentences must be a list of strings, got list holding other "
                                                  "objects")):
        translator.translate([1, 2])
    with pytest.raises(TypeError, match=re.escape("sentence must be a string, got list")):
        translator.align(["x"])


def test_train_command_writes_a_run_and_resumes_it(tmp_path, capsys):
    train, valid = copy_task(tmp_path, 64, 2), copy_task(tmp_path, 8, 3)
    out = tmp_path / "run"
    arguments = ["translate", "train", "--source", str(train[0]), "--target", str(train[1]),
                 "--valid-source", str(valid[0]), "--valid-target", str(valid[1]), "--out", str(out),
                 "--source-vocabulary-size", "300", "--target-vocabulary-size", "300", "--hidden-size", "16",
                 "--attention", "bahdanau", "--cell", "gru"]
    assert main([*arguments, "--steps", "2"]) == 0
    printed = capsys.readouterr().out
    assert "target tokens/s (cpu, precision 32, 1 process)\nwrote" in printed, printed
    assert main([*arguments, "--steps", "4", "--resume"]) == 0
    capsys.readouterr()
    with pytest.raises(SystemExit):  # --resume refuses other settings, before it reads the data or says a word
        main([*arguments, "--steps", "6", "--resume", "--select", "bleu"])
    out_said, err_said = capsys.readouterr()
    assert out_said == "" and err_said == (f"lstmkit: error: {out} was trained with other settings; --resume needs the "
                                           "same ones (select: 'loss' in the run, 'bleu' now)\n")
    rows = (out / "metrics.csv").read_text().splitlines()
    assert rows[0] == "step,epoch,tokens,seconds,lr,train_loss,val_loss,val_ppl,val_bleu"
    assert [row.split(",")[0] for row in rows[1:]] == ["1", "2", "3", "4"]  # an epoch is one batch of 64
    assert (out / "curves.png").read_bytes().startswith(b"\x89PNG")
    results = json.loads((out / "results.json").read_text())
    assert results["steps"] == 4 and results["config"]["attention"] == "bahdanau"
    translator = load_translator(out)
    assert translator.model.config.cell == "gru"
    assert translator.translate(valid_pairs := read_parallel(*valid).sources, beam=1) == \
        translator.translate(valid_pairs, beam=1, length_penalty=1.0) == translator.translate(valid_pairs, beam=1)


def test_the_encoder_takes_the_regulariser_flags(tmp_path):
    train, valid = copy_task(tmp_path, 32, 6), copy_task(tmp_path, 4, 7)
    out = tmp_path / "run"
    assert main(["translate", "train", "--source", str(train[0]), "--target", str(train[1]),
                 "--valid-source", str(valid[0]), "--valid-target", str(valid[1]), "--out", str(out),
                 "--source-vocabulary-size", "300", "--target-vocabulary-size", "300", "--hidden-size", "8",
                 "--recurrent-dropout", "0.1", "--zoneout", "0.1", "--init", "chrono", "--steps", "1",
                 "--no-validation-bleu"]) == 0
    regularisers = load_translator(out).model.config.regularisers
    assert regularisers.pop("chrono_max") >= 3  # the training sources' mean length: letters and the end token
    assert regularisers == {"recurrent_dropout": 0.1, "zoneout": 0.1, "init": ["chrono"]}
    with pytest.raises(ValueError, match="weight_dropout"):
        TranslationConfig(weight_dropout=1.5)


@pytest.mark.parametrize("size", [-3, 0, 2.5])
def test_an_untied_embedding_size_is_checked_when_the_config_is_built(size):
    """It reached torch, after the subwords were learned: 'negative dimension -3'."""
    with pytest.raises(ValueError, match=re.escape(f"embedding_size must be a positive integer, got {size}")):
        TranslationConfig(embedding_size=size, tie_embeddings=False)


def test_a_run_evaluated_each_epoch_and_killed_before_its_results_writes_them_when_resumed(tmp_path, capsys):
    """eval_every None (each epoch) stopped the resume in the training core: 'eval_every must
    be an integer, got None (NoneType)'."""
    train, valid = copy_task(tmp_path, 64, 4), copy_task(tmp_path, 8, 5)
    config = TranslationConfig(**{**TINY, "hidden_size": 8}, steps=4, validation_bleu=False)
    translate.train(*train, *valid, tmp_path / "run", config)
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    (tmp_path / "run" / "results.json").unlink()
    capsys.readouterr()
    translate.train(*train, *valid, tmp_path / "run", config, resume=True)
    resumed = json.loads((tmp_path / "run" / "results.json").read_text())
    assert {name: value for name, value in resumed.items() if name != "seconds"} == \
        {name: value for name, value in results.items() if name != "seconds"}
    assert f"{tmp_path / 'run'} ended at step 4 but was stopped before it wrote results.json" in capsys.readouterr().err


def test_select_bleu_keeps_the_evaluation_with_the_highest_bleu(tmp_path):
    train, valid = copy_task(tmp_path, 256, 4), copy_task(tmp_path, 20, 5)
    config = TranslationConfig(**TINY, steps=40, eval_every=8, select="bleu")
    translate.train(*train, *valid, tmp_path / "run", config)
    rows = list(csv.DictReader((tmp_path / "run" / "metrics.csv").open()))
    bleus = [float(row["val_bleu"]) for row in rows]
    best = int(rows[bleus.index(max(bleus))]["step"])
    assert json.loads((tmp_path / "run" / "results.json").read_text())["best_step"] == best
    assert json.loads((tmp_path / "run" / "best" / "config.json").read_text())["progress"]["step"] == best
    with pytest.raises(ValueError, match=re.escape("select='bleu' (--select bleu) needs validation_bleu, the BLEU of "
                                                   "each evaluation to select on, which --no-validation-bleu turns off")):
        TranslationConfig(select="bleu", validation_bleu=False)


@pytest.mark.skipif(not MULTI30K.is_dir(), reason="../shared/data/multi30k is absent")
def test_multi30k_files_read_as_pairs():
    pairs = read_parallel(MULTI30K / "val.de.gz", MULTI30K / "val.en.gz")
    assert len(pairs) == 1014
    assert pairs.sources[0] == "Eine Gruppe von Männern lädt Baumwolle auf einen Lastwagen"


@pytest.mark.parametrize("beam", [1, 3])
def test_a_translation_stops_at_its_own_length_limit_whatever_else_is_in_its_batch(beam):
    """Twice its source's length plus 10, capped by max_length: a random model never ends, so the
    limits bind, and the short sentence's translation is cut where it is cut alone."""
    model = random_model("luong", seed=5)
    with torch.no_grad():
        model.output.bias[3] -= 10  # the end token: never chosen
    sources = [[4, 5, 6, 3], [7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 3]]
    together = decode_ids(model, sources, beam, max_length=30, length_penalty=1.0)
    alone = [decode_ids(model, [ids], beam, max_length=30, length_penalty=1.0)[0] for ids in sources]
    assert together == alone and [len(ids) for ids in together] == [2 * 4 + 10, 30]


def test_pairs_left_out_of_training_are_said_when_the_job_is_built_not_after_training(tmp_path):
    train = read_parallel(*copy_task(tmp_path, 40, 0))
    vocabularies = Vocabularies(Subwords.learn(train.sources, 300), Subwords.learn(train.targets, 300))
    config = TranslationConfig(**TINY, max_train_length=5, steps=1)
    trainer = Trainer(config)
    with pytest.warns(UserWarning) as warned:
        job = TranslationJob(train, train, vocabularies, config, trainer.processes, trainer.device)
    lengths = [(len(source) - 1, len(target))  # subwords, without the end token the source ends with
               for source, target in zip(*vocabularies.encode(train), strict=True)]
    too_long = sum(max(pair) > 5 for pair in lengths)
    assert 0 < job.left_out == too_long < 40 and any(max(pair) == 5 for pair in lengths)  # exactly 5: kept
    assert [str(warning.message) for warning in warned] == [
        f"left out {too_long} of 40 training pairs with an empty side or over 5 subwords (max_train_length, --max-train-length)"]


def test_training_keeps_the_callers_random_state(tmp_path):
    train, valid = copy_task(tmp_path, 40, 0), copy_task(tmp_path, 8, 1)
    config = TranslationConfig(**{**TINY, "batch_size": 8}, steps=2, validation_bleu=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the vocabulary of 40 strings holds fewer than 300 pieces
        assert_keeps_random_state(lambda: translate.train(*train, *valid, tmp_path / "run", config))


def test_characters_the_figure_s_font_lacks_are_said_once(tmp_path):
    """matplotlib warned once per character it drew as a box, at each of its drawings."""
    from lstmkit import plots

    import matplotlib

    path = tmp_path / "attention.png"
    with pytest.warns(UserWarning) as warned, matplotlib.rc_context({"font.family": ["DejaVu Sans"]}):
        plots.attention_matrix(["天气", "很", "好"], ["the", "weather"], torch.full((2, 3), 1 / 3).numpy(), path)
    assert [str(warning.message) for warning in warned] == [
        f"{path}: 4 character(s) of its text are drawn as boxes ('天', '气', '很', '好'): the figure's font, "
        "DejaVu Sans, lacks them; matplotlib uses a font that has them where its configuration names it (font.family "
        "in matplotlibrc)"]
    assert path.read_bytes()[:4] == b"\x89PNG"


def test_a_model_in_training_mode_translates_in_evaluation_mode_and_stays_in_training_mode(copy_run):
    """translate() and align() ran a model the caller had put in training mode (to fine-tune it)
    with its dropout on: other translations at every call, where lm's sample and eval, and
    forecast's predict, always evaluate."""
    _, translator, valid, _ = copy_run
    modes = []
    hook = translator.model.register_forward_pre_hook(lambda module, arguments: modes.append(module.training))
    try:
        expected = translator.translate(valid.sources[:5])
        translator.model.train()
        assert translator.translate(valid.sources[:5]) == expected
        translator.align(valid.sources[0])
        assert translator.model.training and all(module.training for module in translator.model.modules())
    finally:
        hook.remove()
        translator.model.eval()
    assert modes and not any(modes)
