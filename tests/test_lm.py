"""Language modelling: learning, checkpoints, exact resume (kill -9 included), sampling, scoring."""

from __future__ import annotations

import json
import math
import os
import re
import warnings
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from helpers import Killed, assert_keeps_random_state, dies_at_step, straight_and_resumed, triton_installed
from lstmkit import lm
from lstmkit.models.language import LanguageModel, LanguageModelConfig
from lstmkit.pipelines import lm as pipeline
from lstmkit.pipelines.lm import LMTrainingConfig
from lstmkit.training import decay_progress, learning_rate

SHAKESPEARE = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "tinyshakespeare.txt"
TINY = dict(num_layers=1, hidden_size=32, seq_len=20, batch_size=8, eval_every=10, warmup=5, dropout=0.1)


@pytest.fixture(scope="module")
def text_file(tmp_path_factory) -> Path:
    """The first 20,000 characters of tinyshakespeare (a stand-in verse when it is absent)."""
    path = tmp_path_factory.mktemp("text") / "slice.txt"
    if SHAKESPEARE.is_file():
        path.write_text(SHAKESPEARE.read_text(encoding="utf-8")[:20_000], encoding="utf-8")
    else:
        path.write_text(("First Citizen:\nBefore we proceed any further, hear me speak.\n\n" * 400), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def trained(text_file, tmp_path_factory) -> tuple[Path, lm.LMRun]:
    out = tmp_path_factory.mktemp("run") / "lm"
    run = lm.train(text_file, out, LMTrainingConfig(steps=150, **{**TINY, "hidden_size": 64, "eval_every": 50}))
    return out, run


def unigram_entropy(text: str) -> float:
    counts = Counter(text)
    return -sum(count / len(text) * math.log(count / len(text)) for count in counts.values())


def test_learning_rate_schedule():
    config = LMTrainingConfig(steps=105, lr=1.0, warmup=5)
    rates = [learning_rate(config, step, decay_progress(config, step, 105)) for step in (0, 1, 2, 3, 4, 5, 55, 105)]
    assert rates == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0, 1.0, 0.55, 0.1])  # 55: halfway down the cosine to 0.1
    assert learning_rate(config, 50, None) == 1.0, "at the peak while no budget bounds the run"


def test_the_loss_falls_below_the_unigram_entropy(text_file, trained):
    _, run = trained
    validation = text_file.read_text(encoding="utf-8")[18_000:]
    assert run.best_val_loss < unigram_entropy(validation) - 0.3
    assert run.history[-1]["train_loss"] < run.history[0]["train_loss"]


def test_results_metrics_and_checkpoints(trained):
    out, run = trained
    results = json.loads((out / "results.json").read_text())
    rows = (out / "metrics.csv").read_text().splitlines()
    losses = [float(row.split(",")[6]) for row in rows[1:]]
    assert rows[0] == "step,epoch,tokens,seconds,lr,train_loss,val_loss,val_ppl,val_bpc"
    assert results["best_val_loss"] == pytest.approx(min(losses))
    assert results["best_val_ppl"] == pytest.approx(math.exp(min(losses)))
    assert results["best_val_bpc"] == pytest.approx(min(losses) / math.log(2))  # character level: one token each
    # the run's scores under results.json's names (the perplexity was best_val_perplexity)
    assert {name: getattr(run, name) for name in ("best_val_loss", "best_val_ppl", "best_val_bpc")} == {
        name: results[name] for name in ("best_val_loss", "best_val_ppl", "best_val_bpc")}
    assert results["steps"] == 150 and results["tokens_per_second"] > 0 and results["seconds"] > 0
    assert sorted(os.listdir(out / "best")) == ["config.json", "model.safetensors", "vocabulary.json"]
    assert sorted(os.listdir(out / "last")) == ["config.json", "model.safetensors", "training.safetensors",
                                                "vocabulary.json"]
    best = json.loads((out / "best" / "config.json").read_text())
    assert best["kind"] == "language_model" and best["progress"]["step"] == results["best_step"]


def test_a_sample_with_a_seed_is_reproducible(trained):
    model = lm.load(trained[0])
    first = model.sample("ROMEO:", length=60, temperature=0.8, seed=3)
    assert first == model.sample("ROMEO:", length=60, temperature=0.8, seed=3)
    assert first != model.sample("ROMEO:", length=60, temperature=0.8, seed=4)
    assert first.startswith("ROMEO:") and len(first) == len("ROMEO:") + 60
    greedy = model.sample("ROMEO:", length=30, top_k=1, seed=1)
    assert greedy == model.sample("ROMEO:", length=30, top_k=1, seed=2), "top_k=1 is greedy whatever the seed"


