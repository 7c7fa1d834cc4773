"""The one training loop: every pipeline's model trains here.

    for each step, until a budget is spent (or the job is solved, or patience runs out):
        lr      <- warm-up, then cosine decay over the budget (schedule.learning_rate), or,
                   once patience ran out with on_plateau "anneal", over `patience` evaluations
        loss    <- job.train_loss(model, step)   under torch.autocast, on this process's shard
        backward (DistributedDataParallel averages the gradients over the processes),
        clip the global gradient norm, optimizer step (through the gradient scaler for float16)
        every eval_every steps: job.evaluate() -> a row of metrics.csv; best/ and last/
        (NT-ASGD, or with ema_decay the weights' moving average: evaluations, best/ and the
        final model use the averaged weights)

With a run folder, `best/` (the lowest `selection_metric` so far, or the highest for a job
whose higher_is_better is set) and `last/` (with the
optimizer moments, the job's carried state, the random-number state and the progress) are
written atomically at every evaluation, by rank 0 alone; a run killed at any moment resumes
from its last evaluation and, resumed, computes exactly what it would have computed
uninterrupted (with the same number of processes; with another it continues from the same
weights, moments and data position).
"""

from __future__ import annotations

import copy
import json
import math
import os
import platform
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor

from lstmkit.caller import warn_at_caller
from lstmkit.checkpoint import (CONFIG_FILE, TRAINING_FILE, WEIGHTS_FILE, CheckpointError, check_kind,
                                check_replaceable, existing, held_kind, load_checkpoint, read_config,
                                read_extra_tensors, remove_staging, run_folder, save_checkpoint, trained_model)
from lstmkit.models.modes import evaluating
from lstmkit.files import (
    check_not_in_use, check_nothing_overwritten, check_output_folder, check_own_files, claimed_folder, write_csv,
    write_json,
)
from lstmkit.training.config import ADDED_SETTINGS, TrainingConfig, check_config, current_names, flag_value
from lstmkit.training.device import Precision, check_engines, resolve_device
from lstmkit.training.distributed import Processes, announce
from lstmkit.training.job import Job, checked_loss, checked_scores, epoch_steps
from lstmkit.training.progress import Progress, bars_closed_on_failure
from lstmkit.training.optimizers import (
    adopt_average, averaged_weights, averaging, build_optimizer, set_learning_rate, should_average,
    update_moving_average,
)
from lstmkit.training.schedule import annealed_progress, decay_progress, learning_rate

# Steps after which the progress line estimates, from the speed so far, the steps a time
# budget holds (the first steps are the slowest: too few make a poor estimate).
ESTIMATE_AFTER_STEPS = 10


class TrainingDiverged(RuntimeError):
    """A loss that is no longer a finite number: training stops, keeping what it wrote.

    step: the step at which it diverged; history: its evaluations before (as
    `TrainingRun.history`); seconds: its seconds of training, so that a caller comparing runs
    (`lstmkit task`) can report this one and go on."""

    def __init__(self, message: str, step: int = 0, history: list[dict] | None = None, seconds: float = 0.0) -> None:
        super().__init__(message)
        self.step, self.history, self.seconds = step, list(history or ()), seconds


@dataclass
class RunState:
    """Where a run is: its step, items and seconds of training so far, where the learning
    rate's decay began, the best evaluation and every evaluation. Saved in last/ so that
    --resume continues from it."""

    step: int = 0
    items: int = 0
    train_seconds: float = 0.0
    decay_from_seconds: float | None = None  # the training seconds at which the warm-up ended
    best_value: float = math.inf  # of the selection metric, negated when higher is better
    best_step: int | None = None
    history: list[dict] = field(default_factory=list)
    scaler: dict = field(default_factory=dict)
    averaging_from: int | None = None  # the step at which NT-ASGD began to average the weights
    annealing_from: int | None = None  # the step at which a plateau began the anneal (on_plateau "anneal")
    annealing_decay: float = 0.0  # how far down the cosine the rate was then
    # Each part of the run, a fresh start and every resume (`Trainer.segment`): the step it began
    # at, the settings a resume may change, where it trained and on which versions; the config
    # alone holds the last part's, which a run rebuilt from it would take for the whole run's.
    segments: list[dict] = field(default_factory=list)
    # The steps of the evaluations a budget added where it ended between scheduled ones
    # (`scheduled_evaluations`), marked as they were made, whatever eval_every a resume gives.
    unscheduled: list[int] = field(default_factory=list)


@dataclass
class TrainingRun:
    """The outcome of `Trainer.run`: every evaluation, the best one, and the throughput."""

    history: list[dict]
    best: dict | None
    steps: int
    seconds: float
    items_per_second: float
    device: str
    precision: str
    processes: int

    def runtime(self) -> dict:
        """Where the run trained, for its results.json."""
        return {"device": self.device, "precision": self.precision, "processes": self.processes}


def describe_runtime(device: str, precision: str, processes: int) -> str:
    """Where a run trained, for the commands' last lines: "cpu, precision 32, 2 processes"."""
    return f"{device}, precision {precision}, {processes} process{'es' if processes > 1 else ''}"


def estimated_steps(config: TrainingConfig, progress: RunState, step_limit: int | None, started_step: int,
                    started_seconds: float) -> int | None:
    """The steps the run will have taken when its budget is spent, for the progress line: the
    step limit, or, under a time budget, what the rest of it holds at this session's speed
    (after ESTIMATE_AFTER_STEPS steps), whichever is fewer."""
    steps = progress.step - started_step
    if config.time_budget is None or steps < ESTIMATE_AFTER_STEPS:
        return step_limit
    seconds_per_step = (progress.train_seconds - started_seconds) / steps
    estimate = progress.step + int(max(0.0, config.time_budget - progress.train_seconds) / max(seconds_per_step, 1e-9))
    return estimate if step_limit is None else min(step_limit, estimate)


def warn_short_warmup(config: TrainingConfig, steps: int, spent: bool) -> None:
    """Warn where the budget ends before the warm-up does: the rate never reaches its peak
    (`steps`: the budget's, known before the run, or those a `spent` time budget held)."""
    if steps < config.warmup:
        holds = "held" if spent else "holds"
        stops = "stopped" if spent else "stops"
        warn_at_caller(f"the budget {holds} {steps} steps, fewer than the {config.warmup} of warm-up: the learning "
                       f"rate {stops} at {(steps / config.warmup):.0%} of its peak {config.lr:g}; give a larger "
                       "budget or a shorter warmup (--warmup)")


