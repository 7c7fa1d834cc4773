"""argparse types shared by the commands: each names what it expected and what it got."""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
from collections.abc import Callable
from typing import TextIO

from lstmkit.cells import CELL_NAMES
from lstmkit.files import FIGURE_SUFFIXES, check_input_file, check_output_file, check_output_folder
from lstmkit.nn.regularisers import INITS
from lstmkit.training.config import PRECISIONS
from lstmkit.training.device import check_device_name


def checked_path(check: Callable[[str, str], object]) -> Callable[[str], str]:
    """An argparse type that runs `check(path, "")` and reports its ValueError (or
    FileNotFoundError) as argparse's, which names the option."""

    def checked(text: str) -> str:
        if not text.strip():  # Path("") is the current folder: a missing value, not a choice of "."
            raise argparse.ArgumentTypeError(f"expected a path, got {text!r}")
        try:
            check(text, "")
        except (ValueError, FileNotFoundError) as error:
            raise argparse.ArgumentTypeError(str(error)) from None
        return text

    return checked


def or_stdout(path_type: Callable[[str], str]) -> Callable[[str], str]:
    """`path_type`, taking `-` for stdout (/dev/stdout), as the commands that read take it for stdin."""

    def checked(text: str) -> str:
        return path_type("/dev/stdout" if text == "-" else text)

    return checked


# A file, a figure and a folder to write: refused at once where they cannot be written.
output_file = or_stdout(checked_path(check_output_file))
output_figure = checked_path(lambda path, option: check_output_file(path, option, FIGURE_SUFFIXES))
output_csv = or_stdout(checked_path(lambda path, option: check_output_file(path, option, (".csv",))))
output_folder = checked_path(check_output_folder)


def input_file(expected: str) -> Callable[[str], str]:
    """An argparse type for a file to read, refused at once where it does not exist or is a
    folder, so that a command stops before it announces any work."""
    return checked_path(lambda path, _: check_input_file(path, expected))


text_file = input_file("a UTF-8 text file")
manifest_file = input_file("a CSV manifest with the columns path,text")
csv_file = input_file("a CSV file")
sentence_file = input_file("a UTF-8 text file of sentences, one per line, plain or gzip")
audio_file = input_file("an audio file")


def report_stream(*outputs: str | None) -> TextIO:
    """Where a command's lines for people go: stdout, or stderr where an output file is stdout
    itself (`--json /dev/stdout`), whose reader then gets the data alone."""
    try:
        stdout = os.fstat(sys.stdout.fileno())
    except (AttributeError, OSError, ValueError):  # closed, or not a file (a test's capture)
        return sys.stdout
    for output in outputs:
        try:
            if output is not None and os.path.samestat(os.stat(output), stdout):
                return sys.stderr
        except OSError:  # not yet written
            continue
    return sys.stdout


def typed_text(text: str) -> str:
    """Text typed on the command line. Where the locale cannot decode it (LC_ALL=C with
    PYTHONUTF8=0), Python keeps its bytes as lone surrogates: read again as UTF-8, which the
    terminal wrote, not refused as characters no model knows."""
    if not any("\udc80" <= character <= "\udcff" for character in text):
        return text
    try:
        return os.fsencode(text).decode("utf-8")
    except UnicodeError:
        return text


def positive_int(text: str) -> int:
    """argparse type: an integer greater than zero."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def non_negative_int(text: str) -> int:
    """argparse type: an integer, zero or greater."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value}")
    return value


def positive_ints(text: str) -> tuple[int, ...]:
    """argparse type: positive integers, comma-separated."""
    try:
        return tuple(positive_int(part) for part in text.split(","))
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected positive integers, comma-separated, got {text!r}") from None


def positive_floats(text: str) -> tuple[float, ...]:
    """argparse type: positive numbers, comma-separated."""
    try:
        return tuple(positive_float(part) for part in text.split(","))
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected positive numbers, comma-separated, got {text!r}") from None


def positive_float(text: str) -> float:
    """argparse type: a number greater than zero."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value}")
    return value


def non_negative_float(text: str) -> float:
    """argparse type: a finite number, zero or greater."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}") from None
    if not 0 <= value < math.inf:
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {value}")
    return value


