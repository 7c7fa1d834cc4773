"""Checkpoints that are broken or crafted, and checkpoint writes that fail or are killed.

A load names the file and what is wrong with it, before it allocates anything a crafted size
asks for; a save never leaves a moment at which neither the new nor the old checkpoint is
complete on disk, and a full disk stops it with the old one intact.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import safetensors.torch
import torch

from lstmkit import checkpoint
from lstmkit.checkpoint import (
    CheckpointError,
    CheckpointWriteError,
    existing,
    load_checkpoint,
    load_tensors,
    load_weights,
    model_tensors,
    previous_path,
    read_extra_tensors,
    run_folder,
    save_checkpoint,
)
from lstmkit.models.forecaster import ForecastNetwork, ForecastNetworkConfig
from lstmkit.models.language import LanguageModel, LanguageModelConfig
from lstmkit.pipelines.forecast import FORECASTER, load_forecaster
from lstmkit.pipelines.lm import VOCABULARY_FILE, load_language_model
from lstmkit.text import Vocabulary

TINY_MODEL = LanguageModelConfig(cell="lstm", vocabulary_size=5, hidden_size=4, num_layers=1, dropout=0.0)
VOCABULARY = Vocabulary("char", tuple("abcde"))


def save_language_model(directory: Path, config: dict | None = None, tensors: dict | None = None,
                        vocabulary: str | None = None) -> Path:
    """A checkpoint as `lm train` writes it, of TINY_MODEL; `config`, `tensors` and
    `vocabulary` replace its parts."""
    torch.manual_seed(0)
    model_config = {"kind": "language_model", "model": TINY_MODEL.to_dict()}
    vocabulary = json.dumps(VOCABULARY.to_dict()) if vocabulary is None else vocabulary
    tensors = model_tensors(LanguageModel(TINY_MODEL)) if tensors is None else tensors
    return save_checkpoint(directory, model_config if config is None else config, tensors,
                           {VOCABULARY_FILE: vocabulary})


def tiny_model_config(**changes) -> dict:
    return {"kind": "language_model", "model": {**TINY_MODEL.to_dict(), **changes}}


# Loading: broken files.

@pytest.mark.parametrize("end, reason", [
    (0, "header too small"),
    (20, "invalid header length"),
    (-1, "incomplete metadata, file not fully covered"),
])
def test_a_truncated_weights_file_is_named(tmp_path, end, reason):
    directory = save_language_model(tmp_path / "model")
    weights = directory / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:end])
    message = (f"{weights} is not a readable safetensors file (truncated or corrupt: Error while deserializing "
               f"header: {reason})")
    with pytest.raises(CheckpointError, match=re.escape(message)):
        load_language_model(directory)
    with pytest.raises(CheckpointError, match=re.escape(message)):
        load_checkpoint(directory)


@pytest.mark.parametrize("damage", ["bytes", "dtype"])
@pytest.mark.parametrize("name", ["model.safetensors", "training.safetensors"])
def test_a_weights_file_whose_bytes_were_overwritten_is_named_and_an_unsealed_one_loads(tmp_path, name, damage):
    """Bytes overwritten inside the tensors (not cut short) loaded as other weights: `lm eval`
    printed perplexity inf, `speech eval` WER 100 %, a resume blamed the learning rate; so would
    a header whose dtype was overwritten (F32 read as I32)."""
    directory = save_checkpoint(tmp_path / "last", tiny_model_config(), model_tensors(LanguageModel(TINY_MODEL)),
                                extra_tensors={"training.safetensors": {"step": torch.arange(64.0)}})
    damaged = directory / name
    content = bytearray(damaged.read_bytes())
    if damage == "bytes":
        content[-40:-20] = b"\xff" * 20  # NaNs in the last tensor
    else:
        at = content.index(b'"F32"')
        content[at:at + 5] = b'"I32"'  # still a header that describes the same bytes
    damaged.write_bytes(bytes(content))
    with pytest.raises(CheckpointError, match=f"^{re.escape(str(damaged))} is damaged: what it holds differs from what "
                                              "was written .*; restore it from a copy, or use the run's other "
                                              r"checkpoint where it serves \(best/ holds the best model; only last/ "
                                              r"resumes a run\), or train again$"):
        read_extra_tensors(directory, name) if name == "training.safetensors" else load_checkpoint(directory)
    tensors = {"weight": torch.arange(6.0).reshape(2, 3)}  # a file lstmkit wrote before it sealed them
    damaged.write_bytes(safetensors.torch.save(tensors))
    assert torch.equal(load_tensors(damaged, "cpu")["weight"], tensors["weight"])
    damaged.write_bytes(checkpoint.sealed(tensors))
    assert torch.equal(load_tensors(damaged, "cpu")["weight"], tensors["weight"])
    damaged.write_bytes(safetensors.torch.save(tensors, metadata={"sha256": "another writer's"}))
    assert torch.equal(load_tensors(damaged, "cpu")["weight"], tensors["weight"]), "lstmkit's seal has a key of its own"


def test_a_truncated_or_missing_training_state_is_named(tmp_path):
    directory = save_checkpoint(tmp_path / "last", {}, {}, extra_tensors={"training.safetensors": {"x": torch.ones(8)}})
    training = directory / "training.safetensors"
    training.write_bytes(training.read_bytes()[:-4])
    with pytest.raises(CheckpointError, match=re.escape(
            f"{training} is not a readable safetensors file (truncated or corrupt: Error while deserializing header: "
            "incomplete metadata, file not fully covered)")):
        read_extra_tensors(directory, "training.safetensors")
    training.unlink()
    with pytest.raises(CheckpointError, match=re.escape(
            f"{directory} has no training.safetensors: the checkpoint is incomplete")):
        read_extra_tensors(directory, "training.safetensors")


@pytest.mark.parametrize("content, problem", [
    (b"", "is not JSON: Expecting value at line 1 column 1"),
    (b'{"kind": "language_model",\n "model": {',
     "is not JSON: Expecting property name enclosed in double quotes at line 2 column 12"),
    (b'{"kind": "\xff"}', "is not JSON: byte 10 is not UTF-8"),
    (b'{"kind": "language_mo', "is not JSON: Unterminated string starting at line 1 column 10"),  # not "at at"
    (b"[1, 2]", "holds a JSON list, expected an object"),
    (b'"language_model"', "holds a JSON str, expected an object"),
])
def test_a_config_that_is_not_a_json_object_is_named(tmp_path, content, problem):
    directory = save_language_model(tmp_path / "model")
    (directory / "config.json").write_bytes(content)
    with pytest.raises(CheckpointError, match=re.escape(f"{directory / 'config.json'} {problem}")):
        load_language_model(directory)


@pytest.mark.parametrize("content, problem", [
    (None, "has no vocabulary.json: the checkpoint is incomplete"),
    ("{", "vocabulary.json is not JSON: Expecting property name enclosed in double quotes at line 1 column 2"),
    ('{"level": "char"}',
     "vocabulary.json is not a vocabulary (expected an object with 'level' and 'tokens'): KeyError('tokens')"),
    ('{"level": "char", "tokens": ["a", "b"]}', "vocabulary.json has 2 tokens, but the model's vocabulary_size is 5"),
])
def test_a_broken_vocabulary_is_named(tmp_path, content, problem):
    directory = save_language_model(tmp_path / "model")
    if content is None:
        (directory / VOCABULARY_FILE).unlink()
    else:
        (directory / VOCABULARY_FILE).write_text(content)
    separator = " " if content is None else "/"
    with pytest.raises(CheckpointError, match=re.escape(f"{directory}{separator}{problem}")):
        load_language_model(directory)


# Loading: tensors that do not fit the configuration.

def test_missing_and_extra_tensors_are_named(tmp_path):
    tensors = model_tensors(LanguageModel(TINY_MODEL))
    del tensors["decoder.bias"], tensors["recurrent.weight_hh_l0"]
    tensors["head.weight"] = torch.zeros(2)
    directory = save_language_model(tmp_path / "model", tensors=tensors)
    with pytest.raises(CheckpointError, match=re.escape(
            f"{directory / 'model.safetensors'} does not fit its configuration: missing tensors "
            "recurrent.weight_hh_l0, decoder.bias; unexpected tensors head.weight")):
        load_language_model(directory)


def test_a_shape_that_disagrees_with_the_configuration_is_named(tmp_path):
    directory = save_language_model(tmp_path / "model", config=tiny_model_config(hidden_size=3))
    with pytest.raises(CheckpointError, match=re.escape(
            f"{directory / 'model.safetensors'} does not fit its configuration: embedding.weight is (5, 4) in the "
            "file but (5, 3) by the configuration; recurrent.weight_ih_l0 is (16, 4) in the file but (12, 3) by the "
            "configuration; recurrent.weight_hh_l0 is (16, 4) in the file but (12, 3) by the configuration; "
            "recurrent.bias_ih_l0 is (16,) in the file but (12,) by the configuration; recurrent.bias_hh_l0 is (16,) "
            "in the file but (12,) by the configuration; decoder.weight is (5, 4) in the file but (5, 3) by the "
            "configuration")):
        load_language_model(directory)


def test_a_resumed_model_checks_names_and_shapes_too():
    model = LanguageModel(TINY_MODEL)
    tensors = model_tensors(model)
    tensors["decoder.bias"] = torch.zeros(6)
    with pytest.raises(CheckpointError, match=re.escape(
            "the run's last checkpoint does not fit its configuration: decoder.bias is (6,) in the file but (5,) by "
            "the configuration")):
        load_weights(model, tensors, "the run's last checkpoint")


@pytest.mark.parametrize("dtype", [torch.bool, torch.int32, torch.complex64])
def test_a_weight_saved_as_other_than_floats_is_named(tmp_path, dtype):
    """It was cast to floats without a word: a bool embedding loaded as 0/1 weights."""
    tensors = model_tensors(LanguageModel(TINY_MODEL))
    tensors["embedding.weight"] = tensors["embedding.weight"].to(dtype)
    directory = save_language_model(tmp_path / "model", tensors=tensors)
    with pytest.raises(CheckpointError, match=re.escape(
            f"{directory / 'model.safetensors'}: embedding.weight holds {dtype} in the file, but the model's is "
            "torch.float32: the file was not written by lstmkit, or edited")):
        load_language_model(directory)
    with pytest.raises(CheckpointError, match=re.escape("the run's last checkpoint: embedding.weight holds")):
        load_weights(LanguageModel(TINY_MODEL), tensors, "the run's last checkpoint")
    tensors["embedding.weight"] = tensors["embedding.weight"].real.to(torch.float16)  # floats of another precision
    load_language_model(save_language_model(tmp_path / "half", tensors=tensors))


def test_a_model_of_ones_own_with_tied_weights_saves_them_once_and_loads_them_tied(tmp_path):
    """Without a `tied_weight` attribute, safetensors refused the shared tensor at the first
    checkpoint, after training had run."""
    class Tied(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding, self.decoder = torch.nn.Embedding(5, 4), torch.nn.Linear(4, 5)
            self.decoder.weight = self.embedding.weight

    model = Tied()
    tensors = model_tensors(model)
    assert list(tensors) == ["embedding.weight", "decoder.bias"]
    over_one_memory = Tied()  # two parameters over one memory: safetensors refused them too
    over_one_memory.decoder.weight = torch.nn.Parameter(over_one_memory.embedding.weight.data)
    assert list(model_tensors(over_one_memory)) == ["embedding.weight", "decoder.bias"]
    save_checkpoint(tmp_path / "tied", {"kind": "mine"}, tensors)
    loaded = Tied()
    load_weights(loaded, load_checkpoint(tmp_path / "tied")[1], "the checkpoint")
    assert torch.equal(loaded.decoder.weight, model.embedding.weight)
    assert loaded.decoder.weight is loaded.embedding.weight


def test_a_save_clears_only_its_own_leftovers_whatever_its_name(tmp_path):
    """A name with [ or ] (exp[lr=0.1]) was a glob pattern: its own leftovers stayed, and
    another folder's save in progress was removed."""
    (tmp_path / ".run[1].new.abc").mkdir()
    (tmp_path / ".run1.new.zzz").mkdir()
    save_checkpoint(tmp_path / "run[1]", {"kind": "mine"}, {"w": torch.zeros(1)})
    assert sorted(path.name for path in tmp_path.iterdir()) == [".run1.new.zzz", "run[1]"]


