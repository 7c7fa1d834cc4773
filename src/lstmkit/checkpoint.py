"""Checkpoints: a folder with a JSON config and safetensors weights, written atomically.

A checkpoint loads without running pickle. It is written, and flushed to disk, in a staging
folder beside its destination, then renamed into place. A checkpoint already at the
destination moves to `.NAME.previous` first and is deleted after; one found only at
`.NAME.previous` (a save killed between the two renames) is kept until the new one is in
place. At every moment, then, the new checkpoint or the old one is complete on disk, where
`load_checkpoint` finds it.

A load checks what it reads and names the file and what is wrong with it (`CheckpointError`):
a file that is truncated or not JSON, a checkpoint of another kind, tensors missing, extra or
of another shape than the configuration implies, bytes that differ from those written (each
weights file carries the SHA-256 of what it holds in its header). `load_model_checkpoint`
compares the shapes in the weights file's header with those of the model built on the meta
device before any weight is read, so a crafted size costs nothing.
"""

from __future__ import annotations

import glob
import hashlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load, save
from torch import nn

from lstmkit.caller import warn_at_caller
from lstmkit.files import as_path, default_mode, remove_tree, through_link
from lstmkit.interrupts import interrupts_held

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
SEAL = "lstmkit.sha256"  # the weights file's metadata key for the SHA-256 of what it holds (`sealed`)
TRAINING_FILE = "training.safetensors"  # in a run's last/: the optimizer's and random-number state, to resume
RUN_CHECKPOINTS = ("best", "model")  # the checkpoint to load in an `lm train` run, a `forecast fit` folder

Shapes = Mapping[str, tuple[int, ...]]


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded: a file truncated, corrupt or not JSON, a checkpoint
    of another kind, tensors that do not fit its configuration. The message names the file
    and what is wrong with it."""


class CheckpointWriteError(OSError):
    """A checkpoint that could not be written (a full disk, no permission); the checkpoint
    that was there before is intact. `errno` is the failure's."""

    def __str__(self) -> str:
        return self.strerror


def model_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """A model's weights for a checkpoint, a tied weight stored once, as the tensor it shares:
    the model's `tied_weight` (the name of a parameter that is another's tensor), and any other
    name of a tensor met before (`same_tensor`: a model of one's own whose decoder shares its
    embedding's weight; safetensors refuses to write one tensor twice)."""
    tied = getattr(model, "tied_weight", None)
    tensors, seen = {}, set()
    for name, tensor in model.state_dict(keep_vars=True).items():
        if name != tied and same_tensor(tensor) not in seen:
            tensors[name] = tensor.detach()
            seen.add(same_tensor(tensor))
    return tensors


def same_tensor(tensor: torch.Tensor) -> object:
    """What two names of one tensor share: the object, or, for two parameters made over one
    memory (`nn.Parameter(embedding.weight.data)`), the very view of it they are (the meta
    device, and empty tensors, hold no memory to compare)."""
    if tensor.is_meta or tensor.numel() == 0:
        return id(tensor)
    return tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape), tensor.stride()


@dataclass(frozen=True)
class CheckpointKind:
    """What the checkpoints of one pipeline hold, so that a load can check them.

    name: the config's "kind"; description: what a load of this kind expects, for messages
    ("a forecaster"); section: the config entry that describes the model; sizes: the entries
    of that section that are tensor dimensions; build: the section -> the model; stored: the
    model -> the tensors its checkpoint holds (a tied weight once); counts: the entries that
    count parts, each with tensors of its own in each of the others (the layers of each member
    of an ensemble).
    """

    name: str
    description: str
    section: str
    sizes: tuple[str, ...]
    build: Callable[[dict], nn.Module]
    stored: Callable[[nn.Module], dict[str, torch.Tensor]] = model_tensors
    counts: tuple[str, ...] = ("num_layers",)