def scheduled_evaluations(progress: RunState) -> list[dict]:
    """The rows of the run's history on its schedule (every eval_every steps, or epoch): those
    patience and NT-ASGD count and decide at. An evaluation a budget added where it ended
    between them is recorded, and may be the best, but is not among them: a run resumed with a
    larger budget holds such a row mid-way, and counted it would stop or average elsewhere than
    a run given the larger budget at once (where that row was not its best)."""
    return [row for row in progress.history if row["step"] not in progress.unscheduled]


def patience_spent(config: TrainingConfig, progress: RunState, metric: str) -> bool:
    """Whether the latest evaluation, one on the schedule (`scheduled_evaluations`), is the
    `patience`-th such since the best that gave no better `metric`; an evaluation that did not
    give the metric (one not scored) is not counted."""
    counted = scheduled_evaluations(progress)
    since_best = sum(1 for row in counted if row["step"] > (progress.best_step or 0) and row.get(metric) is not None)
    latest_counted = bool(counted) and counted[-1] is progress.history[-1] and counted[-1].get(metric) is not None
    return config.patience is not None and latest_counted and since_best >= config.patience


class StopReason(NamedTuple):
    """Why a run ends before its budget, and what lets a resumed run go on (None: nothing)."""

    why: str
    remedy: str | None


def stop_reason(job: Job, config: TrainingConfig, progress: RunState, scores: dict,
                eval_every: int) -> StopReason | None:
    """Why the run ends at the evaluation that gave `scores`, before its budget; None where it
    goes on. A resumed run asks it of its last evaluation, with the settings given now."""
    metric = job.selection_metric
    anneal_steps = (config.patience or 0) * eval_every
    goal = job.goal_reached(scores)
    if goal is not None and not isinstance(goal, str):  # False would read as a reason
        raise TypeError(f"{type(job).__name__}.goal_reached(scores) must return why training stops there (a str) or "
                        f"None, got {goal!r}")
    if goal is not None:
        return StopReason(f"its last evaluation {goal}", job.goal_remedy)
    if config.on_plateau == "stop" and patience_spent(config, progress, metric):
        return StopReason(f"the {metric} had not improved for patience = {config.patience} evaluations",
                          "a larger patience continues it")
    if progress.annealing_from is not None and progress.step >= progress.annealing_from + anneal_steps:
        return StopReason(f"its learning rate had annealed to its floor over {anneal_steps} steps after the {metric} "
                          "stopped improving", "a larger patience continues it")
    return None


def run_files(directory: str | Path) -> dict[str, Path]:
    """The files of the run an evaluation was given (its folder or a checkpoint in it,
    `run_folder`), by what they are: its results, its metrics and the files of its checkpoints
    (best/, last/, or the checkpoint given). Written over by `speech eval --json
    RUN/results.json`, they were lost without a word."""
    run = run_folder(directory)
    if not run.exists():  # nothing to protect: the command says the run does not exist
        return {}
    files = {"the run's results": run / "results.json", "the run's metrics": run / "metrics.csv"}
    for checkpoint in dict.fromkeys((existing(run / "best"), existing(run / "last"), existing(Path(directory)))):
        if (checkpoint / CONFIG_FILE).is_file():
            files.update({f"the checkpoint's {path.name} ({checkpoint.name}/)": path
                          for path in checkpoint.iterdir() if path.is_file()})
    return files


def check_run_folder(out: Path | None, resume: bool, kind: str | None = None, figures: tuple[str, ...] = ()) -> None:
    """Refuse `out` where a run cannot start there (it holds a run, or files a run would
    overwrite: its own, and the `figures` the pipeline draws there, where lstmkit did not write
    them) or, with `resume`, cannot continue there (it holds no run, or, given the `kind` of
    checkpoint the run writes, a run of another pipeline). The trainer checks at its start; a
    pipeline checks before its own work (learning a vocabulary), and a command before it
    announces the run."""
    if out is not None:  # a file, or a folder not to be written: from Python, named by its path alone
        check_output_folder(out, option="")
    if out is not None and Processes.from_environment().main:  # under torchrun, rank 0 holds the folder
        check_not_in_use(out)
    held = None if out is None or kind is None else held_kind(existing(out / "last"))
    if held is not None and held != kind:
        wanted = f"not a {kind!r} run to resume" if resume else f"where a {kind!r} run cannot start"
        raise ValueError(f"{out} holds a {held!r} run, {wanted}; choose another folder")
    nested = None if out is None or kind is None else nested_runs(out)
    if nested is not None:  # a forecast fit's or backtest's, whose results.json a run here would replace
        raise ValueError(f"{out} holds another command's training runs ({nested}), where a {kind!r} run cannot "
                         "start; choose another folder")
    if resume:
        link = None if out is None else out / "last"
        if link is not None and link.is_symlink() and not existing(link).exists():  # moved with its run, say
            raise FileNotFoundError(f"{link} is a symbolic link to {os.readlink(link)}, which does not exist: the "
                                    "run's last checkpoint is not there to resume from; point the link at it")
        if out is None or not existing(out / "last").exists():
            inside = out is not None and out.name in ("last", "best") and existing(out.parent / "last").exists()
            held = [] if out is None else [name for name in ("best", "results.json") if (out / name).exists()]
            hint = (f"; give the run's folder, {out.parent}" if inside else
                    "; it holds a trained model (best/) but no last/ checkpoint: choose another folder"
                    if "best" in held else
                    "; it holds another command's results: choose another folder" if held else  # a task's
                    "; start one without --resume")
            raise FileNotFoundError(f"{out} holds no run to resume (no last/ checkpoint){hint}")
        return
    if out is None:
        return
    if trained_model(out):  # a run's best/ (the run then would not resume)
        raise ValueError(f"{out} is an lstmkit checkpoint (a trained model): a run there would put its own "
                         "checkpoints inside it; choose another folder")
    if existing(out / "last").exists():
        raise ValueError(f"{out} already holds a run; pass resume=True (--resume) to continue it, or choose another "
                         "folder")
    if (out / "best").exists():
        if not all((out / "best" / name).is_file() for name in (CONFIG_FILE, WEIGHTS_FILE)):
            held = "a best/ folder" if (out / "best").is_dir() else "a file named best"
            raise ValueError(f"{out} holds {held} that is no lstmkit checkpoint; a run there would write its best "
                             "model there: choose another folder")
        raise ValueError(f"{out} holds a trained model (best/) but no last/ checkpoint to resume from; choose "
                         "another folder, or remove this one to start over")
    # a run writes last/ before its first metrics.csv: these are someone else's
    check_nothing_overwritten(out, ("metrics.csv", "results.json"),
                              "no training run (no last/ checkpoint): another command's, or not lstmkit's")
    check_own_files(out, figures, "a run")


