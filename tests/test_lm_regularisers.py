"""The language model's own regularisers and AWD-LSTM's training pieces, each an option:
embedding dropout, locked dropout, AR and TAR, variable-length windows with their rate scale,
NT-ASGD in a language-model run (resumed bit for bit), and the `awd` recipe that sets them."""

from __future__ import annotations

import dataclasses
import json
import math
import random
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from helpers import Killed, dies_at_step
from lstmkit import lm
from lstmkit.models.language import LanguageModel, LanguageModelConfig
from lstmkit.pipelines.lm import RECIPES, LanguageModelJob, LMTrainingConfig, check_cutoffs
from lstmkit.text import load_corpus
from lstmkit.text.corpus import StreamWindows
from lstmkit.training import Processes, Trainer
from lstmkit.training.loop import check_same_settings

VOCABULARY = 7


def test_embedding_dropout_drops_whole_words_for_the_batch():
    torch.manual_seed(0)
    model = LanguageModel(LanguageModelConfig("lstm", VOCABULARY, hidden_size=8, num_layers=1, dropout=0.0,
                                              embedding_dropout=0.5))
    tokens = torch.tensor([[0, 1, 2], [0, 1, 2], [3, 4, 5], [6, 6, 6]] * 5)
    embedded = model.embed(tokens)
    weight = model.embedding.weight.detach()
    dropped = set()
    for word in range(VOCABULARY):
        rows = embedded[tokens == word]
        if rows.abs().sum() == 0:
            dropped.add(word)
        else:
            torch.testing.assert_close(rows, (2 * weight[word]).expand_as(rows))
    assert 0 < len(dropped) < VOCABULARY, "some words dropped, every occurrence of them"
    model.eval()
    torch.testing.assert_close(model.embed(tokens), F.embedding(tokens, weight))


def test_locked_dropout_shares_one_mask_over_the_steps():
    torch.manual_seed(0)
    model = LanguageModel(LanguageModelConfig("lstm", VOCABULARY, hidden_size=8, num_layers=1, dropout=0.5,
                                              locked_dropout=True))
    features = torch.rand(6, 3, 8) + 0.5
    ratio = model.drop(features) / features
    assert set(ratio.unique().tolist()) <= {0.0, 2.0}
    for step in ratio:
        assert torch.equal(step, ratio[0])
    model.eval()
    assert torch.equal(model.drop(features), features)


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "text.txt"
    path.write_text("abcdefg hijklmn " * 40, encoding="utf-8")
    return load_corpus(path)


@pytest.mark.parametrize("alpha, beta", [(1.5, 0.0), (0.0, 2.5), (1.5, 2.5)])
def test_ar_and_tar_join_the_loss_as_written(corpus, alpha, beta):
    """With no dropout, AR is α · mean(h_t²) and TAR β · mean((h_t − h_{t−1})²) of the top layer."""
    config = LMTrainingConfig(num_layers=1, hidden_size=8, seq_len=10, batch_size=4, dropout=0.0,
                              activation_regularisation=alpha, temporal_activation_regularisation=beta)
    job = LanguageModelJob(corpus, config, Processes(), torch.device("cpu"))
    inputs, targets = job.train_windows.window(0)
    logits, _, hidden, _ = job.model(inputs, None, return_hidden=True)
    expected = (F.cross_entropy(logits.flatten(0, 1), targets.flatten()) + alpha * hidden.pow(2).mean()
                + beta * (hidden[1:] - hidden[:-1]).pow(2).mean())
    loss, items = job.train_loss(job.model, 0)
    assert items == targets.numel()
    torch.testing.assert_close(loss, expected)


def test_tar_adds_nothing_on_a_one_step_window(corpus, monkeypatch):
    """A pass of random lengths can end in a window of one step: TAR has no pair there (it
    made the loss the mean of an empty tensor, nan, and training stopped as diverged)."""
    config = LMTrainingConfig(num_layers=1, hidden_size=8, seq_len=10, batch_size=4, dropout=0.0,
                              activation_regularisation=1.5, temporal_activation_regularisation=2.5)
    job = LanguageModelJob(corpus, config, Processes(), torch.device("cpu"))
    monkeypatch.setattr(job, "training_window", lambda step: (20, 1))
    inputs, targets = job.train_windows.span(20, 1)
    logits, _, hidden, _ = job.model(inputs, None, return_hidden=True)
    expected = F.cross_entropy(logits.flatten(0, 1), targets.flatten()) + 1.5 * hidden.pow(2).mean()
    loss, items = job.train_loss(job.model, 5)
    assert items == targets.numel() == 4
    torch.testing.assert_close(loss, expected)


