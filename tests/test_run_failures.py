"""Runs that fail say so: a diverging loss, a resume onto other data or settings, an output
folder that cannot be written, options out of range. Each stops early or cleanly, with a
message that names what was expected and what was received, and keeps what was written."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import sys
from pathlib import Path

import pytest
import safetensors.torch
import torch
from safetensors.torch import load_file

from helpers import Killed, Quadratic, another_run_could_claim, dies_at_step, held_by_another_run
from lstmkit import lm
from lstmkit.checkpoint import CheckpointError, checkpoint_folder, load_checkpoint, read_config
from lstmkit.cli import main
from lstmkit.files import check_not_read, check_output_file, write_json
from lstmkit.pipelines.configs import TaskTrainingConfig
from lstmkit.pipelines.lm import LMTrainingConfig, TextScores
from lstmkit.training import Trainer, TrainingConfig, TrainingDiverged
from lstmkit.training.loop import check_run_folder
from test_training import ddp_flags, torchrun

TINY = dict(num_layers=1, hidden_size=16, seq_len=16, batch_size=4, eval_every=10, warmup=0, dropout=0.0)


@pytest.fixture(scope="module")
def text_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("text") / "small.txt"
    path.write_text("First Citizen:\nBefore we proceed any further, hear me speak.\n\n" * 20, encoding="utf-8")
    return path


class TurnsNaN(Quadratic):
    """The quadratic job whose training loss is NaN from `step` on."""

    def __init__(self, step: int) -> None:
        super().__init__([1.0], validation_target=0.1)
        self.nan_from = step

    def train_loss(self, model, step):
        loss, items = super().train_loss(model, step)
        return (loss * math.nan if step >= self.nan_from else loss), items


def test_a_non_finite_training_loss_stops_the_run_and_keeps_its_checkpoints(tmp_path):
    job = TurnsNaN(step=25)
    with pytest.raises(TrainingDiverged) as stopped:
        Trainer(TrainingConfig(steps=100, lr=0.01, eval_every=10)).run(job, tmp_path / "run")
    run = tmp_path / "run"
    message = re.fullmatch(
        r"quadratic: training diverged at step 25: the training loss became nan \(the last finite training loss: "
        r"(\S+) at step 24\)\. Kept: (\S+) \(step 20\), (\S+) \(step (\d+)\) and (\S+)\. Lower the learning rate "
        r"\(--lr, now 0\.01\) or clip gradients harder \(--clip, now 1\)\. Start a new run for that \(another "
        r"--out\): --resume continues a run with its own settings\.", str(stopped.value))
    assert message, str(stopped.value)
    assert message.group(2, 3, 5) == (str(run / "last"), str(run / "best"), str(run / "metrics.csv"))
    assert float(message.group(1)) > 0
    assert load_checkpoint(run / "best")[0]["progress"]["best_step"] == int(message.group(4))
    assert job.steps_seen == list(range(26)), "no step is taken with a NaN gradient"
    assert math.isfinite(job.model.weight.item())
    config, tensors = load_checkpoint(run / "last")
    assert config["progress"]["step"] == 20 and torch.isfinite(tensors["weight"]).all()
    assert [line.split(",")[0] for line in (run / "metrics.csv").read_text().splitlines()[1:]] == ["10", "20"]


@pytest.mark.skipif(sys.platform == "win32", reason="folders are locked where the system has flock")
def test_a_second_run_into_a_folder_a_run_is_writing_in_is_refused(tmp_path):
    """Two runs started into one folder both passed its checks (neither had written a
    checkpoint yet), and the one that ended last overwrote the other's files, both saying
    they had written them. The folder is held by the run writing there; one that dies lets
    it go, and a folder a run made and left empty is removed."""
    with held_by_another_run(tmp_path / "run"):  # another run, writing there now
        with pytest.raises(ValueError, match=re.escape(f"{tmp_path / 'run'} is in use: another run is writing there "
                                                       "now; wait for it to end, or choose another folder")):
            Trainer(TrainingConfig(steps=2, eval_every=1)).run(Quadratic([1.0], 0.0), tmp_path / "run")
    assert not (tmp_path / "run").exists(), "the folder the holder made, left empty, is removed"
    run = Trainer(TrainingConfig(steps=2, eval_every=1)).run(Quadratic([1.0], 0.0), tmp_path / "run")
    assert run.steps == 2 and (tmp_path / "run" / "results.json").is_file()
    with pytest.raises(TrainingDiverged):
        Trainer(TrainingConfig(steps=100, eval_every=10)).run(TurnsNaN(step=0), tmp_path / "diverged")
    assert not (tmp_path / "diverged").exists()
    with held_by_another_run(tmp_path / "new" / "run"):  # a run refused meanwhile left the held folder as it was
        with pytest.raises(ValueError, match="is in use"):
            Trainer(TrainingConfig(steps=2, eval_every=1)).run(Quadratic([1.0], 0.0), tmp_path / "new" / "run")
        assert (tmp_path / "new" / "run").is_dir()
    assert not (tmp_path / "new").exists()


@pytest.mark.skipif(sys.platform == "win32", reason="folders are locked where the system has flock")
def test_a_new_run_into_a_folder_being_trained_is_told_it_is_in_use_not_to_resume(tmp_path):
    """It was told `already holds a run; pass resume=True (--resume)`, which then met `is in use`."""
    Trainer(TrainingConfig(steps=2, eval_every=1)).run(Quadratic([1.0], 0.0), tmp_path / "run")
    in_use = re.escape(f"{tmp_path / 'run'} is in use: another run is writing there now")
    with held_by_another_run(tmp_path / "run"):  # its resumed run, writing there now
        for resume in (False, True):
            with pytest.raises(ValueError, match=in_use):
                check_run_folder(tmp_path / "run", resume)
            with pytest.raises(ValueError, match=in_use):
                Trainer(TrainingConfig(steps=4, eval_every=1)).run(Quadratic([1.0], 0.0), tmp_path / "run", resume)
    check_run_folder(tmp_path / "run", True)  # let go


@pytest.mark.skipif(sys.platform == "win32", reason="folders are locked where the system has flock")
def test_a_run_into_a_folder_another_thread_holds_is_refused_and_one_thread_may_hold_it_twice(tmp_path):
    """A claim that this process holds a folder let a second thread's run in (and the first one's
    end released the folder under it); the demo's claim around its task run's is the same
    thread's, and nests."""
    import threading

    from lstmkit.files import claimed_folder

    holding, done = threading.Event(), threading.Event()

    def another_run() -> None:
        with claimed_folder(tmp_path / "run"):
            holding.set()
            done.wait(60)

    thread = threading.Thread(target=another_run)
    thread.start()
    try:
        assert holding.wait(60)
        with pytest.raises(ValueError, match=re.escape(f"{tmp_path / 'run'} is in use")):
            Trainer(TrainingConfig(steps=2, eval_every=1)).run(Quadratic([1.0], 0.0), tmp_path / "run")
    finally:
        done.set()
        thread.join()
    with claimed_folder(tmp_path / "run"):
        run = Trainer(TrainingConfig(steps=2, eval_every=1)).run(Quadratic([1.0], 0.0), tmp_path / "run")
        assert not another_run_could_claim(tmp_path / "run"), "held by the outer claim still"
    assert run.steps == 2 and another_run_could_claim(tmp_path / "run")