@pytest.mark.parametrize("setting, value, largest", [
    ("hidden_size", 10**9, "recurrent.bias_hh_l0, (16,)"),
    ("vocabulary_size", 10**12, "recurrent.bias_hh_l0, (16,)"),
])
def test_a_crafted_size_fails_fast_without_allocating(tmp_path, setting, value, largest):
    """Checked against the header's shapes before the model is built, even on the meta
    device (10**9 layers would take hours to build there; 10**9 units overflow it)."""
    directory = save_language_model(tmp_path / "model", config=tiny_model_config(**{setting: value}))
    start = time.perf_counter()
    with pytest.raises(CheckpointError, match=re.escape(
            f"{directory / 'config.json'} sets {setting}={value}, which the tensors in "
            f"{directory / 'model.safetensors'} do not fit: none has a dimension that large (the largest is "
            f"{largest})")):
        load_language_model(directory)
    assert time.perf_counter() - start < 0.5


@pytest.mark.parametrize("changes, named", [
    ({"num_layers": 40_000}, "num_layers=40000, ensemble=1, scalings=1"),
    ({"ensemble": 10_000}, "num_layers=1, ensemble=10000, scalings=1"),
    ({"num_layers": 3, "ensemble": 2, "scalings": 2}, "num_layers=3, ensemble=2, scalings=2"),
])
def test_crafted_counts_of_parts_fail_fast_against_the_tensor_count(tmp_path, changes, named):
    """Layers and ensemble members were bounded by the largest dimension (a word-level LM's
    vocabulary let 33,000 layers through) or not at all: 10,000 members took 140 s to build on the
    meta device before their tensors were found missing. Each part has tensors of its own."""
    config = ForecastNetworkConfig("lstm", targets=1, past_features=1, future_features=0, horizon=2, hidden_size=4,
                                   num_layers=1, dropout=0.0)
    tensors = model_tensors(ForecastNetwork(config))
    directory = save_checkpoint(tmp_path / "model", {"kind": "forecaster", "network": {**config.to_dict(), **changes}},
                                tensors)
    start = time.perf_counter()
    with pytest.raises(CheckpointError, match=re.escape(
            f"{directory / 'config.json'} sets {named}, which the tensors in {directory / 'model.safetensors'} do not "
            f"fit: each part has tensors of its own, and the file holds {len(tensors)}")):
        checkpoint.load_model_checkpoint(directory, FORECASTER)
    assert time.perf_counter() - start < 0.5


