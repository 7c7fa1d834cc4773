"""The continuous cache pointer and dynamic evaluation: hand-worked cases, agreement with plain
evaluation where they must reduce to it, and their option checks."""

from __future__ import annotations

import copy
import math
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils import _pytree as pytree

from lstmkit.models.language import LanguageModel, LanguageModelConfig
from lstmkit.pipelines.lm import TextScores, TrainedLanguageModel
from lstmkit.pipelines.lm_evaluation import (CachePointer, DynamicEvaluation, cache_log_probabilities,
                                             score_dynamically, score_with_cache)
from lstmkit.text import END_OF_LINE, UNKNOWN, Vocabulary

HIDDEN = torch.tensor([[1.0], [2.0], [1.0]])
MODEL_PROBS = torch.tensor([[0.5, 0.5], [0.8, 0.2], [0.6, 0.4]])
TARGETS = torch.tensor([0, 1, 1])
TARGET_LOG_PROBS = MODEL_PROBS.log().gather(1, TARGETS.unsqueeze(1)).squeeze(1)  # 0.5, 0.2, 0.4


def test_the_cache_mixture_by_hand():
    """θ = 1, λ = 0.5. Step 0 has no cache: the model's 0.5. Step 1's cache holds (h_0 = 1,
    next word 0): p(1) = 0.5 · 0.2 + 0.5 · 0. Step 2's holds h_0 = 1 → 0 and h_1 = 2 → 1,
    scored e^1 and e^2: p(1) = 0.5 · 0.4 + 0.5 · e²/(e + e²)."""
    scored = cache_log_probabilities(HIDDEN, TARGET_LOG_PROBS, TARGETS, CachePointer(window=2, theta=1.0, mixture=0.5))
    e = math.e
    expected = [0.5, 0.5 * 0.2, 0.5 * 0.4 + 0.5 * e**2 / (e + e**2)]
    assert scored.exp().tolist() == pytest.approx(expected, rel=1e-6)


def test_the_window_bounds_the_cache():
    """With window 1, step 2 sees only h_1 (next word 1): p(1) = 0.5 · 0.4 + 0.5."""
    scored = cache_log_probabilities(HIDDEN, TARGET_LOG_PROBS, TARGETS, CachePointer(window=1, theta=1.0, mixture=0.5))
    assert scored.exp()[2].item() == pytest.approx(0.7, rel=1e-6)


@pytest.fixture(scope="module")
def trained() -> TrainedLanguageModel:
    torch.manual_seed(0)
    text = "to be or not to be that is the question\n" * 4
    vocabulary = Vocabulary.build(text, "char", 1)
    model = LanguageModel(LanguageModelConfig("lstm", len(vocabulary), hidden_size=16, num_layers=1, dropout=0.0))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    tokens = vocabulary.encode(text, "text")
    for _ in range(10):
        logits, _ = model(tokens[:-1].unsqueeze(1))
        loss = F.cross_entropy(logits[:, 0], tokens[1:])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return TrainedLanguageModel(model.eval(), vocabulary, {})


TEXT = "to be or not to be that is the question\n"


def test_a_cache_of_weight_zero_is_plain_evaluation(trained):
    plain = trained.evaluate(TEXT)
    assert trained.evaluate(TEXT, cache=CachePointer(mixture=0.0)).loss == pytest.approx(plain.loss, rel=1e-5)


def test_the_cache_spans_the_windows_the_text_is_cut_into(trained):
    tokens = trained.vocabulary.encode(TEXT * 3, "text")
    cache = CachePointer(window=50, theta=0.5, mixture=0.3)
    whole, count = score_with_cache(trained.model, tokens, cache, window=1000)
    cut, cut_count = score_with_cache(trained.model, tokens, cache, window=7)
    assert cut_count == count == tokens.numel() - 1
    assert cut == pytest.approx(whole, rel=1e-5)