def test_a_sample_without_a_seed_draws_one_from_torch_s_generator(trained):
    """torch.manual_seed repeats an unseeded sample, and the caller's stream moves on as after
    any random operation (the sample called torch.seed(), which reseeded it from the clock)."""
    model = lm.load(trained[0])
    torch.manual_seed(0)
    first, after_first = model.sample("ROMEO:", length=30), torch.rand(1)
    torch.manual_seed(0)
    again, after_again = model.sample("ROMEO:", length=30), torch.rand(1)
    assert (first, after_first) == (again, after_again)


def test_sampling_options_are_checked(trained):
    model = lm.load(trained[0])
    with pytest.raises(TypeError, match=re.escape("the text to evaluate must be a str, got bytes: decode it first")):
        model.evaluate(b"First")
    with pytest.raises(ValueError, match=re.escape("the prime text has characters the model's vocabulary lacks: 'Ж' (U+0416)")):
        model.sample("Ж", length=5)
    for temperature in (-1.0, math.inf):
        with pytest.raises(ValueError, match=re.escape(
                f"temperature must be a finite number >= 0 (0: greedy), got {temperature!r}")):
            model.sample(length=5, temperature=temperature)
    with pytest.raises(ValueError, match="^top_k must be at least 1, got 0$"):
        model.sample(length=5, top_k=0)
    for settings, message in (({"length": 2.5}, "length must be an integer, got 2.5 (float)"),
                              ({"length": None}, "length must be an integer, got None (NoneType)"),
                              ({"seed": 1.5}, "seed must be an integer, got 1.5 (float)")):
        with pytest.raises(TypeError, match=f"^{re.escape(message)}$"):
            model.sample(**settings)
    with pytest.raises(ValueError, match=re.escape("seed (--seed) must be in [0, 2**64 - 1], got -1")):
        model.sample(length=5, seed=-1)


def test_nucleus_keeps_the_likeliest_tokens_that_first_reach_top_p():
    """Probabilities 0.5, 0.3, 0.15, 0.05: top_p 0.8 keeps the first two (0.5 + 0.3 reaches it),
    0.81 the first three, 0.5 the first alone; the likeliest is always kept."""
    from lstmkit.pipelines.lm import nucleus

    scores = torch.tensor([0.3, 0.5, 0.05, 0.15]).log()
    for top_p, kept in ((0.8, [0, 1]), (0.81, [0, 1, 3]), (0.5, [1]), (0.01, [1]), (1.0, [0, 1, 2, 3])):
        assert torch.isfinite(nucleus(scores, top_p)).nonzero().flatten().tolist() == kept, top_p


def test_top_p_sampling_and_its_checks(trained):
    model = lm.load(trained[0])
    greedy = model.sample("ROMEO:", length=30, top_k=1, seed=1)
    assert model.sample("ROMEO:", length=30, top_p=1e-9, seed=2) == greedy  # the likeliest alone
    assert model.sample("ROMEO:", length=30, top_p=1.0, seed=4) == model.sample("ROMEO:", length=30, seed=4)
    for top_p in (0, 1.5, True, math.nan):
        with pytest.raises(ValueError, match=re.escape(f"top_p must be a number in (0, 1], the probability mass "
                                                       f"kept, got {top_p!r}")):
            model.sample(length=5, top_p=top_p)


def test_temperature_0_is_greedy_and_a_top_k_past_the_vocabulary_keeps_every_token(trained):
    """As char-rnn's argmax sampling and nanoGPT's clipped top_k (both once refused)."""
    model = lm.load(trained[0])
    greedy = model.sample("ROMEO:", length=30, top_k=1, seed=1)
    assert model.sample("ROMEO:", length=30, temperature=0, seed=2) == greedy
    assert model.sample("ROMEO:", length=30, temperature=0.0, top_k=5, seed=3) == greedy
    everything = model.sample("ROMEO:", length=30, seed=4)
    assert model.sample("ROMEO:", length=30, top_k=len(model.vocabulary) + 1000, seed=4) == everything
    assert model.sample("ROMEO:", length=30, top_k=len(model.vocabulary), seed=4) == everything


@pytest.mark.parametrize("flush", [False, True])
def test_a_temperature_so_low_it_overflows_samples_greedily(trained, flush):
    """1e-40 is subnormal in float32: the scores overflow, or divide by 0 where the CLI flushes
    subnormals (tune_cpu_for_training)."""
    model = lm.load(trained[0])
    greedy = model.sample("ROMEO:", length=30, top_k=1, seed=1)
    flushed = torch.set_flush_denormal(flush)
    try:
        assert model.sample("ROMEO:", length=30, temperature=1e-40, seed=2) == greedy
    finally:
        torch.set_flush_denormal(False)
    assert flushed or not flush, "this CPU flushes subnormals"