def overflowing_weight(model: torch.nn.Module) -> tuple[float, torch.dtype] | None:
    """The largest trainable weight of `model` and its dtype, where it lies past the square root
    of the dtype's largest value (a product of two then overflows: lm --init-range 1e38, whose
    divergence was blamed on the data); None where none does. Lazy and meta parameters, which
    hold no values, are passed over."""
    for parameter in model.parameters():
        if not parameter.requires_grad or isinstance(parameter, torch.nn.parameter.UninitializedParameter) \
                or parameter.is_meta or not parameter.numel():
            continue
        largest = torch.linalg.vector_norm(parameter.detach(), math.inf).item()
        if not largest <= math.sqrt(torch.finfo(parameter.dtype).max):
            return largest, parameter.dtype
    return None


def nested_runs(out: Path) -> Path | None:
    """out/training where it holds lstmkit training runs one per network (`forecast fit` and
    `backtest` write them there, as training/STAGE/NAME/BASE/last), else None."""
    folder = out / "training"
    if not folder.is_dir():
        return None
    return folder if any(held_kind(path) is not None for path in folder.glob("*/*/*/last")) else None


def finite_metrics(job: Job) -> list[str]:
    """The evaluation values of `job` whose leaving the floats means its run diverged: the
    selection metric and the job's `finite_metric`, those it has."""
    return [name for name in dict.fromkeys((job.selection_metric, job.finite_metric)) if name is not None]


def setting_text(value: object) -> str:
    """A setting's value as a message gives it: a list as the command line takes it, comma-
    separated (naive,ets), None as the setting left to its default (`lookback` chosen from the
    horizon and season), anything else as Python writes it ('lstm', 0.001)."""
    if value is None:
        return "not given (its default)"
    return flag_value(value) if isinstance(value, list | tuple) and value else repr(value)


def resumed_settings(out: Path) -> dict | None:
    """The settings ("training") the run in `out` was started with, from its last checkpoint;
    None where there is none to read (the resume's own checks then say why)."""
    last = existing(out / "last")
    if not (last / CONFIG_FILE).exists():
        return None
    training = read_config(last).get("training")  # checked: a damaged config.json is named
    return current_names(training) if isinstance(training, dict) else None


def check_resumed_settings(out: Path, config: TrainingConfig) -> None:
    """A command's check, before its work and before it says what it resumes, that `config`
    continues the run in `out` (`check_same_settings`): `translate train --resume` read and
    filtered its data, and `lm train --resume` announced its model, before refusing."""
    saved = resumed_settings(out)
    if saved is not None:
        check_same_settings(saved, config, out)


def recorded_best(out: Path, progress: RunState) -> Path | None:
    """out/best (or the copy an interrupted swap left, `existing`) where the run recorded a best
    step, else None. Written before last/ at every improvement, it is missing there only when
    removed or lost: refused, where the last weights silently stood in for the best (a
    forecast said "kept epoch 28" and forecast with epoch 40's)."""
    if progress.best_step is None:
        return None
    best = existing(out / "best")
    if not best.exists():
        raise ValueError(f"{out} recorded its best model at step {progress.best_step}, but {out / 'best'} is missing; "
                         f"restore it, or train again (its last/ holds the weights of step {progress.step}, not the "
                         "best)")
    return best


def check_same_settings(saved: dict, config: TrainingConfig, out: Path) -> None:
    """Refuse to resume the run in `out`, whose settings were `saved` (its checkpoint's
    "training"), with `config` where they differ beyond what a resume may change (the budget,
    evaluation and stopping, device, precision and engine: `resumable_changes`)."""
    before = {**ADDED_SETTINGS, **current_names(saved)}
    now = json.loads(json.dumps(asdict(config)))
    changed = [f"{name}: {setting_text(before[name])} in the run, {setting_text(value)} now"
               for name, value in now.items()
               if name not in config.resumable_changes and name in before and before[name] != value]
    if changed:
        raise ValueError(f"{out} was trained with other settings; --resume needs the same ones ({'; '.join(changed)})")


BUDGETS = ("steps", "epochs", "time_budget")


def budget_values(settings: dict) -> tuple[float | None, ...]:
    """A run's budget from its settings, as numbers (a time budget of 1 is one of 1.0)."""
    return tuple(None if settings.get(name) is None else float(settings[name]) for name in BUDGETS)


def budget_of(settings: dict) -> str:
    """A run's budget in the flags that give it (`--time-budget 30 s`, `--epochs 10`), from its
    settings (a whole number of epochs or seconds as typed: 10, not the 10.0 a config holds)."""
    def typed(value: float) -> str:
        return str(int(value)) if float(value).is_integer() else str(value)

    given = [f"--{name.replace('_', '-')} {typed(settings[name])}{' s' * (name == 'time_budget')}"
             for name in BUDGETS if settings.get(name) is not None]
    return ", ".join(given) or "no budget"


def budget_spent(config: TrainingConfig, progress: RunState, step_limit: int | None) -> bool:
    """Whether a budget is spent: the time budget's seconds, or the steps of steps/epochs."""
    if config.time_budget is not None and progress.train_seconds >= config.time_budget:
        return True
    return step_limit is not None and progress.step >= step_limit


