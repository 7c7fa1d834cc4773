"""`forecast fit --resume` and `backtest --resume`: every network's training run is
checkpointed in out/training; an interrupted fit continues from them, bit for bit, keeps the
networks that had finished, and refuses other data."""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, replace
import os
import re
import warnings

import numpy as np
import pytest

from helpers import Killed, another_run_could_claim
from lstmkit.forecast import Forecaster
from lstmkit.pipelines.forecast_report import backtest_then_refit, run_backtest
from lstmkit.pipelines.configs import ForecasterConfig
from lstmkit.training import loop
from lstmkit.training.loop import check_same_settings

PANEL = dict(id="id", horizon=4, season=4, baselines=("naive",), normalisation="standard,log", hidden_size=8,
             num_layers=1, epochs=3, batch_size=16, seed=0)


def panel_table(tmp_path, bump: float = 0.0):
    steps = np.arange(48)
    rows = [(name, step + 1, level * (1 + 0.02 * step) * (1 + 0.3 * np.sin(np.pi * step / 2)))
            for name, level in (("a", 10.0), ("b", 200.0), ("c", 50.0)) for step in steps]
    path = tmp_path / f"long{bump:g}.csv"
    path.write_text("id,t,y\n" + "".join(f"{name},{step},{value + bump * (step == 1)}\n" for name, step, value in rows))
    return path


def dies_in_network(monkeypatch, network: int, step: int) -> None:
    """Make the training core die (raise Killed) at `step` of the `network`-th run it trains
    (counted from 1), after the evaluations before it were checkpointed."""
    real, runs = loop.budget_spent, []

    def dies(config, progress, step_limit):
        if progress.step == 0 and not any(run is progress for run in runs):
            runs.append(progress)
        if len(runs) == network and progress is runs[-1] and progress.step == step:
            raise Killed
        return real(config, progress, step_limit)

    monkeypatch.setattr(loop, "budget_spent", dies)


def test_a_fit_killed_in_its_second_network_resumes_to_the_uninterrupted_model(tmp_path, monkeypatch):
    data = panel_table(tmp_path)
    forecaster = Forecaster("t", "y", **PANEL)
    whole = backtest_then_refit(forecaster, data, tmp_path / "whole")
    assert forecaster.run_folder is None, "the caller's forecaster goes on fitting in memory"
    dies_in_network(monkeypatch, network=2, step=10)  # the backtest's log network, after 1 of its 3 epochs
    with pytest.raises(Killed):
        backtest_then_refit(Forecaster("t", "y", **PANEL), data, tmp_path / "resumed")
    monkeypatch.undo()
    training = tmp_path / "resumed" / "training" / "backtest"
    finished = (training / "standard" / "seasonal" / "last" / "model.safetensors").stat().st_mtime_ns
    results = json.loads((training / "standard" / "seasonal" / "results.json").read_text())
    (training / "standard" / "seasonal" / "results.json").unlink()  # as if killed just before writing it
    assert not (training / "log" / "seasonal" / "results.json").exists()
    saved = json.loads((training / "log" / "seasonal" / "last" / "config.json").read_text())["progress"]
    assert [row["epoch"] for row in saved["history"]] == [1], "the last checkpoint: the first epoch's end"
    resumed = backtest_then_refit(Forecaster("t", "y", **PANEL), data, tmp_path / "resumed", resume=True)
    assert (training / "standard" / "seasonal" / "last" / "model.safetensors").stat().st_mtime_ns == finished, \
        "the finished network was kept, not trained again"
    assert json.loads((training / "standard" / "seasonal" / "results.json").read_text()) == results
    assert (tmp_path / "resumed" / "model" / "model.safetensors").read_bytes() == \
        (tmp_path / "whole" / "model" / "model.safetensors").read_bytes()
    assert resumed.backtest.scores.equals(whole.backtest.scores)
    assert resumed.final.best_epoch == whole.final.best_epoch and resumed.final.layout == whole.final.layout