def test_a_crafted_header_cannot_claim_more_than_the_file_holds(tmp_path):
    """A header that matches a huge configuration must describe bytes the file does not have."""
    directory = save_language_model(tmp_path / "model", config=tiny_model_config(hidden_size=10**5))
    header = json.dumps({"embedding.weight": {"dtype": "F32", "shape": [5, 10**5], "data_offsets": [0, 2 * 10**6]}})
    weights = directory / "model.safetensors"
    weights.write_bytes(struct.pack("<Q", len(header)) + header.encode())
    with pytest.raises(CheckpointError, match=re.escape(
            f"{weights} is not a readable safetensors file (truncated or corrupt: Error while deserializing header: "
            "incomplete metadata, file not fully covered)")):
        load_language_model(directory)


# Loading: checkpoints of another kind, or of no kind.

def test_a_config_that_cannot_build_the_model_is_named(tmp_path):
    directory = save_language_model(tmp_path / "model", config=tiny_model_config(colour="blue"))
    with pytest.raises(CheckpointError, match=re.escape(
            f"{directory / 'config.json'} describes a language model this lstmkit cannot build (written by another "
            "version?): LanguageModelConfig.__init__() got an unexpected keyword argument 'colour'")):
        load_language_model(directory)
    save_language_model(directory, config=tiny_model_config(dropout=2.0))
    with pytest.raises(CheckpointError, match=re.escape("cannot build (written by another version?): dropout must be "
                                                        "in [0, 1), got 2.0")):
        load_language_model(directory)


