"""The language model's own regularisers (AWD-LSTM's pieces, each an option): embedding
dropout, locked dropout, AR and TAR, and the `awd` recipe that sets them together."""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F

from lstmkit.models.language import LanguageModel, LanguageModelConfig
from lstmkit.pipelines.lm import RECIPES, LanguageModelJob, LMTrainingConfig
from lstmkit.text import load_corpus
from lstmkit.training import Processes

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


def test_the_awd_recipe_sets_what_is_left_at_its_default():
    config = LMTrainingConfig(recipe="awd", dropout=0.25)
    assert config.dropout == 0.25, "a setting given beside the recipe wins"
    for name, value in RECIPES["awd"].items():
        if name != "dropout":
            assert getattr(config, name) == value, name
    model_config = config.model_config(50)
    assert model_config.regularisers == {"input_dropout": 0.3, "weight_dropout": 0.5}
    assert (model_config.embedding_dropout, model_config.locked_dropout, model_config.tie_weights) == (0.1, True, True)


@pytest.mark.parametrize("settings, message", [
    (dict(recipe="qrnn"), "recipe must be one of awd, got 'qrnn'"),
    (dict(activation_regularisation=-1.0), "activation_regularisation must be a non-negative number, got -1.0"),
    (dict(temporal_activation_regularisation=float("nan")),
     "temporal_activation_regularisation must be a non-negative number, got nan"),
    (dict(embedding_dropout=1.0), "embedding_dropout must be in [0, 1), got 1.0"),
])
def test_options_are_checked(settings, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        LMTrainingConfig(**settings)