def test_one_table_killed_in_its_refit_resumes_to_the_uninterrupted_model(tmp_path, monkeypatch):
    months = np.arange(72)
    path = tmp_path / "series.csv"
    path.write_text("t,y\n" + "".join(f"{1950 + month // 12}-{month % 12 + 1:02d}-01,"
                                      f"{5 + np.sin(month / 2) + 0.05 * month}\n" for month in months))
    options = dict(horizon=6, hidden_size=8, num_layers=1, epochs=4, batch_size=8, seed=0, baselines=("naive",))
    backtest_then_refit(Forecaster("t", "y", **options), path, tmp_path / "whole")
    dies_in_network(monkeypatch, network=3, step=3)  # base auto: two backtest networks, then the refit
    with pytest.raises(Killed):
        backtest_then_refit(Forecaster("t", "y", **options), path, tmp_path / "resumed")
    monkeypatch.undo()
    assert sorted(folder.name for folder in (tmp_path / "resumed" / "training" / "backtest").iterdir()) == \
        ["last", "seasonal"]
    backtest_then_refit(Forecaster("t", "y", **options), path, tmp_path / "resumed", resume=True)
    assert (tmp_path / "resumed" / "model" / "model.safetensors").read_bytes() == \
        (tmp_path / "whole" / "model" / "model.safetensors").read_bytes()


def test_resume_refuses_other_data_and_a_folder_without_a_fit_and_a_new_fit_refuses_one_with_runs(tmp_path,
                                                                                               monkeypatch):
    data = panel_table(tmp_path)
    dies_in_network(monkeypatch, network=1, step=10)
    with pytest.raises(Killed):
        backtest_then_refit(Forecaster("t", "y", **PANEL), data, tmp_path / "run")
    monkeypatch.undo()
    with pytest.raises(ValueError, match=re.escape(f"{tmp_path / 'run'} holds training runs already "
                                                   f"({tmp_path / 'run' / 'training'}): pass --resume to continue "
                                                   "them (finished networks are kept), or choose another --out")):
        backtest_then_refit(Forecaster("t", "y", **PANEL), data, tmp_path / "run")
    with pytest.raises(ValueError, match=r"backtest/standard/seasonal was trained on other data; --resume needs the "
                                         r"same \(windows: 2,808 bytes, SHA-256 \w+… in the run, 2,808 bytes, "
                                         r"SHA-256 \w+… now\)"):
        backtest_then_refit(Forecaster("t", "y", **PANEL), panel_table(tmp_path, bump=1.0), tmp_path / "run",
                            resume=True)
    with pytest.raises(ValueError, match=re.escape("was trained with other settings; --resume needs the same ones "
                                                   "(hidden_size: 8 in the run, 16 now)")):
        backtest_then_refit(Forecaster("t", "y", **{**PANEL, "hidden_size": 16}), data, tmp_path / "run",
                            resume=True)
    # The horizon makes the windows: the setting, not the data, is named.
    with pytest.raises(ValueError, match=re.escape("was trained with other settings; --resume needs the same ones "
                                                   "(horizon: 4 in the run, 3 now)")):
        backtest_then_refit(Forecaster("t", "y", **{**PANEL, "horizon": 3}), data, tmp_path / "run", resume=True)
    # A setting left to its default is said so, not as Python's None.
    with pytest.raises(ValueError, match=re.escape("was trained with other settings; --resume needs the same ones "
                                                   "(lookback: not given (its default) in the run, 30 now)")):
        backtest_then_refit(Forecaster("t", "y", **{**PANEL, "lookback": 30}), data, tmp_path / "run", resume=True)
    # So do the rows held out (the default, the horizon, in the run): not the data, as they once were.
    with pytest.raises(ValueError, match=re.escape(f"{tmp_path / 'run'} was backtested with other settings; --resume "
                                                   "needs the same ones (holdout: 4 in the run, 3 now)")):
        backtest_then_refit(Forecaster("t", "y", **PANEL), data, tmp_path / "run", holdout=3, resume=True)
    with pytest.raises(FileNotFoundError, match=re.escape(f"{tmp_path / 'new'} holds no fit or backtest to resume (no "
                                                          f"{tmp_path / 'new' / 'training'}); start one without "
                                                          "--resume")):
        backtest_then_refit(Forecaster("t", "y", **PANEL), data, tmp_path / "new", resume=True)
    backtest_then_refit(Forecaster("t", "y", **PANEL), data, tmp_path / "run", resume=True)
    with pytest.raises(ValueError, match="already holds a fitted forecaster"):
        backtest_then_refit(Forecaster("t", "y", **PANEL), data, tmp_path / "run", resume=True)