def test_evaluation_scores_every_next_token(trained, text_file):
    model = lm.load(trained[0])
    text = text_file.read_text(encoding="utf-8")[:3000]
    scores = model.evaluate(text)
    tokens = model.vocabulary.encode(text)
    with torch.no_grad():
        logits, _ = model.model(tokens[:-1].unsqueeze(1))
    expected = F.cross_entropy(logits[:, 0], tokens[1:]).item()
    assert scores.tokens == 2999
    assert scores.loss == pytest.approx(expected, rel=1e-5)
    whole = model.evaluate(text_file)  # a Path is the file it names
    assert whole == model.evaluate(text_file.read_text(encoding="utf-8"))
    with pytest.warns(UserWarning, match=re.escape(  # a char model failed at "vocabulary lacks '/'"
            f"evaluate() scores a str as the text itself, and {str(text_file)!r} names a file: to score the file, "
            f"pass pathlib.Path({str(text_file)!r})")), pytest.raises(ValueError, match="vocabulary lacks"):
        model.evaluate(str(text_file))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert model.evaluate("the quick brown fox jumps over the lazy dog. " * 6).tokens == 269  # a name too long

    assert scores.perplexity == pytest.approx(math.exp(expected), rel=1e-5)
    assert scores.bits_per_character == pytest.approx(expected / math.log(2) * 3000 / 3000, rel=1e-5)


def test_resume_after_an_interruption_equals_an_uninterrupted_run(text_file, tmp_path, monkeypatch):
    config = LMTrainingConfig(steps=60, **TINY)
    straight = lm.train(text_file, tmp_path / "straight", config)
    dies_at_step(monkeypatch, 35)
    with pytest.raises(Killed):
        lm.train(text_file, tmp_path / "resumed", config)  # its last checkpoint is the one of step 30
    monkeypatch.undo()
    assert json.loads((tmp_path / "resumed" / "last" / "config.json").read_text())["progress"]["step"] == 30
    resumed = lm.train(text_file, tmp_path / "resumed", config, resume=True)
    assert [row["val_loss"] for row in resumed.history] == [row["val_loss"] for row in straight.history]
    assert_same_weights(tmp_path / "straight" / "last", tmp_path / "resumed" / "last")
    columns = [(tmp_path / run / "metrics.csv").read_text().splitlines()[0] for run in ("straight", "resumed")]
    assert columns[0] == columns[1] == ",".join(pipeline.METRIC_COLUMNS)


def test_a_bfloat16_run_resumed_equals_an_uninterrupted_one(text_file, tmp_path, monkeypatch):
    """Each step's autocast reuses no bfloat16 copy of a weight from an earlier step: torch kept
    them for the whole run (it empties its cache where the outermost autocast ends, and the
    pipeline's own held it open), so a run's decoder forecast with its first step's weights,
    and a resumed run, which copied them anew, went another way."""
    config = LMTrainingConfig(steps=20, precision="bf16", **TINY)
    straight, resumed = straight_and_resumed(
        monkeypatch, lambda out, resume: lm.train(text_file, out, config, resume=resume), tmp_path, 15)
    assert [row["val_loss"] for row in resumed.history] == [row["val_loss"] for row in straight.history]
    assert_same_weights(tmp_path / "straight" / "last", tmp_path / "resumed" / "last")


def test_a_bfloat16_run_resumes_in_float32_with_its_carried_state_in_float32(text_file, tmp_path):
    """Under bfloat16 autocast the LSTM hands back bfloat16 states, which the run carries from
    window to window and saves; resumed in float32 (--precision may change on resume), they are
    cast to the parameters' dtype."""
    lm.train(text_file, tmp_path / "run", LMTrainingConfig(steps=20, precision="bf16", **TINY))
    saved = load_file(tmp_path / "run" / "last" / "training.safetensors")
    assert {saved[key].dtype for key in saved if key.startswith("state.")} == {torch.bfloat16}
    resumed = lm.train(text_file, tmp_path / "run", LMTrainingConfig(steps=40, **TINY), resume=True)
    assert resumed.history[-1]["step"] == 40 and math.isfinite(resumed.history[-1]["val_loss"])