def test_a_repeated_text_scores_better_with_the_cache(trained):
    text = "xyzzy plugh " * 10  # words the model never saw, repeated
    vocabulary = Vocabulary.build(text + TEXT, "char", 1)
    model = LanguageModel(LanguageModelConfig("lstm", len(vocabulary), hidden_size=16, num_layers=1, dropout=0.0))
    untrained = TrainedLanguageModel(model.eval(), vocabulary, {})
    assert untrained.evaluate(text, cache=CachePointer(theta=1.0, mixture=0.5)).loss < untrained.evaluate(text).loss


def test_dynamic_evaluation_by_hand(trained):
    """Segment 1 scored with θ₀; θ₁ = θ₀ − η ∇ℓ₁ (mean loss of segment 1); segment 2 scored with
    θ₁ from the state segment 1 ended in."""
    tokens = trained.vocabulary.encode(TEXT, "text")
    dynamic = DynamicEvaluation(segment=20, lr=0.5, decay=0.0)
    model = copy.deepcopy(trained.model)
    logits, state = model(tokens[:20].unsqueeze(1))
    first = F.cross_entropy(logits[:, 0], tokens[1:21], reduction="sum")
    gradients = torch.autograd.grad(first / 20, list(model.parameters()))
    with torch.no_grad():
        for parameter, gradient in zip(model.parameters(), gradients, strict=True):
            parameter -= 0.5 * gradient
        logits, _ = model(tokens[20:-1].unsqueeze(1), tuple(part.detach() for part in state))
        second = F.cross_entropy(logits[:, 0], tokens[21:], reduction="sum")
    total, count = score_dynamically(trained.model, tokens, dynamic)
    assert count == tokens.numel() - 1
    assert total == pytest.approx(first.item() + second.item(), rel=1e-5)


def test_dynamic_evaluation_with_full_decay_is_plain_evaluation_and_leaves_the_model_alone(trained):
    before = {name: value.clone() for name, value in trained.model.state_dict().items()}
    plain = trained.evaluate(TEXT)
    assert trained.evaluate(TEXT, dynamic=DynamicEvaluation(segment=9, lr=0.5, decay=1.0)).loss \
        == pytest.approx(plain.loss, rel=1e-5)
    adapted = trained.evaluate(TEXT * 4, dynamic=DynamicEvaluation(segment=20, lr=0.5))
    assert adapted.loss < trained.evaluate(TEXT * 4).loss, "the model adapts to the text it reads"
    for name, value in trained.model.state_dict().items():
        assert torch.equal(value, before[name]), name


def test_dynamic_evaluation_that_diverges_is_refused_not_scored(trained):
    """A rate of 1e30 made the loss nan, reported as a score (perplexity inf) with exit status 0."""
    with pytest.raises(ValueError, match=re.escape("dynamic evaluation diverged: the loss of the segment from token 20 "
                                                   "is nan after 1 SGD step at rate 1e+30; lower the rate "
                                                   "(--dynamic-lr)")):
        trained.evaluate(TEXT * 2, dynamic=DynamicEvaluation(segment=20, lr=1e30))
    damaged = copy.deepcopy(trained)  # no step made: not the rate's doing (review29)
    with torch.no_grad():
        next(value for name, value in damaged.model.named_parameters() if "weight_hh" in name)[0, 0] = math.nan
    with pytest.raises(ValueError, match="^" + re.escape("the model's weights hold values that are not finite (a "
                                                         "damaged checkpoint?), before any SGD step")):
        damaged.evaluate(TEXT * 2, dynamic=DynamicEvaluation(segment=20, lr=1e-3))
    for cache in (None, CachePointer()):  # scored as nan, with exit status 0
        with pytest.raises(ValueError, match="^" + re.escape("the model's loss on this text is nan: its weights hold "
                                                             "values that are not numbers")):
            damaged.evaluate(TEXT * 2, cache=cache)
    assert math.isnan(TextScores.from_loss(math.nan, 5, 1.0).perplexity)
    assert TextScores.from_loss(1e4, 5, 1.0).perplexity == math.inf