def test_the_commands_take_resume(tmp_path, capsys):
    from lstmkit.cli import main

    data = panel_table(tmp_path)
    common = [str(data), "--id", "id", "--time", "t", "--target", "y", "--horizon", "4", "--season", "4",
              "--hidden-size", "8", "--num-layers", "1", "--epochs", "1", "--baselines", "naive"]
    main(["forecast", "backtest", *common, "--out", str(tmp_path / "b")])
    first = json.loads((tmp_path / "b" / "results.json").read_text())["backtest"]
    main(["forecast", "backtest", *common, "--out", str(tmp_path / "b"), "--resume"])  # every network kept
    assert json.loads((tmp_path / "b" / "results.json").read_text())["backtest"] == first
    with pytest.raises(SystemExit) as stopped:
        main(["forecast", "backtest", *common, "--resume"])
    assert stopped.value.code == 2
    assert capsys.readouterr().err.endswith("lstmkit: error: resume needs the folder of the run to continue (--out)\n")


def test_a_backtest_killed_before_its_first_checkpoint_starts_again_and_an_older_run_is_not_misrecorded(
        tmp_path, monkeypatch):
    """The holdout's record, written as a backtest begins, was taken for a run (a plain retry
    refused); an older run without it, resumed with the wrong holdout, recorded that one. A
    backtest stopped (or refused, as by a batch the processes cannot share) before its first
    checkpoint left the record behind; one killed outright still does, and a retry takes it."""
    months = np.arange(72)
    path = tmp_path / "series.csv"
    path.write_text("t,y\n" + "".join(f"{1950 + month // 12}-{month % 12 + 1:02d}-01,"
                                      f"{5 + np.sin(month / 2) + 0.05 * month}\n" for month in months))
    options = dict(horizon=6, hidden_size=8, num_layers=1, epochs=2, batch_size=8, seed=0, baselines=("naive",),
                   base="seasonal")
    dies_in_network(monkeypatch, network=1, step=1)  # before the first epoch's end, its first checkpoint
    with pytest.raises(Killed):
        run_backtest(Forecaster("t", "y", **options), path, 6, tmp_path / "run")
    monkeypatch.undo()
    assert not (tmp_path / "run").exists(), "a backtest that began nothing to resume leaves nothing"
    (tmp_path / "run" / "training").mkdir(parents=True)
    (tmp_path / "run" / "training" / "holdout.json").write_text('{"holdout": 6, "horizon": 6}')  # as kill -9 leaves it
    (tmp_path / "file").mkdir()
    (tmp_path / "file" / "training").write_text("")  # a file where the runs go: refused by name, not by errno
    with pytest.raises(ValueError, match=re.escape(f"{tmp_path / 'file'} holds training runs already")):
        run_backtest(Forecaster("t", "y", **options), path, 6, tmp_path / "file")
    result = run_backtest(Forecaster("t", "y", **options), path, 12, tmp_path / "run")  # again, without --resume
    assert result.backtest.holdout == 12
    record = tmp_path / "run" / "training" / "holdout.json"
    assert json.loads(record.read_text()) == {"holdout": 12, "horizon": 6}
    record.unlink()  # as a backtest begun before the record left it
    with pytest.raises(ValueError, match="backtest/seasonal was trained on other data; --resume needs the same"):
        run_backtest(Forecaster("t", "y", **options), path, 6, tmp_path / "run", resume=True)
    assert not record.exists()
    resumed = run_backtest(Forecaster("t", "y", **options), path, 12, tmp_path / "run", resume=True)
    assert resumed.backtest.scores.equals(result.backtest.scores)
    for damaged, message in (("[]", "holds a JSON list, expected an object (the holdout and horizon the backtest "
                                    "began with)"), ("[", "is not JSON: Expecting value at line 1 column 2")):
        record.write_text(damaged)  # once: AttributeError 'list' object has no attribute 'get'; a nameless JSON error
        with pytest.raises(ValueError, match=f"^{re.escape(f'{record} {message}')}$"):
            run_backtest(Forecaster("t", "y", **options), path, 12, tmp_path / "run", resume=True)