def save_checkpoint(
    directory: str | Path,
    config: dict,
    tensors: dict[str, torch.Tensor],
    extra_files: dict[str, str] | None = None,
    extra_tensors: dict[str, dict[str, torch.Tensor]] | None = None,
) -> Path:
    """Write `config` (JSON), `tensors` (safetensors), `extra_files` (name -> text) and
    `extra_tensors` (file name -> tensors, safetensors) to `directory`, replacing any
    checkpoint there. An OSError on the way (a full disk) raises CheckpointWriteError, the
    checkpoint that was there intact."""
    directory = as_path(directory, "the folder to write a checkpoint in")
    tensor_files = {WEIGHTS_FILE: tensors, **(extra_tensors or {})}
    for file_name, group in tensor_files.items():
        for name, tensor in group.items():
            if not isinstance(tensor, torch.Tensor):
                raise TypeError(
                    f"checkpoint tensors must be torch.Tensor, got {type(tensor).__name__} for {name!r} in {file_name}"
                )
    files = {CONFIG_FILE: json.dumps(config, indent=2, sort_keys=True) + "\n", **(extra_files or {})}
    check_replaceable(directory, set(files) | set(tensor_files), config.get("kind"))
    existed = directory.exists() or previous_path(directory).exists()
    try:
        write_checkpoint(directory, files, tensor_files)
    except OSError as error:
        if isinstance(error, TimeoutError) and error.errno is None:  # the caller's (a sweep's SIGALRM handler's)
            raise
        reason = os.strerror(error.errno).lower() if error.errno else str(error)
        kept = "the previous checkpoint there is intact" if existed else "there was no checkpoint there before"
        raise CheckpointWriteError(error.errno, f"{reason} while writing checkpoint {directory}; {kept}") from error
    return directory


def check_replaceable(directory: str | Path, names: set[str], kind: str | None = None) -> None:
    """Refuse to write a checkpoint of `kind` with the files `names` where the write would
    delete what is not such a checkpoint: a file; a folder holding other files (the user's own,
    or another program's); a checkpoint of another kind (a language model's best/)."""
    directory = Path(directory)
    if directory.is_file():
        raise FileExistsError(f"{directory} is a file; a checkpoint is a folder: choose another path")
    if not directory.is_dir() or not any(directory.iterdir()):
        return
    held = held_kind(directory)  # first: a checkpoint of another kind holds files of its own (a vocabulary)
    if held is not None and kind is not None and held != kind:
        raise FileExistsError(f"{directory} holds a {held!r} checkpoint, which writing a {kind!r} one there would "
                              "replace: choose another folder")
    foreign = sorted(path.name for path in directory.iterdir() if not path.is_file() or path.name not in names)
    if foreign or not (directory / CONFIG_FILE).is_file():
        shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "") if foreign else f"no {CONFIG_FILE}"
        raise FileExistsError(f"{directory} holds files that are not a checkpoint's ({shown}), which writing a "
                              "checkpoint there would delete: move them out, or choose another folder")


def held_kind(directory: Path) -> str | None:
    """The kind the checkpoint in `directory` names in its config (None: no readable config, or
    one without a kind)."""
    try:
        return json.loads((directory / CONFIG_FILE).read_text()).get("kind")
    except (OSError, ValueError, AttributeError, RecursionError):  # RecursionError: a config nested too deep
        return None