@pytest.mark.parametrize("config, problem", [
    ({"model": TINY_MODEL.to_dict()},
     "{directory} holds a checkpoint of no kind ({directory}/config.json), not a language model"),
    ({"kind": "language_model"}, "{directory}/config.json has no 'model' object describing a language model"),
    ({"kind": "language_model", "model": [4]},
     "{directory}/config.json has no 'model' object describing a language model"),
])
def test_a_config_without_kind_or_model_is_named(tmp_path, config, problem):
    directory = save_language_model(tmp_path / "model", config=config)
    with pytest.raises(CheckpointError, match=re.escape(problem.format(directory=directory))):
        load_language_model(directory)


def test_a_language_model_run_given_to_forecast_predict(tmp_path, capsys):
    from lstmkit.cli import main

    save_language_model(tmp_path / "run" / "best")
    (tmp_path / "series.csv").write_text("date,value\n2020-01-01,1\n")
    with pytest.raises(SystemExit) as exit_:
        main(["forecast", "predict", str(tmp_path / "run"), str(tmp_path / "series.csv")])
    assert exit_.value.code == 2
    assert capsys.readouterr().err == (f"lstmkit: error: {tmp_path / 'run' / 'best'} holds a 'language_model' "
                                       "checkpoint, not a forecaster\n")


def test_a_forecaster_given_to_lm_sample(tmp_path):
    save_checkpoint(tmp_path / "fit" / "model", {"kind": "forecaster", "network": {}}, {})
    with pytest.raises(CheckpointError, match=re.escape(
            f"{tmp_path / 'fit' / 'model'} holds a 'forecaster' checkpoint, not a language model")):
        load_language_model(tmp_path / "fit")
    with pytest.raises(CheckpointError, match="holds a 'forecaster' checkpoint, not a language model"):
        load_language_model(tmp_path / "fit" / "model")
    with pytest.raises(CheckpointError, match=re.escape(
            f"{tmp_path / 'fit' / 'model' / 'config.json'} describes a forecaster this lstmkit cannot build (written "
            "by another version?): ForecastNetworkConfig.__init__() missing 5 required positional arguments: 'cell', "
            "'targets', 'past_features', 'future_features', and 'horizon'")):
        load_forecaster(tmp_path / "fit")