@pytest.mark.skipif(sys.platform == "win32", reason="folders are locked where the system has flock")
def test_a_folder_whose_file_system_refuses_locks_is_warned_of_and_trained_in(tmp_path, monkeypatch):
    """NFS without lockd: "[Errno 37] No locks available" stopped every run there."""
    import errno
    import fcntl

    def refused(handle, operation):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(fcntl, "flock", refused)
    with pytest.warns(UserWarning, match=re.escape(f"{tmp_path / 'run'} cannot be locked (No locks available): "
                                                   "another run started into it would not be refused")):
        run = Trainer(TrainingConfig(steps=2, eval_every=1)).run(Quadratic([1.0], 0.0), tmp_path / "run")
    assert run.steps == 2


def test_a_run_resumed_from_weights_whose_loss_is_not_finite_does_not_blame_the_learning_rate(tmp_path):
    """A last/ whose weights file was damaged gave NaN at the first step after --resume, and the
    message said to lower the learning rate, though no update had been made since the resume."""
    Trainer(TrainingConfig(steps=4, eval_every=2)).run(Quadratic([1.0], 0.0), tmp_path / "run")
    weights = tmp_path / "run" / "last" / "model.safetensors"
    weights.write_bytes(safetensors.torch.save({"weight": torch.full((1, 1), math.nan)}))  # damaged on disk
    with pytest.raises(TrainingDiverged, match=re.escape(
            "training diverged at step 4: the training loss became nan. Kept: "
            f"{tmp_path / 'run' / 'last'} (step 4), {tmp_path / 'run' / 'best'} (step 2) and "
            f"{tmp_path / 'run' / 'metrics.csv'}. No update had been made since the run resumed at step 4, so neither "
            "the learning rate nor the clip is the cause: the weights it resumed from give a loss that is not finite "
            "on this data. Their file may be damaged (the run's loss before the interruption is in metrics.csv), or "
            "the data holds values that are not numbers (NaN) or are too large for floats.")):
        Trainer(TrainingConfig(steps=8, eval_every=2)).run(Quadratic([1.0], 0.0), tmp_path / "run", resume=True)


def test_a_loss_that_is_nan_before_the_first_evaluation_says_nothing_was_saved(tmp_path):
    """An untrained model's loss: not the learning rate's doing, which the remedy said it was."""
    with pytest.raises(TrainingDiverged, match=re.escape(
            "training diverged at step 0: the training loss became nan. Nothing had been saved in "
            f"{tmp_path / 'run'} yet (its first evaluation comes at step 10). No update had been made, so neither "
            "the learning rate nor the clip is the cause: the untrained model's loss is not finite on this data. "
            "Look for values in it that are not numbers (NaN) or are too large for floats.")):
        Trainer(TrainingConfig(steps=100, eval_every=10)).run(TurnsNaN(step=0), tmp_path / "run")
    with pytest.raises(TrainingDiverged, match=re.escape(
            "Look for values in it that are not numbers (NaN) or are too large for floats, or train in full "
            "precision (--precision 32, now bf16).")):
        Trainer(TrainingConfig(steps=100, eval_every=10, precision="bf16")).run(TurnsNaN(step=0))
    with pytest.raises(TrainingDiverged, match=re.escape("at step 1: the training loss became nan (the last finite "
                                                         "training loss: 1 at step 0). Lower the learning rate")):
        Trainer(TrainingConfig(steps=100, eval_every=10)).run(TurnsNaN(step=1))
    with pytest.raises(TrainingDiverged) as stopped:  # nothing to --resume: the same --out serves a new run
        Trainer(TrainingConfig(steps=100, eval_every=10)).run(TurnsNaN(step=0), tmp_path / "again")
    assert "another --out" not in str(stopped.value)
    huge = Quadratic([0.0], 0.0)  # lm --init-range 1e38: the data was blamed
    with torch.no_grad():
        huge.model.weight.fill_(-3e30)
    with pytest.raises(TrainingDiverged, match=re.escape(
            "training diverged at step 0: the training loss became inf. No update had been made, so neither the "
            "learning rate nor the clip is the cause: the untrained model's loss is not finite on this data. Its "
            "weights reach 3e+30, past the square root of the largest torch.float32, where a product of two overflows: "
            "initialise them smaller (lm's --init-range, say), or look for values in the data that are not numbers "
            "(NaN) or are too large for floats.") + "$"):
        Trainer(TrainingConfig(steps=100, eval_every=10)).run(huge)
    lazy = TurnsNaN(step=0)  # a weight that holds no values yet, and a large one that trains well (review29)
    lazy.model.head = torch.nn.LazyLinear(2)
    lazy.model.bias = torch.nn.Parameter(torch.full((1,), 2.5e5))
    with pytest.raises(TrainingDiverged, match=re.escape("the untrained model's loss is not finite on this data. "
                                                         "Look for values in it that are not numbers (NaN)")):
        Trainer(TrainingConfig(steps=100, eval_every=10)).run(lazy)


def test_a_finite_metric_that_overflows_stops_the_run_and_names_the_last_checkpoint_saved(tmp_path):
    """The message named the step whose evaluation diverged as kept, which was never saved."""
    class OtherOverflows(Quadratic):
        finite_metric = "other"

        def evaluate(self):
            return {**super().evaluate(), "other": math.inf if self.steps_seen[-1] >= 15 else 1.0}

    with pytest.raises(TrainingDiverged) as stopped:
        Trainer(TrainingConfig(steps=100, eval_every=10)).run(OtherOverflows([1.0], 0.1), tmp_path / "run")
    assert "training diverged at step 20: the other became inf" in str(stopped.value)
    assert f"Kept: {tmp_path / 'run' / 'last'} (step 10)" in str(stopped.value)
    assert load_checkpoint(tmp_path / "run" / "last")[0]["progress"]["step"] == 10


def test_a_non_finite_validation_loss_stops_the_run_before_it_is_saved(tmp_path):
    class ValidationOverflows(Quadratic):
        def evaluate(self):
            return {"val_loss": math.inf if self.steps_seen[-1] >= 15 else super().evaluate()["val_loss"]}

    with pytest.raises(TrainingDiverged, match=re.escape(
            "quadratic: training diverged at step 20: the val_loss became inf")):
        Trainer(TrainingConfig(steps=100, eval_every=10)).run(ValidationOverflows([1.0], 0.1), tmp_path / "run")
    assert load_checkpoint(tmp_path / "run" / "last")[0]["progress"]["step"] == 10


def test_the_diverging_lm_run_of_the_issue_exits_non_zero_and_keeps_what_it_wrote(text_file, tmp_path, capsys):
    """`lstmkit lm train small.txt --lr 1e4 --clip 1e9 --steps 60` once ended with status 0
    and "wrote runs/nan/best" for a best/ that did not exist."""
    out = tmp_path / "nan"
    with pytest.raises(SystemExit) as exited:
        main(["lm", "train", str(text_file), "--lr", "1e4", "--clip", "1e9", "--steps", "60", "--out", str(out),
              "--hidden-size", "32", "--batch-size", "4", "--seq-len", "16", "--eval-every", "10"])
    assert exited.value.code == 1
    error = capsys.readouterr().err
    assert re.search(r"lstmkit: error: lm lstm 2x32: training diverged at step \d+: the (training loss|val_loss) "
                     r"became (nan|inf)", error), error
    assert "Lower the learning rate (--lr, now 10000) or clip gradients harder (--clip, now 1e+09)." in error
    kept = re.search(r"Kept: (\S+) \(step (\d+)\)", error)
    assert kept, error
    assert load_checkpoint(kept.group(1))[0]["progress"]["step"] == int(kept.group(2))
    assert not (out / "results.json").exists()