def test_the_awd_recipe_sets_what_is_left_at_its_default():
    config = LMTrainingConfig(recipe="awd", dropout=0.25)
    assert config.dropout == 0.25, "a setting given beside the recipe wins"
    for name, value in RECIPES["awd"].items():
        if name != "dropout":
            assert getattr(config, name) == value, name
    model_config = config.model_config(50)
    assert model_config.regularisers == {"input_dropout": 0.3, "weight_dropout": 0.5}
    assert (model_config.embedding_dropout, model_config.locked_dropout, model_config.tie_weights) == (0.1, True, True)
    kept = LMTrainingConfig(recipe="awd", weight_dropout=0.0, dropout=0.2, recipe_keeps=("weight_dropout", "dropout"))
    assert (kept.weight_dropout, kept.dropout, kept.embedding_dropout) == (0.0, 0.2, 0.1)
    # `--recipe awd --dropout 0.4` resumes as `--recipe awd`: the same settings, other flags given
    saved = json.loads(json.dumps(dataclasses.asdict(LMTrainingConfig(recipe="awd", dropout=0.4,
                                                                      recipe_keeps=("dropout",)))))  # as written
    check_same_settings(saved, LMTrainingConfig(recipe="awd"), Path("run"))


def test_flags_given_beside_the_recipe_win_even_at_their_default(tmp_path):
    """`--recipe awd --weight-dropout 0` trained with DropConnect 0.5: a flag equal to its
    default was taken as not given. Switches can be turned off beside it too."""
    from lstmkit.cli import main

    text = tmp_path / "text.txt"
    text.write_text("the cat sat on the mat and the dog sat on the log\n" * 30, encoding="utf-8")
    main(["lm", "train", str(text), "--level", "word", "--hidden-size", "8", "--num-layers", "2", "--batch-size", "4",
          "--recipe", "awd", "--weight-dropout", "0", "--dropout", "0.2", "--no-locked-dropout",
          "--min-lr-fraction", "0.1",
          "--steps", "2", "--eval-every", "2", "--out", str(tmp_path / "run")])
    config = json.loads((tmp_path / "run" / "results.json").read_text())["config"]
    assert {name: config[name] for name in ("weight_dropout", "dropout", "locked_dropout", "min_lr_fraction",
                                            "embedding_dropout", "optimizer")} == {
        "weight_dropout": 0.0, "dropout": 0.2, "locked_dropout": False, "min_lr_fraction": 0.1,
        "embedding_dropout": 0.1, "optimizer": "nt-asgd"}
    assert config["recipe_keeps"] == ["dropout", "locked_dropout", "min_lr_fraction", "weight_dropout"]


def test_with_locked_dropout_the_layers_drop_nothing_per_element_between_them():
    """AWD-LSTM drops between the layers with one mask per sequence (its dropouth, the layers'
    input_dropout here); --locked-dropout also dropped 0.4 per element there (0.58 in all)."""
    per_element = LanguageModel(LanguageModelConfig("lstm", VOCABULARY, hidden_size=8, num_layers=2, dropout=0.4))
    locked = LanguageModel(LanguageModelConfig("lstm", VOCABULARY, hidden_size=8, num_layers=2, dropout=0.4,
                                               locked_dropout=True))
    assert (per_element.recurrent.dropout, locked.recurrent.dropout) == (0.4, 0.0)


@pytest.mark.parametrize("settings, message", [
    (dict(recipe="qrnn"), "recipe must be one of awd, got 'qrnn'"),
    (dict(recipe="awd", recipe_keeps=("level",)), "recipe_keeps names settings of the recipe 'awd' (locked_dropout, "
                                                  "dropout, "),
    (dict(recipe_keeps=("dropout",)), "recipe_keeps names settings a recipe leaves as given; no recipe is given, got "
                                      "recipe_keeps=('dropout',)"),
    (dict(recipe="awd", recipe_keeps="dropout"), "recipe_keeps must be a tuple of setting names, got 'dropout'; give "
                                                 "('dropout',)"),
    # "'NoneType' object is not iterable", "'int' object is not iterable"
    (dict(recipe="awd", recipe_keeps=None), "recipe_keeps must be a tuple of setting names, got None (NoneType)"),
    (dict(adaptive_softmax_cutoffs=10), "adaptive_softmax_cutoffs must be a tuple of token ranks, got 10 (int)"),
    (dict(activation_regularisation=-1.0), "activation_regularisation must be a non-negative number, got -1.0"),
    (dict(temporal_activation_regularisation=float("nan")),
     "temporal_activation_regularisation must be a non-negative number, got nan"),
    (dict(embedding_dropout=1.0), "embedding_dropout must be in [0, 1), got 1.0"),
    (dict(chrono_max=10.0), "chrono_max (--chrono-max) goes with init 'chrono' (--init chrono); got chrono_max=10.0 "
                            "with init none"),
])
def test_options_are_checked(settings, message):
    with pytest.raises((ValueError, TypeError), match=re.escape(message)):
        LMTrainingConfig(**settings)