def test_a_forecaster_of_another_version_is_named(tmp_path):
    network = ForecastNetworkConfig(cell="lstm", targets=1, past_features=1, future_features=0, horizon=2,
                                    hidden_size=4, num_layers=1)
    config = {"kind": "forecaster", "network": network.to_dict(), "forecaster": {"time": "day"}}
    save_checkpoint(tmp_path / "old", config, ForecastNetwork(network).state_dict())
    with pytest.raises(CheckpointError, match=re.escape(
            f"{tmp_path / 'old'} is a forecaster checkpoint this lstmkit cannot read (written by another version?): "
            "Forecaster.__init__() missing 2 required positional arguments: 'target' and 'horizon'")):
        load_forecaster(tmp_path / "old")


def test_a_forecaster_whose_horizon_disagrees_with_its_networks_is_named(tmp_path):
    """An edited forecaster.horizon of 10**9 stopped in pandas' "Out of bounds timestamp", which
    names neither the file nor the setting."""
    network = ForecastNetworkConfig(cell="lstm", targets=1, past_features=1, future_features=0, horizon=2,
                                    hidden_size=4, num_layers=1)
    config = {"kind": "forecaster", "network": network.to_dict(),
              "forecaster": {"target": "y", "time": "day", "horizon": 10**9}}
    save_checkpoint(tmp_path / "edited", config, ForecastNetwork(network).state_dict())
    with pytest.raises(CheckpointError, match=re.escape(
            f"{tmp_path / 'edited'} is a forecaster checkpoint this lstmkit cannot read (written by another "
            "version?): its forecaster.horizon, 1000000000, is not its network.horizon, 2")):
        load_forecaster(tmp_path / "edited")