def test_a_run_resumed_with_a_longer_budget_keeps_the_size_the_short_one_chose(text_file, tmp_path):
    """Given no size, a character model's size follows the budget (1 x 256 under 600 s); resumed
    with a budget past it, the run keeps its model rather than being refused as another one.
    Another size given on resume is checked against the run's as ever."""
    options = dict(seq_len=20, batch_size=8, eval_every=10, warmup=5)
    short = LMTrainingConfig(time_budget=1.0, **options)
    assert (short.num_layers, short.hidden_size) == (1, 256)
    lm.train(text_file, tmp_path / "run", short)
    longer = LMTrainingConfig(time_budget=700.0, **options)
    assert (longer.num_layers, longer.hidden_size) == (2, 512)
    resumed = pipeline.sized_like(longer, tmp_path / "run")
    assert (resumed.num_layers, resumed.hidden_size, resumed.time_budget) == (1, 256, 700.0)
    given = LMTrainingConfig(time_budget=700.0, num_layers=3, **options)
    refused = (r"trained with other settings; --resume needs the same ones \(num_layers: 1 in the run, 3 now; "
               r"hidden_size: 256 in the run, 512 now\)")
    with pytest.raises(ValueError, match=refused):  # before `lm train --resume` says what it resumes ("a 3x512")
        pipeline.sized_like(given, tmp_path / "run")
    with pytest.raises(ValueError, match=refused):
        lm.train(text_file, tmp_path / "run", given, resume=True)


def assert_same_weights(first: Path, second: Path) -> None:
    for name in ("model.safetensors", "training.safetensors"):
        ours, theirs = load_file(first / name), load_file(second / name)
        assert ours.keys() == theirs.keys()
        for key in ours:
            assert torch.equal(ours[key], theirs[key]), f"{name}: {key}"


def cli(*arguments: str) -> list[str]:
    return [sys.executable, "-m", "lstmkit.cli", *arguments]


def wait_for_checkpoint(process: subprocess.Popen, out: Path, step: int) -> None:
    """Wait (five minutes at most: a loaded machine takes long to import torch) until the run of
    `process` has checkpointed step `step` in `out`."""
    deadline, reached = time.monotonic() + 300, False
    while not reached and time.monotonic() < deadline and process.poll() is None:
        try:
            reached = json.loads((out / "last" / "config.json").read_text())["progress"]["step"] >= step
        except (FileNotFoundError, json.JSONDecodeError, KeyError):
            pass
        time.sleep(0.01)
    assert process.poll() is None, "the run finished before it could be stopped; make it longer"
    assert reached, f"the run had not checkpointed step {step} in five minutes"