def cell_list(text: str) -> list[str]:
    """argparse type: comma-separated cell names, each one lstmkit knows."""
    cells = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in cells if name not in CELL_NAMES]
    if unknown or not cells:
        raise argparse.ArgumentTypeError(f"expected cell names from {', '.join(CELL_NAMES)}, got {text!r}")
    twice = sorted({name for name in cells if cells.count(name) > 1})
    if twice:
        raise argparse.ArgumentTypeError(f"each cell once: {text!r} names {', '.join(twice)} more than once")
    return cells


def device_name(text: str) -> str:
    """argparse type: auto, cpu, cuda or cuda:N."""
    try:
        check_device_name(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected auto, cpu, cuda or cuda:N, got {text!r}") from None
    return text


def field_default(config_class: type, name: str):
    """The default of the field `name` of a config dataclass: the one place it is written."""
    for field in dataclasses.fields(config_class):
        if field.name == name:
            if field.default is dataclasses.MISSING:
                raise ValueError(f"{config_class.__name__}.{name} has no default")
            return field.default
    raise ValueError(f"{config_class.__name__} has no field {name!r}")


def add_setting(parser, config_class: type, name: str, help: str, flag: str | None = None, **options) -> None:
    """The option --NAME (dashes for underscores; or `flag`) for the config field `name`, its
    default read from the config class and shown in the help."""
    default = field_default(config_class, name)
    written = ",".join(map(str, default)) if isinstance(default, (tuple, list)) else default  # as the flag takes it
    unshown = default is None or default is False or default == ()  # not `in (None, False, ())`, which holds 0
    shown = "" if unshown else f" (default {written})"
    by_level = {level: values[name] for level, values in getattr(config_class, "level_defaults", {}).items()
                if name in values}
    if default is None and by_level:
        short_budgets = getattr(config_class, "short_budget_defaults", {})

        def at_level(level: str, value: object) -> str:
            seconds, sizes = short_budgets.get(level, (0.0, {}))
            shorter = (f" ({sizes[name]} with a --time-budget below {seconds:g} s, where neither "
                       f"{' nor '.join('--' + size.replace('_', '-') for size in sizes)} is given)"
                       if name in sizes else "")
            return f"{value} at {level} level{shorter}"

        shown = " (default " + ", ".join(at_level(level, value) for level, value in by_level.items()) + ")"
    flag = flag or "--" + name.replace("_", "-")
    if options.get("action") == "store_true":
        parser.add_argument(flag, help=help + shown, **options)
    else:
        parser.add_argument(flag, default=default, help=help + shown, **options)


def probability(text: str) -> float:
    """argparse type: a probability in [0, 1)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a probability in [0, 1), got {text!r}") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"expected a probability in [0, 1), got {value}")
    return value


def probability_mass(text: str) -> float:
    """argparse type: a share of probability in (0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {text!r}") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {value}")
    return value


def zoneout_probabilities(text: str) -> float | tuple[float, float]:
    """argparse type: z, or z_c,z_h."""
    parts = text.split(",")
    if len(parts) not in (1, 2):
        raise argparse.ArgumentTypeError(f"expected z or z_c,z_h (probabilities in [0, 1)), got {text!r}")
    values = tuple(probability(part) for part in parts)
    return values[0] if len(values) == 1 else values


def init_names(text: str) -> tuple[str, ...]:
    """argparse type: comma-separated initialisations (chrono, orthogonal)."""
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    if not names or any(name not in INITS for name in names) or len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"expected {' and/or '.join(INITS)}, comma-separated, each once, got {text!r}")
    return names


def add_regulariser_arguments(parser, config_class: type) -> None:
    """The layers' regularisers and initialisations (see RegulariserSettings)."""
    add_setting(parser, config_class, "recurrent_dropout",
                "dropout on h_{t-1} in the recurrent product, one mask per sequence", type=probability)
    add_setting(parser, config_class, "input_dropout", "dropout on each layer's input, one mask per sequence",
                type=probability)
    add_setting(parser, config_class, "zoneout", "z or z_c,z_h: units keep their previous value with this "
                "probability", type=zoneout_probabilities)
    add_setting(parser, config_class, "weight_dropout", "DropConnect on the recurrent weights", type=probability)
    add_setting(parser, config_class, "init", "chrono and/or orthogonal, comma-separated", type=init_names)
    add_setting(parser, config_class, "chrono_max", "the longest dependency chrono prepares for, in steps "
                "(default: the training sequences' length)", type=positive_float)