def test_variable_length_windows_cover_each_pass_with_awd_lengths():
    """One pass in windows of L or L/2 plus N(0, 5), at least 5 and at most L + 40, end to end."""
    windows = StreamWindows(torch.arange(2 * 200_001).view(2, 200_001), seq_len=70)
    plan = windows.random_lengths(seed=3)
    starts, lengths = zip(*plan, strict=True)
    assert starts[0] == 0 and all(a + n == b for a, n, b in zip(starts, lengths, starts[1:], strict=False))
    assert starts[-1] + lengths[-1] == 200_000, "every input with a target, once"
    assert min(lengths[:-1]) >= 5 and max(lengths) <= 110
    short = sum(1 for length in lengths if length < 52) / len(lengths)  # L/2 + 3.4σ
    assert short == pytest.approx(0.05, abs=0.01)
    long = [length for length in lengths if length >= 52]
    assert sum(long) / len(long) == pytest.approx(69.5, abs=0.3), "int(N(70, 5)) averages 69.5"
    assert windows.random_lengths(seed=3) == plan and windows.random_lengths(seed=4) != plan


def test_variable_length_steps_follow_each_pass_and_scale_the_rate(corpus):
    config = LMTrainingConfig(num_layers=1, hidden_size=8, seq_len=10, batch_size=4, variable_length=True)
    job = LanguageModelJob(corpus, config, Processes(), torch.device("cpu"))
    first, second = job.window_plan(0), job.window_plan(1)
    assert first != second and job.steps_per_epoch() == len(first)
    steps = len(first) + len(second)
    assert [job.training_window(step) for step in range(steps)] == first + second
    assert [job.learning_rate_scale(step) for step in range(3)] == [length / 10 for _, length in first[:3]]
    start, length = first[1]
    inputs, targets = job.train_windows.span(start, length)
    assert inputs.shape[0] == length and torch.equal(targets[:-1], inputs[1:])
    lost = tuple(torch.full((1, 4, 8), math.nan) for _ in range(2))
    job.state = lost
    assert torch.isfinite(job.train_loss(job.model, len(first))[0]), "a pass starts from no state"
    job.state = lost
    assert torch.isnan(job.train_loss(job.model, len(first) + 1)[0]), "within a pass the state carries over"


def test_the_loop_multiplies_the_schedule_by_the_jobs_rate_scale(corpus):
    config = LMTrainingConfig(num_layers=1, hidden_size=8, seq_len=10, batch_size=4, variable_length=True,
                              optimizer="sgd", lr=0.5, warmup=0, min_lr_fraction=1.0, steps=6, eval_every=3)
    job = LanguageModelJob(corpus, config, Processes(), torch.device("cpu"))
    run = Trainer(config).run(job)
    plan = job.window_plan(0)
    assert [row["lr"] for row in run.history] == pytest.approx([0.5 * plan[step][1] / 10 for step in (2, 5)])


def test_the_awd_optimizer_and_windows_resume_bit_for_bit_after_the_switch(tmp_path, monkeypatch):
    """variable_length with NT-ASGD: the validation text (the training letters shuffled) stops
    improving early, the run switches to averaging, dies, and resumes to the same numbers."""
    text, validation = tmp_path / "text.txt", tmp_path / "validation.txt"
    text.write_text("abcdefg hijklmn " * 60, encoding="utf-8")
    letters = list("abcdefg hijklmn " * 10)
    random.Random(0).shuffle(letters)
    validation.write_text("".join(letters), encoding="utf-8")
    config = LMTrainingConfig(num_layers=1, hidden_size=16, seq_len=10, batch_size=4, eval_every=4, steps=40,
                              variable_length=True, optimizer="nt-asgd", asgd_patience=1, lr=2.0, warmup=0,
                              min_lr_fraction=1.0, dropout=0.0)
    straight = lm.train(text, tmp_path / "straight", config, validation=validation)
    switched = json.loads((tmp_path / "straight" / "last" / "config.json").read_text())["progress"]["averaging_from"]
    assert switched is not None and switched < 30
    dies_at_step(monkeypatch, 34)
    with pytest.raises(Killed):
        lm.train(text, tmp_path / "resumed", config, validation=validation)
    monkeypatch.undo()
    resumed = lm.train(text, tmp_path / "resumed", config, validation=validation, resume=True)
    assert [row["val_loss"] for row in resumed.history] == [row["val_loss"] for row in straight.history]
    for name in ("model.safetensors", "training.safetensors"):
        ours, theirs = (load_file(tmp_path / run / "last" / name) for run in ("straight", "resumed"))
        assert all(torch.equal(ours[key], theirs[key]) for key in ours), name