@pytest.mark.parametrize("loss, perplexity", [(2.0, math.exp(2.0)), (709.0, math.exp(709.0)), (710.0, math.inf),
                                              (1e6, math.inf)])
def test_a_perplexity_past_the_float_range_is_inf(loss, perplexity):
    assert TextScores.from_loss(loss, 10, 1.0).perplexity == perplexity


def train_briefly(text: Path, out: Path, **settings) -> lm.LMRun:
    return lm.train(text, out, LMTrainingConfig(**{**TINY, "steps": 10, **settings}))


def test_resume_on_other_data_names_the_difference(text_file, tmp_path):
    """Another text with the same alphabet and size once resumed without a word."""
    train_briefly(text_file, tmp_path / "run")
    other = tmp_path / "other.txt"
    other.write_text(text_file.read_text(encoding="utf-8").replace("hear me", "me hear", 1), encoding="utf-8")
    size = text_file.stat().st_size
    before = load_checkpoint(tmp_path / "run" / "last")[0]["data"]["text"]["sha256"][:12]
    with pytest.raises(ValueError, match=re.escape(
            f"{tmp_path / 'run'} was trained on other data; --resume needs the same (text: {size:,} bytes, SHA-256 "
            f"{before}… in the run, {size:,} bytes, SHA-256 ")):
        lm.train(other, tmp_path / "run", LMTrainingConfig(**{**TINY, "steps": 20}), resume=True)
    with pytest.raises(ValueError, match=re.escape(
            "--resume needs the same (validation: none given (or not recorded by an older lstmkit) in the run, "
            f"{size:,} bytes, SHA-256 ")):  # the run validated on the text's own last part
        lm.train(text_file, tmp_path / "run", LMTrainingConfig(**{**TINY, "steps": 20}), validation=text_file,
                 resume=True)


def test_resume_with_a_changed_setting_names_it_and_accepts_a_new_budget(text_file, tmp_path):
    train_briefly(text_file, tmp_path / "run")
    with pytest.raises(ValueError, match=re.escape(
            "was trained with other settings; --resume needs the same ones (lr: 0.002 in the run, 0.01 now; "
            "clip: 5.0 in the run, 1.0 now)")):
        lm.train(text_file, tmp_path / "run", LMTrainingConfig(**{**TINY, "steps": 20, "lr": 0.01, "clip": 1.0}),
                 resume=True)
    resumed = lm.train(text_file, tmp_path / "run", LMTrainingConfig(**{**TINY, "steps": 20, "eval_every": 5}),
                       resume=True)
    assert resumed.steps == 20 and [row["step"] for row in resumed.history] == [10, 15, 20]


def test_an_output_folder_that_is_a_file_or_inside_one_is_refused_before_training(text_file, tmp_path):
    job = Quadratic([1.0], validation_target=0.1)
    trainer = Trainer(TrainingConfig(steps=5))
    with pytest.raises(ValueError, match="^" + re.escape(  # from Python: no --out, which the CLI names
            f"{text_file} is a file; expected a folder (new, or one this program wrote)")):
        trainer.run(job, text_file)
    with pytest.raises(ValueError, match="^" + re.escape(
            f"{text_file / 'run'} lies inside {text_file}, which is a file; expected a folder")):
        trainer.run(job, text_file / "run")
    assert job.steps_seen == [], "nothing was trained"
    from lstmkit import speech

    with pytest.raises(ValueError, match="^" + re.escape(f"{text_file} is a file; expected a folder")):
        speech.train(tmp_path / "unread.csv", text_file, speech.SpeechConfig())  # before the manifest is read


def test_an_output_folder_that_cannot_be_written_is_refused_before_training(tmp_path):
    if os.geteuid() == 0:  # root writes in a read-only folder; /sys refuses even root
        locked, out = Path("/sys"), Path("/sys/lstmkit-run/out")
        if os.access(locked, os.W_OK) and not Path("/sys/class").is_dir():
            pytest.skip("this machine has no /sys")
    else:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        out = locked / "run"
    job = Quadratic([1.0], validation_target=0.1)
    with pytest.raises(ValueError, match="^" + re.escape(f"{out}: cannot write in {locked} (") + ".*"
                       + re.escape("); choose a folder you may write to")):
        Trainer(TrainingConfig(steps=5)).run(job, out)
    assert job.steps_seen == []


