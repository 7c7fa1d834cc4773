"""The `lstmkit` command: what `lstmkit cells` prints, and its errors."""

from __future__ import annotations

import io
import json
import math
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch

import lstmkit
from helpers import interrupt_task_in, run_cli
from lstmkit.cli import main


def test_cells_lists_every_cell_with_its_parameter_count(capsys):
    assert main(["cells", "--input-size", "5", "--hidden-size", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert list(rows) == [*lstmkit.cells.CELLS, "nig", "nfg", "nog", "niaf", "noaf"]
    for name, row in rows.items():
        layer = lstmkit.Recurrent(name, 5, 3)
        count = row[-3] if name in lstmkit.cells.ABLATIONS else row[-1]  # then: "lstm, forget_gate=False"
        assert int(count.replace(",", "")) == sum(p.numel() for p in layer.parameters()), name
        assert int(row[1]) == layer.cell.num_gates
    assert rows["lstm"][-1] == str(4 * 3 * (5 + 3) + 2 * 4 * 3)  # weights (4H, I + H) and two biases
    assert rows["nfg"] == ["nfg", "3", "i,g,o", "(h,", "c)", str(3 * 3 * (5 + 3) + 2 * 3 * 3), "lstm,",
                           "forget_gate=False"]


def test_cells_at_a_size_one_cell_cannot_take_says_so_in_its_row_and_lists_the_rest(capsys):
    """At --hidden-size 1 the table stopped at layernorm's refusal, without the ablations."""
    assert main(["cells", "--input-size", "1", "--hidden-size", "1"]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[1:]}
    assert list(rows) == [*lstmkit.cells.CELLS, "nig", "nfg", "nog", "niaf", "noaf"]
    assert rows["layernorm"].split()[5:9] == ["-", "cell", "'layernorm'", "needs"]
    assert rows["noaf"].split()[5] == "16"


def test_a_reader_that_leaves_early_stops_the_command_quietly():
    # `lstmkit cells | head -1`: the pipe closes before the command writes; no traceback follows.
    command = subprocess.Popen([sys.executable, "-m", "lstmkit", "cells", "--equations"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    command.stdout.close()  # before the command has imported torch, let alone written
    assert (command.wait(timeout=120), command.stderr.read()) == (141, b"")


@pytest.mark.parametrize("failure, said", [
    ("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: you tried to "
     "allocate 8000000000000 bytes. Error code 12 (Cannot allocate memory)", " (tried to allocate 8,000.0 GB)"),
    ("CUDA out of memory. Tried to allocate 20.00 GiB. GPU 0 has a total capacity of 79.19 GiB",
     " (tried to allocate 20.00 GiB)"),
])
def test_running_out_of_memory_is_one_line_that_says_what_to_shrink(failure, said, monkeypatch, capsys):
    from lstmkit.cli import tasks

    def allocate(arguments):
        raise RuntimeError(failure)

    monkeypatch.setattr(tasks, "task_command", allocate)
    with pytest.raises(SystemExit) as stopped:
        main(["task", "adding", "--T", "2000000000", "--steps", "1"])
    assert stopped.value.code == 1
    assert capsys.readouterr().err == (f"lstmkit: error: out of memory{said}: give a smaller batch, sequence length "
                                       "(--T, --seq-len) or model\n")


@pytest.mark.parametrize("error, said", [
    (MemoryError(), ""),
    (MemoryError("Unable to allocate 8.00 GiB for an array with shape (1073741824,) and data type float64"),
     " (Unable to allocate 8.00 GiB for an array with shape (1073741824,) and data type float64)"),
])
def test_running_out_of_pythons_memory_is_one_line_too(error, said, monkeypatch, capsys):
    """Reading a corpus too large for memory (`list(text)`) ended in a bare MemoryError traceback."""
    from lstmkit.cli import tasks

    def allocate(arguments):
        raise error

    monkeypatch.setattr(tasks, "task_command", allocate)
    with pytest.raises(SystemExit) as stopped:
        main(["task", "adding", "--steps", "1"])
    assert stopped.value.code == 1
    assert capsys.readouterr().err == (f"lstmkit: error: out of memory{said}: give a smaller corpus, batch, sequence "
                                       "length (--T, --seq-len) or model\n")


@pytest.mark.skipif(torch.cuda.is_available(), reason="the device must be missing")
@pytest.mark.parametrize("command", [
    ["task", "adding", "--T", "10"],
    ["lm", "train", "{file}"],
    ["speech", "train", "{file}"],
    ["translate", "train", "--source", "{file}", "--target", "{file}", "--valid-source", "{file}",
     "--valid-target", "{file}"],
])
@pytest.mark.parametrize("flags, message", [
    (["--device", "cuda"], "device 'cuda' needs CUDA, and this torch"),
    (["--precision", "16"], "precision 16 (float16 autocast) runs on CUDA; on cpu use bf16 or 32"),
])
def test_a_training_command_refuses_a_device_or_precision_before_announcing_the_run(command, flags, message,
                                                                                    tmp_path, capsys):
    given = tmp_path / "given.txt"
    given.write_text("x")
    with pytest.raises(SystemExit) as stopped:
        main([part.format(file=given) for part in command] + ["--steps", "1", "--out", str(tmp_path / "run"), *flags])
    assert stopped.value.code == 2
    printed = capsys.readouterr()
    assert printed.out == "" and printed.err.startswith(f"lstmkit: error: {message}")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("command", [
    ["lm", "train", "{file}"],
    ["speech", "train", "{file}"],
    ["translate", "train", "--source", "{file}", "--target", "{file}", "--valid-source", "{file}",
     "--valid-target", "{file}"],
    ["forecast", "fit", "{file}", "--time", "t", "--target", "y", "--horizon", "2"],
    ["forecast", "backtest", "{file}", "--time", "t", "--target", "y", "--horizon", "2"],
])
def test_a_training_command_refuses_an_engine_the_cell_lacks_before_announcing_the_run(command, tmp_path, capsys):
    given = tmp_path / "given.txt"
    given.write_text("x")
    with pytest.raises(SystemExit) as stopped:
        main([part.format(file=given) for part in command] + ["--steps", "1", "--out", str(tmp_path / "run"),
                                                              "--engine", "native", "--cell", "layernorm"])
    printed = capsys.readouterr()
    assert (stopped.value.code, printed.out) == (2, "")
    assert printed.err == ("lstmkit: error: engine 'native' cannot run cell 'layernorm' on cpu: cell 'layernorm' has no "
                           "native kernel (native runs lstm, gru and rnn); use engine 'auto' or 'fused' (--engine auto "
                           "or fused)\n")


@pytest.mark.parametrize("command", [
    ["lm", "train", "{file}"],
    ["speech", "train", "{file}"],
    ["translate", "train", "--source", "{file}", "--target", "{file}", "--valid-source", "{file}",
     "--valid-target", "{file}"],
])
@pytest.mark.parametrize("resume", [False, True])
def test_a_training_command_refuses_a_folder_it_cannot_use_before_announcing_the_run(command, resume, tmp_path,
                                                                                     capsys):
    """translate learned its vocabularies first (seconds to minutes), then refused the folder."""
    given, run = tmp_path / "given.txt", tmp_path / "run"
    given.write_text("x")
    if not resume:
        (run / "last").mkdir(parents=True)
    code, out, err = run_cli([part.format(file=given) for part in command] + ["--steps", "1", "--out", str(run)]
                             + ["--resume"] * resume, capsys)
    assert (code, out) == (2, "")
    assert err == (f"lstmkit: error: {run} holds no run to resume (no last/ checkpoint); start one without --resume\n"
                   if resume else f"lstmkit: error: {run} already holds a run; pass resume=True (--resume) to "
                   "continue it, or choose another folder\n")


@pytest.mark.parametrize("command, kind", [
    (["lm", "train", "{file}"], "language_model"),
    (["speech", "train", "{file}"], "speech_model"),
    (["translate", "train", "--source", "{file}", "--target", "{file}", "--valid-source", "{file}",
      "--valid-target", "{file}"], "translation"),
])
@pytest.mark.parametrize("resume", [False, True])
def test_a_training_command_refuses_another_pipelines_run_before_announcing(command, kind, resume, tmp_path, capsys):
    """translate's run in an lm folder was told to pass --resume, then refused when it did."""
    given, run = tmp_path / "given.txt", tmp_path / "run"
    given.write_text("x")
    held = "translation" if kind != "translation" else "language_model"
    (run / "last").mkdir(parents=True)
    (run / "last" / "config.json").write_text(json.dumps({"kind": held}))
    code, out, err = run_cli([part.format(file=given) for part in command] + ["--steps", "1", "--out", str(run)]
                             + ["--resume"] * resume, capsys)
    assert (code, out) == (2, "")
    wanted = f"not a {kind!r} run to resume" if resume else f"where a {kind!r} run cannot start"
    assert err == f"lstmkit: error: {run} holds a {held!r} run, {wanted}; choose another folder\n"


@pytest.mark.parametrize("manifest_option", ["manifest", "--valid"])
def test_speech_train_refuses_a_manifest_row_without_its_audio_before_announcing_the_run(manifest_option, tmp_path,
                                                                                       capsys):
    (tmp_path / "one.wav").write_bytes(b"RIFF")
    good, bad = tmp_path / "good.csv", tmp_path / "bad.csv"
    good.write_text("path,text\none.wav,one\n")
    bad.write_text("path,text\none.wav,one\nmissing.wav,two\n")
    manifests = [str(bad), "--valid", str(good)] if manifest_option == "manifest" else [str(good), "--valid", str(bad)]
    code, out, err = run_cli(["speech", "train", *manifests, "--steps", "1", "--out", str(tmp_path / "run")], capsys)
    assert (code, out) == (2, "")
    assert err == f"lstmkit: error: {bad}, line 3: {tmp_path / 'missing.wav'} does not exist\n"
    assert not (tmp_path / "run").exists()


def test_demo_refuses_a_bad_setting_before_announcing_the_race(tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["demo", "--T", "1", "--steps", "2", "--out", str(tmp_path / "demo")])
    assert stopped.value.code == 2
    printed = capsys.readouterr()
    assert printed.out == "" and printed.err == "lstmkit: error: task 'adding': T must be at least 2, got 1\n"


def test_numba_without_a_writable_cache_folder_is_one_line_that_says_what_to_set(tmp_path, monkeypatch, capsys):
    """librosa's numba functions cache their compiled code; where the installed packages and
    the home folder are read-only (a deployed model run as another user), the first
    transcription ended in numba's bare traceback."""
    numba = pytest.importorskip("numba")
    from lstmkit.cli import speech

    def transcribe(arguments):
        namespace = {"numba": numba}
        exec("@numba.njit(cache=True)\ndef spectrum(x):\n    return x + 1\n", namespace)  # a file numba cannot find
        namespace["spectrum"](1)

    monkeypatch.setattr(speech, "transcribe_command", transcribe)
    with pytest.raises(SystemExit) as stopped:
        (tmp_path / "a.wav").write_bytes(b"")
        main(["speech", "transcribe", str(tmp_path), str(tmp_path / "a.wav")])
    assert stopped.value.code == 1
    assert capsys.readouterr().err == (
        "lstmkit: error: librosa's compiler, numba, found no folder it can write its cache in (read-only installed "
        "packages and home folder, a deployed model run as another user): set NUMBA_CACHE_DIR to a writable folder, "
        "e.g. NUMBA_CACHE_DIR=/tmp/numba\n")


def test_another_runtime_error_is_not_taken_for_memory(monkeypatch):
    from lstmkit.cli import tasks

    def fail(arguments):
        raise RuntimeError("a bug")

    monkeypatch.setattr(tasks, "task_command", fail)
    with pytest.raises(RuntimeError, match="a bug"):
        main(["task", "adding", "--steps", "1"])


def test_ctrl_c_is_one_line_and_the_status_of_an_interrupt(monkeypatch, capsys):
    """A command that resumes says how; one that does not (task) promises nothing."""
    from lstmkit.cli import lm, tasks

    def interrupted(arguments):
        raise KeyboardInterrupt

    monkeypatch.setattr(tasks, "task_command", interrupted)
    with pytest.raises(SystemExit) as stopped:
        main(["task", "adding", "--steps", "1"])
    assert stopped.value.code == 130  # 128 + SIGINT, what a shell reports for a tool stopped by Ctrl-C
    assert capsys.readouterr().err == "lstmkit: interrupted\n"
    monkeypatch.setattr(lm, "lm_train_command", interrupted)
    with pytest.raises(SystemExit) as stopped:
        main(["lm", "train", __file__, "--steps", "1"])
    assert stopped.value.code == 130
    assert capsys.readouterr().err == ("lstmkit: interrupted; a checkpoint written before is kept, and the same "
                                       "command with --resume continues from it (before the first one, run the "
                                       "command again without --resume)\n")


@pytest.mark.parametrize("error, status, said", [
    (KeyboardInterrupt(), 130, ""),
    # rank 0 meets it too, says it and ends the run, torchrun stopping this one in its wait; here none does
    (ValueError("batch_size is 7"), 2, "lstmkit: process 1 of 2: error: batch_size is 7\n"),
])
def test_under_torchrun_another_rank_than_0_exits_with_the_status_and_waits_for_rank_0_to_say_it(
        error, status, said, monkeypatch, capsys):
    """Every process meets the same interrupt or bad option: rank 0 says it, once. An error is
    said by another process too, after PEER_GRACE_SECONDS, where rank 0 has not ended the run:
    exiting at once, it let torchrun stop rank 0 before it said why."""
    import lstmkit.cli
    from lstmkit.cli import tasks

    def fails(arguments):
        raise error

    monkeypatch.setattr(tasks, "task_command", fails)
    monkeypatch.setattr(lstmkit.cli, "PEER_GRACE_SECONDS", 0.0)
    monkeypatch.setattr(sys, "stdout", sys.stdout)  # main points rank 1's at os.devnull; restored after
    for rank, message in (("1", said), ("0", None)):
        monkeypatch.setenv("RANK", rank)
        monkeypatch.setenv("WORLD_SIZE", "2")
        with warnings.catch_warnings(), pytest.raises(SystemExit) as stopped:
            main(["task", "adding", "--steps", "1"])
        assert stopped.value.code == status
        err = capsys.readouterr().err
        assert err == message if message is not None else err.startswith("lstmkit: ")


@pytest.mark.parametrize("arguments", [["lm", "train", "/nonexistent.txt"], ["task", "adding", "--stepz", "5"]])
def test_under_torchrun_a_bad_command_line_is_reported_by_rank_0_alone(arguments, monkeypatch, capsys):
    """argparse's errors too (they were printed once per process, usage and all). Another
    process says its error line, naming itself, only where rank 0 has not ended the run in
    PEER_GRACE_SECONDS (a file missing on one machine of several): here none does."""
    import lstmkit.cli

    monkeypatch.setattr(lstmkit.cli, "PEER_GRACE_SECONDS", 0.0)
    monkeypatch.setattr(sys, "stdout", sys.stdout)
    for rank in ("1", "0"):
        monkeypatch.setenv("RANK", rank)
        monkeypatch.setenv("WORLD_SIZE", "2")
        with warnings.catch_warnings(), pytest.raises(SystemExit) as stopped:
            main(arguments)
        assert stopped.value.code == 2
        err = capsys.readouterr().err
        if rank == "1":
            assert err.startswith("lstmkit: process 1 of 2: lstmkit ") and err.count("\n") == 1, err
        else:
            assert err.startswith("usage: ")


def test_under_torchrun_the_others_follow_rank_0_out_silently_when_it_stops(monkeypatch, capsys):
    """Rank 0 alone writes files; when that fails (a full disk) it says so and stops, and the
    other ranks' next collective fails: they exit with status 1 and no traceback of gloo's."""
    from lstmkit.cli import tasks

    def peer_left(arguments):
        raise RuntimeError("[gloo/transport/tcp/pair.cc:553] Connection closed by peer [127.0.0.1]:6889")

    monkeypatch.setattr(tasks, "task_command", peer_left)
    monkeypatch.setattr(sys, "stdout", sys.stdout)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with warnings.catch_warnings(), pytest.raises(SystemExit) as stopped:
        main(["task", "adding", "--steps", "1"])
    assert stopped.value.code == 1 and capsys.readouterr().err == ""
    monkeypatch.setenv("RANK", "0")  # another process stopped: a traceback of gloo's ended in "GLHF!"
    with pytest.raises(SystemExit) as stopped:
        main(["task", "adding", "--steps", "1"])
    assert stopped.value.code == 1
    assert capsys.readouterr().err == ("lstmkit: error: another process of this run stopped, and this one cannot go "
                                       "on without it (its reason is above, where it could give one)\n")


def test_cells_prints_the_equations_from_the_code(capsys):
    main(["cells", "--equations"])
    output = capsys.readouterr().out
    assert "n  = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))" in output
    assert "o  = σ(· + p_o ⊙ c')" in output


@pytest.mark.parametrize("arguments, message", [
    (["cells", "--hidden-size", "0"], "argument --hidden-size: expected a positive integer, got 0"),
    (["cells", "--hidden-size", "x"], "argument --hidden-size: expected a positive integer, got 'x'"),
    (["lm", "train", __file__, "--device", "gpu"], "argument --device: expected auto, cpu, cuda or cuda:N, got 'gpu'"),
    (["lm", "train", __file__, "--precision", "fp16"], "argument --precision: invalid choice: 'fp16'"),
    ([], "lstmkit: error: the following arguments are required: {cells,task,probe,demo,lm,forecast,speech,translate}"),
    (["probe"], "lstmkit probe: error: the following arguments are required: {gradients,gates}"),
    (["forecast", "fit", __file__, "--time", "t", "--target", "y", "--baselines", ","],
     "argument --baselines: expected comma-separated baseline names, got ','"),
    (["task", "adding", "--device", "cuda:x"], "argument --device: expected auto, cpu, cuda or cuda:N, got 'cuda:x'"),
    (["lm", "train", ""], "argument text: expected a path, got ''"),  # Path("") is "."
    (["lm", "train", __file__, "--out", ""], "argument --out: expected a path, got ''"),  # the default, silently
    (["forecast", "predict", ".", __file__, "--out", "forecast.parquet"],  # it wrote CSV text into it
     "argument --out: forecast.parquet: expected a file ending in .csv"),
    # an unknown option is the command's: argparse reported it with the top-level usage
    (["translate", "train", "--source", __file__, "--target", __file__, "--valid-source", __file__, "--valid-target",
      __file__, "--out", "runs/t", "--frobnicate"], "usage: lstmkit translate train [-h]"),
    (["translate", "train", "--source", __file__, "--target", __file__, "--valid-source", __file__, "--valid-target",
      __file__, "--out", "runs/t", "--frobnicate", "3"],
     "\nlstmkit translate train: error: unrecognized arguments: --frobnicate 3\n"),
    (["cells", "--x"], "lstmkit cells: error: unrecognized arguments: --x"),
    (["lm", "--frob", "train", __file__], "lstmkit lm: error: unrecognized arguments: --frob"),  # given to lm
    (["--frob", "lm", "train", __file__], "\nlstmkit: error: unrecognized arguments: --frob"),
    (["lm", "train", __file__, "train"], "lstmkit lm train: error: unrecognized arguments: train"),  # not the name
    # an option only by its full name: argparse took --hidden for --hidden-size, and --lr-s for --lr-schedule
    (["lm", "train", __file__, "--hidden", "8"], "lstmkit lm train: error: unrecognized arguments: --hidden 8"),
    (["speech", "train", __file__, "--time-b", "5"], "lstmkit speech train: error: unrecognized arguments: --time-b 5"),
    # refused by the config with Python's names ("warmup and weight_decay must be non-negative, got -1 and 0.01")
    (["lm", "train", __file__, "--warmup", "-1"], "argument --warmup: expected an integer >= 0, got -1"),
    (["task", "adding", "--weight-decay", "-0.5"], "argument --weight-decay: expected a finite number >= 0, got -0.5"),
    (["lm", "sample", ".", "--top-p", "0"], "argument --top-p: expected a number in (0, 1], got 0.0"),
    (["lm", "sample", ".", "--length", "-5"], "argument --length: expected an integer >= 0, got -5"),
])
def test_bad_arguments_exit_with_a_message(arguments, message, capsys):
    """(This file stands in for a text file: inputs are checked before the other options.)"""
    with pytest.raises(SystemExit) as exit_:
        main(arguments)
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_anneal_on_a_plateau_needs_a_floor_below_the_peak_and_says_so_before_any_work(tmp_path, capsys):
    (tmp_path / "x.csv").write_text("t,y\n1,2\n")
    code, _, err = run_cli(["forecast", "fit", str(tmp_path / "x.csv"), "--time", "t", "--target", "y", "--horizon",
                            "3", "--on-plateau", "anneal", "--out", str(tmp_path / "run")], capsys)
    assert code == 2 and err.strip() == (
        "lstmkit: error: on_plateau='anneal' (--on-plateau anneal) decays the rate to min_lr_fraction once patience "
        "evaluations pass without improving: it needs a patience (--patience) and a min_lr_fraction "
        "(--min-lr-fraction) below 1, got patience=50, min_lr_fraction=1.0")
    assert [path.name for path in tmp_path.iterdir()] == ["x.csv"]


def test_a_moving_average_of_the_weights_is_checked_before_any_work(tmp_path, capsys):
    (tmp_path / "x.txt").write_text("some text")
    code, _, err = run_cli(["lm", "train", str(tmp_path / "x.txt"), "--ema-decay", "1.5", "--out", str(tmp_path / "run")],
                           capsys)
    assert code == 2 and err.strip() == ("lstmkit: error: ema_decay (--ema-decay) must be in (0, 1) (0.999 averages "
                                         "about the last 1,000 steps), got 1.5")
    assert [path.name for path in tmp_path.iterdir()] == ["x.txt"]


def test_task_command_trains_compares_and_writes(tmp_path, capsys):
    code, out, _ = run_cli(["task", "adding", "--T", "10", "--cells", "rnn,lstm", "--steps", "30", "--hidden-size", "8",
                            "--test-size", "50", "--eval-every", "10", "--out", str(tmp_path)], capsys)
    assert code == 0
    table = out.splitlines()[2:5]
    assert table[0].split() == ["cell", "params", "test", "mse", "baseline", "solved", "steps", "to", "solve", "steps", "seconds"]
    assert [line.split()[0] for line in table[1:]] == ["rnn", "lstm"]
    results = json.loads((tmp_path / "results.json").read_text())
    assert set(results["cells"]) == {"rnn", "lstm"}
    assert {"task", "T", "metric", "baseline", "cells"} <= set(results)
    assert (tmp_path / "models" / "lstm" / "model.safetensors").is_file()


def test_a_task_interrupted_prints_the_table_of_the_cells_finished(tmp_path, capsys, monkeypatch):
    interrupt_task_in(monkeypatch, "lstm")
    code, out, err = run_cli(["task", "adding", "--T", "10", "--cells", "rnn,lstm", "--steps", "4", "--hidden-size",
                              "8", "--test-size", "50", "--eval-every", "2", "--out", str(tmp_path)], capsys)
    assert code == 130 and err.endswith("\nlstmkit: interrupted\n")
    table = out.splitlines()[2:4]
    assert table[0].split()[:2] == ["cell", "params"] and table[1].split()[0] == "rnn"
    results = json.loads((tmp_path / "results.json").read_text())["cells"]["rnn"]
    assert table[1].split()[2] == f"{results['test']:.4f}"
    assert out.splitlines()[-1] == (f"the cells finished before the interrupt: wrote {tmp_path}/results.json, "
                                    "curves.csv, learning_curves.png and models/ of them")


def test_probes_from_a_task_run(tmp_path, capsys):
    run_cli(["task", "temporal_order", "--T", "10", "--cells", "rnn,lstm", "--steps", "20", "--hidden-size", "8",
             "--test-size", "50", "--out", str(tmp_path / "task")], capsys)
    code, out, _ = run_cli(["probe", "gradients", "--from", str(tmp_path / "task"), "--out", str(tmp_path / "probe")], capsys)
    assert code == 0 and "at initialisation: orders of magnitude lost" in out
    rows = (tmp_path / "probe" / "gradient_norms.csv").read_text().splitlines()
    assert rows[0] == "moment,cell,t,norm"
    assert len(rows) == 1 + 2 * 2 * 11, "two moments x two cells x the 11 steps of the longest test sequence"
    code, out, _ = run_cli(["probe", "gates", str(tmp_path / "task" / "models" / "lstm"), "--out", str(tmp_path / "probe")], capsys)
    assert code == 0 and (tmp_path / "probe" / "gates_lstm.png").read_bytes()[:4] == b"\x89PNG"


def test_demo_runs_end_to_end_on_a_tiny_budget(tmp_path, capsys):
    code, out, _ = run_cli(["demo", "--T", "10", "--time-budget", "0.5", "--out", str(tmp_path)], capsys)
    assert code == 0
    assert "rnn" in out and "gru" in out and "lstm" in out
    assert "Going back through the 10 steps, ||d loss / d h_t|| of the trained rnn" in out
    assert "up to 5,000 steps (and 0.5 s) each" in out
    for name in ("learning_curves.png", "gradient_norms.png", "results.json", "gradient_norms.csv"):
        assert (tmp_path / name).is_file(), name


def test_the_demo_budget_is_steps_so_every_machine_shows_the_same_race(tmp_path, capsys):
    code, out, _ = run_cli(["demo", "--T", "10", "--steps", "30", "--out", str(tmp_path)], capsys)
    assert code == 0 and "up to 30 steps (and 300 s) each" in out
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["config"]["steps"] == 30 and results["config"]["time_budget"] == 300.0
    assert {cell: run["steps"] for cell, run in results["cells"].items()} == {"rnn": 30, "gru": 30, "lstm": 30}


@pytest.mark.parametrize("arguments, message", [
    (["task", "reber", "--T", "5", "--steps", "1"], "lstmkit: error: task 'reber' has no length parameter, so T cannot be set"),
    (["task", "adding", "--T", "1", "--steps", "1"], "lstmkit: error: task 'adding': T must be at least 2, got 1"),
    (["task", "adding", "--cells", "rnn,lstn"], "argument --cells: expected cell names from rnn, lstm, gru, peephole, "
                                               "cifg, layernorm, nig, nfg, nog, niaf, noaf, got 'rnn,lstn'"),
    (["task", "adding", "--steps", "5", "--time-budget", "5"], "argument --time-budget: not allowed with argument --steps"),
    (["task", "adding", "--lr", "0"], "argument --lr: expected a positive number, got 0.0"),
    (["probe", "gates"], "lstmkit: error: probe gates needs a checkpoint folder (e.g. DIR/models/lstm) or --task NAME"),
    (["probe", "gradients"], "lstmkit: error: probe gradients needs --task NAME (to train) or --from DIR"),
    (["probe", "gates", "/nonexistent/model"], "lstmkit: error: /nonexistent/model does not exist"),
    (["probe", "gradients", "--from", "runs/t", "--T", "50"], "lstmkit: error: --T 50 is the sequence length of the "
     "task --task trains; a trained model is probed on its own task: leave --T out, or give --task"),
    (["probe", "gradients", "--from", "runs/t", "--hidden-size", "64", "--lr", "0.1"], "lstmkit: error: --from runs/t "
     "is probed as it was trained; --lr 0.1, --hidden-size 64 would shape a new run, which only --task trains: leave "
     "them out, or give --task"),
    (["probe", "gates", "runs/t/models/lstm", "--hidden-size", "64"], "lstmkit: error: runs/t/models/lstm is probed as "
     "it was trained; --hidden-size 64 would shape a new run"),
    (["probe", "gates", "runs/t/models/lstm", "--steps", "10"], "lstmkit: error: runs/t/models/lstm is probed as "
     "it was trained; --steps 10 would shape a new run, which only --task trains"),
    (["probe", "gradients", "--from", "runs/t", "--time-budget", "60"], "lstmkit: error: --from runs/t is probed as "
     "it was trained; --time-budget 60.0 would shape a new run"),
    (["probe", "gradients", "--from", "runs/t", "--init", "chrono,orthogonal", "--zoneout", "0.1,0.2"],
     "lstmkit: error: --from runs/t is probed as it was trained; --zoneout 0.1,0.2, --init chrono,orthogonal would "
     "shape a new run"),  # as the flags take them, not Python's tuples
    (["task", "adding", "--init", "chrono,chrono"], "argument --init: expected chrono and/or orthogonal, "
     "comma-separated, each once, got 'chrono,chrono'"),
    (["task", "adding", "--optimizer", "nt-asgd"], "argument --optimizer: invalid choice: 'nt-asgd' (choose from "
     "'adamw', 'sgd')"),
    (["probe", "gradients", "--task", "adding", "--asgd-patience", "3"],
     "lstmkit probe gradients: error: unrecognized arguments: --asgd-patience 3"),
    (["probe", "gates", "runs/t/models/lstm", "--cell", "gru"], "lstmkit: error: runs/t/models/lstm is probed with "
     "the cell it was trained with; --cell gru is the cell --task trains: give one or the other"),
])
def test_bad_task_and_probe_arguments(arguments, message, capsys):
    code, _, err = run_cli(arguments, capsys)
    assert code == 2
    assert message in err


def test_probe_from_a_run_rebuilds_its_starting_point_from_the_runs_seed(tmp_path, capsys):
    from lstmkit.pipelines.longlag import build_model
    from lstmkit.pipelines.probes import gradient_profile, probe_batch
    from lstmkit.tasks import AddingTask

    run_cli(["task", "adding", "--T", "6", "--cells", "lstm", "--steps", "5", "--hidden-size", "4", "--seed", "3",
             "--test-size", "20", "--out", str(tmp_path / "task")], capsys)
    run_cli(["probe", "gradients", "--from", str(tmp_path / "task"), "--out", str(tmp_path / "probe")], capsys)
    rows = [row.split(",") for row in (tmp_path / "probe" / "gradient_norms.csv").read_text().splitlines()[1:]]
    written = [float(norm) for moment, cell, t, norm in rows if moment == "at initialisation"]
    task = AddingTask(T=6)
    expected = gradient_profile(build_model(task, "lstm", 4, seed=3), task, probe_batch(task, seed=3))
    assert written == pytest.approx(expected.tolist(), rel=1e-6)


@pytest.mark.parametrize("flags, message", [
    (["--init", "chrono"], "init='chrono' sets the forget gate's bias; cell rnn has no forget gate: leave rnn out of "
                           "the cells (rnn, gru, lstm; --cells)"),
    (["--seed", "-1"], "seed (--seed) must be in [0, 2**64 - 1] (what torch.manual_seed takes), got -1"),
])
def test_a_task_a_cell_cannot_run_stops_before_the_run_is_announced(flags, message, tmp_path, capsys):
    code, out, err = run_cli(["task", "adding", "--steps", "1", "--out", str(tmp_path / "run"), *flags], capsys)
    assert (code, out, err) == (2, "", f"lstmkit: error: {message}\n")


def test_probe_gradients_says_what_the_orders_mean_on_a_task_with_a_loss_at_every_step(tmp_path, capsys):
    code, out, _ = run_cli(["probe", "gradients", "--task", "reber", "--cells", "lstm", "--steps", "2",
                            "--hidden-size", "4", "--test-size", "10", "--out", str(tmp_path / "probe")], capsys)
    assert code == 0 and out.splitlines()[2] == (
        "(reber has a loss at every step, so ||d loss / d h_t|| at t=0 holds that step's own loss: the orders lost "
        "say little of how far a gradient travels; see gradient_norms.png)")


def test_probe_from_a_folder_without_models(tmp_path, capsys):
    code, _, err = run_cli(["probe", "gradients", "--from", str(tmp_path)], capsys)
    assert code == 2 and "is not a `lstmkit task` output folder: it has no results.json" in err
    code, _, err = run_cli(["probe", "gradients", "--from", str(tmp_path / "none")], capsys)
    assert code == 2 and err == f"lstmkit: error: {tmp_path / 'none'} does not exist (expected a `lstmkit task` output folder)\n"


@pytest.mark.parametrize("command, config_class", [
    (["lm", "train", __file__], "lstmkit.pipelines.lm.LMTrainingConfig"),  # any existing file: none is read
    (["task", "adding"], "lstmkit.pipelines.configs.TaskTrainingConfig"),
    (["forecast", "fit", __file__, "--time", "t", "--target", "y", "--horizon", "3", "--out", "run"],
     "lstmkit.pipelines.configs.ForecasterConfig"),
])
def test_the_commands_defaults_are_the_configs_defaults(command, config_class):
    """Each option the command shares with its config starts at the config's default, and the
    config the command builds equals the config built with no arguments."""
    import dataclasses
    import importlib

    from lstmkit.cli import build_parser
    from lstmkit.cli.arguments import config_from
    from lstmkit.cli.lm import NOT_GIVEN, training_config

    module, _, name = config_class.rpartition(".")
    config_type = getattr(importlib.import_module(module), name)
    arguments = build_parser().parse_args(command)
    shared = [field for field in dataclasses.fields(config_type) if hasattr(arguments, field.name)]
    assert {"lr", "clip", "seed", "device", "precision", "hidden_size", "batch_size"} <= {f.name for f in shared}
    for field in shared:
        if field.name not in ("steps", "epochs", "time_budget", "time", "target", "horizon"):
            given = getattr(arguments, field.name)  # a setting a --recipe sets: unset, so that a flag given wins
            assert given == field.default or (given is NOT_GIVEN and command[0] == "lm"), field.name
    required = {"time": "t", "target": ("y",), "horizon": 3} if name == "ForecasterConfig" else {}
    built = (training_config(arguments) if command[0] == "lm"
             else config_from(arguments, config_type, **({"calendar": True} if required else {})))
    assert built == config_type(**required)



def test_the_help_shows_a_default_of_zero():
    """`0 in (None, False, ())` holds: --seed, --warmup, --weight-decay and the dropouts showed no default."""
    result = subprocess.run([sys.executable, "-m", "lstmkit", "task", "--help"], capture_output=True, text=True,
                            check=True, env={**os.environ, "COLUMNS": "200"})
    options = result.stdout.split("\n  -")  # each option's help, wrapped or not
    for flag in ("-seed SEED", "-warmup WARMUP", "-weight-decay WEIGHT_DECAY"):
        described = next(text for text in options if text.startswith(flag))
        assert "(default 0)" in described or "(default 0.0)" in described, described


@pytest.mark.parametrize("command", [["task", "adding", "--T", "5"], ["demo", "--T", "5"]])
def test_task_and_demo_refuse_a_users_folder_before_announcing_the_run(command, tmp_path, capsys):
    """They printed the task's summary (the demo its plan) first, then refused."""
    (tmp_path / "curves.csv").write_text("mine")
    code, out, err = run_cli([*command, "--steps", "1", "--out", str(tmp_path)], capsys)
    assert (code, out) == (2, "")
    assert err == (f"lstmkit: error: {tmp_path} holds curves.csv but no run of lstmkit task or demo (its results.json, "
                   "if any, is not one's); a run there would overwrite it: choose another folder\n")


def test_the_version_is_printed(capsys):
    code, out, _ = run_cli(["--version"], capsys)
    assert (code, out) == (0, f"lstmkit {lstmkit.__version__}\n")


def test_a_gzip_texts_default_run_folder_is_named_without_its_suffixes():
    """english.txt.gz trained into runs/lm-english.txt, english.txt into runs/lm-english."""
    from lstmkit.cli.lm import text_name

    assert [text_name(path) for path in ("data/english.txt.gz", "english.txt", "notes.GZ", "corpus")] == [
        "english", "english", "notes", "corpus"]


@pytest.mark.parametrize("command, written", [
    (["translate", "eval", "runs/none", "--source", "{a}", "--reference", "{b}", "--out", "{b}"],
     "--out {b} is the reference file"),
    (["translate", "eval", "runs/none", "--source", "{a}", "--reference", "{b}", "--json", "{a}"],
     "--json {a} is the source file"),
    (["translate", "eval", "runs/none", "--source", "{a}", "--reference", "{b}", "--json", "{c}", "--out", "{c}"],
     "--out {c} is the file --json writes"),
    (["speech", "eval", "runs/none", "{m}", "--out", "{m}"], "--out {m} is the manifest"),
    (["forecast", "predict", "runs/none", "{m}", "--out", "{m}"], "--out {m} is the CSV file it forecasts from"),
    (["forecast", "predict", "{run}", "{m}", "--out", "{k}"], "--out {k} is the fit's backtest forecasts"),
    (["forecast", "predict", "{run}/model", "{m}", "--out", "{k}"], "--out {k} is the fit's backtest forecasts"),
    (["speech", "eval", "{run}/best", "{m}", "--json", "{r}"], "--json {r} is the run's results"),
    (["speech", "eval", "{run}", "{m}", "--json", "{run}/best/config.json"],
     "--json {run}/best/config.json is the checkpoint's config.json (best/)"),
    (["translate", "eval", "{run}", "--source", "{a}", "--reference", "{b}", "--out", "{s}"],
     "--out {s} is the run's metrics"),
    (["translate", "run", "runs/none", "{v}", "--show-attention", "{v}"],
     "--show-attention {v} is the file to translate"),
    (["speech", "transcribe", "runs/none", "{a}", "{v}", "--show", "{v}"], "--show {v} is file 2 to transcribe"),
    (["speech", "eval", "runs/none", "{l}", "--json", "{w}"], "--json {w} is recording 2 of the manifest"),
])
def test_an_output_file_that_is_an_input_is_refused_before_it_is_read(command, written, tmp_path, capsys):
    """`translate eval … --reference ref.en --out ref.en` replaced the references with the
    translations, `speech eval … --out` the manifest with its transcripts (`--json` a recording
    it lists with JSON), `translate run x.svg --show-attention x.svg` the sentences with the
    figure, and `forecast predict RUN … --out RUN/backtest.csv` the fit's backtest forecasts. A
    checkpoint in a run (one with config.json) is taken as the run's, by its contents, whatever
    its name."""
    for checkpoint in ("model", "best"):
        (tmp_path / "run" / checkpoint).mkdir(parents=True)
        (tmp_path / "run" / checkpoint / "config.json").write_text("{}")
    paths = {"a": tmp_path / "a.de", "b": tmp_path / "b.en", "c": tmp_path / "c.txt", "m": tmp_path / "m.csv",
             "k": tmp_path / "run" / "backtest.csv", "r": tmp_path / "run" / "results.json",
             "s": tmp_path / "run" / "metrics.csv", "v": tmp_path / "v.svg", "w": tmp_path / "w.wav"}
    for path in paths.values():
        path.write_text("mine\n")
    paths["l"] = tmp_path / "listed.csv"  # a manifest: `speech eval --json` over a recording it lists
    paths["l"].write_text("path,text\nc.txt,one\nw.wav,two\n")
    paths["run"] = tmp_path / "run"
    code, _, err = run_cli([part.format(**paths) for part in command], capsys)
    assert code == 2
    assert err == f"lstmkit: error: {written.format(**paths)}: writing it would replace that; choose another file\n"
    assert all(path.read_text() == "mine\n" for name, path in paths.items() if path.is_file() and name != "l")


def test_an_evaluation_of_a_run_that_does_not_exist_says_so_whatever_its_output(tmp_path, capsys):
    """`--json runs/none/results.json` was refused as "the run's results", which do not exist;
    a run's results still to come are the run's, refused."""
    (tmp_path / "a.de").write_text("a\n")
    (tmp_path / "b.en").write_text("b\n")
    code, _, err = run_cli(["translate", "eval", str(tmp_path / "none"), "--source", str(tmp_path / "a.de"),
                            "--reference", str(tmp_path / "b.en"), "--json", str(tmp_path / "none" / "results.json")],
                           capsys)
    assert (code, err) == (2, f"lstmkit: error: {tmp_path / 'none'} does not exist\n")
    (tmp_path / "run" / "best").mkdir(parents=True)  # a run still training: its results.json is still to come
    (tmp_path / "run" / "best" / "config.json").write_text("{}")
    code, _, err = run_cli(["speech", "eval", str(tmp_path / "run"), str(tmp_path / "a.de"), "--json",
                            str(tmp_path / "run" / "results.json")], capsys)
    assert (code, err) == (2, f"lstmkit: error: --json {tmp_path / 'run' / 'results.json'} is the run's results: "
                              "writing it would replace that; choose another file\n")


@pytest.mark.parametrize("command, written", [
    (["translate", "run", "{run}", "{a}", "--show-attention", "{run}/curves.png"], "--show-attention {run}/curves.png"),
    (["speech", "transcribe", "{run}", "{a}", "--show", "{other}/curves.png"], "--show {other}/curves.png"),
    (["speech", "eval", "{run}", "{m}", "--out", "{other}/metrics.csv"], "--out {other}/metrics.csv"),
    (["forecast", "predict", "{run}", "{m}", "--out", "{network}/metrics.csv"], "--out {network}/metrics.csv"),
    (["forecast", "predict", "{run}", "{m}", "--out", "{other}/best/notes.csv"], "--out {other}/best/notes.csv"),
    (["speech", "eval", "{run}", "{m}", "--json", "{task}/results.json"], "--json {task}/results.json"),
])
def test_an_output_file_that_is_a_file_of_any_run_is_refused(command, written, tmp_path, capsys):
    """`translate run --show-attention RUN/curves.png` replaced the run's learning curves, and
    `forecast predict --out` a network's metrics.csv in training/, `speech eval --out` another
    run's: a file of any run is refused, a checkpoint's files and a run's records beside its
    checkpoints. An earlier evaluation's output in a run's folder is not a record: it is
    replaced."""
    paths = {"run": tmp_path / "run", "other": tmp_path / "other", "task": tmp_path / "task",
             "network": tmp_path / "run" / "training" / "backtest" / "seasonal"}
    checkpoints = {"run/model": "forecaster", "other/best": "speech_model", "task/models/lstm": "sequence_model",
                   "run/training/backtest/seasonal/last": "forecast-training"}
    for folder, kind in checkpoints.items():
        (tmp_path / folder).mkdir(parents=True)
        (tmp_path / folder / "config.json").write_text(json.dumps({"kind": kind}))
    (tmp_path / "other" / "best" / "model.safetensors").write_text("weights")
    for name in ("run/curves.png", "other/curves.png", "other/metrics.csv", "other/best/notes.csv", "task/results.json",
                 "run/training/backtest/seasonal/metrics.csv", "run/eval.json", "a.wav", "m.csv"):
        (tmp_path / name).write_text("mine\n")
    paths |= {"a": tmp_path / "a.wav", "m": tmp_path / "m.csv"}
    code, _, err = run_cli([part.format(**paths) for part in command], capsys)
    run = Path(written.format(**paths).split(" ")[1]).parent
    assert (code, err) == (2, f"lstmkit: error: {written.format(**paths)} is a file of the lstmkit run in {run}: "
                              "writing it would replace that; choose another file\n")
    earlier = tmp_path / "run" / "eval.json"
    _, _, err = run_cli(["speech", "eval", str(paths["run"]), str(paths["m"]), "--json", str(earlier)], capsys)
    assert "is a file of" not in err  # refused further on, for the checkpoint this test fakes
    assert all((tmp_path / name).read_text() == "mine\n" for name in ("run/curves.png", "other/metrics.csv"))


def test_an_output_file_beside_folders_that_hold_no_lstmkit_run_is_written(tmp_path, capsys):
    """A project folder with a models/ of forecasters saved on their own, or a Hugging Face
    model/ (a config.json and weights of its own), holds no lstmkit run: its results.json is
    the user's, to replace."""
    (tmp_path / "models" / "co2").mkdir(parents=True)
    (tmp_path / "models" / "co2" / "config.json").write_text(json.dumps({"kind": "forecaster"}))
    (tmp_path / "models" / "empty").mkdir()
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text(json.dumps({"architectures": ["BertModel"]}))
    (tmp_path / "model" / "model.safetensors").write_text("weights")
    for name in ("results.json", "model/notes.csv", "a.wav"):
        (tmp_path / name).write_text("mine\n")
    (tmp_path / "m.csv").write_text("path,text\na.wav,one\n")
    for output in ("results.json", "model/notes.csv"):
        _, _, err = run_cli(["speech", "eval", str(tmp_path / "none"), str(tmp_path / "m.csv"), "--json",
                             str(tmp_path / output)], capsys)
        assert "is a file of" not in err and "none does not exist" in err


def test_the_backtest_of_a_fit_folder_named_model_is_its_own(tmp_path, capsys):
    """A fit into --out model: `predict model … --out model/backtest.csv` replaced its backtest,
    and a user's backtest.csv beside the folder was refused as the fit's."""
    fit = tmp_path / "model"
    (fit / "model").mkdir(parents=True)
    (fit / "model" / "config.json").write_text("{}")
    data = tmp_path / "m.csv"
    for path in (fit / "backtest.csv", tmp_path / "backtest.csv", data):
        path.write_text("mine\n")
    code, _, err = run_cli(["forecast", "predict", str(fit), str(data), "--out", str(fit / "backtest.csv")], capsys)
    assert code == 2 and f"--out {fit / 'backtest.csv'} is the fit's backtest forecasts" in err
    _, _, err = run_cli(["forecast", "predict", str(fit), str(data), "--out", str(tmp_path / "backtest.csv")], capsys)
    assert "backtest forecasts" not in err  # refused further on, for the checkpoint this test fakes


def test_a_batch_the_processes_cannot_share_is_refused_before_a_task_is_announced(monkeypatch, capsys):
    """Under torchrun --batch-size 7 was refused after the task's header was printed."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    code, out, err = run_cli(["task", "adding", "--T", "5", "--steps", "1", "--batch-size", "7"], capsys)
    assert (code, out) == (2, "")
    assert err == ("lstmkit: error: batch_size (--batch-size) is 7, which 2 processes cannot share evenly: give a "
                   "multiple of 2 (a new run), or run a number of processes that divides 7\n")


def test_under_torchrun_a_command_that_trains_nothing_runs_in_rank_0_alone(tmp_path):
    """`speech fsdd` under torchrun: every process wrote the split, and all but the first then
    refused the folder the first had written, failing the launch; rank 1 now does nothing."""
    recordings = tmp_path / "recordings"
    recordings.mkdir()
    environment = {**os.environ, "RANK": "1", "LOCAL_RANK": "1", "WORLD_SIZE": "2"}
    for arguments in (["cells"], ["speech", "fsdd", str(recordings), "--out", str(tmp_path / "split")]):
        result = subprocess.run([sys.executable, "-m", "lstmkit", *arguments], capture_output=True, text=True,
                                env=environment, timeout=300)
        assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    assert not (tmp_path / "split").exists()


@pytest.mark.parametrize("arguments, trains", [
    (["demo"], True),  # its processes left rank 0 waiting for them in the process group, for ever
    (["task", "adding"], True),
    (["probe", "gradients", "--task", "adding"], True),
    (["probe", "gradients", "--from", "{tmp}"], False),
    (["lm", "train", __file__], True),
    (["lm", "sample", "{tmp}"], False),
    (["cells"], False),
])
def test_the_commands_that_train_are_those_every_torchrun_process_runs(arguments, trains, tmp_path):
    from lstmkit.cli import build_parser

    parsed = build_parser().parse_args([argument.format(tmp=tmp_path) for argument in arguments])
    assert (parsed.trains(parsed) if callable(parsed.trains) else parsed.trains) is trains


BLOCKED = """
import datetime, socket
import torch.distributed as dist
from lstmkit.cli.signals import stopping_on_sigterm
with socket.socket() as probe:
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
print("waiting", flush=True)
with stopping_on_sigterm():  # as a torchrun process whose peer never comes: no store listens on the port
    dist.TCPStore("127.0.0.1", port, 2, False, datetime.timedelta(seconds=120))
"""


@pytest.mark.parametrize("world_size, said", [
    ("1", ""), ("2", "; torchrun stops every process when one ends: another process's reason, where it gave one, is "
                     "above")])
def test_sigterm_ends_a_process_blocked_inside_torch(tmp_path, world_size, said):
    """lstmkit's SIGTERM handler runs only when torch returns to Python: a process waiting for a
    peer that never came, or in a collective with one that had gone, ignored SIGTERM, and torchrun
    stopped it 30 s later with SIGKILL."""
    from lstmkit.cli.signals import TERM_GRACE_SECONDS

    script = tmp_path / "blocked.py"
    script.write_text(BLOCKED)
    process = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "RANK": "0", "WORLD_SIZE": world_size})
    assert process.stdout.readline() == "waiting\n"
    time.sleep(1)  # inside the store's constructor
    sent = time.monotonic()
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 143
    assert TERM_GRACE_SECONDS <= time.monotonic() - sent < TERM_GRACE_SECONDS + 20
    assert err.splitlines()[-1] == ("lstmkit: interrupted (SIGTERM), inside a call into torch that had not returned "
                                    "5 s later" + said)


@pytest.mark.parametrize("variables, message", [
    ({"WORLD_SIZE": "2"}, "WORLD_SIZE is set but RANK/LOCAL_RANK are missing or not integers ('RANK'); start "
                          "several processes with torchrun"),
    ({"WORLD_SIZE": "2", "RANK": "5"}, "RANK must be in 0..WORLD_SIZE-1 and LOCAL_RANK at least 0, got RANK=5, "
                                       "WORLD_SIZE=2, LOCAL_RANK=0 (a process of that rank would wait for its peers "
                                       "without end); start several processes with torchrun"),
    ({"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "-1"}, "RANK must be in 0..WORLD_SIZE-1 and LOCAL_RANK at least "
                                                           "0, got RANK=1, WORLD_SIZE=2, LOCAL_RANK=-1"),
])
def test_torchrun_variables_set_by_hand_are_checked_in_one_line(variables, message, monkeypatch, capsys):
    """A missing RANK ended in a traceback; RANK=5 of WORLD_SIZE=2 waited for peers for 30 minutes."""
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as stopped:
        main(["lm", "sample", "nowhere"])
    assert stopped.value.code == 2
    assert capsys.readouterr().err.startswith(f"lstmkit: error: {message}")


HELD_UNDER_THE_WATCH = """
import os, subprocess, time
from lstmkit.cli.signals import Terminated, stopping_on_sigterm
from lstmkit.interrupts import interrupts_held
try:
    with stopping_on_sigterm():
        with interrupts_held():  # a checkpoint's swap, on a slow file system: Python runs, the signal held
            subprocess.run(["kill", "-TERM", str(os.getpid())])
            time.sleep(6)
            print("the held block ended", flush=True)
except Terminated:
    print("terminated after it", flush=True)
"""

FORKED_UNDER_THE_WATCH = """
import os, signal, time
from lstmkit.cli.signals import stopping_on_sigterm
with stopping_on_sigterm():
    children = []
    for _ in range(2):
        child = os.fork()
        if child == 0:  # a worker of the user's, forked while the watch runs
            time.sleep(30)
            os._exit(0)
        children.append(child)
    time.sleep(1)  # the children past their fork (a signal before that reaches the parent's pipe, which they copied)
    os.kill(children[0], signal.SIGTERM)  # the child's own signal, not the parent's
    time.sleep(6)
    started = time.monotonic()
print(f"alive, left the block in {time.monotonic() - started:.0f} s", flush=True)  # the other child still runs
for child in children:
    os.kill(child, signal.SIGKILL)
    os.waitpid(child, 0)
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="forks a child")
def test_the_sigterm_watch_spares_a_held_block_and_a_forked_child(tmp_path):
    """The watch took a SIGTERM held through a checkpoint's swap for one that torch blocked, and
    ended the process mid-swap after 5 s; a child forked meanwhile kept its pipe open, so the
    command waited for the child to leave the block, and the child's own SIGTERM ended the parent."""
    for name, code, printed in (("held", HELD_UNDER_THE_WATCH, "the held block ended\nterminated after it\n"),
                                ("forked", FORKED_UNDER_THE_WATCH, "alive, left the block in 0 s\n")):
        script = tmp_path / f"{name}.py"
        script.write_text(code)
        result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
        assert (result.returncode, result.stdout) == (0, printed), result.stderr[-2000:]


def test_what_a_command_prints_is_utf8_whatever_the_locale(monkeypatch):
    """Under a Latin-1 locale a translation into Chinese failed to print once translated."""
    from lstmkit.cli import write_stdout_in_utf8

    class Terminal(io.TextIOWrapper):
        def isatty(self):
            return True

    monkeypatch.delenv("PYTHONIOENCODING", raising=False)
    for stream, expected in ((io.TextIOWrapper, "天气 fünf \udce9\n".encode("utf-8", "surrogateescape")),
                             (Terminal, b"\\u5929\\u6c14 f\xfcnf \xe9\n")):  # the path's byte as it came
        written = io.BytesIO()
        monkeypatch.setattr("sys.stdout", stream(written, encoding="latin-1"))
        write_stdout_in_utf8()
        print("天气 fünf \udce9")  # the last: a byte of a path the locale did not decode (LC_ALL=C)
        sys.stdout.flush()
        assert written.getvalue() == expected, stream.__name__


def test_text_typed_under_an_ascii_locale_is_read_as_the_utf8_the_terminal_wrote():
    from lstmkit.cli.arguments import typed_text

    assert typed_text("天气".encode().decode("ascii", "surrogateescape")) == "天气"
    assert typed_text("plain ü") == "plain ü"


def test_files_written_under_an_ascii_locale_are_utf8(tmp_path):
    """`speech eval --out` wrote its transcripts in the locale's encoding (or failed at the end)."""
    path = tmp_path / "out.csv"
    code = "import sys; from lstmkit.files import write_csv; write_csv(sys.argv[1], ['text'], [['f\\u00fcnf \\u4e94']])"
    environment = {**os.environ, "LC_ALL": "C", "PYTHONCOERCECLOCALE": "0", "PYTHONUTF8": "0"}
    subprocess.run([sys.executable, "-c", code, str(path)], env=environment, check=True)
    assert path.read_bytes().decode("utf-8").splitlines() == ["text", "fünf 五"]


def test_forecast_backtest_scores_the_baselines_named_and_fits_no_other(tmp_path, capsys, monkeypatch):
    """One table's backtest fitted every baseline at every origin, AutoARIMA included (44-83 s
    an origin on an hourly M4 series), whatever the user wanted compared."""
    from lstmkit.series import baselines

    fitted = []
    original = baselines.statistical_model
    monkeypatch.setattr(baselines, "statistical_model", lambda name, season: fitted.append(name) or original(name,
                                                                                                             season))
    rows = [f"{day},{math.sin(day / 3):.6f}" for day in range(120)]
    (tmp_path / "s.csv").write_text("t,y\n" + "\n".join(rows) + "\n")
    code, out, err = run_cli(["forecast", "backtest", str(tmp_path / "s.csv"), "--time", "t", "--target", "y",
                              "--horizon", "4", "--steps", "2", "--hidden-size", "8", "--baselines", "naive,drift",
                              "--backtest-baselines", "ets", "--out", str(tmp_path / "run")], capsys)
    assert code == 0, err
    scored = json.loads((tmp_path / "run" / "results.json").read_text())["backtest"]
    assert list(scored) == ["model", "ets", "chosen"]  # chosen among naive and drift, which combine to none
    assert set(fitted) == {"ets"}
    assert "\nets " in out and "\narima " not in out


@pytest.mark.parametrize("given, message", [
    (["--backtest-baselines", "naive,xx"], "argument --backtest-baselines: baselines must be among naive, "
     "seasonal_naive, drift, ets, arima, theta, naive2 (or none, alone: the backtest scores the model alone), got "
     "'xx'"),
    (["--backtest-baselines", "naive,none"], "argument --backtest-baselines: baselines must be among naive, "
     "seasonal_naive, drift, ets, arima, theta, naive2 (or none, alone: the backtest scores the model alone), got "
     "'none'"),
    (["--backtest-baselines", "naive", "--id", "t"], "--backtest-baselines is for one table: a long table's backtest "
     "(--id) scores --baselines and Naive2, OWA's reference; got --backtest-baselines naive with --id t"),
])
def test_forecast_backtest_baselines_are_checked_before_anything_runs(given, message, tmp_path, capsys):
    (tmp_path / "s.csv").write_text("t,y\n1,2\n")
    code, out, err = run_cli(["forecast", "backtest", str(tmp_path / "s.csv"), "--time", "t", "--target", "y",
                              "--horizon", "4", *given], capsys)
    assert (code, out) == (2, "") and message in err


def test_lines_for_people_go_to_stderr_where_an_output_is_stdout_itself(tmp_path, monkeypatch):
    """`--json /dev/stdout` put the scores' summary and "wrote /dev/stdout" around the JSON:
    `| jq` failed. The reader of stdout gets the data alone."""
    from lstmkit.cli.arguments import report_stream

    with open(tmp_path / "captured", "w") as stdout:
        monkeypatch.setattr(sys, "stdout", stdout)
        assert report_stream(None, str(tmp_path / "scores.json")) is stdout  # a file of its own
        assert report_stream(str(tmp_path / "captured")) is sys.stderr  # stdout itself, as /dev/stdout is
    monkeypatch.setattr(sys, "stdout", io.StringIO())  # no file behind it
    assert report_stream(str(tmp_path / "captured")) is sys.stdout


def test_a_refused_setting_is_named_by_its_flag_where_the_message_is_its_own(tmp_path, capsys):
    """`lr must be a finite number` named the config field alone; a message about several
    settings keeps the words it has (tie_weights is named as a setting there, not as given)."""
    (tmp_path / "text.txt").write_text("to be or not to be\n" * 40)
    code, _, err = run_cli(["lm", "train", str(tmp_path / "text.txt"), "--lr", "inf", "--steps", "1"], capsys)
    assert code == 2 and err.endswith("lstmkit: error: lr (--lr) must be a finite number, got inf\n")
    code, _, err = run_cli(["lm", "train", str(tmp_path / "text.txt"), "--level", "word", "--embedding-size", "64",
                            "--hidden-size", "32", "--steps", "1"], capsys)
    assert code == 2 and "lstmkit: error: tie_weights (at word level the default) shares" in err


def test_a_dangling_symbolic_link_as_the_output_folder_is_refused_before_any_work(tmp_path, capsys):
    """mkdir failed after the run was announced, with a bare "[Errno 17] File exists"."""
    (tmp_path / "out").symlink_to(tmp_path / "nowhere")
    (tmp_path / "text.txt").write_text("to be or not to be\n" * 40)
    with pytest.raises(SystemExit) as stopped:
        main(["lm", "train", str(tmp_path / "text.txt"), "--steps", "1", "--out", str(tmp_path / "out")])
    captured = capsys.readouterr()
    assert (stopped.value.code, captured.out) == (2, "")
    assert captured.err.endswith(f"argument --out: {tmp_path / 'out'} is a symbolic link to {tmp_path / 'nowhere'}, "
                                 "which does not exist: create the folder it points to, or choose another\n")
    (tmp_path / "loop").symlink_to(tmp_path / "back")  # a loop was called missing too
    (tmp_path / "back").symlink_to(tmp_path / "loop")
    with pytest.raises(SystemExit):
        main(["lm", "train", str(tmp_path / "text.txt"), "--steps", "1", "--out", str(tmp_path / "loop")])
    assert capsys.readouterr().err.endswith(f"argument --out: {tmp_path / 'loop'} is a symbolic link to "
                                            f"{tmp_path / 'back'}, which leads back to itself through symbolic links: "
                                            "choose another folder\n")
    with pytest.raises(SystemExit):  # a loop above the folder, and a loop given to read
        main(["lm", "train", str(tmp_path / "text.txt"), "--steps", "1", "--out", str(tmp_path / "loop" / "run")])
    assert capsys.readouterr().err.endswith(f"argument --out: {tmp_path / 'loop' / 'run'} cannot be reached: "
                                            f"{tmp_path / 'loop'} leads back to itself through symbolic links; choose "
                                            "another folder\n")
    with pytest.raises(SystemExit):
        main(["lm", "train", str(tmp_path / "loop"), "--steps", "1"])
    assert capsys.readouterr().err.endswith(f"argument text: {tmp_path / 'loop'} leads back to itself through "
                                            "symbolic links (expected a UTF-8 text file)\n")


def test_a_closed_stdout_ends_the_command_without_a_traceback(tmp_path):
    """`lstmkit ... >&-`: Python sets sys.stdout to None, and the final flush raised AttributeError."""
    completed = subprocess.run([sys.executable, "-m", "lstmkit", "cells"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True, close_fds=True,
                               preexec_fn=lambda: os.close(1))
    assert (completed.returncode, completed.stderr) == (0, "")