def test_an_adaptive_softmax_scores_every_token_and_trains_on_the_targets_clusters():
    """Its log-probabilities normalise; the training loss is the mean negative log-probability
    of the targets (the same number the full scores give); boundaries past the vocabulary drop."""
    torch.manual_seed(0)
    config = LanguageModelConfig("lstm", 40, hidden_size=16, num_layers=1, dropout=0.0,
                                 adaptive_softmax_cutoffs=(10, 25, 40, 100))
    model = LanguageModel(config)
    assert config.cutoffs == (10, 25) and isinstance(model.decoder, torch.nn.AdaptiveLogSoftmaxWithLoss)
    tokens, targets = torch.randint(0, 40, (7, 3)), torch.randint(0, 40, (7, 3))
    scores, _ = model(tokens)
    torch.testing.assert_close(scores.exp().sum(-1), torch.ones(7, 3))
    loss, _ = model(tokens, targets=targets)
    expected = -scores.gather(-1, targets.unsqueeze(-1)).mean()
    torch.testing.assert_close(loss, expected)
    assert LanguageModel(LanguageModelConfig("lstm", 8, hidden_size=16, adaptive_softmax_cutoffs=(10,))).decoder \
        .__class__ is torch.nn.Linear, "a vocabulary below the first boundary keeps the full softmax"


def test_cutoffs_past_the_vocabulary_are_dropped_with_a_warning_and_all_of_them_refused(tmp_path):
    """All dropped, it trained the full softmax, untied at word level, and said nothing."""
    with pytest.warns(UserWarning, match=re.escape(
            "adaptive_softmax_cutoffs (--adaptive-softmax-cutoffs) [50, 2000] lie at or above the vocabulary's 40 "
            "tokens: dropped, the clusters bounded by [8]")):
        check_cutoffs((8, 50, 2000), 40)
    text = tmp_path / "words.txt"
    text.write_text("\n".join(" ".join(f"w{(line * 7 + word) % 37}" for word in range(10)) for line in range(300)),
                    encoding="utf-8")
    config = LMTrainingConfig(level="word", num_layers=1, hidden_size=16, seq_len=10, batch_size=4, steps=2,
                              adaptive_softmax_cutoffs=(2000,))
    with pytest.raises(ValueError, match=re.escape(
            "adaptive_softmax_cutoffs (--adaptive-softmax-cutoffs) [2000] all lie at or above the vocabulary's 39 "
            "tokens: an adaptive softmax of one cluster is the full softmax; give boundaries below 39, or none")):
        lm.train(text, tmp_path / "run", config)
    assert not (tmp_path / "run" / "last").exists()


def test_a_word_model_with_an_adaptive_softmax_trains_saves_and_loads(tmp_path):
    text = tmp_path / "words.txt"
    text.write_text("\n".join(" ".join(f"w{(line * 7 + word) % 37}" for word in range(10)) for line in range(300)),
                    encoding="utf-8")
    config = LMTrainingConfig(level="word", num_layers=1, hidden_size=16, seq_len=10, batch_size=4, steps=20,
                              eval_every=10, adaptive_softmax_cutoffs=(8, 20))
    run = lm.train(text, tmp_path / "run", config)
    loaded = lm.load(tmp_path / "run")
    assert isinstance(loaded.model.decoder, torch.nn.AdaptiveLogSoftmaxWithLoss)
    validation = text.read_text(encoding="utf-8").splitlines()[270:]
    assert loaded.evaluate("\n".join(validation) + "\n").loss == pytest.approx(run.best_val_loss, rel=0.05)


