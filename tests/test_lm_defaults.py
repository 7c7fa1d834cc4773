"""Language-model defaults that depend on the level and the budget; the embedding's initialisation."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
import torch

from lstmkit.models.language import LanguageModel, LanguageModelConfig
from lstmkit.pipelines.lm import LEVEL_DEFAULTS, RECIPES, SHORT_BUDGETS, LMTrainingConfig
from lstmkit.text import LEVELS


@pytest.mark.parametrize("level", LEVELS)
def test_each_level_fills_what_is_not_given(level):
    config = LMTrainingConfig(level=level)
    for name, value in LEVEL_DEFAULTS[level].items():
        assert getattr(config, name) == value, name
    assert config.model_config(50).tie_weights == LEVEL_DEFAULTS[level]["tie_weights"]


def test_the_two_levels_differ_where_measurement_chose_differently():
    char, word = LMTrainingConfig(level="char"), LMTrainingConfig(level="word")
    assert (char.hidden_size, char.seq_len, char.batch_size, char.tie_weights) == (512, 100, 64, False)
    assert (word.seq_len, word.tie_weights, word.init_range, word.optimizer) == (35, True, 0.1, "sgd")


def test_a_value_given_wins_over_the_levels_default():
    word = LMTrainingConfig(level="word", optimizer="adamw", tie_weights=False, seq_len=100, init_range=0.0)
    assert (word.optimizer, word.tie_weights, word.seq_len, word.init_range) == ("adamw", False, 100, 0.0)
    assert word.lr == LEVEL_DEFAULTS["word"]["lr"] == 40.0, "only what is given changes"
    assert word.model_config(50).init_range is None, "0 keeps torch's initialisation"


def test_a_recipe_wins_over_the_level_and_a_value_given_over_both():
    config = LMTrainingConfig(level="word", recipe="awd", batch_size=40)
    assert config.optimizer == RECIPES["awd"]["optimizer"] != LEVEL_DEFAULTS["word"]["optimizer"]
    assert config.lr == RECIPES["awd"]["lr"] != LEVEL_DEFAULTS["word"]["lr"]
    assert config.batch_size == 40
    assert config.seq_len == LEVEL_DEFAULTS["word"]["seq_len"], "what the recipe leaves, the level fills"


def test_a_short_time_budget_shrinks_the_character_model_when_no_size_is_given():
    seconds, size = SHORT_BUDGETS["char"]
    short = LMTrainingConfig(time_budget=seconds - 1)
    assert (short.num_layers, short.hidden_size) == (size["num_layers"], size["hidden_size"]) == (1, 256)
    long = LMTrainingConfig(time_budget=seconds)
    assert (long.num_layers, long.hidden_size) == (2, 512)
    given = LMTrainingConfig(time_budget=seconds - 1, hidden_size=128)
    assert (given.num_layers, given.hidden_size) == (2, 128), "a size given: the rest of the level's defaults"
    assert LMTrainingConfig(steps=10).hidden_size == 512, "a budget in steps says nothing about time"
    word = LMTrainingConfig(level="word", time_budget=10)
    assert (word.num_layers, word.hidden_size) == (LEVEL_DEFAULTS["word"]["num_layers"],
                                                   LEVEL_DEFAULTS["word"]["hidden_size"])


def test_an_unknown_level_is_named():
    with pytest.raises(ValueError, match=re.escape("level must be one of char, word, got 'byte'")):
        LMTrainingConfig(level="byte")


def test_init_range_draws_the_embedding_and_decoder_uniformly_and_zeroes_the_bias():
    torch.manual_seed(0)
    model = LanguageModel(LanguageModelConfig("lstm", 300, hidden_size=16, num_layers=1, init_range=0.05))
    for weight in (model.embedding.weight, model.decoder.weight):
        assert weight.abs().max() <= 0.05
        assert weight.abs().max() > 0.045, "spread over the whole range"
    assert torch.equal(model.decoder.bias, torch.zeros(300))
    tied = LanguageModel(LanguageModelConfig("lstm", 300, hidden_size=16, num_layers=1, init_range=0.05,
                                             tie_weights=True))
    assert tied.decoder.weight is tied.embedding.weight and tied.embedding.weight.abs().max() <= 0.05
    torch.manual_seed(0)
    plain = LanguageModel(LanguageModelConfig("lstm", 300, hidden_size=16, num_layers=1))
    assert plain.embedding.weight.abs().max() > 1, "None keeps torch's N(0, 1) embedding"


@pytest.mark.parametrize("value", [0.0, -0.1, float("nan"), float("inf"), True])
def test_init_range_is_checked(value):
    with pytest.raises(ValueError, match=re.escape(f"init_range must be a positive number or None, got {value!r}")):
        LanguageModelConfig("lstm", 10, hidden_size=8, init_range=value)


@pytest.mark.parametrize("value", [-0.1, float("nan"), float("inf")])
def test_the_training_configs_init_range_is_checked(value):
    with pytest.raises(ValueError, match=re.escape("init_range must be a non-negative number (0: torch's "
                                                   f"initialisation), got {value!r}")):
        LMTrainingConfig(level="word", init_range=value)
    with pytest.raises(TypeError, match=re.escape("init_range must be a number or None, got True (bool)")):
        LMTrainingConfig(level="word", init_range=True)


def test_the_help_shows_each_levels_default():
    result = subprocess.run([sys.executable, "-m", "lstmkit", "lm", "train", "--help"], capture_output=True,
                            text=True, check=True, env={**os.environ, "COLUMNS": "200"})
    word, char = LEVEL_DEFAULTS["word"], LEVEL_DEFAULTS["char"]
    seconds, short = SHORT_BUDGETS["char"]
    unsized = "where neither --num-layers nor --hidden-size is given"  # a size given is kept (lm.budget_size)
    assert (f"hidden units per layer (default {char['hidden_size']} at char level ({short['hidden_size']} with a "
            f"--time-budget below {seconds:g} s, {unsized}), {word['hidden_size']} at word level)") in result.stdout
    assert (f"recurrent layers (default {char['num_layers']} at char level ({short['num_layers']} with a "
            f"--time-budget below {seconds:g} s, {unsized}), {word['num_layers']} at word level)") in result.stdout
    assert "--tie-weights, --no-tie-weights" in result.stdout


def test_an_adaptive_softmax_is_not_tied_by_the_word_default_but_is_refused_when_tying_is_asked():
    assert LMTrainingConfig(level="word", adaptive_softmax_cutoffs=(2000,)).tie_weights is False
    with pytest.raises(ValueError, match=re.escape("tie_weights (--tie-weights) shares the embedding with a linear "
                                                   "decoder")):
        LMTrainingConfig(level="word", adaptive_softmax_cutoffs=(2000,), tie_weights=True)