@pytest.mark.skipif(os.name == "nt", reason="folders are locked where the system has flock")
def test_a_fit_holds_its_folder_from_its_checks_to_its_model(tmp_path, monkeypatch):
    """Each network's run held its own folder only: a second `forecast fit --resume` into the
    folder got in while the first scored its baselines or refitted, and both wrote results.json,
    backtest.csv and model/ there."""
    data, out, seen = panel_table(tmp_path), tmp_path / "fit", []
    fit = Forecaster.fit

    def watched_fit(forecaster, table):
        seen.append(another_run_could_claim(out))
        return fit(forecaster, table)

    monkeypatch.setattr(Forecaster, "fit", watched_fit)
    backtest_then_refit(Forecaster("t", "y", **{**PANEL, "normalisation": "standard", "epochs": 1}), data, out)
    assert seen == [False]  # at the refit, after the backtest
    assert another_run_could_claim(out)



def test_a_fit_and_another_pipelines_run_refuse_each_others_stopped_folder(tmp_path):
    """An `lm train` stopped before its results.json took a `forecast fit` into its folder, and a
    fit stopped before its model took an `lm train`: each replaced the other's results.json."""
    stopped_lm = tmp_path / "lm"
    (stopped_lm / "last").mkdir(parents=True)
    (stopped_lm / "last" / "config.json").write_text('{"kind": "language_model"}')
    with pytest.raises(ValueError, match=re.escape(f"{stopped_lm} holds a 'language_model' run, where a forecast fit "
                                                   "or backtest cannot start; choose another folder")):
        run_backtest(Forecaster("t", "y", horizon=2), "never read.csv", 2, stopped_lm)
    stopped_fit = tmp_path / "fit"
    network = stopped_fit / "training" / "backtest" / "model" / "seasonal" / "last"
    network.mkdir(parents=True)
    (network / "config.json").write_text('{"kind": "forecast-training"}')
    for resume in (False, True):
        with pytest.raises(ValueError, match=re.escape(f"{stopped_fit} holds another command's training runs "
                                                       f"({stopped_fit / 'training'}), where a 'language_model' run "
                                                       "cannot start; choose another folder")):
            loop.check_run_folder(stopped_fit, resume, "language_model")
    loop.check_run_folder(tmp_path / "new", False, "language_model")


def test_a_fit_resumed_with_a_smaller_budget_says_it_keeps_a_network_past_it(tmp_path, monkeypatch):
    """Networks past the budget a resume gives (--epochs 1), one stopped at epoch 2 of 3 and one
    that had finished its 3, were kept without a word (and the refit then named their epochs,
    where the command said 1)."""
    data = panel_table(tmp_path)
    dies_in_network(monkeypatch, network=2, step=13)  # the log network, after 2 of its 3 epochs (6 steps each)
    with pytest.raises(Killed):
        backtest_then_refit(Forecaster("t", "y", **PANEL), data, tmp_path / "run")
    monkeypatch.undo()
    network = tmp_path / "run" / "training" / "backtest" / "log" / "seasonal"
    assert json.loads((network / "last" / "config.json").read_text())["progress"]["step"] == 12
    (network / ".last.new.kill9").mkdir()  # what a save killed by SIGKILL leaves
    finished = tmp_path / "run" / "training" / "backtest" / "standard" / "seasonal"  # its 3 epochs, 18 steps, done
    with pytest.warns(UserWarning) as warned:
        backtest_then_refit(Forecaster("t", "y", **{**PANEL, "epochs": 1}), data, tmp_path / "run", resume=True)
    said = [str(warning.message) for warning in warned if "past the" in str(warning.message)]
    assert said == [f"{folder} stopped at step {step}, past the 6 steps of the budget given now: kept as it stands, "
                    "not trained further"
                    for folder, step in ((finished, 18), (network, 12))]
    assert json.loads((network / "last" / "config.json").read_text())["progress"]["step"] == 12, "not trained further"
    assert not list(network.glob(".last.new.*")), "it is complete: what a killed save left beside it goes"