def test_lm_sample_on_a_truncated_file_is_one_line(tmp_path, capsys):
    from lstmkit.cli import main

    weights = save_language_model(tmp_path / "run" / "best") / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1])
    with pytest.raises(SystemExit) as exit_:
        main(["lm", "sample", str(tmp_path / "run"), "--length", "5"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err == (f"lstmkit: error: {weights} is not a readable safetensors file (truncated or "
                                       "corrupt: Error while deserializing header: incomplete metadata, file not "
                                       "fully covered)\n")


def test_an_intact_checkpoint_still_loads(tmp_path):
    directory = save_language_model(tmp_path / "run" / "best")
    torch.manual_seed(0)
    expected = LanguageModel(TINY_MODEL)
    loaded = load_language_model(tmp_path / "run")
    assert loaded.vocabulary == VOCABULARY and loaded.config == tiny_model_config()
    for name, tensor in expected.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[name], tensor), name
    os.replace(directory, previous_path(directory))  # as if killed between the two renames of a save
    assert load_language_model(tmp_path / "run").vocabulary == VOCABULARY


# Writing: every step of a save, failing or killed.

class Killed(BaseException):
    """The process dies at this step: nothing after it runs, not even `finally` clauses' work."""


class SaveSteps:
    """Records the file-system steps of a save (mkdtemp, chmod, write, rmtree, replace, fsync
    of the folder) under stable labels; can fail one of them (ENOSPC, after doing part of it
    as a full disk would) or die at it, and checks before each one that the checkpoint loads."""

    def __init__(self, monkeypatch, directory: Path, versions: set[int], fail_at: int | None = None,
                 kill_at: int | None = None) -> None:
        self.directory, self.versions, self.fail_at, self.kill_at = directory, versions, fail_at, kill_at
        self.labels: list[str] = []
        self.dead = False
        for owner, name in ((tempfile, "mkdtemp"), (os, "chmod"), (checkpoint, "write_file"), (shutil, "rmtree"),
                            (os, "replace"), (checkpoint, "flush")):
            monkeypatch.setattr(owner, name, self.step(name, getattr(owner, name)))

    def label(self, path) -> str:
        name = Path(path).name
        return "staging" if name.startswith(f".{self.directory.name}.new.") else name

    def step(self, name: str, real):
        def run(*arguments, **options):
            if self.dead:
                return None
            label = " -> ".join(self.label(argument) for argument in arguments[:2] if isinstance(argument, str | Path))
            self.labels.append(f"{name} {label}".strip())
            index = len(self.labels) - 1
            if self.versions:
                assert load_version(self.directory) in self.versions, f"before {self.labels[-1]}"
                if name == "rmtree":
                    assert Path(arguments[0]) != existing(self.directory), f"{self.labels[-1]} removes the only copy"
            if index == self.kill_at:
                self.dead = True
                raise Killed
            if index == self.fail_at:
                return self.fail(name, real, arguments, options)
            return real(*arguments, **options)
        return run

    @staticmethod
    def fail(name: str, real, arguments, options):
        """Part of the step, as a full disk leaves it, then ENOSPC (or nothing, where the
        caller asked rmtree to ignore errors)."""
        if name == "write_file":
            real(arguments[0], arguments[1][:len(arguments[1]) // 2])
        if name == "rmtree":
            (Path(arguments[0]) / "config.json").unlink(missing_ok=True)
            if options.get("ignore_errors"):
                return
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def save_version(directory: Path, version: int) -> None:
    """A checkpoint whose every file says which save wrote it."""
    save_checkpoint(directory, {"version": version}, {"w": torch.full((3,), float(version))},
                    {"notes.txt": f"version {version}"}, {"training.safetensors": {"step": torch.tensor(version)}})


def load_version(directory: Path) -> int:
    """The version of a complete checkpoint: every file must agree."""
    config, tensors = load_checkpoint(directory)
    version = config["version"]
    assert torch.equal(tensors["w"], torch.full((3,), float(version)))
    assert read_extra_tensors(directory, "training.safetensors")["step"].item() == version
    assert (existing(directory) / "notes.txt").read_text() == f"version {version}"
    return version


WRITES = ["mkdtemp", "chmod staging", "write_file config.json", "write_file notes.txt", "write_file model.safetensors",
          "write_file training.safetensors"]
# What is on disk before the save of version 2 -> the steps of that save.
SAVES = {
    "nothing": WRITES + ["replace staging -> checkpoint", "flush runs", "rmtree .checkpoint.previous"],
    "a checkpoint": WRITES + ["replace checkpoint -> .checkpoint.previous", "replace staging -> checkpoint",
                              "flush runs", "rmtree .checkpoint.previous"],
    "only the previous copy (killed between renames)": WRITES + ["replace staging -> checkpoint", "flush runs",
                                                                 "rmtree .checkpoint.previous"],
    "a checkpoint and a previous copy (killed while removing it)": WRITES + [
        "rmtree .checkpoint.previous", "replace checkpoint -> .checkpoint.previous", "replace staging -> checkpoint",
        "flush runs", "rmtree .checkpoint.previous"],
}
STEPS = [(before, index) for before, steps in SAVES.items() for index in range(len(steps))]


def prepare(tmp_path: Path, before: str) -> Path:
    """`tmp_path/runs/checkpoint` in the state `before` (version 1 in place, version 0 the
    previous copy)."""
    directory = tmp_path / "runs" / "checkpoint"
    if before == "nothing":
        return directory
    save_version(directory, 1)
    if before == "only the previous copy (killed between renames)":
        os.replace(directory, previous_path(directory))
    if before == "a checkpoint and a previous copy (killed while removing it)":
        save_version(directory.parent / "older", 0)
        os.replace(directory.parent / "older", previous_path(directory))
    return directory


def test_a_previous_copy_from_a_killed_save_is_kept_until_the_new_one_is_in_place(tmp_path, monkeypatch):
    """The bug: a save deleted `.NAME.previous` first, even when it was the only copy, so a
    second kill before the new one was renamed into place left no checkpoint at all."""
    directory = prepare(tmp_path, "only the previous copy (killed between renames)")
    rename = os.replace

    def killed_renaming_into_place(source, target):
        if Path(target) == directory:
            raise Killed
        rename(source, target)

    monkeypatch.setattr(os, "replace", killed_renaming_into_place)
    with pytest.raises(Killed):
        save_version(directory, 2)
    monkeypatch.undo()
    assert load_version(directory) == 1
    save_version(directory, 2)
    assert load_version(directory) == 2 and os.listdir(directory.parent) == ["checkpoint"]


@pytest.mark.parametrize("before", SAVES)
def test_the_steps_of_a_save_are_those_tested(tmp_path, monkeypatch, before):
    directory = prepare(tmp_path, before)
    steps = SaveSteps(monkeypatch, directory, set() if before == "nothing" else {1, 2})
    save_version(directory, 2)
    monkeypatch.undo()
    assert steps.labels == SAVES[before]
    assert load_version(directory) == 2 and os.listdir(directory.parent) == ["checkpoint"]


@pytest.mark.parametrize("before, step", STEPS)
def test_a_save_killed_at_any_step_leaves_a_complete_checkpoint(tmp_path, monkeypatch, before, step):
    """Before every step the old or the new checkpoint loads, complete; after the kill, the
    next save cleans up what was left."""
    directory = prepare(tmp_path, before)
    SaveSteps(monkeypatch, directory, set() if before == "nothing" else {1, 2}, kill_at=step)
    with pytest.raises(Killed):
        save_version(directory, 2)
    monkeypatch.undo()
    if before != "nothing":
        assert load_version(directory) in {1, 2}
    save_version(directory, 3)
    assert load_version(directory) == 3 and os.listdir(directory.parent) == ["checkpoint"]


@pytest.mark.parametrize("before, step", STEPS)
def test_a_full_disk_at_any_step_stops_with_the_old_checkpoint_intact(tmp_path, monkeypatch, before, step):
    directory = prepare(tmp_path, before)
    steps = SaveSteps(monkeypatch, directory, set(), fail_at=step)
    if SAVES[before][step] == "rmtree .checkpoint.previous" and step == len(SAVES[before]) - 1:
        save_version(directory, 2)  # the new checkpoint is in place; the next save removes the old copy
        monkeypatch.undo()
        assert load_version(directory) == 2
    else:
        kept = "the previous checkpoint there is intact" if before != "nothing" else "there was no checkpoint there before"
        with pytest.raises(CheckpointWriteError, match=re.escape(
                f"no space left on device while writing checkpoint {directory}; {kept}")) as error:
            save_version(directory, 2)
        monkeypatch.undo()
        assert error.value.errno == errno.ENOSPC and str(error.value) == error.value.strerror
        assert not [name for name in os.listdir(directory.parent) if ".new." in name], "the staging folder is removed"
        if SAVES[before][step] == "flush runs":  # renamed into place, not known to be on disk
            assert load_version(directory) == 2
        elif before == "nothing":
            assert not directory.exists() and not previous_path(directory).exists()
        else:
            assert load_version(directory) == 1
    assert steps.labels[step] == SAVES[before][step]
    save_version(directory, 3)
    assert load_version(directory) == 3 and os.listdir(directory.parent) == ["checkpoint"]


def test_a_write_error_reaches_the_command_line_as_one_line(tmp_path, monkeypatch, capsys):
    from lstmkit.cli import main

    text = tmp_path / "input.txt"
    text.write_text("abcdefgh\n" * 200)

    def disk_full(path, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(checkpoint, "write_file", disk_full)
    with pytest.raises(SystemExit) as exit_:
        main(["lm", "train", str(text), "--out", str(tmp_path / "run"), "--steps", "2", "--eval-every", "1",
              "--hidden-size", "4", "--num-layers", "1", "--seq-len", "4", "--batch-size", "2"])
    assert exit_.value.code == 1
    assert capsys.readouterr().err.endswith(
        f"lstmkit: error: no space left on device while writing checkpoint {tmp_path / 'run' / 'best'}; there "
        "was no checkpoint there before\n")


def test_a_checkpoint_is_not_written_over_what_is_not_one(tmp_path):
    """Forecaster.save("myproject") deleted the folder's own files; save("report.csv") turned the
    file into a folder, leaving it hidden as .report.csv.previous; save(".") failed with EBUSY."""
    project, report = tmp_path / "myproject", tmp_path / "report.csv"
    project.mkdir()
    (project / "notes.md").write_text("important")
    report.write_text("data")
    with pytest.raises(FileExistsError, match=re.escape(
            f"{project} holds files that are not a checkpoint's (notes.md), which writing a checkpoint there would "
            "delete: move them out, or choose another folder")):
        save_checkpoint(project, {"kind": "forecaster"}, {"w": torch.ones(2)})
    with pytest.raises(FileExistsError, match=re.escape(f"{report} is a file; a checkpoint is a folder")):
        save_checkpoint(report, {"kind": "forecaster"}, {"w": torch.ones(2)})
    (tmp_path / "run" / "best").mkdir(parents=True)  # a training run's folder: no config.json of its own
    with pytest.raises(FileExistsError, match=r"run holds files that are not a checkpoint's \(best\)"):
        save_checkpoint(tmp_path / "run", {"kind": "forecaster"}, {"w": torch.ones(2)})
    assert (project / "notes.md").read_text() == "important" and report.read_text() == "data"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["myproject", "report.csv", "run"]
    # a checkpoint of the same files is replaced; of other files (a model beside its config: another
    # program's), or of another kind (a language model's best/), refused
    save_checkpoint(tmp_path / "model", {"v": 1}, {"w": torch.ones(2)}, extra_tensors={"training.safetensors": {}})
    save_checkpoint(tmp_path / "model", {"v": 2}, {"w": torch.zeros(2)}, extra_tensors={"training.safetensors": {}})
    assert load_checkpoint(tmp_path / "model")[0] == {"v": 2}
    with pytest.raises(FileExistsError, match=r"model holds files that are not a checkpoint's \(training\.safetensors"):
        save_checkpoint(tmp_path / "model", {"v": 3}, {"w": torch.zeros(2)})
    (tmp_path / "model" / "users.json").write_text("{}")
    with pytest.raises(FileExistsError, match=r"not a checkpoint's \(users.json\)"):
        save_checkpoint(tmp_path / "model", {"v": 3}, {"w": torch.zeros(2)}, extra_tensors={"training.safetensors": {}})
    # with its vocabulary, which the refusal told the user to move out, breaking the language model
    save_checkpoint(tmp_path / "lm", {"kind": "language_model"}, {"w": torch.ones(2)}, {"vocabulary.json": "{}"})
    with pytest.raises(FileExistsError, match=re.escape(f"{tmp_path / 'lm'} holds a 'language_model' checkpoint, "
                                                        "which writing a 'forecaster' one there would replace")):
        save_checkpoint(tmp_path / "lm", {"kind": "forecaster"}, {"w": torch.ones(2)})


def test_the_run_of_a_checkpoint_is_told_by_its_name_and_contents(tmp_path):
    """The run whose results.json an evaluation must not write over: RUN for RUN, RUN/best,
    RUN/last and a fit's RUN/model (or the .previous copy an interrupted save leaves); a run
    folder called model or best holds no config.json, and a checkpoint saved on its own is
    its own folder."""
    for name in ("best", "model"):
        (tmp_path / "run" / name).mkdir(parents=True)
        (tmp_path / "run" / name / "config.json").write_text("{}")
    previous_path(tmp_path / "run" / "last").mkdir()
    (previous_path(tmp_path / "run" / "last") / "config.json").write_text("{}")
    (tmp_path / "saved").mkdir()
    (tmp_path / "saved" / "config.json").write_text("{}")
    (tmp_path / "model" / "model").mkdir(parents=True)
    given = ("run", "run/best", "run/model", "run/last", "saved", "model")
    runs = {name: run_folder(tmp_path / name) for name in given}
    assert runs == {"run": tmp_path / "run", "run/best": tmp_path / "run", "run/model": tmp_path / "run",
                    "run/last": tmp_path / "run", "saved": tmp_path / "saved", "model": tmp_path / "model"}



HELD = """
import os, signal, subprocess, threading, time
from lstmkit.interrupts import interrupts_held
signal.signal(signal.SIGINT, signal.default_int_handler)  # Python's, which a background job (nohup, &) starts without
threading.Thread(target=time.sleep, args=(30,), daemon=True).start()  # a thread that blocks no signal
where = "before"
try:
    with interrupts_held():
        subprocess.run(["kill", "-INT", str(os.getpid())])  # from another process, as a scheduler's
        time.sleep(0.5)
        where = "at the end of the block"
except KeyboardInterrupt:
    print("interrupted", where)
"""


def test_an_interrupt_from_another_process_waits_for_the_end_of_a_held_block(tmp_path):
    """The block held SIGINT and SIGTERM by the main thread's signal mask: the system handed a
    signal from another process to another thread (torch's, tqdm's), and Python ran the handler
    in the main thread, inside the block (a checkpoint's swap of folders)."""
    script = tmp_path / "held.py"
    script.write_text(HELD)
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert result.stdout == "interrupted at the end of the block\n", result.stderr


def test_a_callers_timeout_raised_while_saving_comes_through_as_itself(tmp_path, monkeypatch):
    """TimeoutError is an OSError: a sweep's SIGALRM handler raising it during a save came out
    as CheckpointWriteError ("trial took too long while writing checkpoint ..."), which its
    `except TimeoutError` missed. The file system's own timeout (an errno) is still a write error."""
    from lstmkit import checkpoint

    directory = prepare(tmp_path, "nothing")

    def times_out(*arguments):
        raise TimeoutError("trial took too long")

    monkeypatch.setattr(checkpoint, "write_checkpoint", times_out)
    with pytest.raises(TimeoutError, match="^trial took too long$") as raised:
        save_version(directory, 1)
    assert type(raised.value) is TimeoutError

    def file_system_times_out(*arguments):
        raise TimeoutError(errno.ETIMEDOUT, os.strerror(errno.ETIMEDOUT))

    monkeypatch.setattr(checkpoint, "write_checkpoint", file_system_times_out)
    with pytest.raises(CheckpointWriteError, match="connection timed out while writing checkpoint"):
        save_version(directory, 1)