def add_training_arguments(parser, config_class: type, evaluations: bool = True, budget_of: str = "") -> None:
    """The training core's options (see lstmkit.training.TrainingConfig), defaults from
    `config_class`: optimizer, schedule, budget (`budget_of`: whose, where it is not the run's),
    evaluations (unless the pipeline evaluates at each epoch's end), seed, device, precision;
    and marks the command as one that trains, in every process under torchrun."""
    parser.set_defaults(trains=True)
    if "nt-asgd" in config_class.optimizers:
        add_setting(parser, config_class, "optimizer", "adamw, sgd, or nt-asgd (SGD, then averaged SGD once the "
                    "validation loss stalls)", choices=list(config_class.optimizers))
        add_setting(parser, config_class, "asgd_patience", "nt-asgd averages once the validation loss is worse than "
                    "the best before this many latest evaluations", type=positive_int)
    else:
        add_setting(parser, config_class, "optimizer", " or ".join(config_class.optimizers),
                    choices=list(config_class.optimizers))
    add_setting(parser, config_class, "ema_decay", "keep a moving average of the weights (0.999: about the last "
                "1,000 steps), which evaluations, best/ and the final model use", type=float)
    add_setting(parser, config_class, "lr", "peak learning rate", type=positive_float)
    add_setting(parser, config_class, "weight_decay", "weight decay (decoupled for AdamW)", type=non_negative_float)
    add_setting(parser, config_class, "clip", "gradient-norm clip", type=positive_float)
    add_setting(parser, config_class, "warmup", "steps of linear warm-up", type=non_negative_int)
    add_setting(parser, config_class, "min_lr_fraction",
                "the cosine decay ends at this fraction of --lr; 1 keeps the rate constant", type=float)
    default, value = config_class.default_budget
    helps = {"steps": "training steps", "epochs": "passes over the training data",
             "time_budget": "seconds of training (evaluations excluded)"}
    helps = {name: text for name, text in helps.items() if name in config_class.budgets}
    budget = parser.add_mutually_exclusive_group()
    for name, text in helps.items():
        shown = f" (without a budget: {value:g})" if name == default else ""
        budget.add_argument("--" + name.replace("_", "-"), type=positive_int if name == "steps" else positive_float,
                            help=text + (f" of {budget_of}" if budget_of else "") + shown)
    if evaluations:
        each_epoch = " (default at the end of each epoch)" if field_default(config_class, "eval_every") is None else ""
        add_setting(parser, config_class, "eval_every", "steps between evaluations" + each_epoch, type=positive_int)
    add_setting(parser, config_class, "seed", "seed of the weights, the data order, the dropout masks and the "
                "augmentation (each process of a torchrun its own stream from it)", type=int)
    add_setting(parser, config_class, "device", "auto (CUDA when available), cpu, cuda or cuda:N", type=device_name)
    add_setting(parser, config_class, "precision", "32, or bf16 / 16 under torch.autocast",
                choices=list(PRECISIONS))


def config_from(arguments: argparse.Namespace, config_class: type, **settings):
    """`config_class` built from the arguments named as its fields (and `settings`), so that
    what the command does is what the Python API does with the same settings. A value the
    config refuses is named by its flag too (`lr (--lr) must be a finite number, got inf`),
    where the message is a field's own check ("NAME must ...", "NAME is ...") naming no flag;
    a message about several settings names their flags itself."""
    names = {field.name for field in dataclasses.fields(config_class)}
    given = {name: value for name, value in vars(arguments).items() if name in names}
    try:
        return config_class(**{**given, **settings})
    except (ValueError, TypeError) as error:
        name, verb, _ = (str(error) + "  ").split(" ", 2)
        if name not in given or verb not in ("must", "is") or "(--" in str(error):
            raise
        raise type(error)(f"{name} (--{name.replace('_', '-')}){str(error).removeprefix(name)}") from None