class Trainer:
    """Resolves the device, the precision and the processes of `config` (joining torchrun's
    process group if there is one), then trains jobs with `run`. Rank 0 alone prints, writes
    and reports progress."""

    def __init__(self, config: TrainingConfig) -> None:
        check_config(config, TrainingConfig, "lstmkit.training.TrainingConfig (or a pipeline's config)")
        self.config = config
        self.processes = Processes.from_environment()
        self.device = resolve_device(config.device, self.processes.local_rank)
        self.processes.start(self.device)
        self.precision = Precision(config.precision, self.device)

    def describe(self) -> str:
        count = self.processes.world_size
        return f"device {self.device}, {self.precision.describe()}, {count} process{'es' if count > 1 else ''}"

    def runtime(self) -> dict:
        """Where this trainer trains, for a results.json (`TrainingRun.runtime`)."""
        return {"device": str(self.device), "precision": self.config.precision, "processes": self.processes.world_size}

    def segment(self, step: int) -> dict:
        """The part of a run this trainer trains from `step`, for its record (RunState.segments)."""
        settings = asdict(self.config)
        changeable = {name: settings[name] for name in self.config.resumable_changes if name in settings}
        return {"from_step": step, **changeable,
                **self.runtime(), "versions": {"lstmkit": lstmkit_version(), "torch": torch.__version__,
                                               "python": platform.python_version()}}

    def announce(self, text: str) -> None:
        """Say `text` with the run's progress (`cli.arguments.announce`)."""
        announce(text)

    def run(self, job: Job, out: str | Path | None = None, resume: bool = False,
            keep_best: bool = False) -> TrainingRun:
        """Train `job.model` under the budget; with `out`, write checkpoints, metrics.csv and
        results.json there (rank 0), and with `resume` continue the run in it. `keep_best`
        leaves the model with the weights of its best evaluation (kept in memory)."""
        if not isinstance(job, Job):
            raise TypeError(f"job must be a lstmkit.training.Job (its model, batches and evaluation), got "
                            f"{type(job).__name__}")
        if not isinstance(getattr(job, "model", None), torch.nn.Module):
            raise TypeError(f"{type(job).__name__}.model must be a torch.nn.Module (the model to train), got "
                            f"{type(getattr(job, 'model', None)).__name__}")
        if not any(parameter.requires_grad for parameter in job.model.parameters()):
            raise ValueError(f"{type(job).__name__}.model has no parameters that need gradients: nothing to train")
        if callable(getattr(job, "finished", None)):  # the name before goal_reached: it would be ignored, silently
            raise TypeError(f"{type(job).__name__}.finished(scores) is no longer called: the training core asks "
                            "goal_reached(scores), which returns why training stops there (words that follow \"its "
                            "last evaluation\") or None; rename it and return a reason")
        check_engines(job.model, self.device)
        out = None if out is None else check_output_folder(out, option="")  # the CLI named --out as it parsed it
        # rank 0 writes; the others read what it wrote
        with claimed_folder(out if self.processes.main else None), bars_closed_on_failure():
            return self.train(job, out, resume, keep_best)

    def train(self, job: Job, out: Path | None, resume: bool, keep_best: bool) -> TrainingRun:
        """`run`, its arguments checked and its folder held."""
        config, processes, device = self.config, self.processes, self.device
        if processes.distributed:  # a device of its own per process (cuda:LOCAL_RANK) is one setting
            settings = {**asdict(config), "device": device.type}
            processes.check_same({"training": settings, **job.checkpoint_config(), "data": job.data_fingerprint(),
                                  "resume": resume}, device)
        job.model.to(device)
        progress, training = self.restore(job, out) if resume else (self.begin(job, out), {})
        if out is not None and ((out / "best").is_dir() or (out / "last").is_dir()):  # before training, not at `save`
            names, kind = {CONFIG_FILE, WEIGHTS_FILE, *job.checkpoint_files()}, job.checkpoint_config().get("kind")
            check_replaceable(out / "best", names, kind)
            check_replaceable(out / "last", names | {TRAINING_FILE}, kind)
        optimizer = build_optimizer(config.optimizer, job.model.parameters(), config.lr, config.weight_decay,
                                    averaging=progress.averaging_from is not None)
        load_optimizer_state(optimizer, job, training)
        model = processes.wrap(job.model, device)
        steps_per_epoch = epoch_steps(job)
        step_limit = self.step_limit(job, steps_per_epoch)
        last_loss = None  # (step, mean training loss) of the latest finite one
        eval_every = self.evaluation_interval(job, steps_per_epoch)
        anneal_steps = (config.patience or 0) * eval_every

        def decay(step: int) -> float | None:
            """How far down the cosine the rate of `step` is: the budget's decay
            (schedule.decay_progress), or, once a plateau began one, the anneal's."""
            budget_decay = decay_progress(config, step, step_limit, progress.train_seconds, progress.decay_from_seconds)
            if progress.annealing_from is None:
                return budget_decay
            return annealed_progress(budget_decay, step, progress.annealing_from, progress.annealing_decay,
                                     anneal_steps)

        spent = resume and budget_spent(config, progress, step_limit)
        ended = (resume and not spent and progress.history
                 and stop_reason(job, config, progress, progress.history[-1], eval_every))
        # killed between its last checkpoint and its results.json, where its own budget or
        # stopping rules had ended it: only its results are due (a run a smaller budget given
        # now would end is refused below)
        completing = ((spent or bool(ended)) and not (out / "results.json").is_file()
                      and self.ended_as_begun(job, out, progress))
        completing = bool(processes.from_main(float(completing), device))  # rank 0 may have written it already
        if spent and not completing:  # nothing to do; its results stay as written
            raise ValueError(f"{out} is at step {progress.step} ({progress.train_seconds:.0f} s of training): the "
                             "budget given is spent; give a larger --steps, --epochs or --time-budget to continue")
        if ended and not completing:  # it stopped before its budget, and would stop there again
            remedy = "" if ended.remedy is None else f"; {ended.remedy}"
            raise ValueError(f"{out} ended at step {progress.step}: {ended.why}{remedy}")
        if completing:
            self.announce(f"{job.label}: {out} ended at step {progress.step} but was stopped before it wrote "
                          "results.json: writing it, with no further training")
        else:
            if resume and not progress.segments and progress.step:  # begun before lstmkit recorded its parts
                progress.segments.append({"from_step": 0, "recorded": False})
            progress.segments.append(self.segment(progress.step))
            self.announce(f"{job.label}: {self.describe()}")
        warmup_cut_by_steps = step_limit is not None and step_limit < config.warmup
        if warmup_cut_by_steps and not resume:
            warn_short_warmup(config, step_limit, spent=False)

        report = (Progress(job.label, step_limit, first_step=progress.step, item=job.item)
                  if processes.main and not completing else None)
        best_state = copy.deepcopy(job.model.state_dict()) if keep_best else None
        best = recorded_best(out, progress) if keep_best and resume else None
        if best is not None:
            best_state = self.saved_best_state(job, best)  # the best may precede the interruption
        window = {"loss": 0.0, "items": 0}  # the training loss since the last evaluation
        started_step, started_items, started_seconds = progress.step, progress.items, progress.train_seconds

        def evaluate() -> bool:
            """Score, record, checkpoint; whether training should stop."""
            nonlocal best_state, optimizer
            with averaged_weights(optimizer):
                scores = self.evaluate(job)
            row = {"step": progress.step, "epoch": epochs(progress.step, steps_per_epoch),
                   f"{job.item}s": progress.items, "seconds": round(progress.train_seconds, 2),
                   "lr": optimizer.param_groups[0]["lr"],
                   "train_loss": window["loss"] / window["items"] if window["items"] else None, **scores}
            if progress.step % eval_every:  # a budget ended between scheduled evaluations
                progress.unscheduled.append(progress.step)
            progress.history.append(row)
            window.update(loss=0.0, items=0)
            metric = job.selection_metric
            for watched in finite_metrics(job):
                if scores.get(watched) is not None and not math.isfinite(scores[watched]):
                    self.diverged(job, progress, out, f"the {watched} became {scores[watched]}", last_loss, report,
                                  eval_every)
            sign = -1 if job.higher_is_better else 1
            improved = scores.get(metric) is not None and sign * scores[metric] < progress.best_value
            if improved:
                progress.best_value, progress.best_step = sign * scores[metric], progress.step
                if keep_best:
                    with averaged_weights(optimizer):
                        best_state = copy.deepcopy(job.model.state_dict())
            counted = [sign * row[metric] for row in scheduled_evaluations(progress) if row.get(metric) is not None]
            if (config.optimizer == "nt-asgd" and not averaging(optimizer) and scores.get(metric) is not None
                    and progress.step not in progress.unscheduled and should_average(counted, config.asgd_patience)):
                optimizer = build_optimizer(config.optimizer, job.model.parameters(), config.lr,
                                            config.weight_decay, averaging=True)
                progress.averaging_from = progress.step
                self.announce(f"{job.label}: step {progress.step}: the {metric} stopped improving; "
                              "averaging the weights from here on (NT-ASGD)")
            if (patience_spent(config, progress, metric) and config.on_plateau == "anneal"
                    and progress.annealing_from is None):  # saved below, so that a resumed run anneals from here too
                progress.annealing_from, progress.annealing_decay = progress.step, decay(progress.step) or 0.0
                self.announce(f"{job.label}: step {progress.step}: the {metric} stopped improving; decaying the "
                              f"learning rate to its floor over {anneal_steps} steps, then stopping")
            if out is not None:
                self.save(job, optimizer, progress, out, improved, list(row)[:6] + list(scores))
            reason = stop_reason(job, config, progress, row, eval_every)
            if reason is not None and not budget_spent(config, progress, step_limit):
                self.announce(f"{job.label}: step {progress.step}: stopping before the budget is spent: {reason.why}")
            return reason is not None

        stop = completing or (job.evaluate_at_start and not progress.history and evaluate())
        job.model.train()
        while not stop and not budget_spent(config, progress, step_limit):
            started = time.perf_counter()
            if progress.decay_from_seconds is None and progress.step >= config.warmup:
                progress.decay_from_seconds = progress.train_seconds
            scheduled = learning_rate(config, progress.step, decay(progress.step), progress.annealing_from)
            set_learning_rate(optimizer, scheduled * job.learning_rate_scale(progress.step))
            loss, loss_sum, items = self.training_loss(job, model, progress.step)
            if not math.isfinite(loss_sum):
                self.diverged(job, progress, out, f"the training loss became {loss_sum / items}", last_loss, report,
                              eval_every)
            last_loss = (progress.step, loss_sum / items)
            try:
                self.update(job, optimizer, loss, progress.step)
            except RuntimeError as error:  # a rate so large the optimizer's step leaves float32 (Adam's lr / 0.1)
                if "cannot be converted to type" not in str(error):
                    raise
                self.diverged(job, progress, out, f"the optimizer's update overflowed ({error})", last_loss, report,
                              eval_every, f"Lower the learning rate (--lr, now {config.lr:g}): the optimizer "
                              "scales its step by it, past the float range.")
            elapsed = time.perf_counter() - started
            progress.train_seconds = processes.from_main(progress.train_seconds + elapsed, device)
            progress.step, progress.items = progress.step + 1, progress.items + int(items)
            window["loss"] += loss_sum
            window["items"] += items
            rate = (progress.items - started_items) / max(progress.train_seconds - started_seconds, 1e-9)
            if report is not None:
                left = None if config.time_budget is None else config.time_budget - progress.train_seconds
                total = estimated_steps(config, progress, step_limit, started_step, started_seconds)
                report.update(progress.step, rate, total, left, loss=loss_sum / items)
            if progress.step % eval_every == 0 or budget_spent(config, progress, step_limit):
                stop = evaluate()
        if not progress.history or progress.history[-1]["step"] != progress.step:
            evaluate()
        if not (warmup_cut_by_steps or completing) and budget_spent(config, progress, None):  # the steps it held
            warn_short_warmup(config, progress.step, spent=True)
        adopt_average(optimizer)
        if keep_best and best_state is not None and progress.best_step is not None:
            job.model.load_state_dict(best_state)
        job.model.eval()
        best = next((row for row in progress.history if row["step"] == progress.best_step), None)
        rate = progress.items / max(progress.train_seconds, 1e-9)  # the whole run's, as its steps and seconds are
        run = TrainingRun(progress.history, best, progress.step, progress.train_seconds, rate, **self.runtime())
        if report is not None:
            final = {job.selection_metric: best[job.selection_metric]} if best is not None else {}
            report.close(progress.step, rate, **final)
        if out is not None and processes.main:
            self.write_results(job, run, progress, out, steps_per_epoch,
                               self.trained_config(out) if completing else asdict(config))
        self.processes.wait_for_all()
        return run

    def evaluation_interval(self, job: Job, steps_per_epoch: int) -> int:
        """Steps between evaluations: an epoch's for a job evaluated each epoch, else eval_every."""
        return steps_per_epoch if job.evaluate_every_epoch else self.config.eval_every

    def load_best(self, job: Job, best: Path) -> None:
        """The weights of the run's `best` checkpoint (`recorded_best`) into job.model."""
        job.load_model_tensors(load_checkpoint(best, self.device)[1])

    def saved_best_state(self, job: Job, best: Path) -> dict[str, Tensor]:
        """The state_dict of the run's `best` checkpoint, leaving job.model's weights as they are."""
        current = copy.deepcopy(job.model.state_dict())
        self.load_best(job, best)
        best = copy.deepcopy(job.model.state_dict())
        job.model.load_state_dict(current)
        return best

    def finished_run(self, job: Job, out: str | Path) -> TrainingRun | None:
        """The run in `out` if it has ended (its results.json written, or its budget spent),
        leaving `job.model` with its best weights as `run(..., keep_best=True)` does; None where
        `out` holds no run, or one to continue. For a pipeline that trains several models in
        turn: resumed, it keeps those that finished and continues the one that did not. One killed
        between its last checkpoint and its results.json is kept, and gets that file, where its
        own budget or stopping rules had ended it, whatever budget is given now (as `run` would
        have written it, with the settings it trained under); one that only the smaller budget
        given now ends gets none, so a larger budget later trains it on. Like
        --resume, it refuses a run of other data or settings, and it sets the random state the
        run saved (a caller that builds another model next seeds it first). The run's runtime
        is this trainer's (device, precision, processes), its speed the whole run's."""
        out = Path(out)
        if not existing(out / "last").exists():
            return None
        job.model.to(self.device)
        progress, _ = self.restore(job, out, continued=False)  # where it goes on, `run` restores it again
        steps_per_epoch = epoch_steps(job)
        step_limit = self.step_limit(job, steps_per_epoch)
        eval_every = self.evaluation_interval(job, steps_per_epoch)
        ended = (budget_spent(self.config, progress, step_limit)
                 or (progress.history and stop_reason(job, self.config, progress, progress.history[-1], eval_every)))
        # killed after its last checkpoint, before its results.json: ended where its own budget or
        # stopping rules had ended it (a larger budget given now does not train it on), else where
        # the smaller one given now ends it
        written = (out / "results.json").is_file()
        completing = not written and self.ended_as_begun(job, out, progress)
        if not (written or ended or completing):
            return None
        layout = read_config(existing(out / "last")).get("epoch_layout") or {}  # its epochs' steps, as it ran them
        ran_limit = self.step_limit(job, layout.get("steps_per_epoch", steps_per_epoch))
        if ran_limit is not None and progress.step > ran_limit:  # a resume with a smaller budget of steps or epochs
            warn_at_caller(f"{out} stopped at step {progress.step}, past the {ran_limit} steps of the budget given "
                           "now: kept as it stands, not trained further")
        best = recorded_best(out, progress)
        if best is not None:
            self.load_best(job, best)
        job.model.eval()
        best = next((row for row in progress.history if row["step"] == progress.best_step), None)
        run = TrainingRun(progress.history, best, progress.step, progress.train_seconds,
                          progress.items / max(progress.train_seconds, 1e-9), **self.runtime())
        if self.processes.main:  # it is complete: what a save that was killed left beside it goes
            if completing:
                self.write_results(job, run, progress, out, steps_per_epoch, self.trained_config(out))
            remove_run_staging(out)
        return run

    def begin(self, job: Job, out: Path | None) -> RunState:
        """A new run's state, refusing a folder that holds a run already."""
        if out is not None:
            check_run_folder(out, resume=False, kind=job.checkpoint_config().get("kind"))
        if self.processes.distributed:  # one dropout stream per process, not one repeated on every share
            torch.manual_seed(process_seed(self.config.seed, self.processes.rank, 0))
        return RunState()

    def training_loss(self, job: Job, model: torch.nn.Module, step: int) -> tuple[Tensor, float, float]:
        """The loss of step `step` under autocast (weighted, with several processes, so that
        DDP's average of the gradients is the whole batch's), and the loss summed over the
        batch's items with their count, over every process."""
        with self.precision.autocast():
            loss, share = checked_loss(job, job.train_loss(model, step))
        loss_sum, items = loss.item() * share, share
        if self.processes.distributed:  # DDP averages the gradients: weigh each share by its size
            loss_sum, items = self.processes.total([loss_sum, float(share)], self.device)
            loss = loss * (self.processes.world_size * share / items)
        return loss, loss_sum, items

    def update(self, job: Job, optimizer: torch.optim.Optimizer, loss: Tensor, step: int) -> None:
        """Backward (through the gradient scaler), clip the global gradient norm, AdamW step;
        with ema_decay, the weights' moving average after it."""
        optimizer.zero_grad(set_to_none=True)
        scaler = self.precision.scaler
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(job.model.parameters(), self.config.clip)
        scaler.step(optimizer)
        scaler.update()
        if self.config.ema_decay is not None:
            update_moving_average(optimizer, self.config.ema_decay, step)

    def trained_config(self, out: Path) -> dict:
        """The settings the run in `out` trained under, for the results.json of one that ended
        before it wrote it (its last checkpoint's; those given now were never trained under)."""
        settings = asdict(self.config)
        saved = resumed_settings(out) or {}
        return {**settings, **{name: value for name, value in saved.items() if name in settings}}

    def ended_as_begun(self, job: Job, out: Path, progress: RunState) -> bool:
        """Whether the run in `out`, at `progress`, had ended under the budget and stopping rules
        it was trained with (its checkpoint's), not only under those given now."""
        last = read_config(existing(out / "last"))
        saved = {**ADDED_SETTINGS, **current_names(last["training"])}
        ending = ("steps", "epochs", "time_budget", "eval_every", "patience", "on_plateau")
        now = {setting.name: getattr(self.config, setting.name) for setting in fields(TrainingConfig)}
        settings = {**now, **{name: saved[name] for name in ending if name in saved}}
        # It was evaluated each epoch where its eval_every was None (translation's default) or
        # where its kind of job always is (forecasting's, a class attribute), whatever is given now.
        each_epoch = settings["eval_every"] is None or type(job).evaluate_every_epoch
        begun = TrainingConfig(**{**settings, "eval_every": TrainingConfig.eval_every} if each_epoch else settings)
        layout = last.get("epoch_layout") or {}  # its epochs, as it ran them
        steps_per_epoch = layout.get("steps_per_epoch", epoch_steps(job))
        eval_every = steps_per_epoch if each_epoch else begun.eval_every
        return budget_spent(begun, progress, self.step_limit(job, steps_per_epoch, begun)) or bool(
            progress.history and stop_reason(job, begun, progress, progress.history[-1], eval_every))

    def step_limit(self, job: Job, steps_per_epoch: int | None, config: TrainingConfig | None = None) -> int | None:
        """The step at which the steps or epochs budget (of `config`, else this trainer's) ends
        (the first of the two), if any."""
        config = config or self.config
        step_limits = [config.steps] if config.steps is not None else []
        if config.epochs is not None:
            if steps_per_epoch is None:
                raise ValueError(f"{job.label}: an epoch budget needs data with an end; give steps or time_budget")
            step_limits.append(math.ceil(config.epochs * steps_per_epoch))
        return min(step_limits) if step_limits else None

    def diverged(self, job: Job, progress: RunState, out: Path | None, what: str,
                 last_loss: tuple[int, float] | None, report: Progress | None, eval_every: int,
                 remedy: str | None = None) -> None:
        """Stop a run whose loss is no longer finite, saying where, what is kept (`eval_every`: the
        steps between evaluations, each saved), and what to try (`remedy`; by default a lower rate
        or a harder clip, or, where no update had been made, the data or the precision)."""
        if report is not None:
            report.close(progress.step, progress.items / max(progress.train_seconds, 1e-9))
        config = self.config
        before = "" if last_loss is None else f" (the last finite training loss: {last_loss[1]:.4g} at step {last_loss[0]})"
        saved = [row["step"] for row in progress.history  # a row that diverged is not saved
                 if all(row.get(name) is None or math.isfinite(row[name]) for name in finite_metrics(job))]
        if out is None:
            kept = ""
        elif saved:
            best = "" if progress.best_step is None else f", {out / 'best'} (step {progress.best_step})"
            kept = f" Kept: {out / 'last'} (step {saved[-1]}){best} and {out / 'metrics.csv'}."
        else:
            kept = f" Nothing had been saved in {out} yet (its first evaluation comes at step {eval_every})."
        full = (f", or train in full precision (--precision 32, now {config.precision})"
                if config.precision != "32" else "")
        if remedy is None and last_loss is None and progress.step == 0:  # the untrained model's own loss
            weights = overflowing_weight(job.model)
            remedy = ("No update had been made, so neither the learning rate nor the clip is the cause: the untrained "
                      "model's loss is not finite on this data. " + (
                          f"Look for values in it that are not numbers (NaN) or are too large for floats{full}."
                          if weights is None else
                          f"Its weights reach {weights[0]:.3g}, past the square root of the largest {weights[1]}, "
                          "where a product of two overflows: initialise them smaller (lm's --init-range, say), or look "
                          f"for values in the data that are not numbers (NaN) or are too large for floats{full}."))
        elif remedy is None and last_loss is None:  # the first step of this process, resumed: the checkpoint's loss
            remedy = (f"No update had been made since the run resumed at step {progress.step}, so neither the learning "
                      "rate nor the clip is the cause: the weights it resumed from give a loss that is not finite on "
                      "this data. Their file may be damaged (the run's loss before the interruption is in "
                      "metrics.csv), or the data holds values that are not numbers (NaN) or are too large for floats"
                      f"{full}.")
        elif out is not None and saved:  # --resume would refuse the changed setting
            remedy = ((remedy or f"Lower the learning rate (--lr, now {config.lr:g}) or clip gradients harder (--clip, "
                       f"now {config.clip:g}).")
                      + " Start a new run for that (another --out): --resume continues a run with its own settings.")
        remedy = remedy or (f"Lower the learning rate (--lr, now {config.lr:g}) or clip gradients harder (--clip, now "
                            f"{config.clip:g}).")
        raise TrainingDiverged(f"{job.label}: training diverged at step {progress.step}: {what}{before}.{kept} "
                               f"{remedy}", progress.step, progress.history, progress.train_seconds)

    def evaluate(self, job: Job) -> dict[str, float]:
        with torch.no_grad(), self.precision.autocast(), evaluating(job.model):
            return checked_scores(job, job.evaluate())

    def save(self, job: Job, optimizer: torch.optim.Optimizer, progress: RunState, out: Path,
             improved: bool, columns: list[str]) -> None:
        """best/ (if improved), last/ (with what --resume needs) and metrics.csv (its `columns`).
        Every process gathers the job's state; rank 0 writes."""
        progress.scaler = self.precision.scaler.state_dict()
        training = {**optimizer_tensors(optimizer, job), **rng_tensors(self.device, self.processes),
                    **job.state_tensors()}
        if not self.processes.main:
            return
        state = {**asdict(progress), "best_value": progress.best_value if math.isfinite(progress.best_value) else None}
        saved = {**job.checkpoint_config(), "training": asdict(self.config), "data": job.data_fingerprint(),
                 "progress": state, "epoch_layout": {"processes": self.processes.world_size,
                                                     "steps_per_epoch": epoch_steps(job)}}
        if improved:
            with averaged_weights(optimizer):
                save_checkpoint(out / "best", saved, job.model_tensors(), job.checkpoint_files())
        save_checkpoint(out / "last", saved, job.model_tensors(), job.checkpoint_files(),
                        extra_tensors={TRAINING_FILE: training})
        write_csv(out / "metrics.csv", columns, [[row.get(name) for name in columns] for row in progress.history])

    def restore(self, job: Job, out: Path | None, continued: bool = True) -> tuple[RunState, dict[str, Tensor]]:
        """The model, random-number state and job state of out/last, on this trainer's device
        whatever device wrote them; the progress to continue from, and the saved training
        tensors (the optimizer's state among them: `load_optimizer_state`). A run not
        `continued` (one that finished, only loaded) may have had its epochs otherwise."""
        kind = job.checkpoint_config().get("kind")
        check_run_folder(out, resume=True, kind=kind)
        saved, tensors = load_checkpoint(out / "last", self.device)
        if kind is not None:  # a last/ of no kind, which check_run_folder lets pass
            check_kind(existing(out / "last"), saved, kind, f"a {kind!r} run to resume")
        if "progress" not in saved or "best_value" not in saved["progress"]:
            raise ValueError(f"{out} was written by an older lstmkit: its models load (for sampling and scoring), "
                             "but its training cannot be resumed; start a new run")
        self.check_resumable(saved, job.data_fingerprint(), out)
        if continued:
            self.check_epochs(saved, job, out)
            before, now = saved["training"], asdict(self.config)
            if budget_values(before) != budget_values(now):  # without a budget flag, the default: said, not silent
                self.announce(f"resuming {out} under {budget_of(now)}; it last ran under {budget_of(before)}")
        job.check_resumable(saved, existing(out / "last"))
        job.load_model_tensors(tensors)
        training = read_extra_tensors(out / "last", TRAINING_FILE, self.device)
        check_training_tensors(training, job, existing(out / "last") / TRAINING_FILE)
        best_value = saved["progress"]["best_value"]
        fields = set(RunState.__dataclass_fields__)  # older runs saved an estimated schedule length, now unused
        progress = RunState(**{**{name: value for name, value in saved["progress"].items() if name in fields},
                               "best_value": math.inf if best_value is None else best_value})
        if "decay_from_seconds" not in saved["progress"] and progress.step >= self.config.warmup:
            # an older run, past its warm-up: its steps took equal times, near enough
            progress.decay_from_seconds = progress.train_seconds * self.config.warmup / max(1, progress.step)
        self.restore_rng(training, progress.step)
        job.load_state_tensors({key: value for key, value in training.items()
                                if not key.startswith(("optimizer.", "rng."))})
        if progress.scaler and self.precision.scaler.is_enabled():
            self.precision.scaler.load_state_dict(progress.scaler)
        return progress, training

    def check_resumable(self, saved: dict, data: dict[str, dict], out: Path) -> None:
        """Refuse to continue a run on other data or with other settings than it began with
        (the budget, evaluation and stopping, device, precision and engine may change:
        `resumable_changes`). Settings
        first: a pipeline's data may be made with them (a forecaster's windows, of its horizon)."""
        check_same_settings(saved["training"], self.config, out)
        if "data" in saved and saved["data"] != data:
            changed = [f"{name}: {describe_data(saved['data'].get(name))} in the run, {describe_data(data.get(name))} now"
                       for name in sorted(set(saved["data"]) | set(data)) if saved["data"].get(name) != data.get(name)]
            raise ValueError(f"{out} was trained on other data; --resume needs the same ({'; '.join(changed)})")

    def check_epochs(self, saved: dict, job: Job, out: Path) -> None:
        """Refuse a resume whose epochs would not line up with the run's: an epoch's last batch
        too small to share joins the one before (Processes.batch_sizes), so with another number
        of processes an epoch can hold another number of steps, and the step a run stopped at
        would fall elsewhere in its epoch."""
        epochs, now = saved.get("epoch_layout"), epoch_steps(job)
        if epochs is None or epochs["steps_per_epoch"] == now:  # an older run did not record them
            return
        before, count = epochs["processes"], self.processes.world_size
        if before == count:  # the processes did not change: what the job keeps of its data did
            raise ValueError(f"{out}'s epochs took {epochs['steps_per_epoch']} steps, and its data as read now make "
                             f"epochs of {now}: the items kept of them differ from the run's (a version of lstmkit "
                             "that keeps others, as translate's --max-train-length rule changed), so its epochs would "
                             "not line up: start a new run, or resume it with the lstmkit that began it")
        take = "es take" if count > 1 else " takes"
        raise ValueError(f"{out} was trained by {before} process{'es' * (before > 1)}, whose epochs take "
                         f"{epochs['steps_per_epoch']} steps; {count} process{take} {now}, so its epochs would not "
                         f"line up: resume it with {before} process{'es' * (before > 1)}")

    def restore_rng(self, training: dict[str, Tensor], step: int) -> None:
        """Each process's random-number state as saved; with another number of processes than
        saved, a fresh stream per process (the run continues, no longer bit for bit)."""
        processes = self.processes
        for name, set_state in (("rng.torch", torch.set_rng_state),
                                ("rng.cuda", lambda state: torch.cuda.set_rng_state(state, self.device))):
            if name not in training or (name == "rng.cuda" and self.device.type != "cuda"):
                continue
            states = training[name].cpu()
            states = states.view(-1, states.shape[-1])  # (processes, state); one row before lstmkit saved each
            if states.shape[0] == processes.world_size:
                set_state(states[processes.rank].clone())  # a view of a row: set_rng_state ignores its offset
            elif name == "rng.torch":
                torch.manual_seed(process_seed(self.config.seed, processes.rank, step))

    def write_results(self, job: Job, run: TrainingRun, progress: RunState, out: Path,
                      steps_per_epoch: int | None, config: dict) -> None:
        """The run's results.json, with the settings `config`; the run is complete, so what a
        save that was killed left beside its checkpoints goes (`remove_run_staging`)."""
        best = {f"best_{name}": value for name, value in (run.best or {}).items()
                if name not in ("step", "epoch", "seconds", "lr", "train_loss", f"{job.item}s")}
        write_json(out / "results.json", {
            **best,
            "best_step": progress.best_step,
            f"{job.item}s_per_second": run.items_per_second,
            "steps": run.steps,
            "epochs": run.steps / steps_per_epoch if steps_per_epoch else None,
            "seconds": run.seconds,
            **run.runtime(),
            "config": config,
            "segments": progress.segments,
            "data": job.data_fingerprint(),
        })
        remove_run_staging(out)


