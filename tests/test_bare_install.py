"""lstmkit installed as a layer user installs it: `pip install lstmkit`, no extra.

`make test` runs this module a second time in .venv-bare, which holds torch 2.13.0, the core
(`pip install .`) and pytest only. There the layers, every cell on every engine and an lm
checkpoint must work, and each command that needs an extra must stop with one line naming
the pip command. The tests that need the extras absent skip themselves in .venv.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
import torch
from packaging.requirements import Requirement  # packaging: a dependency of pytest
from packaging.utils import canonicalize_name

import lstmkit
from helpers import assert_same_run, torch_twin
from lstmkit import lm
from lstmkit.cells import CELLS
from lstmkit.engines import ENGINE_CHOICES
from lstmkit.extras import EXTRAS

EXTRA_MODULES = tuple(sorted({module for modules in EXTRAS.values() for module in modules}))
INSTALLED = [module for module in EXTRA_MODULES if importlib.util.find_spec(module) is not None]
# `make test` sets this in .venv-bare, so that an extra's library that the core came to pull in
# fails these tests there instead of skipping them.
BARE_INSTALL = os.environ.get("LSTMKIT_BARE_INSTALL") == "1"
bare_only = pytest.mark.skipif(
    bool(INSTALLED) and not BARE_INSTALL,
    reason=f"runs in the bare install of `make test`; here {', '.join(INSTALLED)} are installed")

TASKS_MESSAGE = "needs the tasks extra (missing: matplotlib, tqdm): pip install 'lstmkit[tasks]'"
LM_MESSAGE = "needs the lm extra (missing: tqdm): pip install 'lstmkit[lm]'"
FORECAST_MESSAGE = ("needs the forecast extra (missing: pandas, matplotlib, statsforecast, tqdm): "
                    "pip install 'lstmkit[forecast]'")
SPEECH_MESSAGE = ("needs the speech extra (missing: soundfile, librosa, jiwer, matplotlib, tqdm): "
                  "pip install 'lstmkit[speech]'")
TRANSLATE_MESSAGE = ("needs the translate extra (missing: sentencepiece, sacrebleu, matplotlib, tqdm): "
                     "pip install 'lstmkit[translate]'")


def test_importing_lstmkit_and_its_layers_imports_no_extra():
    """Even where the extras are installed, the layers, the CLI and the lm pipeline leave them
    unloaded (beyond what `import torch` loads itself: torch.hub imports tqdm when it is there)."""
    code = ("import sys, torch\n"
            "before = set(sys.modules)\n"
            "import lstmkit, lstmkit.cli, lstmkit.lm, lstmkit.checkpoint, lstmkit.models, lstmkit.tasks\n"
            "lstmkit.cli.build_parser()\n"
            f"print(sorted(name for name in set(sys.modules) - before if name.split('.')[0] in {EXTRA_MODULES!r}))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded == "[]\n"


def test_the_extras_table_names_what_pyproject_installs():
    """lstmkit.extras checks for the libraries that each extra of pyproject.toml brings."""
    requirements = [Requirement(line) for line in metadata.requires("lstmkit")]
    for extra, modules in EXTRAS.items():
        assert {r.name for r in requirements if r.marker and r.marker.evaluate({"extra": extra})} == set(modules)


@pytest.mark.parametrize("engine", ENGINE_CHOICES)
@pytest.mark.parametrize("cell", CELLS)
def test_every_cell_runs_on_every_engine_as_on_the_reference(cell, engine):
    torch.manual_seed(0)
    try:
        layer = lstmkit.Recurrent(cell, 3, 4, num_layers=2, bidirectional=True, dtype=torch.float64, engine=engine)
    except ValueError as error:  # an engine that cannot run this cell says so
        pytest.skip(f"engine {engine!r} rejects {cell}: {error}")
    reference = lstmkit.Recurrent(cell, 3, 4, num_layers=2, bidirectional=True, dtype=torch.float64,
                                  engine="reference")
    reference.load_state_dict(layer.state_dict())
    x = torch.randn(5, 2, 3, dtype=torch.float64, requires_grad=True)
    assert_same_run(layer(x), reference(x), {"input": x, **dict(layer.named_parameters())},
                    {"input": x, **dict(reference.named_parameters())})


@pytest.mark.parametrize("layer_type", [lstmkit.LSTM, lstmkit.GRU, lstmkit.RNN])
def test_the_plain_layers_equal_torch_nn(layer_type):
    torch.manual_seed(0)
    layer = layer_type(3, 4, num_layers=2, dtype=torch.float64)
    twin = torch_twin(layer)
    x = torch.randn(5, 2, 3, dtype=torch.float64, requires_grad=True)
    assert_same_run(layer(x), twin(x), {"input": x, **dict(layer.named_parameters())},
                    {"input": x, **dict(twin.named_parameters())})


def test_an_lm_checkpoint_loads_and_scores_as_it_was_trained(tmp_path):
    """The best checkpoint, loaded, scores the validation text with the loss training recorded for it."""
    text, validation = tmp_path / "train.txt", tmp_path / "valid.txt"
    text.write_text("the quick brown fox jumps over the lazy dog.\n" * 40, encoding="utf-8")
    validation.write_text("a lazy dog jumps over the quick brown fox.\n" * 5, encoding="utf-8")
    config = lm.TrainingConfig(steps=20, num_layers=1, hidden_size=16, embedding_size=8, seq_len=16, batch_size=1,
                               eval_every=10, warmup=2)
    run = lm.train(text, tmp_path / "run", config, validation)
    scores = lm.load(tmp_path / "run").evaluate(validation.read_text(encoding="utf-8"))
    assert scores.tokens == len(validation.read_text(encoding="utf-8")) - 1
    assert scores.loss == pytest.approx(run.best_val_loss, rel=1e-5)
    assert scores.perplexity == pytest.approx(run.best_val_ppl, rel=1e-5)


@bare_only
def test_lstmkit_is_the_installed_package_not_the_source_tree():
    assert Path(lstmkit.__file__).is_relative_to(sys.prefix)


def requirement_closure(roots: set[str]) -> set[str]:
    """The installed distributions `roots` need, with everything those need in turn (markers
    evaluated here, extras followed), as canonical names."""
    seen: set[tuple[str, str]] = set()
    queue = [(root, "") for root in roots]
    while queue:
        name, extra = queue.pop()
        if (canonicalize_name(name), extra) in seen:
            continue
        seen.add((canonicalize_name(name), extra))
        for line in metadata.requires(name) or []:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": extra}):
                queue += [(requirement.name, ""), *((requirement.name, wanted) for wanted in requirement.extras)]
    return {name for name, _ in seen}


@bare_only
def test_the_core_installs_torch_numpy_and_safetensors_only():
    installed = {canonicalize_name(distribution.metadata["Name"]) for distribution in metadata.distributions()}
    allowed = requirement_closure({"torch", "numpy", "safetensors", "pytest"}) | {"lstmkit", "pip", "setuptools"}
    assert installed - allowed == set(), "`pip install .` brought more than torch, numpy and safetensors"


@bare_only
@pytest.mark.parametrize("module, message", [
    ("lstmkit.forecast", f"lstmkit.forecast {FORECAST_MESSAGE}"),
    ("lstmkit.series", f"lstmkit.series {FORECAST_MESSAGE}"),
    ("lstmkit.pipelines.forecast", f"lstmkit.pipelines.forecast {FORECAST_MESSAGE}"),
    ("lstmkit.pipelines.forecast_report", f"lstmkit.pipelines.forecast_report {FORECAST_MESSAGE}"),
    ("lstmkit.pipelines.longlag", f"lstmkit.pipelines.longlag {TASKS_MESSAGE}"),
    ("lstmkit.pipelines.probes", f"lstmkit.pipelines.probes {TASKS_MESSAGE}"),
    ("lstmkit.pipelines.demo", f"lstmkit.pipelines.demo {TASKS_MESSAGE}"),
    ("lstmkit.speech", f"lstmkit.speech {SPEECH_MESSAGE}"),
    ("lstmkit.pipelines.speech", f"lstmkit.pipelines.speech {SPEECH_MESSAGE}"),
    ("lstmkit.translate", f"lstmkit.translate {TRANSLATE_MESSAGE}"),
    ("lstmkit.pipelines.translate", f"lstmkit.pipelines.translate {TRANSLATE_MESSAGE}"),
    ("lstmkit.text.subwords", f"lstmkit.text.subwords {TRANSLATE_MESSAGE}"),
])
def test_importing_a_pipeline_without_its_extra_names_the_pip_command(module, message):
    with pytest.raises(ImportError) as error:
        importlib.import_module(module)
    assert str(error.value) == message


TINY_TRAINING = ["--T", "5", "--steps", "1", "--hidden-size", "2", "--test-size", "2"]  # seconds, should one run
# The input files the commands below name: a command checks that they exist before it looks for its extra.
INPUTS = ("series.csv", "input.txt", "train.csv", "a.wav", "test.csv", "a.de", "a.en", "v.de", "v.en", "t.de", "t.en")


@bare_only
@pytest.mark.parametrize("arguments, message", [
    (["task", "adding", "--cells", "rnn", *TINY_TRAINING], f"lstmkit task {TASKS_MESSAGE}"),
    (["probe", "gradients", "--task", "adding", "--cells", "rnn", *TINY_TRAINING], f"lstmkit probe {TASKS_MESSAGE}"),
    (["probe", "gates", "--task", "adding", *TINY_TRAINING], f"lstmkit probe {TASKS_MESSAGE}"),
    (["demo", "--T", "5", "--time-budget", "0.1"], f"lstmkit demo {TASKS_MESSAGE}"),
    (["forecast", "fit", "series.csv", "--time", "t", "--target", "y", "--horizon", "2", "--out", "run"],
     f"lstmkit forecast {FORECAST_MESSAGE}"),
    (["forecast", "backtest", "series.csv", "--time", "t", "--target", "y", "--horizon", "2"],
     f"lstmkit forecast {FORECAST_MESSAGE}"),
    (["forecast", "predict", "run", "series.csv"], f"lstmkit forecast {FORECAST_MESSAGE}"),
    (["lm", "train", "input.txt", "--steps", "1"], f"lstmkit lm {LM_MESSAGE}"),
    (["speech", "fsdd", "recordings", "--out", "manifests"], f"lstmkit speech {SPEECH_MESSAGE}"),
    (["speech", "train", "train.csv", "--steps", "1", "--out", "run"], f"lstmkit speech {SPEECH_MESSAGE}"),
    (["speech", "transcribe", "run", "a.wav"], f"lstmkit speech {SPEECH_MESSAGE}"),
    (["speech", "eval", "run", "test.csv"], f"lstmkit speech {SPEECH_MESSAGE}"),
    (["translate", "train", "--source", "a.de", "--target", "a.en", "--valid-source", "v.de", "--valid-target", "v.en",
      "--out", "run"], f"lstmkit translate {TRANSLATE_MESSAGE}"),
    (["translate", "eval", "run", "--source", "t.de", "--reference", "t.en"], f"lstmkit translate {TRANSLATE_MESSAGE}"),
])
def test_a_command_without_its_extra_stops_with_one_line(arguments, message, tmp_path):
    for name in INPUTS:
        (tmp_path / name).write_text("x")
    (tmp_path / "recordings").mkdir()
    command = Path(sys.executable).parent / "lstmkit"
    result = subprocess.run([command, *arguments], capture_output=True, text=True, cwd=tmp_path)
    assert (result.returncode, result.stdout, result.stderr) == (1, "", message + "\n")
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted([*INPUTS, "recordings"]), "nothing written"