@pytest.mark.parametrize("settings, message", [
    (dict(seed=-1), "seed (--seed) must be in [0, 2**64 - 1] (what torch.manual_seed takes), got -1"),
    (dict(seed=2**64), f"seed (--seed) must be in [0, 2**64 - 1] (what torch.manual_seed takes), got {2**64}"),
    (dict(seed=1.5), "seed must be an integer, got 1.5"),
    (dict(epochs=math.inf), "epochs must be a finite number, got inf"),
    (dict(time_budget=math.inf), "time_budget must be a finite number, got inf"),
    (dict(time_budget=0), "time_budget must be positive, got 0"),
    (dict(lr=math.nan), "lr must be positive, got nan"),
    (dict(weight_decay=math.inf), "weight_decay must be a finite number, got inf"),
    (dict(steps=0), "steps must be positive, got 0"),
])
def test_training_options_are_checked_when_the_config_is_built(settings, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        TrainingConfig(**settings)


@pytest.mark.parametrize("settings, message", [
    (dict(dropout=1.0), "dropout must be in [0, 1), got 1.0"),
    (dict(dropout=-0.1), "dropout must be in [0, 1), got -0.1"),
    (dict(hidden_size=0), "hidden_size must be a positive integer, got 0"),
    (dict(num_layers=-1), "num_layers must be a positive integer, got -1"),
])
def test_language_model_options_are_checked(text_file, tmp_path, settings, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        lm.train(text_file, tmp_path / "run", LMTrainingConfig(**{**TINY, "steps": 5, **settings}))


def test_each_process_draws_its_own_dropout_and_resumes_it(text_file, tmp_path):
    """Two processes under torchrun draw dropout masks from their own streams (once both drew
    the same masks for their shares), saved per process so that a resumed run is bit-exact."""
    flags = ["--dropout", "0.3", "--min-lr-fraction", "1.0"]
    torchrun(2, *ddp_flags(text_file, tmp_path / "whole"), *flags)
    torchrun(2, *ddp_flags(text_file, tmp_path / "halves"), *flags, "--steps", "20")
    torchrun(2, *ddp_flags(text_file, tmp_path / "halves"), *flags, "--resume")
    states = load_file(tmp_path / "whole" / "last" / "training.safetensors")["rng.torch"]
    assert states.shape[0] == 2 and not torch.equal(states[0], states[1])
    whole, halves = (load_file(tmp_path / name / "last" / "model.safetensors") for name in ("whole", "halves"))
    for name, tensor in whole.items():
        assert torch.equal(halves[name], tensor), name
    assert json.loads((tmp_path / "halves" / "results.json").read_text())["steps"] == 40


@pytest.mark.parametrize("command, option, problem", [
    (["translate", "eval", "RUN", "--source", "a", "--reference", "b", "--json"], "--json", "folder"),
    (["speech", "eval", "RUN", "m.csv", "--json"], "--json", "under a file"),
    (["translate", "run", "RUN", "s.de", "--show-attention"], "--show-attention", "under a file"),
    (["speech", "transcribe", "RUN", "a.wav", "--show"], "--show", "folder"),
    (["forecast", "predict", "RUN", "y.csv", "--out"], "--out", "folder"),
    (["speech", "fsdd", "recordings", "--out"], "--out", "file"),
    (["lm", "train", "text.txt", "--out"], "--out", "file"),
])
def test_an_output_path_that_cannot_be_written_is_refused_when_the_command_is_read(command, option, problem, tmp_path,
                                                                                  capsys, monkeypatch):
    """Before any data is read or model loaded (RUN does not exist): argparse names the option.
    The inputs exist, as files or a folder, since they are checked first."""
    monkeypatch.chdir(tmp_path)
    for name in ("a", "b", "m.csv", "s.de", "a.wav", "y.csv", "text.txt"):
        (tmp_path / name).write_text("x")
    (tmp_path / "recordings").mkdir()
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    path, message = {"folder": (tmp_path, f"{tmp_path} is a folder; expected a file name"),
                     "under a file": (a_file / "x.png", f"{a_file / 'x.png'} lies inside {a_file}, which is a file; "
                                                        "expected a folder"),
                     "file": (a_file, f"{a_file} is a file; expected a folder (new, or one this program wrote)")}[problem]
    with pytest.raises(SystemExit) as stopped:
        main([*command, str(path)])
    assert stopped.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1].endswith(f"error: argument {option}: {message}")


def test_a_figure_is_written_in_the_format_its_suffix_names_and_an_unknown_one_is_refused(tmp_path, capsys):
    from matplotlib.figure import Figure

    from lstmkit.plots import save

    for name, magic in (("a.png", b"\x89PNG"), ("a.pdf", b"%PDF"), ("a.svg", b"<?xml")):
        save(Figure(), tmp_path / name)
        assert (tmp_path / name).read_bytes().startswith(magic), name
    with pytest.raises(SystemExit):
        main(["translate", "run", "RUN", "s.de", "--show-attention", str(tmp_path / "a.jpg")])
    assert capsys.readouterr().err.splitlines()[-1].endswith(
        f"error: argument --show-attention: {tmp_path / 'a.jpg'}: expected a file ending in .png, .pdf, .svg")


def test_a_file_that_cannot_be_written_is_named_as_asked_not_by_its_temporary_name(tmp_path):
    (tmp_path / "results.json").mkdir()
    with pytest.raises(IsADirectoryError, match=re.escape(f"cannot write {tmp_path / 'results.json'} (Is a directory)")):
        write_json(tmp_path / "results.json", {"a": 1})
    assert [path.name for path in tmp_path.iterdir()] == ["results.json"], "no temporary file is left"


def test_a_write_that_fails_in_its_block_names_the_file_asked_for(tmp_path):
    """A full disk or a file-size limit met while a result file was written said only "[Errno
    28] No space left on device", naming no file."""
    import errno

    from lstmkit.files import atomic_path

    with pytest.raises(OSError, match=re.escape(f"cannot write {tmp_path / 'metrics.csv'} (No space left on device)")):
        with atomic_path(tmp_path / "metrics.csv"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert list(tmp_path.iterdir()) == [], "no temporary file is left"


def test_a_process_forked_during_a_run_leaves_its_folder_free_when_the_run_ends(tmp_path):
    """A worker forked while a run held its folder (a user's pool, a DataLoader's workers) kept
    the lock it inherited: after the run ended, the next one into the folder was refused as "in
    use" until the worker exited. While the run holds it, another run is still refused."""
    import multiprocessing

    from helpers import another_run_could_claim
    from lstmkit.files import claimed_folder

    context = multiprocessing.get_context("fork")
    done = context.Event()
    (tmp_path / "run").mkdir()  # kept after the block, which removes a folder it made and left empty
    with claimed_folder(tmp_path / "run"):
        worker = context.Process(target=done.wait, args=(60,))
        worker.start()
        assert not another_run_could_claim(tmp_path / "run")
    try:
        assert worker.is_alive() and another_run_could_claim(tmp_path / "run")
    finally:
        done.set()
        worker.join(timeout=60)


def test_a_name_near_the_systems_longest_is_written_and_a_longer_one_refused_before_any_work(tmp_path):
    """A 245-byte name passed the checks, then failed after the work, when its temporary file
    (the name and 14 bytes more) was made; a 256-byte one, or a path past PATH_MAX, gave a
    traceback from `path.exists()` ("File name too long") while the arguments were read."""
    from lstmkit.files import check_input_file, check_output_folder

    for name in ("j" * 250 + ".json", "h" * 150 + "." + "t" * 49, "h." + "t" * 253):  # a long suffix too
        write_json(tmp_path / name, {"a": 1})
        assert json.loads((tmp_path / name).read_text()) == {"a": 1}
        assert [path.name for path in tmp_path.iterdir()] == [name], "no temporary file is left"
        (tmp_path / name).unlink()
    too_long = tmp_path / ("r" * 256)
    with pytest.raises(ValueError, match=re.escape(f"--out {too_long}: the name rrrrrrrrrrrrrrrrrrrrrrrr... is 256 "
                                                   "bytes long; the system takes 255 at most in one folder or file")):
        check_output_folder(too_long)
    with pytest.raises(ValueError, match=re.escape(f"--json {too_long / 'a.json'}: the name")):
        check_output_file(too_long / "a.json", "--json", (".json",))
    deep = tmp_path.joinpath(*["d" * 200] * 21)
    with pytest.raises(ValueError, match=re.escape(f"{deep} (expected a text file): the path is ") + r"\d+ bytes long; "
                       "the system takes 4095 at most"):
        check_input_file(deep, "a text file")


def test_a_checkpoint_folder_moved_elsewhere_and_linked_back_is_written_where_it_points(tmp_path):
    """A `last/` moved to another disk and replaced by a link: the next save renamed the link
    aside and wrote a folder in its place, undoing the move, and the save after failed ("Cannot
    call rmtree on a symbolic link"), at every resume."""
    from lstmkit.checkpoint import write_checkpoint
    from lstmkit.files import remove_tree

    run, elsewhere = tmp_path / "run", tmp_path / "disk" / "last"

    def step_in(folder):
        return json.loads((folder / "config.json").read_text())["step"]

    write_checkpoint(run / "last", {"config.json": '{"step": 1}'}, {})
    elsewhere.parent.mkdir()
    shutil.move(run / "last", elsewhere)
    (run / "last").symlink_to(elsewhere)
    for step in (2, 3):
        write_checkpoint(run / "last", {"config.json": f'{{"step": {step}}}'}, {})
        assert (run / "last").is_symlink() and step_in(run / "last") == step
    assert sorted(path.name for path in run.iterdir()) == ["last"]
    assert sorted(path.name for path in elsewhere.parent.iterdir()) == ["last"]
    (run / ".last.previous").symlink_to(elsewhere)  # what an older lstmkit left: removed, not followed
    (run / "last").unlink()
    shutil.copytree(elsewhere, run / "last")
    write_checkpoint(run / "last", {"config.json": '{"step": 4}'}, {})
    assert step_in(run / "last") == 4 and step_in(elsewhere) == 3
    assert sorted(path.name for path in run.iterdir()) == ["last"]
    shutil.rmtree(run / "last")
    (run / "last").symlink_to(elsewhere)
    remove_tree(run / "last")  # a task's replaced model, a split's connected/: the link, not what it points to
    assert list(run.iterdir()) == [] and step_in(elsewhere) == 3


def test_an_output_that_is_a_link_a_pipe_or_a_device_is_written_through_not_replaced(tmp_path):
    """Run as root, `--json scores.json` (a link), `--out /dev/null` or a named pipe were renamed
    over: the link became a file beside the one it named, /dev/null a plain file, and a pipe's
    reader waited for ever. (/dev/null itself is not tried: a regression would replace it.)"""
    import threading

    (tmp_path / "real.json").write_text("{}")
    (tmp_path / "scores.json").symlink_to("real.json")
    write_json(tmp_path / "scores.json", {"a": 1})
    assert (tmp_path / "scores.json").is_symlink() and json.loads((tmp_path / "real.json").read_text()) == {"a": 1}
    os.mkfifo(tmp_path / "pipe")
    read = []
    reader = threading.Thread(target=lambda: read.append((tmp_path / "pipe").read_text()), daemon=True)
    reader.start()
    write_json(tmp_path / "pipe", {"b": 2})
    reader.join(timeout=10)
    assert json.loads(read[0]) == {"b": 2} and not (tmp_path / "pipe").is_file()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["pipe", "real.json", "scores.json"]
    for streamed in (tmp_path / "pipe", Path("/dev/stdout")):  # `--out /dev/stdout`: "expected a file ending in .csv"
        assert check_output_file(streamed, "--out", (".csv",)) == streamed
    import socket

    with socket.socket(socket.AF_UNIX) as listening:  # a socket is none of those: refused before any work
        listening.bind(str(tmp_path / "sock"))
        with pytest.raises(ValueError, match=re.escape(f"--out {tmp_path / 'sock'} is no file, device or pipe to write "
                                                       "to; expected a file name")):
            check_output_file(tmp_path / "sock", "--out", (".csv",))


@pytest.mark.parametrize("mode", ["w", "a"])
def test_an_output_to_dev_stdout_comes_after_what_was_printed_when_stdout_is_a_file(tmp_path, mode):
    """`speech eval … --json /dev/stdout > log` truncated log and wrote from its start: the
    lines printed before were lost, and one printed after overwrote the JSON."""
    import subprocess

    log = tmp_path / "log"
    log.write_text("earlier\n")
    script = ("from lstmkit.files import write_json\nprint('before')\nwrite_json('/dev/stdout', {'a': 1})\n"
              "print('after')\n")
    with open(log, mode) as stdout:
        subprocess.run([sys.executable, "-c", script], stdout=stdout, check=True,
                       env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent / "src")})
    kept = "earlier\n" if mode == "a" else ""
    assert log.read_text() == kept + 'before\n{\n  "a": 1\n}\nafter\n'