def test_a_finished_network_resumed_with_other_epochs_of_steps_is_not_said_past_its_budget(tmp_path, monkeypatch):
    """Networks that finished their 3 epochs, resumed where an epoch holds one step fewer (under
    torchrun an epoch's last batch may join the one before), were said to be past a budget that
    had not changed: the limit was counted in the new epochs' steps."""
    data = panel_table(tmp_path)
    run_backtest(Forecaster("t", "y", **PANEL), data, None, tmp_path / "run")
    real = loop.epoch_steps
    monkeypatch.setattr(loop, "epoch_steps", lambda job: real(job) - 1)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*past the .* steps of the budget")
        run_backtest(Forecaster("t", "y", **PANEL), data, None, tmp_path / "run", resume=True)


def test_a_fit_resumed_with_another_base_is_refused(tmp_path):
    """Each base's run has its own folder: another --base trained anew beside the runs, unchecked."""
    path = tmp_path / "series.csv"
    path.write_text("t,y\n" + "".join(f"{step + 1},{5 + np.sin(step / 2) + 0.05 * step}\n" for step in range(60)))
    options = dict(horizon=4, season=4, hidden_size=8, num_layers=1, epochs=1, batch_size=8, seed=0,
                   baselines=("naive",))
    backtest_then_refit(Forecaster("t", "y", base="last", **options), path, tmp_path / "run")
    shutil.rmtree(tmp_path / "run" / "model")
    with pytest.raises(ValueError, match=re.escape(
            f"{tmp_path / 'run' / 'training' / 'backtest'} holds the training run of base last; --resume needs the "
            "same bases (--base: last in the run, seasonal now)")):
        backtest_then_refit(Forecaster("t", "y", base="seasonal", **options), path, tmp_path / "run", resume=True)
    assert not (tmp_path / "run" / "training" / "backtest" / "seasonal").exists()


def test_a_refit_begun_with_the_settings_of_validation_resumes_without_them(tmp_path):
    """An older version's refit kept the user's on_plateau and validation_fraction, which acted
    on nothing there; its resume, now given the defaults, was refused as other settings."""
    refit = ForecasterConfig(time="t", target="y", horizon=3, early_stopping=False)
    saved = json.loads(json.dumps(asdict(refit))) | {"on_plateau": "anneal", "validation_fraction": 0.3, "patience": 3}
    check_same_settings(saved, refit, tmp_path)
    with pytest.raises(ValueError, match="on_plateau: 'anneal' in the run, 'stop' now"):
        check_same_settings(saved, replace(refit, early_stopping=True), tmp_path)


def test_a_fit_refits_one_table_without_the_settings_of_validation_and_refuses_nt_asgd(tmp_path):
    """The refit trains on every window: it took the backtest's patience along (now refused
    without validation windows), and nt-asgd, which never began averaging there, was plain SGD."""
    path = tmp_path / "series.csv"
    path.write_text("t,y\n" + "".join(f"{step + 1},{5 + np.sin(step / 2) + 0.05 * step}\n" for step in range(60)))
    options = dict(horizon=6, hidden_size=8, num_layers=1, epochs=2, batch_size=8, seed=0, baselines=("naive",))
    fitted = backtest_then_refit(Forecaster("t", "y", patience=3, **options), path, tmp_path / "run")
    saved = Forecaster.load(tmp_path / "run" / "model").config
    assert (saved.early_stopping, saved.patience, fitted.backtest.model.config.patience) == (False, 50, 3)
    with pytest.raises(ValueError, match=re.escape(
            "forecast fit refits one table on every window, with no validation windows, which nt-asgd needs to begin "
            "averaging: give optimizer adamw or sgd")):
        backtest_then_refit(Forecaster("t", "y", optimizer="nt-asgd", lr=0.1, **options), path, tmp_path / "asgd")
    assert not (tmp_path / "asgd").exists()