def test_dynamic_evaluation_adapts_weights_the_caller_froze(trained):
    """The adapted copy kept the caller's requires_grad=False: one frozen weight ended in a bare
    TypeError (its .grad None), all frozen in torch's 'does not require grad'."""
    expected = trained.evaluate(TEXT * 2, dynamic=DynamicEvaluation(segment=20, lr=0.5))
    trained.model.embedding.weight.requires_grad_(False)
    try:
        assert trained.evaluate(TEXT * 2, dynamic=DynamicEvaluation(segment=20, lr=0.5)) == expected
        trained.model.requires_grad_(False)
        assert trained.evaluate(TEXT * 2, dynamic=DynamicEvaluation(segment=20, lr=0.5)) == expected
        assert not any(parameter.requires_grad for parameter in trained.model.parameters())
    finally:
        trained.model.requires_grad_(True)


@pytest.mark.parametrize("build, message", [
    (lambda: CachePointer(window=0), "the cache window (--cache-window) must be a positive number of tokens, got 0"),
    (lambda: CachePointer(theta=-1.0), "the cache's theta (--cache-theta) must be a non-negative number, got -1.0"),
    (lambda: CachePointer(mixture=1.5), "the cache's mixture weight (--cache-lambda) must be in [0, 1], got 1.5"),
    (lambda: DynamicEvaluation(segment=0), "the dynamic evaluation segment (--dynamic-segment) must be a positive "
                                           "number of tokens, got 0"),
    (lambda: DynamicEvaluation(lr=math.nan), "the dynamic evaluation rate (--dynamic-lr) must be a positive number, "
                                             "got nan"),
    (lambda: DynamicEvaluation(decay=2.0), "the dynamic evaluation decay (--dynamic-decay) must be in [0, 1], got 2.0"),
])
def test_options_are_checked(build, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        build()


@pytest.mark.parametrize("way, label", [({}, "lm eval"), ({"cache": CachePointer()}, "lm eval with the cache pointer"),
                                        ({"dynamic": DynamicEvaluation()}, "lm eval dynamically")])
def test_progress_reports_the_tokens_scored_on_stderr(trained, way, label, capsys):
    """`lm eval` printed nothing while it ran (~42 minutes for 10 MB with a 2×512 model)."""
    quiet = trained.evaluate(TEXT * 30, **way)
    assert capsys.readouterr().err == ""
    shown = trained.evaluate(TEXT * 30, **way, progress=True)
    assert shown.loss == quiet.loss
    assert capsys.readouterr().err.startswith(f"{label}: token {quiet.tokens}/{quiet.tokens} ")
    with pytest.raises(TypeError, match=re.escape("progress must be True or False, got 'yes' (str)")):
        trained.evaluate(TEXT, progress="yes")


def test_one_way_at_a_time(trained):
    with pytest.raises(ValueError, match="score with the cache pointer or with dynamic evaluation, one at a time"):
        trained.evaluate(TEXT, cache=CachePointer(), dynamic=DynamicEvaluation())
    # A switch in place of the settings failed inside: "'bool' object has no attribute 'theta'".
    with pytest.raises(TypeError, match=re.escape("cache must be a CachePointer (lstmkit.pipelines.lm_evaluation) "
                                                  "or None, got True; e.g. cache=CachePointer()")):
        trained.evaluate(TEXT, cache=True)
    with pytest.raises(TypeError, match=re.escape("dynamic must be a DynamicEvaluation")):
        trained.evaluate(TEXT, dynamic="yes")


@pytest.mark.parametrize("dtype, tolerance", [(torch.float64, 1e-5), (torch.bfloat16, 5e-2)])
def test_the_cache_scores_a_model_moved_to_another_dtype(trained, dtype, tolerance):
    """The cache scored the hidden states in float32 with the model's own weights: a model
    moved to float64 or bfloat16 failed (`mat1 and mat2 must have the same dtype`). Its
    features are kept in the model's dtype, float32 at least."""
    cache = CachePointer(window=50, theta=0.5, mixture=0.3)
    moved = TrainedLanguageModel(copy.deepcopy(trained.model).to(dtype), trained.vocabulary, {})
    assert moved.evaluate(TEXT * 2, cache=cache).loss == pytest.approx(
        trained.evaluate(TEXT * 2, cache=cache).loss, rel=tolerance)


@pytest.mark.parametrize("way", ["sample", "evaluate", "cache"])
def test_sampling_and_scoring_leave_the_model_in_its_modes(trained, way):
    """Sampling and the cache set the model to evaluation mode and left it there; every way
    gives each submodule its own mode back (one frozen in evaluation mode stays so)."""
    model = copy.deepcopy(trained.model).train()
    model.embedding.eval()
    user = TrainedLanguageModel(model, trained.vocabulary, {})
    {"sample": lambda: user.sample("to", 5, seed=0), "evaluate": lambda: user.evaluate(TEXT),
     "cache": lambda: user.evaluate(TEXT, cache=CachePointer())}[way]()
    assert [module.training for module in model.modules()] == [
        module is not model.embedding for module in model.modules()]


def test_a_sample_comes_piece_by_piece_as_drawn_with_the_callers_modes_between_pieces(trained):
    """`lm sample` printed nothing until the whole sample was drawn: an interrupted long one
    lost everything. The pieces are the sample, and between them the caller's model is in its
    own mode, with gradients as the caller had them."""
    model = copy.deepcopy(trained.model).train()
    user = TrainedLanguageModel(model, trained.vocabulary, {})
    pieces = []
    for piece in user.sample_pieces("to", 12, seed=3):
        assert model.training and torch.is_grad_enabled()
        pieces.append(piece)
    assert pieces[0] == "to" and len(pieces) == 13 and all(len(piece) == 1 for piece in pieces[1:])
    assert "".join(pieces) == user.sample("to", 12, seed=3)
    vocabulary = Vocabulary("word", (UNKNOWN, END_OF_LINE, "a", "b"))
    words = LanguageModel(LanguageModelConfig("lstm", len(vocabulary), hidden_size=4, num_layers=1))
    worded = TrainedLanguageModel(words, vocabulary, {})
    for prime in ("", "a", "a ", "a\n"):  # words joined by spaces within a line, as decode joins them
        pieces = list(worded.sample_pieces(prime, 30, seed=0))
        drawn = [END_OF_LINE if piece == "\n" else piece.removeprefix(" ") for piece in pieces[1:]]
        generated = vocabulary.decode([vocabulary.index[word] for word in drawn])
        joined = bool(prime) and not prime[-1].isspace() and generated[:1] not in ("\n", "")
        assert "".join(pieces) == prime + (" " if joined else "") + generated and "\n" in generated


def test_windows_line_ends_in_a_prime_or_a_text_are_line_feeds_as_in_a_file(trained):
    """A file's CR LF reads as LF, but a prime or a str to score with them was refused: the
    vocabulary has no '\\r'."""
    assert trained.sample("to\r\nbe", 10, seed=1) == trained.sample("to\nbe", 10, seed=1)
    assert trained.evaluate("to be\r\nor not\rto be").loss == trained.evaluate("to be\nor not\nto be").loss


@pytest.mark.parametrize("text, hint", [
    ("cafe\u0301", "; the text is written decomposed: composed, unicodedata.normalize('NFC', text), it lacks none "
                   "of them"),
    ("cafe\u0301 q\u0301", ""),  # q́ has no composed form: composing reads no more of it
    ("\u1112\u1161\u11ab", "; the text is written decomposed: composed, unicodedata.normalize('NFC', text), it lacks "
                           "none of them"),  # Hangul as its jamo: no combining marks, composed all the same
    ("cafe q", ""),  # nothing to compose
    ("n\u0303", ""),  # ñ is no more in the vocabulary than n and the tilde
    ("cafe\u0301 \u00f1 x", "; part of the text is written decomposed: composed, unicodedata.normalize('NFC', "
                            "text), it would no longer lack '\u0301' (U+0301), and still 2 other characters"),
    ("cafe\u0301 n\u0303 x", "; part of the text is written decomposed: composed, unicodedata.normalize('NFC', "
                             "text), it would no longer lack 'n' (U+006E), '\u0301' (U+0301), '\u0303' (U+0303), but "
                             "would lack '\u00f1' (U+00F1), and still 1 other character"),  # ñ: the composing's own
])
def test_a_text_written_decomposed_is_named_with_what_composing_it_leaves(text, hint):
    vocabulary = Vocabulary.build("caf\u00e9 or cafe \ud55c", "char", 1)
    with pytest.raises(ValueError) as refused:
        vocabulary.encode(text, "the text")
    assert str(refused.value).startswith("the text has characters the model's vocabulary lacks: ")
    assert str(refused.value).endswith(hint) and (hint or "decomposed" not in str(refused.value))


@pytest.mark.parametrize("context", [torch.no_grad, torch.inference_mode])
def test_dynamic_evaluation_under_the_callers_no_grad_gives_the_numbers_it_gives_outside(trained, context):
    """It ended in "element 0 of tensors does not require grad" from inside torch: its SGD steps
    need autograd, which it now turns on for itself, and gives the caller's setting back."""
    expected = trained.evaluate(TEXT * 3, dynamic=DynamicEvaluation(segment=7))
    with context():
        assert trained.evaluate(TEXT * 3, dynamic=DynamicEvaluation(segment=7)) == expected
        assert not torch.is_grad_enabled()


def test_numpy_integers_are_taken_where_ints_are(trained):
    """np.int64 passed the checks and then failed in torch.Generator.manual_seed with a bare
    "an integer is required", naming neither the argument nor the value."""
    assert trained.sample("to", np.int64(8), top_k=np.int32(3), seed=np.uint64(4)) == trained.sample(
        "to", 8, top_k=3, seed=4)


def test_scoring_from_a_position_gives_those_positions_numbers_alone():
    """The earlier positions are the cache's history: scoring them too (and dropping them) made
    (window + 1000)² matrices, 5.6 GB at a window of 10,000 on a 30 KB text."""
    cache = CachePointer(window=2, theta=1.0, mixture=0.5)
    whole = cache_log_probabilities(HIDDEN, TARGET_LOG_PROBS, TARGETS, cache)
    assert torch.equal(cache_log_probabilities(HIDDEN, TARGET_LOG_PROBS[1:], TARGETS, cache, scored_from=1), whole[1:])


def test_a_sample_drawn_partly_under_autocast_goes_on_without_it():
    """A piece drawn under the caller's autocast carried a bfloat16 state into the next, which
    failed on it without autocast."""
    vocabulary = Vocabulary("char", tuple("abc"))
    torch.manual_seed(0)
    model = TrainedLanguageModel(LanguageModel(LanguageModelConfig("lstm", 3, hidden_size=8, num_layers=2)),
                                 vocabulary, {})
    pieces = model.sample_pieces("a", 4, seed=0, temperature=0)
    assert next(pieces) == "a"
    with torch.autocast("cpu", torch.bfloat16):
        drawn = [next(pieces)]
    drawn += list(pieces)
    assert len(drawn) == 4 and set(drawn) <= set("abc")
    model.model.eval()
    with torch.no_grad(), torch.autocast("cpu", torch.bfloat16):  # the state kept in float32 changes no number
        logits, state = model.model(torch.tensor([[0], [1]]))
        assert {part.dtype for part in pytree.tree_leaves(state)} == {torch.bfloat16}
        kept = pytree.tree_map(lambda part: part.float(), state)
        assert torch.equal(model.model(torch.tensor([[2]]), state)[0], model.model(torch.tensor([[2]]), kept)[0])