def test_an_output_to_a_notebooks_stdout_is_written_as_its_text(tmp_path, monkeypatch):
    """A notebook's sys.stdout has a descriptor but no binary buffer: the output goes in as text."""

    class NotebookStream:
        def __init__(self, descriptor: int) -> None:
            self.descriptor, self.written = descriptor, []

        def fileno(self) -> int:
            return self.descriptor

        def write(self, text: str) -> None:
            self.written.append(text)

        def flush(self) -> None:
            pass

    with open(tmp_path / "shown", "w") as shown:
        stream = NotebookStream(shown.fileno())
        monkeypatch.setattr(sys, "stdout", stream)
        write_json(tmp_path / "shown", {"a": 1})
    assert stream.written == ['{\n  "a": 1\n}\n'] and (tmp_path / "shown").read_text() == ""


def test_json_files_are_strict_json_with_null_where_a_number_is_not_finite(tmp_path):
    """A perplexity past the float range was written as Infinity, which JavaScript's parser refuses."""
    write_json(tmp_path / "results.json", {"best_val_ppl": math.inf, "rows": [{"loss": -math.inf}, (math.nan, 2.5)],
                                           "steps": 3, "name": "inf"})
    text = (tmp_path / "results.json").read_text()
    assert "Infinity" not in text and "NaN" not in text
    assert json.loads(text) == {"best_val_ppl": None, "rows": [{"loss": None}, [None, 2.5]], "steps": 3, "name": "inf"}


def test_a_folder_with_a_model_but_no_run_to_resume_says_so_whichever_way_it_is_asked(tmp_path):
    Trainer(TrainingConfig(steps=2, eval_every=1)).run(Quadratic([1.0], 0.0), tmp_path / "run")
    for checkpoint in (tmp_path / "run" / "last").iterdir():
        checkpoint.unlink()
    (tmp_path / "run" / "last").rmdir()
    with pytest.raises(ValueError, match=re.escape(
            f"{tmp_path / 'run'} holds a trained model (best/) but no last/ checkpoint to resume from; choose "
            "another folder, or remove this one to start over")):
        Trainer(TrainingConfig(steps=2)).run(Quadratic([1.0], 0.0), tmp_path / "run")
    with pytest.raises(FileNotFoundError, match=re.escape(f"{tmp_path / 'run'} holds no run to resume (no last/ "
                                                          "checkpoint); it holds a trained model (best/) but no last/ "
                                                          "checkpoint: choose another folder")):
        Trainer(TrainingConfig(steps=2)).run(Quadratic([1.0], 0.0), tmp_path / "run", resume=True)


def test_a_best_folder_of_the_users_is_not_called_a_trained_model(tmp_path):
    (tmp_path / "best").mkdir()
    (tmp_path / "best" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match=re.escape(f"{tmp_path} holds a best/ folder that is no lstmkit checkpoint; a "
                                                   "run there would write its best model there: choose another "
                                                   "folder")):
        Trainer(TrainingConfig(steps=2)).run(Quadratic([1.0], 0.0), tmp_path)
    assert (tmp_path / "best" / "notes.txt").read_text() == "mine"


def test_resuming_in_a_folder_of_another_commands_results_says_to_choose_another(tmp_path):
    """A task's folder was told "start one without --resume", which it then refused too."""
    (tmp_path / "results.json").write_text('{"task": "adding"}')
    with pytest.raises(FileNotFoundError, match=re.escape(
            f"{tmp_path} holds no run to resume (no last/ checkpoint); it holds another command's results: choose "
            "another folder")):
        Trainer(TrainingConfig(steps=2)).run(Quadratic([1.0], 0.0), tmp_path, resume=True)