def remove_run_staging(out: Path) -> None:
    """Remove the staging folders saves of the run in `out` that were killed left beside its checkpoints."""
    for checkpoint in ("last", "best"):
        remove_staging(out / checkpoint)


def lstmkit_version() -> str:
    """lstmkit's version, for a run's record."""
    from lstmkit import __version__  # the package imports this module first

    return __version__


def epochs(step: int, steps_per_epoch: int | None) -> int | float | None:
    """Passes over the data after `step` steps: a whole number at the end of an epoch."""
    if steps_per_epoch is None:
        return None
    whole, rest = divmod(step, steps_per_epoch)
    return whole if rest == 0 else round(step / steps_per_epoch, 4)


def check_training_tensors(training: dict[str, Tensor], job: Job, path: Path) -> None:
    """Refuse a run's saved training state (`optimizer_tensors`, `rng_tensors`) without its
    random-number state, or with optimizer moments that do not fit the model's parameters:
    another parameter's, another shape, not floats, or not the same moments for every
    parameter. Edited, or damaged where written before its checksum, it failed inside torch
    after the resume was announced, or (the random-number state gone) went on not bit for bit."""
    problems = [] if "rng.torch" in training else ["no rng.torch (the random-number state)"]
    parameters = dict(job.model.named_parameters())
    moments: dict[str, set[str]] = {}
    for key, value in training.items():
        if not key.startswith("optimizer."):
            continue
        name, _, moment = key.removeprefix("optimizer.").rpartition(".")
        if name not in parameters:
            problems.append(f"{key}, of no parameter of the model")
            continue
        moments.setdefault(name, set()).add(moment)
        if not value.is_floating_point():
            problems.append(f"{key} holds {value.dtype}")
        elif value.dim() and value.shape != parameters[name].shape:
            problems.append(f"{key} has shape {tuple(value.shape)}, its parameter {tuple(parameters[name].shape)}")
    if len({frozenset(names) for names in moments.values()}) > 1:
        shown = sorted({", ".join(sorted(names)) for names in moments.values()})
        problems.append(f"the parameters hold different moments ({'; '.join(shown)})")
    if problems:
        raise CheckpointError(f"{path} does not fit the run: {'; '.join(problems)}; the file is damaged or was "
                              "edited: start a new run, or resume from a copy of the run made before")