@pytest.mark.parametrize("settings, message", [
    (dict(adaptive_softmax_cutoffs=(20, 10)), "adaptive_softmax_cutoffs (--adaptive-softmax-cutoffs) must be "
                                              "increasing positive integers, got [20, 10]"),
    (dict(adaptive_softmax_cutoffs=(0, 10)), "adaptive_softmax_cutoffs (--adaptive-softmax-cutoffs) must be "
                                             "increasing positive integers, got [0, 10]"),
    (dict(adaptive_softmax_cutoffs=(2.5,)), "adaptive_softmax_cutoffs must be integers, got (2.5,)"),
    (dict(adaptive_softmax_cutoffs=(10,), tie_weights=True), "tie_weights (--tie-weights) shares the embedding with a "
                                                             "linear decoder, and adaptive_softmax_cutoffs=[10]"),
])
def test_adaptive_softmax_settings_are_checked(settings, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        LMTrainingConfig(**settings)


def test_the_cache_pointer_and_dynamic_evaluation_take_an_adaptive_softmax(tmp_path):
    """With a mixture of 0, and one segment as long as the text, both reduce to plain evaluation."""
    from lstmkit.pipelines.lm_evaluation import CachePointer, DynamicEvaluation

    torch.manual_seed(0)
    text = tmp_path / "words.txt"
    text.write_text("\n".join(" ".join(f"w{(line * 3 + word) % 23}" for word in range(8)) for line in range(200)),
                    encoding="utf-8")
    config = LMTrainingConfig(level="word", num_layers=1, hidden_size=16, seq_len=10, batch_size=4, steps=10,
                              eval_every=10, adaptive_softmax_cutoffs=(5, 12))
    lm.train(text, tmp_path / "run", config)
    model = lm.load(tmp_path / "run")
    sample = "\n".join(text.read_text(encoding="utf-8").splitlines()[-20:]) + "\n"
    plain = model.evaluate(sample).loss
    assert model.evaluate(sample, cache=CachePointer(mixture=0.0)).loss == pytest.approx(plain, rel=1e-5)
    assert model.evaluate(sample, dynamic=DynamicEvaluation(segment=100_000)).loss == pytest.approx(plain, rel=1e-5)


def test_an_adaptive_softmax_numbers_the_words_most_frequent_first(tmp_path):
    """Sorted alphabetically, "the" fell in the last cluster of Tiny Shakespeare's adaptive
    softmax: the head held the first words of the alphabet (a 300-step run trained 2.5 x as
    long to a loss 0.5 nats worse). Without one the words stay sorted."""
    text = tmp_path / "words.txt"
    lines = [" ".join(["zebra"] * 6 + ["yak"] * 3 + [f"a{(line + word) % 9}" for word in range(2)])
             for line in range(200)]
    text.write_text("\n".join(lines) + "\n", encoding="utf-8")
    config = LMTrainingConfig(level="word", num_layers=1, hidden_size=8, seq_len=10, batch_size=4, steps=1,
                              eval_every=1, adaptive_softmax_cutoffs=(4, 8))
    lm.train(text, tmp_path / "adaptive", config)
    assert lm.load(tmp_path / "adaptive").vocabulary.tokens[:4] == ("<unk>", "<eol>", "zebra", "yak")
    lm.train(text, tmp_path / "full", dataclasses.replace(config, adaptive_softmax_cutoffs=()))
    assert lm.load(tmp_path / "full").vocabulary.tokens[:4] == ("<unk>", "<eol>", "a0", "a1")


def test_a_run_begun_with_the_words_numbered_alphabetically_resumes_in_that_order(tmp_path):
    """An earlier lstmkit numbered an adaptive softmax's words alphabetically: its run resumes
    on its own numbering, with a warning, instead of the frequency order a run begun now gets."""
    text = tmp_path / "words.txt"
    text.write_text("\n".join(" ".join(["zebra"] * 6 + ["yak"] * 3 + [f"a{(line + word) % 9}" for word in range(2)])
                              for line in range(200)) + "\n", encoding="utf-8")
    config = LMTrainingConfig(level="word", num_layers=1, hidden_size=8, seq_len=10, batch_size=4, steps=2,
                              eval_every=1, adaptive_softmax_cutoffs=(4, 8))
    lm.train(text, tmp_path / "run", config)
    for folder in ("last", "best"):  # as the earlier lstmkit wrote them
        path = tmp_path / "run" / folder / "vocabulary.json"
        saved = json.loads(path.read_text(encoding="utf-8"))
        saved["tokens"] = saved["tokens"][:2] + sorted(saved["tokens"][2:])
        path.write_text(json.dumps(saved), encoding="utf-8")
    with pytest.warns(UserWarning, match=re.escape("the run resumed keeps its tokens numbered alphabetically")):
        lm.train(text, tmp_path / "run", dataclasses.replace(config, steps=4), resume=True)
    assert lm.load(tmp_path / "run").vocabulary.tokens[2:5] == ("a0", "a1", "a2")