def test_resuming_a_checkpoint_inside_a_run_points_to_the_run(tmp_path):
    Trainer(TrainingConfig(steps=2, eval_every=1)).run(Quadratic([1.0], 0.0), tmp_path / "run")
    run = tmp_path / "run"
    with pytest.raises(ValueError, match="^" + re.escape(f"{run / 'last'} is an lstmkit checkpoint (a trained model): "
                                                   "a run there would put its own checkpoints inside it; choose "
                                                   f"another folder; to resume the run it belongs to, give the run's "
                                                   f"folder, {run}")):
        Trainer(TrainingConfig(steps=4)).run(Quadratic([1.0], 0.0), tmp_path / "run" / "last", resume=True)


def test_a_new_run_into_a_checkpoint_is_refused(text_file, tmp_path, monkeypatch):
    from lstmkit.files import check_output_folder
    from lstmkit.pipelines.longlag import run_task
    from lstmkit.tasks import AddingTask

    """`translate train --out runs/res/best` trained into the run's best model: it then loaded
    only as runs/res/best/best, and the run it was in refused to resume."""
    lm.train(text_file, tmp_path / "run", LMTrainingConfig(**{**TINY, "steps": 2}))
    for checkpoint in ("best", "last"):
        folder = tmp_path / "run" / checkpoint
        before = sorted(path.name for path in folder.iterdir())
        with pytest.raises(ValueError, match=re.escape(f"{folder} is an lstmkit checkpoint (a trained model): a run "
                                                       "there would put its own checkpoints inside it; choose another "
                                                       "folder")):
            lm.train(text_file, folder, LMTrainingConfig(**{**TINY, "steps": 2}))
        assert sorted(path.name for path in folder.iterdir()) == before
    mine = tmp_path / "experiment"  # a config.json of the user's own, naming a kind, is no checkpoint
    mine.mkdir()
    (mine / "config.json").write_text('{"kind": "experiment"}')
    lm.train(text_file, mine, LMTrainingConfig(**{**TINY, "steps": 2}))
    inner = tmp_path / "run" / "last" / "inner"  # nested: the run in tmp_path/run then refused to resume
    with pytest.raises(ValueError, match=re.escape(f"{inner} lies in the lstmkit checkpoint {tmp_path / 'run' / 'last'}"
                                                   ", which holds its own files alone: choose a folder outside it")):
        lm.train(text_file, inner, LMTrainingConfig(**{**TINY, "steps": 2}))
    figure = tmp_path / "run" / "best" / "figure.png"  # `speech transcribe --show`, `translate eval --out` there
    with pytest.raises(ValueError, match=re.escape(f"--show {figure} lies in the lstmkit checkpoint {figure.parent}, "
                                                   "which holds its own files alone (a resume or a rerun refuses it "
                                                   "with another file): choose another folder")):
        check_not_read({"--show": figure}, {})
    check_not_read({"--show": mine / "figure.png"}, {})
    best = tmp_path / "run" / "best"  # through `..`, a link, or `.` in it: the folder it is
    (tmp_path / "link").symlink_to(best)
    for given, shown in ((best / ".." / "elsewhere", None), (tmp_path / "link" / "inner", best),
                         (Path("."), best), (Path("../../elsewhere"), None)):
        with monkeypatch.context() as inside:
            inside.chdir(best)
            if shown is None:
                check_output_folder(given)
                continue
            with pytest.raises(ValueError, match=re.escape(f"--out {given} ")):
                check_output_folder(given)
    with pytest.raises(ValueError, match="^" + re.escape(f"{best} is an lstmkit checkpoint (a trained model)")):
        run_task(AddingTask(T=5), ["rnn"], TaskTrainingConfig(hidden_size=4, steps=1, time_budget=None, test_size=8,
                                                               eval_every=1), best)
    lm.train(text_file, tmp_path / "run", LMTrainingConfig(**{**TINY, "steps": 3}), resume=True)
    assert (mine / "best" / "model.safetensors").is_file()


def test_a_resume_through_a_link_to_a_last_checkpoint_that_is_gone_names_the_link(tmp_path):
    """It said the folder held no last/ checkpoint, then that it held a model but no last/."""
    (tmp_path / "best").mkdir()
    (tmp_path / "last").symlink_to("../elsewhere/my last")
    with pytest.raises(FileNotFoundError, match=re.escape(
            f"{tmp_path / 'last'} is a symbolic link to ../elsewhere/my last, which does not exist: the run's last "
            "checkpoint is not there to resume from; point the link at it")):
        Trainer(TrainingConfig(steps=2, eval_every=1)).run(Quadratic([1.0], 0.0), tmp_path, resume=True)


def test_a_folder_with_files_of_a_run_names_but_no_run_is_not_overwritten(tmp_path):
    (tmp_path / "metrics.csv").write_text("the user's own\n")
    with pytest.raises(ValueError, match=re.escape(f"{tmp_path} holds metrics.csv but no training run (no last/ "
                                                   "checkpoint): another command's, or not lstmkit's; a run there "
                                                   "would overwrite it: choose another folder")):
        Trainer(TrainingConfig(steps=2, eval_every=1)).run(Quadratic([1.0], 0.0), tmp_path)
    (tmp_path / "results.json").write_text("{}")
    with pytest.raises(ValueError, match=re.escape(f"{tmp_path} holds metrics.csv and results.json but no training "
                                                   "run (no last/ checkpoint): another command's, or not lstmkit's; "
                                                   "a run there would overwrite them: choose")):
        Trainer(TrainingConfig(steps=2, eval_every=1)).run(Quadratic([1.0], 0.0), tmp_path)
    assert (tmp_path / "metrics.csv").read_text() == "the user's own\n"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["metrics.csv", "results.json"]


def test_a_task_or_forecast_run_keeps_files_of_those_names_that_no_run_of_it_wrote(tmp_path):
    """`lstmkit task` replaces an earlier task run's files (its results.json says so), and
    refuses anyone else's; `forecast backtest`/`fit` refuse them where no training/ says a fit
    of its own is there (before any work: the data path is not even read)."""
    from lstmkit.forecast import Forecaster
    from lstmkit.pipelines.forecast_report import run_backtest
    from lstmkit.pipelines.longlag import run_task
    from lstmkit.tasks import AddingTask

    config = TaskTrainingConfig(hidden_size=4, steps=1, time_budget=None, test_size=8, eval_every=1)
    (tmp_path / "results.json").write_text('{"mine": 1}')
    (tmp_path / "models").mkdir()
    with pytest.raises(ValueError, match=re.escape(
            f"{tmp_path} holds results.json and models but no run of lstmkit task or demo (its results.json, if any, "
            "is not one's); a run there would overwrite them: choose another folder")):
        run_task(AddingTask(T=5), ["rnn"], config, tmp_path)
    with pytest.raises(ValueError, match=re.escape(
            f"{tmp_path} holds results.json but no fit or backtest (no training/ folder); a run there would "
            "overwrite it: choose another folder")):
        run_backtest(Forecaster("t", "y", horizon=4), tmp_path / "not read.csv", out=tmp_path)
    assert (tmp_path / "results.json").read_text() == '{"mine": 1}'
    assert sorted(path.name for path in tmp_path.iterdir()) == ["models", "results.json"]


class Kinded(Quadratic):
    """A job whose checkpoints say which pipeline wrote them."""

    def __init__(self, kind: str) -> None:
        super().__init__([1.0], 0.0)
        self.kind = kind

    def checkpoint_config(self) -> dict:
        return {"kind": self.kind}