def load_optimizer_state(optimizer: torch.optim.Optimizer, job: Job, training: dict[str, Tensor]) -> None:
    """The optimizer's moments from the saved training tensors (`optimizer_tensors`). AdamW
    keeps its step count on the CPU, ASGD its counters on the parameters' device."""
    names = dict(job.model.named_parameters())
    for key, value in training.items():
        if key.startswith("optimizer."):
            name, moment = key.removeprefix("optimizer.").rsplit(".", 1)
            on_cpu = moment == "step" and not averaging(optimizer)
            optimizer.state[names[name]][moment] = value.cpu() if on_cpu else value


def optimizer_tensors(optimizer: torch.optim.Optimizer, job: Job) -> dict[str, Tensor]:
    """The optimizer's moments, by parameter name."""
    names = {id(parameter): name for name, parameter in job.model.named_parameters()}
    return {f"optimizer.{names[id(parameter)]}.{key}": value
            for parameter, moments in optimizer.state.items() for key, value in moments.items()}


def rng_tensors(device: torch.device, processes: Processes) -> dict[str, Tensor]:
    """The random-number state dropout draws from, one row per process: the CPU's, and the
    GPU's on CUDA."""
    tensors = {"rng.torch": torch.get_rng_state()}
    if device.type == "cuda":
        tensors["rng.cuda"] = torch.cuda.get_rng_state(device)
    return {name: processes.gather(state.to(device).unsqueeze(0)).cpu() for name, state in tensors.items()}


def process_seed(seed: int, rank: int, step: int) -> int:
    """The seed of process `rank`'s random numbers from `step` on, when no saved state fits:
    distinct for every process and resumption point."""
    return (seed * 1_000_003 + rank * 7_919 + step) % 2**64


def describe_data(fingerprint: dict | None) -> str:
    if fingerprint is None:  # no such data (a validation split from the training text), or an older run's
        return "none given (or not recorded by an older lstmkit)"
    return f"{fingerprint['bytes']:,} bytes, SHA-256 {fingerprint['sha256'][:12]}…"