def write_checkpoint(directory: Path, files: dict[str, str], tensor_files: dict[str, dict[str, torch.Tensor]]) -> None:
    """Stage the files beside `directory`, flushed, then rename them into place, never
    deleting the only complete checkpoint on disk. A `directory` that is a link (to a folder
    moved to another disk, say) is written where it points (`through_link`)."""
    directory = through_link(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    previous = previous_path(directory)
    remove_staging(directory)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.new.", dir=directory.parent))
    try:
        os.chmod(staging, default_mode(directory=True))
        for name, text in files.items():
            write_file(staging / name, text.encode("utf-8"))
        for name, group in tensor_files.items():  # serialized in memory: safetensors' own writes hide errno
            tensors = {key: tensor.detach().contiguous().cpu() for key, tensor in group.items()}
            write_file(staging / name, sealed(tensors))
        with interrupts_held():  # the swap whole: Ctrl-C or SIGTERM in it left a half-deleted previous copy
            if directory.exists():  # the newest complete checkpoint: an older previous copy can go
                if previous.is_symlink() or previous.exists():  # a link where an older lstmkit moved a linked last/
                    remove_tree(previous)
                os.replace(directory, previous)
            os.replace(staging, directory)  # where previous is the only copy, it stays until now
            flush(directory.parent)
            shutil.rmtree(previous, ignore_errors=True)  # a copy left here (a kill) is removed by the next save
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def remove_staging(directory: Path) -> None:
    """Remove the staging folders a save of `directory` that was killed left beside it (beside
    the folder a link points to, where `write_checkpoint` stages)."""
    directory = through_link(directory)
    for orphan in directory.parent.glob(f".{glob.escape(directory.name)}.new.*"):
        shutil.rmtree(orphan, ignore_errors=True)


def load_checkpoint(directory: str | Path, device: str | torch.device = "cpu") -> tuple[dict, dict[str, torch.Tensor]]:
    """(config, tensors) of a checkpoint folder (or of its `.previous` copy, when a save was
    interrupted between its two renames), the tensors on `device` whatever device wrote them
    (the files hold none: tensors are saved from their CPU copies)."""
    directory = existing(Path(directory))
    return read_config(directory), load_tensors(directory / WEIGHTS_FILE, device)


def load_weights(model: nn.Module, tensors: dict[str, torch.Tensor], where: object) -> None:
    """Load the weights `model_tensors` saved (a tied weight is the tensor it shares), after
    checking their names and shapes against the model's (CheckpointError naming `where`)."""
    expected = model_tensors(model)
    check_tensor_shapes({name: tuple(tensor.shape) for name, tensor in tensors.items()},
                        {name: tuple(tensor.shape) for name, tensor in expected.items()}, where)
    check_tensor_kinds(tensors, expected, where)
    model.load_state_dict(tensors, strict=False)


def load_model_checkpoint(directory: str | Path, kind: CheckpointKind) -> tuple[dict, nn.Module]:
    """(config, model on the CPU with its weights) of a checkpoint of `kind`. Its kind, its
    sizes and the tensor names and shapes in the weights file's header are checked against
    the model it describes (built on the meta device) before any weight is read or allocated."""
    directory = existing(Path(directory))
    config = read_config(directory)
    config_path, weights_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
    check_kind(directory, config, kind.name, kind.description)
    section = config.get(kind.section)
    if not isinstance(section, dict):
        raise CheckpointError(f"{config_path} has no {kind.section!r} object describing {kind.description}")
    shapes = header_shapes(weights_path)
    check_sizes(section, kind, shapes, config_path, weights_path)
    try:
        with torch.device("meta"):
            expected = kind.stored(kind.build(section))
    except (TypeError, ValueError, RuntimeError) as error:
        raise CheckpointError(f"{config_path} describes {kind.description} this lstmkit cannot build "
                              f"(written by another version?): {error}") from None
    check_tensor_shapes(shapes, {name: tuple(tensor.shape) for name, tensor in expected.items()}, weights_path)
    model = kind.build(section)
    tensors = load_tensors(weights_path, "cpu")
    check_tensor_kinds(tensors, expected, weights_path)
    model.load_state_dict(tensors, strict=False)  # what `stored` leaves out is tied
    warn_unaveraged(directory, config)
    return config, model


def warn_unaveraged(directory: Path, config: dict) -> None:
    """Warn where `directory` is a run's last/ whose evaluations scored an average of the
    weights (`--ema-decay`, or NT-ASGD once it averaged; before, its evaluations scored the
    step's own weights too): last/ keeps the step's own weights, to resume from, and scored
    otherwise than the run said (`lm eval RUN/last` gave 3.2173 where metrics.csv held 3.2229
    for the same step)."""
    training = config.get("training")
    if not isinstance(training, dict) or not (directory / TRAINING_FILE).is_file():
        return
    if training.get("ema_decay") is not None:
        average = "their moving average (--ema-decay)"
    elif training.get("optimizer") == "nt-asgd" and (config.get("progress") or {}).get("averaging_from") is not None:
        average = "their running mean, NT-ASGD's"
    else:
        return
    warn_at_caller(f"{directory} holds the weights of the run's last step, kept to resume it; its evaluations and "
                   f"best/ used {average}, which scores otherwise: load {directory.parent / 'best'} for those")


def check_kind(directory: Path, config: dict, kind: str, description: str) -> None:
    """Refuse the checkpoint in `directory` (its config.json read as `config`) unless it is of
    `kind`; `description` says what was expected ("a translation model")."""
    if config.get("kind") != kind:
        found = f"a {config['kind']!r} checkpoint" if "kind" in config else \
            f"a checkpoint of no kind ({directory / CONFIG_FILE})"
        raise CheckpointError(f"{directory} holds {found}, not {description}")


def checkpoint_folder(directory: str | Path) -> Path:
    """The checkpoint a user means by `directory`: the folder itself, or the best/ of an `lm
    train` run, or the model/ of a `forecast fit` folder."""
    directory = as_path(directory, "a checkpoint folder or a run's folder")
    if (existing(directory) / CONFIG_FILE).exists():
        return directory
    for name in RUN_CHECKPOINTS:
        if existing(directory / name).is_dir():
            return directory / name
    return directory


def run_folder(directory: str | Path) -> Path:
    """The folder of the run a command was given: `directory` itself, or, where it is a run's
    checkpoint (a best/, last/ or model/ that holds config.json, or its `.previous` copy after
    an interrupted save), the folder that holds it. A run folder called model or best holds no
    config.json of its own; a checkpoint saved on its own is not called so."""
    directory = Path(directory)
    checkpoint = directory.name in (*RUN_CHECKPOINTS, "last") and (existing(directory) / CONFIG_FILE).is_file()
    return directory.parent if checkpoint else directory


# The files a run writes beside its checkpoints (its results, metrics, curves and figures, a
# forecast's backtest and held-out rows): another command's output refused there.
RUN_RECORDS = frozenset({"results.json", "metrics.csv", "curves.csv", "curves.png", "learning_curves.png",
                         "backtest.csv", "backtest.png", "gradient_norms.csv", "gradient_norms.png"})


def run_holding(path: Path) -> Path | None:
    """The folder of the run or checkpoint whose file `path` is, if it is one: a file of an
    lstmkit checkpoint (or a new one in it), or one of RUN_RECORDS beside a run's checkpoints (last/, best/, model/,
    or a task run's models/CELL). None for every other path, such as an earlier evaluation's
    output put in a run's folder, which a command may replace, or a file beside another
    library's checkpoint (a Hugging Face model/ holds a config.json and weights too)."""
    folder = path.parent
    if trained_model(folder):  # a new file too: a checkpoint holds its own files alone, or refuses to load
        return folder
    if not path.is_file():
        return None
    if lstmkit_checkpoint(folder):
        return folder
    if path.name not in RUN_RECORDS:
        return None
    if any(lstmkit_checkpoint(existing(folder / name)) for name in (*RUN_CHECKPOINTS, "last")):
        return folder
    try:  # a task run's cells (a forecaster saved into models/NAME is no run)
        cells = list((folder / "models").iterdir())
    except OSError:  # none, or a folder this process may not read, which holds no run it wrote
        return None
    return folder if any(held_kind(entry) == "sequence_model" for entry in cells) else None


def trained_model(folder: Path) -> bool:
    """Whether `folder` is a checkpoint lstmkit wrote with its weights (a config.json of one's
    own that names a kind is none)."""
    return lstmkit_checkpoint(folder) and (folder / WEIGHTS_FILE).is_file()


def lstmkit_checkpoint(folder: Path) -> bool:
    """Whether `folder` holds a checkpoint lstmkit wrote: its config names a kind, or it keeps
    a run's training state (a Job of one's own may name no kind); not one this process may
    not read."""
    try:
        return held_kind(folder) is not None or (folder / TRAINING_FILE).is_file()
    except OSError:
        return False


def read_config(directory: Path) -> dict:
    """The JSON object in a checkpoint folder's config.json."""
    config_path, weights_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
    if not directory.exists():
        raise FileNotFoundError(f"{directory} does not exist")
    if not config_path.is_file() or not weights_path.is_file():
        hint = ""
        if directory.is_file() and (directory.parent / CONFIG_FILE).is_file():
            hint = f" (it is a file of one: give the folder that holds it, {directory.parent})"
        elif existing(directory / "last").is_dir() and not existing(directory / "best").is_dir():
            hint = f" (it holds a run's last/ but no best/: give {directory / 'last'} for its latest checkpoint)"
        elif existing(directory / "models").is_dir():  # a `lstmkit task` or demo run: a model per cell
            cells = sorted(path.name for path in (directory / "models").iterdir() if path.is_dir())
            hint = (f" (it holds a task run's models/: give {directory / 'models' / 'CELL'}, a cell of "
                    f"{', '.join(cells) or 'none'})")
        elif directory.is_dir() and (held := sorted(  # not the hidden copies a save keeps
                path.name for path in directory.iterdir()
                if not path.name.startswith(".") and (path / CONFIG_FILE).is_file())):
            hint = f" (it holds checkpoints in folders: give one of them, {', '.join(held)})"
        elif (directory / "training").is_dir():
            hint = (" (it holds training runs but no model/: a `forecast fit` that stopped continues with the "
                    "same command and --resume; `forecast backtest` saves no model)")
        elif (directory / "results.json").is_file() and (directory / "backtest.csv").is_file():
            hint = (" (it holds a backtest's results.json: `forecast backtest` saves no model, `forecast fit` does; "
                    "a fit stopped before it saved model/ continues with --resume)")
        raise FileNotFoundError(
            f"{directory} is not an lstmkit checkpoint: expected {CONFIG_FILE} and {WEIGHTS_FILE} in it{hint}"
        )
    config = read_json(config_path)
    if not isinstance(config, dict):
        raise CheckpointError(f"{config_path} holds a JSON {type(config).__name__}, expected an object")
    return config


def read_extra_json(directory: str | Path, name: str) -> object:
    """A JSON file saved with a checkpoint through `extra_files`."""
    return read_json(extra_file(directory, name))


def read_extra_text(directory: str | Path, name: str) -> str:
    """A UTF-8 text file saved with a checkpoint through `extra_files`."""
    path = extra_file(directory, name)
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as error:
        raise CheckpointError(f"{path} is not text: byte {error.start} is not UTF-8") from None


def extra_file(directory: str | Path, name: str) -> Path:
    """The path of a file saved with a checkpoint through `extra_files`, which must be there."""
    path = existing(Path(directory)) / name
    if not path.is_file():
        raise CheckpointError(f"{path.parent} has no {name}: the checkpoint is incomplete")
    return path


def read_extra_tensors(directory: str | Path, name: str, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """A tensor file saved with a checkpoint through `extra_tensors`, its tensors on `device`."""
    return load_tensors(extra_file(directory, name), device)


def read_json(path: Path) -> object:
    """The JSON in `path`; CheckpointError naming the file and the position of a syntax error."""
    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as error:
        raise CheckpointError(f"{path} is not JSON: byte {error.start} is not UTF-8") from None
    except json.JSONDecodeError as error:
        at = error.msg.removesuffix(" at")  # "Unterminated string starting at" the place given
        raise CheckpointError(f"{path} is not JSON: {at} at line {error.lineno} column {error.colno}") from None
    except RecursionError:
        raise CheckpointError(f"{path} is not a checkpoint's config: its JSON is nested too deep to read") from None


def sealed(tensors: dict[str, torch.Tensor]) -> bytes:
    """`tensors` as a safetensors file whose header carries the SHA-256 of what it holds, its
    tensors' names, dtypes, shapes and bytes (`load_tensors` checks it): a weights file damaged
    on disk, its bytes overwritten rather than cut short, loaded as other weights (NaN losses, an
    empty transcript) without a word."""
    return save(tensors, metadata={SEAL: contents_digest(save(tensors))})  # the same tensors, a longer header


def contents_digest(content: bytes) -> str:
    """The SHA-256 of a safetensors file's contents: its header's tensor entries (as JSON with
    sorted keys, without its metadata) and the bytes after the header."""
    header, data = split_header(content)
    entries = json.dumps({name: entry for name, entry in header.items() if name != "__metadata__"}, sort_keys=True)
    digest = hashlib.sha256(entries.encode("utf-8"))
    digest.update(data)
    return digest.hexdigest()


def split_header(content: bytes) -> tuple[dict, memoryview]:
    """A safetensors file's header (parsed) and its tensors' bytes (a view, not a copy)."""
    length = int.from_bytes(content[:8], "little")
    return json.loads(content[8:8 + length]), memoryview(content)[8 + length:]


def load_tensors(path: Path, device: str | torch.device) -> dict[str, torch.Tensor]:
    """A safetensors file read on the CPU, then moved to `device` (map_location's role); one
    `sealed` is checked against its SHA-256 (one written before lstmkit sealed them is not). The
    file is read once: a save that replaces it meanwhile cannot mix two versions."""
    try:
        with safe_open(path, "pt"):  # the header checked first, as torch's load_file does, naming what is wrong
            pass
        content = path.read_bytes()
        tensors = load(content)
    except SafetensorError as error:
        raise unreadable(path, error) from None
    digest = (split_header(content)[0].get("__metadata__") or {}).get(SEAL)
    if digest is not None and contents_digest(content) != digest:
        raise CheckpointError(f"{path} is damaged: what it holds differs from what was written (its SHA-256 no "
                              "longer matches the one written with it); restore it from a copy, or use the run's "
                              "other checkpoint where it serves (best/ holds the best model; only last/ resumes a "
                              "run), or train again")
    if torch.device(device).type == "cpu":
        return tensors
    return {name: tensor.to(device) for name, tensor in tensors.items()}


def header_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """The shape of every tensor in a safetensors file, from its header alone (which is
    checked to describe exactly the bytes that follow it)."""
    try:
        with safe_open(path, "pt") as file:
            return {name: tuple(file.get_slice(name).get_shape()) for name in file.keys()}  # noqa: SIM118 (not a dict)
    except SafetensorError as error:
        raise unreadable(path, error) from None


def unreadable(path: Path, error: SafetensorError) -> CheckpointError:
    return CheckpointError(f"{path} is not a readable safetensors file (truncated or corrupt: {error})")


def check_sizes(section: dict, kind: CheckpointKind, shapes: Shapes, config_path: Path, weights_path: Path) -> None:
    """Refuse a size that no tensor in the weights file comes near, or counts of parts that need
    more tensors than it holds, before anything they would make is built: a size is at most the
    largest dimension, the product of the counts at most the tensor count. (Values of the wrong
    kind are left to the model's own checks.)"""
    counts = {name: section[name] for name in kind.counts if name in section}  # a missing one: the model's default
    whole = all(isinstance(value, int) and not isinstance(value, bool) and value > 0 for value in counts.values())
    if counts and whole and math.prod(counts.values()) > len(shapes):
        named = ", ".join(f"{name}={value}" for name, value in counts.items())
        raise CheckpointError(f"{config_path} sets {named}, which the tensors in {weights_path} do not fit: each "
                              f"part has tensors of its own, and the file holds {len(shapes)}")
    bound = max((max(shape, default=0) for shape in shapes.values()), default=0)
    for name in kind.sizes:
        value = section.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > bound:
            largest = max(shapes, key=lambda tensor: max(shapes[tensor], default=0), default=None)
            holds = "it holds no tensor" if largest is None else f"the largest is {largest}, {shapes[largest]}"
            raise CheckpointError(f"{config_path} sets {name}={value}, which the tensors in {weights_path} do not "
                                  f"fit: none has a dimension that large ({holds})")


def check_tensor_shapes(found: Shapes, expected: Shapes, where: str | Path) -> None:
    """Tensors `found` in a checkpoint against those its configuration implies: the same
    names, the same shapes; else CheckpointError naming each difference."""
    differences = []
    if missing := [name for name in expected if name not in found]:
        differences.append(f"missing tensors {', '.join(missing)}")
    if extra := [name for name in found if name not in expected]:
        differences.append(f"unexpected tensors {', '.join(extra)}")
    differences += [f"{name} is {found[name]} in the file but {shape} by the configuration"
                    for name, shape in expected.items() if name in found and tuple(found[name]) != tuple(shape)]
    if differences:
        raise CheckpointError(f"{where} does not fit its configuration: {'; '.join(differences)}")


def check_tensor_kinds(found: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], where: str | Path) -> None:
    """Refuse a tensor whose kind of number is not the model's (a weight saved as integers,
    booleans or complex numbers, which loading would cast to floats without a word); floats
    of another precision load, cast."""
    def kind(tensor: torch.Tensor) -> str:
        return "complex" if tensor.is_complex() else "floating" if tensor.is_floating_point() else "integer or boolean"

    for name, tensor in found.items():
        if name in expected and kind(tensor) != kind(expected[name]):
            raise CheckpointError(f"{where}: {name} holds {tensor.dtype} in the file, but the model's is "
                                  f"{expected[name].dtype}: the file was not written by lstmkit, or edited")


def existing(directory: Path) -> Path:
    """The checkpoint folder, or its `.previous` copy after a save interrupted between renames
    (beside the folder a link points to, where `write_checkpoint` writes)."""
    directory = through_link(directory)
    if not directory.exists() and previous_path(directory).exists():
        return previous_path(directory)
    return directory


def previous_path(directory: Path) -> Path:
    return directory.parent / f".{directory.name}.previous"


def write_file(path: Path, data: bytes) -> None:
    """Write and flush to disk (open() gives the umask's permissions)."""
    with open(path, "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())


def flush(path: Path) -> None:
    """fsync a file or a directory (so a rename in it survives a power cut)."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