def test_resuming_another_pipelines_run_names_both_kinds(tmp_path):
    Trainer(TrainingConfig(steps=2, eval_every=1)).run(Kinded("speech_model"), tmp_path / "run")
    with pytest.raises(ValueError, match=re.escape(
            f"{tmp_path / 'run'} holds a 'speech_model' run, not a 'translation_model' run to resume; choose another "
            "folder")):
        Trainer(TrainingConfig(steps=4)).run(Kinded("translation_model"), tmp_path / "run", resume=True)


def test_a_run_folder_without_best_points_to_its_last_checkpoint(tmp_path):
    Trainer(TrainingConfig(steps=2, eval_every=1)).run(Kinded("speech_model"), tmp_path / "run")
    shutil.rmtree(tmp_path / "run" / "best")
    with pytest.raises(FileNotFoundError, match=re.escape(
            f"{tmp_path / 'run'} is not an lstmkit checkpoint: expected config.json and model.safetensors in it (it "
            f"holds a run's last/ but no best/: give {tmp_path / 'run' / 'last'} for its latest checkpoint)")):
        read_config(checkpoint_folder(tmp_path / "run"))


def test_resuming_with_a_budget_already_spent_leaves_the_run_as_it_was(tmp_path):
    Trainer(TrainingConfig(steps=4, eval_every=2)).run(Quadratic([1.0], 0.0), tmp_path / "run")
    results = (tmp_path / "run" / "results.json").read_bytes()
    with pytest.raises(ValueError, match=re.escape(
            f"{tmp_path / 'run'} is at step 4 (") + r"\d+" + re.escape(" s of training): the budget given is spent; "
                                                                     "give a larger --steps, --epochs or --time-budget to continue")):
        Trainer(TrainingConfig(steps=3, eval_every=2)).run(Quadratic([1.0], 0.0), tmp_path / "run", resume=True)
    assert (tmp_path / "run" / "results.json").read_bytes() == results


def test_a_run_killed_between_its_last_checkpoint_and_its_results_writes_them_when_resumed(tmp_path, capsys):
    """Its budget is spent: resumed as it was started, it trains no further and writes the
    results.json it would have written."""
    first = Quadratic([1.0], 0.0)
    Trainer(TrainingConfig(steps=4, eval_every=2)).run(first, tmp_path / "run")
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    (tmp_path / "run" / "results.json").unlink()
    capsys.readouterr()
    resumed = Quadratic([1.0], 0.0)
    run = Trainer(TrainingConfig(steps=4, eval_every=2)).run(resumed, tmp_path / "run", resume=True)
    assert json.loads((tmp_path / "run" / "results.json").read_text()) == results
    assert run.steps == 4 and resumed.model.weight.item() == first.model.weight.item()
    assert capsys.readouterr().err == (f"quadratic: {tmp_path / 'run'} ended at step 4 but was stopped before it "
                                       "wrote results.json: writing it, with no further training\n")


@pytest.mark.parametrize("changed", [dict(eval_every=5), dict(patience=50), dict(device="cpu")])
def test_a_finished_run_without_its_results_writes_them_when_resumed_with_other_evaluations(changed, tmp_path):
    """Neither another --eval-every nor a larger --patience moves where a spent budget ends:
    such a resume was refused as 'budget spent', and only the run's very own settings wrote."""
    Trainer(TrainingConfig(steps=6, eval_every=2)).run(Quadratic([1.0], 0.0), tmp_path / "run")
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    (tmp_path / "run" / "results.json").unlink()
    run = Trainer(TrainingConfig(steps=6, **{"eval_every": 2, **changed})).run(Quadratic([1.0], 0.0),
                                                                              tmp_path / "run", resume=True)
    written = json.loads((tmp_path / "run" / "results.json").read_text())
    assert run.steps == 6 and written["best_val_loss"] == results["best_val_loss"]


def test_a_run_stopped_by_patience_stays_stopped_when_resumed_with_another_eval_every(tmp_path):
    """The evaluations patience counts are marked as they are made: recomputed from a new
    --eval-every (15 where the run evaluated every 10), its last no longer counted, and the
    finished run trained on."""
    Trainer(TrainingConfig(steps=100, eval_every=10, patience=3)).run(Quadratic([1.0], 0.0), tmp_path / "run")
    with pytest.raises(ValueError, match=re.escape(
            f"{tmp_path / 'run'} ended at step 40: the val_loss had not improved for patience = 3 evaluations")):
        Trainer(TrainingConfig(steps=200, eval_every=15, patience=3)).run(Quadratic([1.0], 0.0), tmp_path / "run",
                                                                         resume=True)


def test_a_run_killed_mid_way_and_resumed_with_a_smaller_budget_is_refused_not_written_up(tmp_path, monkeypatch):
    """Killed at step 5 of 10 (its last checkpoint at 4), then resumed with 3 steps: it was
    written up as ended at step 4, its results.json's config saying 3 steps."""
    dies_at_step(monkeypatch, 5)
    with pytest.raises(Killed):
        Trainer(TrainingConfig(steps=10, eval_every=2)).run(Quadratic([1.0], 0.0), tmp_path / "run")
    monkeypatch.undo()
    with pytest.raises(ValueError, match=re.escape(f"{tmp_path / 'run'} is at step 4 (")):
        Trainer(TrainingConfig(steps=3, eval_every=2)).run(Quadratic([1.0], 0.0), tmp_path / "run", resume=True)
    assert not (tmp_path / "run" / "results.json").exists()


def test_resuming_a_run_that_stopped_early_leaves_it_as_it_was_unless_the_patience_grows(tmp_path):
    """A run stopped by its patience (or a solved task, or an anneal's end) has ended: resumed,
    it would train on past where it stopped. With a larger patience it goes on, to where an
    uninterrupted run with that patience stops."""
    def job():
        return Quadratic([1.0], 0.0)  # the weight moves from 0 towards 1, away from the validation target

    run = Trainer(TrainingConfig(steps=100, eval_every=1, patience=2)).run(job(), tmp_path / "run")
    assert (run.steps, run.best["step"]) == (3, 1)
    results = (tmp_path / "run" / "results.json").read_bytes()
    with pytest.raises(ValueError, match=re.escape(
            f"{tmp_path / 'run'} ended at step 3: the val_loss had not improved for patience = 2 evaluations; a "
            "larger patience continues it")):
        Trainer(TrainingConfig(steps=100, eval_every=1, patience=2)).run(job(), tmp_path / "run", resume=True)
    assert (tmp_path / "run" / "results.json").read_bytes() == results
    # Killed after its last checkpoint, before results.json: it had ended all the same, and
    # resumed, or asked for as a finished run, it gets the results.json it would have written.
    # Asked for as a finished run (a forecast fit's networks) under a larger patience too, it is
    # kept as it ended, not trained on, and its results.json names the settings it trained under.
    for patience, complete in ((2, lambda trainer: trainer.run(job(), tmp_path / "run", resume=True)),
                               (2, lambda trainer: trainer.finished_run(job(), tmp_path / "run")),
                               (4, lambda trainer: trainer.finished_run(job(), tmp_path / "run"))):
        (tmp_path / "run" / "results.json").unlink()
        ended = complete(Trainer(TrainingConfig(steps=100, eval_every=1, patience=patience)))
        assert ended.steps == 3
        assert json.loads((tmp_path / "run" / "results.json").read_text()) == json.loads(results)
    (tmp_path / "run" / "results.json").unlink()
    longer = job()
    resumed = Trainer(TrainingConfig(steps=100, eval_every=1, patience=4)).run(longer, tmp_path / "run", resume=True)
    uninterrupted = job()
    assert Trainer(TrainingConfig(steps=100, eval_every=1, patience=4)).run(uninterrupted).steps == resumed.steps == 5
    assert longer.model.weight.item() == uninterrupted.model.weight.item()