def test_resume_after_kill_9_equals_an_uninterrupted_run(text_file, tmp_path):
    """A real kill -9 at a random moment (even mid-checkpoint), then --resume."""
    options = ["lm", "train", str(text_file), "--num-layers", "1", "--hidden-size", "16", "--batch-size", "4", "--seq-len", "10",
               "--steps", "600", "--eval-every", "20", "--warmup", "5"]
    subprocess.run(cli(*options, "--out", str(tmp_path / "straight")), check=True, capture_output=True)
    process = subprocess.Popen(cli(*options, "--out", str(tmp_path / "killed")), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    wait_for_checkpoint(process, tmp_path / "killed", 200)
    process.send_signal(signal.SIGKILL)
    process.wait()
    subprocess.run(cli(*options, "--out", str(tmp_path / "killed"), "--resume"), check=True, capture_output=True)
    straight = json.loads((tmp_path / "straight" / "results.json").read_text())
    resumed = json.loads((tmp_path / "killed" / "results.json").read_text())
    assert resumed["best_val_loss"] == straight["best_val_loss"] and resumed["steps"] == 600
    assert_same_weights(tmp_path / "straight" / "last", tmp_path / "killed" / "last")


def test_sigterm_stops_a_run_as_ctrl_c_does_keeping_its_checkpoint(text_file, tmp_path):
    """A scheduler's SIGTERM killed the run without a word, mid-checkpoint a temporary folder
    left behind; it now stops as Ctrl-C does, status 143 (128 + SIGTERM), and --resume goes on."""
    out = tmp_path / "run"
    options = ["lm", "train", str(text_file), "--num-layers", "1", "--hidden-size", "16", "--batch-size", "4",
               "--seq-len", "10", "--steps", "400", "--eval-every", "5", "--out", str(out)]
    process = subprocess.Popen(cli(*options), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wait_for_checkpoint(process, out, 50)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 143
    assert err.splitlines()[-1] == ("lstmkit: interrupted (SIGTERM); a checkpoint written before is kept, and the "
                                    "same command with --resume continues from it (before the first one, run the "
                                    "command again without --resume)")
    assert sorted(path.name for path in out.iterdir()) == ["best", "last", "metrics.csv"], "no temporary folder"
    stopped_at = json.loads((out / "last" / "config.json").read_text())["progress"]["step"]
    subprocess.run(cli(*options, "--resume"), check=True, capture_output=True)
    assert json.loads((out / "results.json").read_text())["steps"] == 400 > stopped_at


def test_a_last_checkpoint_of_a_run_that_averaged_its_weights_says_so_when_loaded(trained, text_file, tmp_path):
    """With --ema-decay, `lm eval RUN/last` scored the step's own weights (3.2173 where
    metrics.csv held 3.2229 for the same step, the average's), without a word."""
    out = tmp_path / "ema"
    lm.train(text_file, out, LMTrainingConfig(steps=20, ema_decay=0.9, **{**TINY, "eval_every": 20}))
    averaged = lm.load(out).evaluate(text_file.read_text(encoding="utf-8")[18_000:]).loss
    with pytest.warns(UserWarning, match=re.escape(
            f"{out / 'last'} holds the weights of the run's last step, kept to resume it; its evaluations and best/ "
            f"used their moving average (--ema-decay), which scores otherwise: load {out / 'best'} for those")):
        own = lm.load(out / "last").evaluate(text_file.read_text(encoding="utf-8")[18_000:]).loss
    assert own != averaged
    unaveraged = tmp_path / "nt-asgd"  # NT-ASGD, before it averages, evaluates the step's own weights
    lm.train(text_file, unaveraged, LMTrainingConfig(steps=20, optimizer="nt-asgd", **{**TINY, "eval_every": 10}))
    assert json.loads((unaveraged / "last" / "config.json").read_text())["progress"]["averaging_from"] is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lm.load(out)  # best/: the average
        lm.load(trained[0] / "last")  # a run that averaged nothing
        lm.load(unaveraged / "last")


def test_a_run_folder_is_never_overwritten(trained, text_file):
    with pytest.raises(ValueError, match="already holds a run; pass resume=True \\(--resume\\) to continue it"):
        lm.train(text_file, trained[0], LMTrainingConfig(steps=5, **TINY))


@pytest.mark.parametrize("resume", [False, True])
def test_a_run_of_another_pipeline_is_refused_by_name(text_file, tmp_path, resume):
    (tmp_path / "last").mkdir()
    (tmp_path / "last" / "config.json").write_text(json.dumps({"kind": "translation"}))
    wanted = "not a 'language_model' run to resume" if resume else "where a 'language_model' run cannot start"
    with pytest.raises(ValueError, match=re.escape(f"{tmp_path} holds a 'translation' run, {wanted}; choose another")):
        lm.train(text_file, tmp_path, LMTrainingConfig(steps=5, **TINY), resume=resume)


def test_resume_needs_a_run_and_the_same_settings(trained, text_file, tmp_path):
    with pytest.raises(FileNotFoundError, match="holds no run to resume"):
        lm.train(text_file, tmp_path / "nothing", LMTrainingConfig(steps=5, **TINY), resume=True)
    changed = LMTrainingConfig(steps=300, **{**TINY, "hidden_size": 64, "eval_every": 50, "cell": "gru"})
    with pytest.raises(ValueError, match=re.escape("was trained with other settings; --resume needs the same ones "
                                                   "(cell: 'lstm' in the run, 'gru' now)")):
        lm.train(text_file, trained[0], changed, resume=True)


def test_a_checkpoint_of_one_cell_cannot_be_loaded_as_another(trained):
    with pytest.raises(ValueError, match="holds a 'lstm' language model, not a 'gru' one"):
        lm.load(trained[0], cell="gru")
    assert lm.load(trained[0], cell="lstm").model.recurrent.cell.name == "lstm"


@pytest.mark.parametrize("content, message", [
    (b"", "is empty: a language model needs text to learn from or to score"),
    (b"\x89PNG\r\n\x1a\n\x00\x00", "is not text: it contains NUL bytes"),
    (b"short text\n", "the training text has 9 tokens; 8 streams need at least 16"),
    (b"ab", "the training text has 1 token; 8 streams need at least 16"),
])
def test_bad_training_texts(tmp_path, content, message):
    path = tmp_path / "input.txt"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=re.escape(message)):
        lm.train(path, tmp_path / "run", LMTrainingConfig(steps=5, **TINY))


def test_a_validation_fraction_beside_a_validation_file_is_refused(tmp_path):
    """The file was used and the fraction ignored, without a word."""
    path = tmp_path / "input.txt"
    path.write_text("abcdefghij" * 40, encoding="utf-8")
    with pytest.raises(ValueError, match=re.escape(
            f"validation_fraction holds out the end of the training text, and a validation file is given ({path}): "
            "give one of them, got validation_fraction=0.5")):
        lm.train(path, tmp_path / "run", LMTrainingConfig(steps=1, validation_fraction=0.5, **TINY), validation=path)
    assert not (tmp_path / "run").exists()
    # a run an older version began with both resumes, with its own settings
    lm.train(path, tmp_path / "run", LMTrainingConfig(steps=1, **TINY), validation=path)
    saved = tmp_path / "run" / "last" / "config.json"
    saved.write_text(saved.read_text().replace('"validation_fraction": 0.1', '"validation_fraction": 0.5'))
    run = lm.train(path, tmp_path / "run", LMTrainingConfig(steps=2, validation_fraction=0.5, **TINY),
                   validation=path, resume=True)
    assert run.steps == 2


def test_a_window_longer_than_the_training_streams_is_warned_of(tmp_path):
    path = tmp_path / "input.txt"
    path.write_text("abcdefghij" * 40, encoding="utf-8")
    with pytest.warns(UserWarning, match=re.escape("seq_len (--seq-len) 500 is longer than each of the 4 training streams (89 "
                                                   "tokens to predict): every window is a whole stream")) as caught:
        lm.train(path, tmp_path / "run", LMTrainingConfig(steps=1, **{**TINY, "seq_len": 500, "batch_size": 4}))
    assert [warning.filename for warning in caught if "seq_len" in str(warning.message)] == [__file__]  # the user's line


def test_word_level_model(text_file, tmp_path):
    run = lm.train(text_file, tmp_path / "words", LMTrainingConfig(steps=40, level="word", min_frequency=2,
                                                                   **{**TINY, "batch_size": 4}))
    model = lm.load(tmp_path / "words")
    assert model.vocabulary.level == "word" and model.vocabulary.tokens[:2] == ("<unk>", "<eol>")
    sample = model.sample("the king", length=20, seed=0)
    assert sample.startswith("the king") and len(sample.split()) >= 10
    # one space between the prime and the first word sampled, however the prime ends
    assert model.sample("the king ", length=20, seed=0) == sample
    assert model.sample("the king\n", length=20, seed=0) == "the king\n" + sample.removeprefix("the king ")
    text = text_file.read_text(encoding="utf-8")[:2000]
    scores = model.evaluate(text)
    tokens = len(model.vocabulary.encode(text))
    assert scores.tokens == tokens - 1
    assert scores.bits_per_character == pytest.approx(scores.loss / math.log(2) * tokens / len(text))
    assert run.best_val_bpc > 0
    with pytest.warns(UserWarning, match=re.escape("2 of the text's 3 tokens (66.7%) are not in the model's vocabulary "
                                                   "and are scored as <unk>: the loss is not the loss of those words, and "
                                                   "the bits per character, which spread it over their characters too, "
                                                   "are below the text's (not comparable with a character model's)")):
        model.evaluate("the zyxwv qqqqq")
    with pytest.warns(UserWarning, match=re.escape("1 of the prime's 2 tokens (50.0%) are not in the model's "
                                                   "vocabulary and are read as <unk>")):
        model.sample("the zyxwv", length=3, seed=0)
    with warnings.catch_warnings():  # a text's own <unk> (Penn Treebank's, WikiText's) is no unknown word
        warnings.simplefilter("error")
        assert model.evaluate("the <unk> the <unk>").tokens == 3  # all but the first scored


@triton_installed
def test_a_model_trained_on_the_triton_engine_loads_where_triton_cannot_run(text_file, tmp_path, monkeypatch):
    """On a GPU, auto picks the Triton engine for most cells and the checkpoint records it; on
    a CPU (no TRITON_INTERPRET) the loaded model runs on auto instead, with the same numbers."""
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    config = LMTrainingConfig(steps=1, engine="triton", cell="peephole", **{
        **TINY, "hidden_size": 8, "dropout": 0.0, "seq_len": 8, "batch_size": 2, "eval_every": 1})
    text = text_file.read_text(encoding="utf-8")[:400]
    (tmp_path / "train.txt").write_text(text, encoding="utf-8")
    (tmp_path / "valid.txt").write_text(text[:40], encoding="utf-8")
    lm.train(tmp_path / "train.txt", tmp_path / "run", config, tmp_path / "valid.txt")
    text = text[:40]
    on_triton = lm.load(tmp_path / "run")
    assert on_triton.model.recurrent.engine == "triton"
    expected = on_triton.evaluate(text).loss
    monkeypatch.delenv("TRITON_INTERPRET")
    model = lm.load(tmp_path / "run")
    assert model.model.recurrent.engine == "auto"
    assert model.evaluate(text).loss == pytest.approx(expected, rel=1e-5)


def test_tied_weights_round_trip(text_file, tmp_path):
    lm.train(text_file, tmp_path / "tied", LMTrainingConfig(steps=10, tie_weights=True, **TINY))
    model = lm.load(tmp_path / "tied")
    assert model.model.decoder.weight is model.model.embedding.weight
    assert model.sample("A", length=10, seed=0) == lm.load(tmp_path / "tied").sample("A", length=10, seed=0)


def test_model_options_are_checked():
    with pytest.raises(ValueError, match=re.escape("tie_weights shares the embedding with the decoder, so embedding_size "
                                                   "must equal hidden_size=8, got embedding_size=4")):
        LanguageModelConfig("lstm", 10, hidden_size=8, embedding_size=4, tie_weights=True)
    with pytest.raises(ValueError, match=re.escape("epochs must be positive, got -1.0")):
        LMTrainingConfig(epochs=-1.0)
    with pytest.raises(ValueError, match=re.escape("engine must be one of auto, native, fused, triton, reference, "
                                                   "got 'cudnn'")):
        LMTrainingConfig(engine="cudnn")
    with pytest.raises(ValueError, match=re.escape(
            "min_frequency (--min-frequency) applies at word level (--level word) only; got 3 at char level")):
        LMTrainingConfig(min_frequency=3)
    assert LMTrainingConfig(level="word", min_frequency=3).min_frequency == 3
    with pytest.raises(ValueError, match=re.escape(
            "tie_weights (at word level the default) shares the embedding with the decoder, so embedding_size "
            "(--embedding-size) must equal hidden_size=256, got 8; or untie them (--no-tie-weights)")):
        LMTrainingConfig(level="word", embedding_size=8)
    with pytest.raises(ValueError, match=re.escape(  # given, it is not called the default
            "tie_weights shares the embedding with the decoder, so embedding_size (--embedding-size) must equal")):
        LMTrainingConfig(level="word", embedding_size=8, tie_weights=True)
    assert LMTrainingConfig(level="word", embedding_size=8, tie_weights=False).embedding_size == 8
    assert LMTrainingConfig().epochs == 10.0, "without a budget: ten passes over the text"
    assert LMTrainingConfig(time_budget=60).epochs is None
    assert isinstance(LanguageModel(LanguageModelConfig("gru", 10, hidden_size=8, num_layers=1)), LanguageModel)


def test_cli_train_sample_eval(text_file, tmp_path, capsys):
    from lstmkit.cli import main

    main(["lm", "train", str(text_file), "--num-layers", "1", "--hidden-size", "16", "--batch-size", "8", "--seq-len", "20",
          "--steps", "30", "--eval-every", "15", "--out", str(tmp_path / "run")])
    out, err = capsys.readouterr()
    assert "best validation:" in out and "bits/character" in out
    announced = f"training a 1x16 lstm char-level model on {text_file}; checkpoints in {tmp_path / 'run'}/\n"
    assert err.startswith(announced) and "training a" not in out  # stdout: the results alone
    main(["lm", "sample", str(tmp_path / "run"), "--prime", "First", "--length", "40", "--seed", "7"])
    first = capsys.readouterr().out
    main(["lm", "sample", str(tmp_path / "run"), "--prime", "First", "--length", "40", "--seed", "7"])
    assert first == capsys.readouterr().out and first.startswith("First")
    from lstmkit import lm
    assert first == lm.load(tmp_path / "run").sample("First", 40, seed=7) + "\n"  # printed as drawn, the same text

    def interrupted(*arguments, **keywords):
        yield "First lines"
        raise KeyboardInterrupt

    from lstmkit.pipelines.lm import TrainedLanguageModel
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(TrainedLanguageModel, "sample_pieces", interrupted)
        with pytest.raises(SystemExit) as stopped:
            main(["lm", "sample", str(tmp_path / "run")])
    printed = capsys.readouterr()
    assert (stopped.value.code, printed.out, printed.err) == (130, "First lines\n", "lstmkit: interrupted\n")
    main(["lm", "eval", str(tmp_path / "run"), str(text_file)])
    assert re.match(r"loss \d\.\d{4} nats/token, perplexity \d+\.\d\d, \d\.\d{3} bits/character over 19,999 tokens "
                    r"scored \(every one after the text's first\)",
                    capsys.readouterr().out)


def test_cli_validation_fraction_sets_the_split_and_is_named_where_it_is_too_small(tmp_path, capsys):
    """char-rnn's -val_frac: the split was 10 % from the command line, and a validation part too
    short for the batch was told to lower --batch-size or give more text, not how to enlarge it."""
    from lstmkit.cli import main

    path = tmp_path / "short.txt"
    path.write_text("hello world, this is a tiny text for testing.\n" * 30, encoding="utf-8")
    common = ["lm", "train", str(path), "--num-layers", "1", "--hidden-size", "8", "--batch-size", "16", "--seq-len",
              "10", "--steps", "1", "--warmup", "0"]
    with pytest.raises(SystemExit):
        main([*common, "--validation-fraction", "0.01", "--out", str(tmp_path / "small")])
    assert capsys.readouterr().err.endswith(
        "the validation text has 14 tokens; 16 streams need at least 32 (an input and a target each): lower "
        "--batch-size or give more text, a larger --validation-fraction, or a validation file (--valid)\n")
    main([*common, "--validation-fraction", "0.25", "--out", str(tmp_path / "quarter")])
    results = json.loads((tmp_path / "quarter" / "results.json").read_text())
    assert results["config"]["validation_fraction"] == 0.25
    # 1,035 training characters of 1,380: 16 streams of 64, 63 predicted each, in 7 windows of 10 (8 at 10 %)
    assert results["epochs"] == 1 / 7


@pytest.mark.parametrize("arguments, message", [
    (["lm", "sample", "/nonexistent"], "lstmkit: error: /nonexistent does not exist"),
    (["lm", "train", "/nonexistent.txt", "--steps", "1"],
     "lstmkit lm train: error: argument text: /nonexistent.txt does not exist (expected a UTF-8 text file)"),
    (["lm", "train", __file__, "--steps", "1", "--epochs", "1"], "argument --epochs: not allowed with argument --steps"),
])
def test_cli_errors(arguments, message, capsys):
    from lstmkit.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(arguments)
    assert exit_.value.code == 2 and message in capsys.readouterr().err


def test_training_keeps_the_callers_random_state(text_file, tmp_path):
    config = LMTrainingConfig(steps=2, **{**TINY, "warmup": 0})
    assert_keeps_random_state(lambda: lm.train(text_file, tmp_path / "run", config))


def test_training_and_loading_ignore_the_callers_default_dtype_and_grad_mode(text_file, tmp_path):
    """A float64 default dtype (left by float64 checks of the layers) built a float64 model
    that trained and was saved as float64 while the run said float32; under torch.no_grad()
    the first step stopped at torch's "does not require grad". Both settings are the caller's
    again afterwards, and a load draws no random numbers (it initialised weights it replaced)."""
    config = LMTrainingConfig(steps=3, **{**TINY, "warmup": 0, "eval_every": 3})
    expected = lm.train(text_file, tmp_path / "float32", config).best_val_loss
    torch.set_default_dtype(torch.float64)
    try:
        with torch.no_grad():
            run = lm.train(text_file, tmp_path / "float64", config)
            assert (torch.get_default_dtype(), torch.is_grad_enabled()) == (torch.float64, False)
            model = lm.load(tmp_path / "float64")
        with torch.inference_mode():  # enable_grad does not leave it: the job's loss was blamed
            assert lm.train(text_file, tmp_path / "inference", config).best_val_loss == expected
    finally:
        torch.set_default_dtype(torch.float32)
    assert run.best_val_loss == expected
    assert {tensor.dtype for tensor in load_file(tmp_path / "float64" / "best" / "model.safetensors").values()} == {
        torch.float32}
    assert {parameter.dtype for parameter in model.model.parameters()} == {torch.float32}
    assert_keeps_random_state(lambda: lm.load(tmp_path / "float32"))


def test_a_float32_run_ignores_the_callers_autocast(text_file, tmp_path):
    """A `torch.autocast` left on by an evaluation before trained and scored a run of precision
    "32" in bfloat16 (its loss differed), and results.json said "32"; the caller's autocast is
    on again afterwards."""
    config = LMTrainingConfig(steps=3, **{**TINY, "warmup": 0, "eval_every": 3})
    expected = lm.train(text_file, tmp_path / "plain", config).best_val_loss
    with torch.autocast("cpu", torch.bfloat16):
        run = lm.train(text_file, tmp_path / "autocast", config)
        assert torch.is_autocast_enabled("cpu")
    assert run.best_val_loss == expected and run.precision == "32"
