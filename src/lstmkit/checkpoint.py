"""Checkpoints: a folder with a JSON config and safetensors weights, written atomically.

A checkpoint loads without running pickle. It is written, and flushed to disk, in a
temporary folder beside its destination, then renamed into place: the old checkpoint moves
to `.NAME.previous` first and is deleted after. A crash therefore leaves the new checkpoint,
or the old one in place, or (between the two renames) the old one under `.NAME.previous`,
where `load_checkpoint` finds it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from lstmkit.files import default_mode

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


def save_checkpoint(
    directory: str | Path,
    config: dict,
    tensors: dict[str, torch.Tensor],
    extra_files: dict[str, str] | None = None,
    extra_tensors: dict[str, dict[str, torch.Tensor]] | None = None,
) -> Path:
    """Write `config` (JSON), `tensors` (safetensors), `extra_files` (name -> text) and
    `extra_tensors` (file name -> tensors, safetensors) to `directory`, replacing any
    checkpoint there."""
    directory = Path(directory)
    tensor_files = {WEIGHTS_FILE: tensors, **(extra_tensors or {})}
    for file_name, group in tensor_files.items():
        for name, tensor in group.items():
            if not isinstance(tensor, torch.Tensor):
                raise TypeError(
                    f"checkpoint tensors must be torch.Tensor, got {type(tensor).__name__} for {name!r} in {file_name}"
                )
    directory.parent.mkdir(parents=True, exist_ok=True)
    previous = previous_path(directory)
    for orphan in directory.parent.glob(f".{directory.name}.new.*"):  # left by a save that was killed
        shutil.rmtree(orphan, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.new.", dir=directory.parent))
    os.chmod(staging, default_mode(directory=True))
    try:
        write_text(staging / CONFIG_FILE, json.dumps(config, indent=2, sort_keys=True) + "\n")
        for file_name, group in tensor_files.items():
            save_file({name: tensor.detach().contiguous().cpu() for name, tensor in group.items()}, staging / file_name)
            os.chmod(staging / file_name, default_mode())
            flush(staging / file_name)
        for name, text in (extra_files or {}).items():
            write_text(staging / name, text)
        if previous.exists():
            shutil.rmtree(previous)
        if directory.exists():
            os.replace(directory, previous)
        os.replace(staging, directory)
        flush(directory.parent)
        if previous.exists():
            shutil.rmtree(previous)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return directory


def model_tensors(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A model's weights for a checkpoint, a tied weight (the model's `tied_weight`: the name of
    a parameter that is another's tensor) stored once, as the tensor it shares."""
    tensors = model.state_dict()
    tied = getattr(model, "tied_weight", None)
    if tied is not None:
        del tensors[tied]
    return tensors


def load_weights(model: torch.nn.Module, tensors: dict[str, torch.Tensor], where: object) -> None:
    """Load the weights `model_tensors` saved, checking that they fit the model."""
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    tied = getattr(model, "tied_weight", None)
    if missing != ([] if tied is None else [tied]) or unexpected:
        raise ValueError(f"{where}: weights do not fit the model (missing {missing}, unexpected {unexpected})")


def load_checkpoint(directory: str | Path, device: str | torch.device = "cpu") -> tuple[dict, dict[str, torch.Tensor]]:
    """(config, tensors) of a checkpoint folder (or of its `.previous` copy, when a save was
    interrupted between its two renames), the tensors on `device` whatever device wrote them
    (the files hold none: tensors are saved from their CPU copies)."""
    directory = existing(Path(directory))
    config_path, weights_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
    if not config_path.is_file() or not weights_path.is_file():
        raise FileNotFoundError(
            f"{directory} is not an lstmkit checkpoint: expected {CONFIG_FILE} and {WEIGHTS_FILE} in it"
        )
    return json.loads(config_path.read_text()), load_tensors(weights_path, device)


def load_trained(directory: str | Path, kind: str, what: str) -> tuple[Path, dict, dict[str, torch.Tensor]]:
    """(the checkpoint folder, its config, its tensors on the CPU) of a run folder (its best/
    checkpoint) or a checkpoint folder, which must hold a checkpoint of `kind` (`what`: how the
    message calls it)."""
    directory = Path(directory)
    if (directory / "best").exists() or previous_path(directory / "best").exists():
        directory = directory / "best"
    config, tensors = load_checkpoint(directory)
    if config.get("kind") != kind:
        raise ValueError(f"{directory} holds a {config.get('kind')!r} checkpoint, not {what}")
    return directory, config, tensors


def read_extra_file(directory: str | Path, name: str) -> str:
    """A text file saved with a checkpoint through `extra_files`."""
    return (existing(Path(directory)) / name).read_text()


def read_extra_tensors(directory: str | Path, name: str, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """A tensor file saved with a checkpoint through `extra_tensors`, its tensors on `device`."""
    return load_tensors(existing(Path(directory)) / name, device)


def load_tensors(path: Path, device: str | torch.device) -> dict[str, torch.Tensor]:
    """A safetensors file read on the CPU, then moved to `device` (map_location's role)."""
    tensors = load_file(path)
    if torch.device(device).type == "cpu":
        return tensors
    return {name: tensor.to(device) for name, tensor in tensors.items()}


def existing(directory: Path) -> Path:
    """The checkpoint folder, or its `.previous` copy after a save interrupted between renames."""
    if not directory.exists() and previous_path(directory).exists():
        return previous_path(directory)
    return directory


def previous_path(directory: Path) -> Path:
    return directory.parent / f".{directory.name}.previous"


def write_text(path: Path, text: str) -> None:
    """Write and flush to disk (open() gives the umask's permissions)."""
    with open(path, "w", encoding="utf-8") as file:
        file.write(text)
        file.flush()
        os.fsync(file.fileno())


def flush(path: Path) -> None:
    """fsync a file or a directory (so a rename in it survives a power cut)."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