@pytest.mark.parametrize("damage, message", [
    (lambda text: text[:100], "is not JSON: Unterminated string"),
    (lambda text: "[]", "holds a JSON list, expected an object"),
])
def test_resuming_a_language_model_from_a_damaged_config_names_the_file(text_file, tmp_path, damage, message):
    """lm's resume read last/config.json for the model's size unchecked: a bare JSON error, or
    an AttributeError's traceback."""
    lm.train(text_file, tmp_path / "run", LMTrainingConfig(steps=2, **{**TINY, "eval_every": 2}))
    config_file = tmp_path / "run" / "last" / "config.json"
    config_file.write_text(damage(config_file.read_text()))
    with pytest.raises(CheckpointError, match=f"^{re.escape(str(config_file))} {message}"):
        lm.train(text_file, tmp_path / "run", LMTrainingConfig(steps=4, **{**TINY, "eval_every": 2}), resume=True)


def test_a_cell_listed_twice_is_refused_when_the_command_is_read(capsys):
    with pytest.raises(SystemExit):
        main(["task", "adding", "--cells", "lstm,gru,lstm"])
    assert capsys.readouterr().err.splitlines()[-1].endswith(
        "error: argument --cells: each cell once: 'lstm,gru,lstm' names lstm more than once")


@pytest.mark.parametrize("command, option, expected", [
    (["lm", "train", "{missing}"], "text", "a UTF-8 text file"),
    (["lm", "train", "{file}", "--valid", "{missing}"], "--valid", "a UTF-8 text file"),
    (["translate", "train", "--source", "{file}", "--target", "{missing}", "--valid-source", "{file}",
      "--valid-target", "{file}", "--out", "run"], "--target",
     "a UTF-8 text file of sentences, one per line, plain or gzip"),
    (["speech", "train", "{missing}"], "manifest", "a CSV manifest with the columns path,text"),
    (["forecast", "fit", "{missing}", "--time", "t"], "csv", "a CSV file"),
])
def test_a_missing_input_stops_a_training_command_before_it_announces_any_work(command, option, expected, tmp_path,
                                                                                capsys):
    given = tmp_path / "given.txt"
    given.write_text("x")
    missing = tmp_path / "missing"
    with pytest.raises(SystemExit) as stopped:
        main([part.format(file=given, missing=missing) for part in command])
    captured = capsys.readouterr()
    assert stopped.value.code == 2 and captured.out == ""
    assert captured.err.splitlines()[-1].endswith(f"error: argument {option}: {missing} does not exist (expected "
                                                  f"{expected})")
    with pytest.raises(SystemExit):
        main([part.format(file=given, missing=tmp_path) for part in command])
    assert capsys.readouterr().err.splitlines()[-1].endswith(f"error: argument {option}: {tmp_path} is a folder "
                                                             f"(expected {expected})")


def test_cache_and_dynamic_settings_without_their_switch_are_refused(capsys):
    with pytest.raises(SystemExit):  # (this file stands in for the text: it is read only after the check)
        main(["lm", "eval", "RUN", __file__, "--cache-window", "50", "--cache-theta", "0.5"])
    assert capsys.readouterr().err == "lstmkit: error: --cache-window, --cache-theta set how --cache scores; add --cache\n"


def test_a_task_takes_no_epoch_budget_its_data_never_end(capsys):
    with pytest.raises(ValueError, match=re.escape("epochs is not a budget here: give one of steps, time_budget (got "
                                                   "epochs=2)")):
        TaskTrainingConfig(epochs=2)
    with pytest.raises(SystemExit):
        main(["task", "adding", "--epochs", "2"])
    assert "unrecognized arguments: --epochs 2" in capsys.readouterr().err


@pytest.mark.parametrize("call, expected", [
    (lambda: lm.train(None, "runs/x", lm.TrainingConfig(steps=1)), "a UTF-8 text file"),
    (lambda: lm.train(__file__, None, lm.TrainingConfig(steps=1)), "the run's folder"),
    (lambda: lm.load(None), "a checkpoint folder or a run's folder"),
    (lambda: lm.train(__file__.encode(), "runs/x", lm.TrainingConfig(steps=1)), "a UTF-8 text file"),
])
def test_a_path_that_is_not_one_is_named(call, expected):
    """pathlib's "expected str, bytes or os.PathLike object, not NoneType" named neither the
    argument nor what it should hold."""
    with pytest.raises(TypeError, match=re.escape(f"expected {expected}, as a path (a str or pathlib.Path); got")):
        call()


def test_a_translation_run_keeps_a_curves_png_of_the_users_and_replaces_its_own(tmp_path):
    """`translate train --out DIR` replaced a curves.png of the user's with its learning curves."""
    from matplotlib.figure import Figure

    from lstmkit.pipelines.translate import TranslationConfig, train_translation

    (tmp_path / "curves.png").write_text("mine")
    with pytest.raises(ValueError, match=re.escape(
            f"{tmp_path} holds curves.png, which lstmkit cannot tell for its own (a figure an earlier lstmkit wrote "
            "carries no mark); a run there would overwrite it: remove it, or choose another folder")):
        train_translation("none.de", "none.en", "none.de", "none.en", tmp_path, TranslationConfig(steps=1))
    assert (tmp_path / "curves.png").read_text() == "mine"
    Figure().savefig(tmp_path / "curves.png", metadata={"Software": "lstmkit"})  # lstmkit's: replaced
    with pytest.raises(FileNotFoundError, match="none.de"):  # past the folder's checks, to the data
        train_translation("none.de", "none.en", "none.de", "none.en", tmp_path, TranslationConfig(steps=1))


def test_a_run_whose_best_checkpoint_is_missing_is_refused_not_given_its_last_weights(tmp_path):
    """best/ is written before last/ at every improvement: without it, the last weights stood in
    for the best silently (a forecast reported its best epoch and forecast with its last)."""
    Trainer(TrainingConfig(steps=4, eval_every=2)).run(Quadratic([1.0], 0.0), tmp_path / "run")
    shutil.rmtree(tmp_path / "run" / "best")
    message = (f"{tmp_path / 'run'} recorded its best model at step 2, but {tmp_path / 'run' / 'best'} is missing; "
               "restore it, or train again (its last/ holds the weights of step 4, not the best)")
    with pytest.raises(ValueError, match=re.escape(message)):
        Trainer(TrainingConfig(steps=4, eval_every=2)).finished_run(Quadratic([1.0], 0.0), tmp_path / "run")
    with pytest.raises(ValueError, match=re.escape(message)):
        Trainer(TrainingConfig(steps=8, eval_every=2)).run(Quadratic([1.0], 0.0), tmp_path / "run", resume=True,
                                                            keep_best=True)
