"""Writing result files atomically: into a temporary file beside the target, then renamed."""

from __future__ import annotations

import codecs
import contextlib
import csv
import errno
import functools
import gzip
import hashlib
import json
import math
import os
import shutil
import stat
import sys
import tempfile
import threading
import unicodedata
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

from lstmkit.caller import warn_at_caller

try:
    import fcntl  # POSIX: a lock on a folder, released by the system when its process ends
except ImportError:  # Windows: folders are not locked
    fcntl = None


# The folders this process holds (`claimed_folder`), by device and inode, and who holds each:
# (process id, thread id): each claim opens a descriptor of its own, and flock refuses a second
# one even to the thread that holds the first.
HELD_FOLDERS: dict[tuple[int, int], tuple[int, int]] = {}
# The descriptors that hold those locks (`claimed_folder`): a process forked while one is held
# (a user's worker pool, a DataLoader's workers) closes its copies (`release_inherited_locks`).
LOCK_DESCRIPTORS: set[int] = set()

# The formats a figure the user names is written in, by its suffix (plots.save).
FIGURE_SUFFIXES = (".png", ".pdf", ".svg")


def default_mode(directory: bool = False) -> int:
    """The permissions a plain open() or mkdir() would give under the current umask
    (mkstemp and mkdtemp make private ones)."""
    umask = os.umask(0)
    os.umask(umask)
    return (0o777 if directory else 0o666) & ~umask


@contextlib.contextmanager
def claimed_folder(folder: Path | None) -> Iterator[None]:
    """`folder` (created, where it is not yet) held by this process while the block runs, or
    refused where another holds it: two runs started into one folder both passed its checks,
    none having written a checkpoint yet, and the one that ended last overwrote the other's
    files. An advisory lock (flock) on the folder itself: nothing is written for it, and a
    process that dies, even by kill -9, lets it go. The folders it made that the block leaves
    empty are removed, while it still holds the lock. None, or a system without flock: nothing
    is held; a file system that refuses locks (NFS without lockd) is warned of, once, and the
    folder is held within this process only. A folder this thread holds already is taken as
    held (the demo holds its folder from its checks to its last figure, around the task run that
    holds it while the cells train); one another thread holds is refused, as another process's."""
    if folder is None or fcntl is None:
        yield
        return
    made = folders_to_make(folder)
    folder.mkdir(parents=True, exist_ok=True)
    status = folder.stat()
    held, holder = (status.st_dev, status.st_ino), (os.getpid(), threading.get_ident())
    if HELD_FOLDERS.get(held) == holder:
        yield
        return
    in_use = in_use_error(folder)
    if held in HELD_FOLDERS and HELD_FOLDERS[held][0] == os.getpid():  # another thread's, where flock is refused
        raise in_use
    handle = None
    try:
        handle = os.open(folder, os.O_RDONLY)
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        if handle is not None:
            os.close(handle)
            handle = None
        if isinstance(error, BlockingIOError):
            raise in_use from None
        warn_at_caller(f"{folder} cannot be locked ({error.strerror}): another run started into it would not be "
                       "refused")
    HELD_FOLDERS[held] = holder
    if handle is not None:  # a fork by another thread since os.open kept a copy: the narrow window is not closed
        LOCK_DESCRIPTORS.add(handle)
    try:
        yield
    finally:
        del HELD_FOLDERS[held]
        remove_empty_folders(made)
        if handle in LOCK_DESCRIPTORS:  # not in a forked child, which closed its copy at once
            LOCK_DESCRIPTORS.discard(handle)
            os.close(handle)


def release_inherited_locks() -> None:
    """In a process just forked: close its copies of the descriptors that hold this process's
    run-folder locks. A child keeps a lock while it holds a copy, even after its parent let go
    (flock's lock belongs to the open file, which the copy shares): a worker forked during a
    run, still alive after it, made the next run into the folder refused as "in use". The
    parent's own descriptors keep the lock held."""
    for handle in LOCK_DESCRIPTORS:
        with contextlib.suppress(OSError):
            os.close(handle)
    LOCK_DESCRIPTORS.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=release_inherited_locks)


def in_use_error(folder: Path) -> ValueError:
    return ValueError(f"{folder} is in use: another run is writing there now; wait for it to end, or choose another "
                      "folder")


def check_not_in_use(folder: Path) -> None:
    """Refuse `folder` where another run holds it now (`claimed_folder`), before the checks of
    what it holds: a new run into a folder being trained was told to pass --resume, which then
    met this refusal."""
    if fcntl is None or not folder.is_dir():
        return
    status = folder.stat()
    holder = HELD_FOLDERS.get((status.st_dev, status.st_ino))
    if holder is not None:  # this process's: this thread's is its own to go on in
        if holder != (os.getpid(), threading.get_ident()):
            raise in_use_error(folder)
        return
    handle = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise in_use_error(folder) from None
    except OSError:  # a file system without locks: claimed_folder warns of it
        pass
    finally:
        os.close(handle)  # and the lock with it


def folders_to_make(folder: Path) -> list[Path]:
    """The folders `folder.mkdir(parents=True)` would make, the deepest first."""
    return [path for path in (folder, *folder.parents) if not path.exists()]


def remove_empty_folders(made: list[Path]) -> None:
    """Remove the folders of `folders_to_make` that are left empty, the deepest first, up to the
    first that holds anything."""
    for path in made:
        if not path.is_dir() or any(path.iterdir()):
            break
        path.rmdir()


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path to write to; on success it replaces `path`, on failure it is removed.
    A link is written through (the file it names is replaced, the link kept). What is written
    to this process's stdout or stderr (/dev/stdout, even where a shell's `>` made it a file),
    a device (/dev/null) or a named pipe is written into once complete, after what was printed
    before it: replacing it would put a file where the device or pipe was, or cut off the
    output already printed."""
    path = Path(path)
    stream = standard_stream(path)
    if stream is not None or device_or_pipe(path):
        with tempfile.TemporaryDirectory() as folder:
            temporary = Path(folder) / f"output{temporary_suffix(path.suffix)}"  # the suffix: a figure's format
            with failed_writes_named(lambda error: type(error)(
                    f"cannot write {path} ({error.strerror} in {folder}, the temporary folder it is written in "
                    "first: set TMPDIR to another)")):
                yield temporary
            data = temporary.read_bytes()
        with failed_writes_named(functools.partial(cannot_write, path)):
            write_into(path, data, stream)
        return
    path = through_link(path)
    prefix, suffix = temporary_name(path.name, path.suffix)
    with failed_writes_named(functools.partial(cannot_write, path)):
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=path.parent)
    os.close(descriptor)
    try:
        with failed_writes_named(functools.partial(cannot_write, path)):  # the block's writing, then the rename
            yield Path(temporary)
            os.chmod(temporary, default_mode())
            os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


# The longest name (in bytes) of a file or folder on Linux's and macOS's file systems.
NAME_MAX = 255
# The most bytes of a file's suffix that its temporary file keeps (a figure's .png, a .csv).
TEMPORARY_SUFFIX_MAX = 16


def temporary_suffix(suffix: str) -> str:
    """The suffix a temporary file keeps of its target's: the whole, up to TEMPORARY_SUFFIX_MAX bytes."""
    return suffix if len(os.fsencode(suffix)) <= TEMPORARY_SUFFIX_MAX else ""


def temporary_name(name: str, suffix: str) -> tuple[str, str]:
    """The prefix and suffix of the temporary file `atomic_path` writes `name` to first: "." and
    the name, shortened so that with a dot, mkstemp's 8 random characters and the suffix
    (`temporary_suffix`) it stays within NAME_MAX. A name of 242-255 bytes failed with "File
    name too long" once the work was done."""
    suffix = temporary_suffix(suffix)
    room = NAME_MAX - len(os.fsencode(suffix)) - 10  # the two dots and the random characters
    while len(os.fsencode(name)) > room:
        name = name[:-1]
    return f".{name}.", suffix


def through_link(path: Path) -> Path:
    """`path`, or the path it links to: a file or checkpoint folder the user moved elsewhere (to
    another disk) and linked back is replaced where it is, the link kept, its temporary copy
    beside it, where the rename stays on one file system."""
    return Path(os.path.realpath(path)) if path.is_symlink() else path


def remove_tree(path: Path) -> None:
    """Remove the folder `path`, or, where it is a link, the link alone: rmtree refuses a link
    ("Cannot call rmtree on a symbolic link"), and what it points to may be outside the run's
    folder (a model another run shares, a folder the user moved) and is not lstmkit's to delete."""
    if path.is_symlink():
        path.unlink()
        return
    shutil.rmtree(path)


def device_or_pipe(path: Path) -> bool:
    """Whether `path` is a character device (/dev/null, a terminal) or a named pipe: what is
    written into as it is, not replaced (as is this process's stdout or stderr, `standard_stream`)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return stat.S_ISCHR(mode) or stat.S_ISFIFO(mode)


def standard_stream(path: Path):
    """sys.stdout or sys.stderr where `path` is the file, pipe or terminal it writes to, else None."""
    try:
        status = os.stat(path)
    except OSError:
        return None
    for stream in (sys.stdout, sys.stderr):
        try:
            if os.path.samestat(status, os.fstat(stream.fileno())):
                return stream
        except (AttributeError, OSError, ValueError):  # replaced by an object without a descriptor, or closed
            continue
    return None


def write_into(path: Path, data: bytes, stream) -> None:
    """`data` written after what `stream` (stdout or stderr, when `path` is it) printed, or
    appended to the device or pipe `path`."""
    if stream is not None:
        stream.flush()
        buffer = getattr(stream, "buffer", None)  # a notebook's stream has none: its text then
        if buffer is None:
            stream.write(data.decode("utf-8", errors="replace"))
        else:
            buffer.write(data)
        stream.flush()
        return
    with open(path, "ab") as target:
        target.write(data)


@contextlib.contextmanager
def failed_writes_named(described: Callable[[OSError], OSError]) -> Iterator[None]:
    """A write's failure in the block (an OSError with an errno: a full disk, a file-size limit)
    raised as `described(error)`, which names the file; any other error, such as the caller's
    own TimeoutError from a SIGALRM handler, passes unchanged."""
    try:
        yield
    except OSError as error:
        if error.errno is None:
            raise
        raise described(error) from None


def cannot_write(path: Path, error: OSError) -> OSError:
    """`error` of writing `path` (or its temporary file), naming `path`, the file the user asked for."""
    return type(error)(f"cannot write {path} ({error.strerror or error})")


def fingerprint(data: bytes) -> dict:
    """The size and SHA-256 of `data`: what a run records of the data it trains on."""
    return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def write_json(path: str | Path, data: object) -> None:
    """`data` as strict JSON: a float that is not finite (a perplexity past the float range) is
    written as null, as pandas writes it; NaN and Infinity are not JSON, and parsers such as
    JavaScript's refuse them."""
    with atomic_path(path) as temporary:
        temporary.write_text(json.dumps(finite_or_null(data), indent=2, allow_nan=False) + "\n")


def finite_or_null(data: object) -> object:
    """`data` with each float that is not finite, at any depth of its dicts and lists, made None."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {key: finite_or_null(value) for key, value in data.items()}
    if isinstance(data, list | tuple):
        return [finite_or_null(value) for value in data]
    return data


def write_csv(path: str | Path, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    with atomic_path(path) as temporary, open(temporary, "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(header)
        writer.writerows(rows)


GZIP_MAGIC = b"\x1f\x8b"


# The byte-order marks of the Unicode encodings other than UTF-8, UTF-32's first: each begins
# as UTF-16's does.
OTHER_UNICODE_MARKS = ((codecs.BOM_UTF32_LE, "UTF-32"), (codecs.BOM_UTF32_BE, "UTF-32"),
                       (codecs.BOM_UTF16_LE, "UTF-16"), (codecs.BOM_UTF16_BE, "UTF-16"))
# Text without a byte-order mark is named UTF-16 where, in its first bytes, this share of one
# byte order's high bytes are zero (ASCII's are all; see check_not_unmarked_utf16).
UTF16_SAMPLE_BYTES = 1024
UTF16_NUL_SHARE = 0.5
UTF16_LOW_NUL_SHARE = 0.1  # U+0100, U+4E00 (一), U+3000 have a low byte of 0
UTF16_SHORTEST = 16  # bytes: fewer tell nothing (b"abc\x00" is binary)


def decoded_utf8(data: bytes, name: str | Path, expected: str) -> str:
    """`data` (a file's or stdin's, called `name` in messages) as UTF-8 text, an editor's
    byte-order mark dropped (it is no character of the text), or refused, saying what it is:
    UTF-16 or UTF-32 text by its byte-order mark (Windows Notepad's "Unicode", PowerShell 5's
    `>`; it was called binary, for its NUL bytes) or, without one, by its NUL bytes (iconv's
    UTF-16LE), binary data by its first NUL byte (`expected` names the text wanted), other bytes
    by the first that does not decode, with its line."""
    check_not_other_unicode(data, name)
    nul = data.find(b"\x00")
    if nul >= 0:
        check_not_unmarked_utf16(data, name)
        raise ValueError(f"{name} is not text: it contains NUL bytes (the first at offset {nul}, on line "
                         f"{line_of(data, nul)}); expected {expected}")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:  # its position counts from after a byte-order mark
        offset = error.start + (len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0)
        raise ValueError(f"{name} is not UTF-8 text: byte 0x{data[offset]:02x} at offset {offset} (line "
                         f"{line_of(data, offset)}) does not decode") from None


def warn_unless_composed(lines: Iterable[tuple[int, str]], name: str | Path) -> None:
    """Warn where the numbered `lines` of `name` write a letter otherwise than in Unicode's
    composed form, NFC, and also composed: a base and a combining mark (u, U+0308) is another
    character than the same letter composed (ü), to a model, its alphabet and vocabulary and
    the scores alike, and looks the same in every message. A text that writes a letter one way
    only (a CJK compatibility ideograph, which NFC would replace) is left alone."""
    lines = list(lines)
    text = "\n".join(line for _, line in lines)
    if unicodedata.is_normalized("NFC", text):
        return
    written = {}  # each letter written otherwise than composed: the lines that write it, the first word
    for number, line in lines:
        for word in line.split():
            if not unicodedata.is_normalized("NFC", word):
                for letter in letters(word):
                    if unicodedata.normalize("NFC", letter) != letter:
                        written.setdefault(letter, ([], word))[0].append(number)
    both = {letter: found for letter, found in written.items() if unicodedata.normalize("NFC", letter) in text}
    if both:  # each letter searched for once: a text written all decomposed is read in one pass per letter
        letter = min(both, key=lambda each: both[each][0][0])
        (first, *_), word = both[letter]
        lines_both = {number for numbers, _ in both.values() for number in numbers}
        warn_at_caller(f"{name}: {len(lines_both):,} line(s) write a letter otherwise than in "
                       f"Unicode's composed form, NFC, which the text also writes (the first: line {first}, {word!a}, "
                       f"whose {letter!a} is written {unicodedata.normalize('NFC', letter)!a} too): one letter written "
                       "both ways counts as two different characters, to the model and its scores alike; normalise "
                       "the text to NFC (Python: unicodedata.normalize('NFC', text))")


def letters(word: str) -> list[str]:
    """`word`'s letters as written: each base character with the combining marks after it."""
    found: list[str] = []
    for character in word:
        if found and unicodedata.category(character).startswith("M"):
            found[-1] += character
        else:
            found.append(character)
    return found


def line_of(data: bytes, offset: int) -> int:
    """The line, counting from 1, that holds the byte at `offset` (lines end in LF, or in CR in
    a text without LF, as the readers read them)."""
    return data.count(b"\n" if b"\n" in data else b"\r", 0, offset) + 1


def check_not_other_unicode(head: bytes, name: str | Path) -> None:
    """Refuse text whose first bytes (`head`, four will do) are the byte-order mark of UTF-16
    or UTF-32, by that encoding, with the conversion to UTF-8."""
    for mark, encoding in OTHER_UNICODE_MARKS:
        if head.startswith(mark):
            raise ValueError(f"{name} is {encoding} text (its byte-order mark is {mark.hex(' ').upper()}), not UTF-8: "
                             f"save it as UTF-8, or convert it with iconv -f {encoding} -t UTF-8")


def check_not_unmarked_utf16(data: bytes, name: str | Path) -> None:
    """Refuse text written as UTF-16 without a byte-order mark (iconv's -t UTF-16LE), which
    holds a NUL in every other byte wherever it writes ASCII: named by its byte order, where
    its first bytes read so (most high bytes 0, few low ones, no control character but white
    space once decoded; binary data holds zeros and controls anywhere)."""
    head = data[:min(len(data), UTF16_SAMPLE_BYTES) // 2 * 2]
    if len(head) < UTF16_SHORTEST:
        return
    for encoding, high_bytes, low_bytes in (("UTF-16LE", head[1::2], head[::2]), ("UTF-16BE", head[::2], head[1::2])):
        if high_bytes.count(0) < UTF16_NUL_SHARE * len(high_bytes) or \
                low_bytes.count(0) > UTF16_LOW_NUL_SHARE * len(low_bytes):
            continue
        if all(character.isprintable() or character.isspace() for character in head.decode(encoding, "replace")):
            raise ValueError(f"{name} looks like {encoding} text without a byte-order mark (a NUL byte in every "
                             f"other place), not UTF-8: convert it with iconv -f {encoding} -t UTF-8")


def gunzipped(data: bytes, name: str | Path) -> bytes:
    """`data` (a file's or stdin's, called `name` in messages), decompressed where it is gzip,
    which its first two bytes say whatever the file is called."""
    if not data.startswith(GZIP_MAGIC):
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as error:
        raise ValueError(f"{name} is not a readable gzip file ({error})") from None


def as_path(value: object, expected: str) -> Path:
    """`value`, a str or os.PathLike, as a Path; anything else (None, bytes, a DataFrame) refused,
    naming what was `expected` (pathlib's own error names neither)."""
    if isinstance(value, str | os.PathLike):
        return Path(value)
    raise TypeError(f"expected {expected}, as a path (a str or pathlib.Path); got {type(value).__name__}")


def check_input_file(path: str | Path, expected: str) -> Path:
    """Refuse a file to read that does not exist or is a folder, naming what was `expected`
    there (a pipe such as <(tail input.txt) is accepted)."""
    path = as_path(path, expected)
    check_name_lengths(path, f"{path} (expected {expected})")
    if looping(path):
        raise ValueError(f"{path} {LOOPS} (expected {expected})")
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist (expected {expected})")
    if path.is_dir():
        raise ValueError(f"{path} is a folder (expected {expected})")
    return path


def check_output_folder(path: str | Path, option: str = "--out") -> Path:
    """Refuse, before any work is done, an output folder that cannot be written: a path that
    is a file, a path under a file, a checkpoint or a folder in one (`check_not_in_checkpoint`),
    or a folder this process may not write in. The folder is not created; a probe file is
    written in its nearest existing ancestor and removed."""
    path = as_path(path, "the folder to write results in")
    check_name_lengths(path, named(option, path))
    if path.exists() and not path.is_dir():
        raise ValueError(f"{named(option, path)} is a file; expected a folder (new, or one this program wrote)")
    if path.is_symlink() and not path.exists():  # mkdir then failed, after the run was announced: "File exists"
        if looping(path):
            raise ValueError(f"{named(option, path)} is a symbolic link to {os.readlink(path)}, which {LOOPS}: "
                             "choose another folder")
        raise ValueError(f"{named(option, path)} is a symbolic link to {os.readlink(path)}, which does not exist: "
                         "create the folder it points to, or choose another")
    check_not_in_checkpoint(path, option)
    check_writable(path, path, option)
    return path


def check_not_in_checkpoint(path: Path, option: str) -> None:
    """Refuse an output folder that is an lstmkit checkpoint or lies in one, through links and
    `..` (`.` in a checkpoint is one): a checkpoint holds its own files alone, and the run it
    belongs to refused to resume with another's there."""
    from lstmkit.checkpoint import existing as existing_checkpoint, trained_model  # checkpoint.py writes through here

    try:
        real = path.resolve()
    except (OSError, RuntimeError):  # a loop of links further up: check_writable names it
        return
    if trained_model(real):  # a run's best/: the run then would not resume
        in_run = real.name in ("best", "last") and trained_model(existing_checkpoint(real.parent / "last"))
        hint = f"; to resume the run it belongs to, give the run's folder, {real.parent}" if in_run else ""
        raise ValueError(f"{named(option, path)} is an lstmkit checkpoint (a trained model): a run there would put "
                         f"its own checkpoints inside it; choose another folder{hint}")
    inside = next((parent for parent in real.parents if trained_model(parent)), None)
    if inside is not None:  # runs/x/last/inner: the run in runs/x then refuses to resume
        raise ValueError(f"{named(option, path)} lies in the lstmkit checkpoint {inside}, which holds its own files "
                         "alone: choose a folder outside it")


# What a path is told that a link makes circular.
LOOPS = "leads back to itself through symbolic links"


def looping(path: Path) -> bool:
    """Whether `path` is a link that leads back to itself through links (stat fails with ELOOP)."""
    try:
        os.stat(path)
    except OSError as error:
        return error.errno == errno.ELOOP
    return False


def check_nothing_overwritten(out: Path, names: tuple[str, ...], missing: str) -> None:
    """Refuse `out` where it holds any of `names` (what a command writes there) although it
    holds no earlier run of that command (`missing` says what would have shown one): they are
    someone else's files, which the run would overwrite."""
    held = [name for name in names if (out / name).exists()]
    if held:
        raise ValueError(f"{out} holds {and_list(held)} but {missing}; a run there would overwrite "
                         f"{'them' if len(held) > 1 else 'it'}: choose another folder")


# The "Software" text field of lstmkit's PNG figures: a later run knows a figure at its path for
# its own, and replaces it; any other file there is the user's.
FIGURE_SOFTWARE = "lstmkit"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def written_by_lstmkit(path: Path, csv_header: Sequence[str] = ()) -> bool:
    """Whether the file at `path` is one lstmkit wrote: a PNG figure it marked, or a CSV file
    whose first row is `csv_header`."""
    if not path.is_file():
        return False
    if path.suffix.lower() == ".png":
        return figure_software(path) == FIGURE_SOFTWARE
    if path.suffix.lower() != ".csv" or not csv_header:
        return False
    header = ",".join(csv_header)
    with open(path, "rb") as file:
        return file.readline(len(header) + 3).decode("utf-8", "replace").rstrip("\r\n") == header


def figure_software(path: Path) -> str | None:
    """The "Software" field of the PNG file at `path` (matplotlib writes its name and version
    there, lstmkit FIGURE_SOFTWARE); None for a file that is no PNG or has none."""
    with open(path, "rb") as file:
        return png_text(file).get("Software")


def png_text(file: BinaryIO) -> dict[str, str]:
    """The tEXt fields of the PNG `file` ahead of its image data (where matplotlib writes
    them); empty for a file that is no PNG."""
    if file.read(8) != PNG_SIGNATURE:
        return {}
    fields = {}
    while len(head := file.read(8)) == 8 and head[4:] not in (b"IDAT", b"IEND"):
        length = int.from_bytes(head[:4], "big")
        if head[4:] != b"tEXt":
            file.seek(length + 4, os.SEEK_CUR)  # past the chunk's data and its CRC
            continue
        keyword, _, text = file.read(length + 4)[:-4].partition(b"\0")
        fields[keyword.decode("latin-1")] = text.decode("latin-1")
    return fields


def check_own_files(out: Path, names: Sequence[str], command: str, csv_header: Sequence[str] = ()) -> None:
    """Refuse `out` where it holds one of `names` (what `command` writes there) that lstmkit did
    not write (`written_by_lstmkit`): a user's file, which the command would overwrite. A file
    an earlier run wrote is replaced."""
    held = [name for name in names if (out / name).exists() and not written_by_lstmkit(out / name, csv_header)]
    if held:
        them = "them" if len(held) > 1 else "it"
        unmarked = " (a figure an earlier lstmkit wrote carries no mark)" if any(
            Path(name).suffix.lower() == ".png" for name in held) else ""
        raise ValueError(f"{out} holds {and_list(held)}, which lstmkit cannot tell for its own{unmarked}; {command} "
                         f"there would overwrite {them}: remove {them}, or choose another folder")


def and_list(names: Sequence[str]) -> str:
    """"a", "a and b", "a, b and c"."""
    return ", ".join(names[:-1]) + " and " + names[-1] if len(names) > 1 else names[0]


def check_output_file(path: str | Path, option: str, suffixes: tuple[str, ...] = ()) -> Path:
    """Refuse, before any work is done, an output file that cannot be written: a folder, a
    path under a file, a file in a folder this process may not write in, or one whose suffix
    is not among `suffixes` (where they are given); stdout, a device or a pipe is taken as is."""
    path = Path(path)
    check_name_lengths(path, named(option, path))
    if path.is_dir():
        raise ValueError(f"{named(option, path)} is a folder; expected a file name")
    if standard_stream(path) is not None or device_or_pipe(path):  # /dev/stdout, a pipe: no suffix, no folder
        if not os.access(path, os.W_OK):
            raise ValueError(f"{named(option, path)}: this process may not write to it")
        return path
    if path.exists() and not path.is_file():  # a socket, a block device
        raise ValueError(f"{named(option, path)} is no file, device or pipe to write to; expected a file name")
    if suffixes and path.suffix.lower() not in suffixes:
        raise ValueError(f"{named(option, path)}: expected a file ending in {', '.join(suffixes)}")
    check_writable(path.parent, path, option)
    return path


def check_not_read(outputs: dict[str, str | Path | None], inputs: dict[str, str | Path | None]) -> None:
    """Refuse, before any work, an output file (by its option, `--out`) that is one of the
    command's inputs (by what it is, "the reference file"), another output, or a file of any
    lstmkit run (`run_holding`: another run's metrics.csv, a learning-curve figure): writing it
    would replace what the command read, what it wrote first, or a run's record. None: not
    given."""
    from lstmkit.checkpoint import run_holding  # checkpoint.py reads and writes through this module

    given = [(option, Path(path)) for option, path in outputs.items() if path is not None]
    for index, (option, path) in enumerate(given):
        others = {**{what: read for what, read in inputs.items() if read is not None},
                  **{f"the file {earlier} writes": written for earlier, written in given[:index]}}
        for what, other in others.items():
            if same_file(path, Path(other)):
                raise ValueError(f"{option} {path} is {what}: writing it would replace that; choose another file")
        run = run_holding(path)
        if run is not None and not path.is_file():
            raise ValueError(f"{option} {path} lies in the lstmkit checkpoint {run}, which holds its own files "
                             "alone (a resume or a rerun refuses it with another file): choose another folder")
        if run is not None:
            raise ValueError(f"{option} {path} is a file of the lstmkit run in {run}: writing it would replace that; "
                             "choose another file")


def same_file(path: Path, other: Path) -> bool:
    """Whether two paths name one file (through links and `..` alike)."""
    try:
        return os.path.samefile(path, other)
    except OSError:  # one does not exist (yet)
        return path.resolve() == other.resolve()


def check_writable(folder: Path, path: Path, option: str) -> None:
    """That `folder` (where `path` goes) can be made and written in: a probe file is written in
    its nearest existing ancestor and removed."""
    ancestor = folder
    while not ancestor.exists():
        if looping(ancestor):
            link = next(part for part in [*reversed(ancestor.parents), ancestor] if looping(part))
            raise ValueError(f"{named(option, path)} cannot be reached: {link} {LOOPS}; choose another folder")
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise ValueError(f"{named(option, path)} lies inside {ancestor}, which is a file; expected a folder")
    try:
        descriptor, probe = tempfile.mkstemp(prefix=".lstmkit-probe.", dir=ancestor)
    except OSError as error:
        reason = os.strerror(error.errno) if error.errno else str(error)
        raise ValueError(f"{named(option, path)}: cannot write in {ancestor} ({reason}); choose a folder you may "
                         "write to") from None
    os.close(descriptor)
    os.remove(probe)


def check_name_lengths(path: Path, what: str) -> None:
    """Refuse a path no call can open, which each one (`path.exists()` too) fails with "File name
    too long": a folder or file name longer than the system's NAME_MAX bytes, or the whole
    path longer than its PATH_MAX. `what` names the path in the message."""
    name_max, path_max = (os.pathconf("/", name) if hasattr(os, "pathconf") else default
                          for name, default in (("PC_NAME_MAX", NAME_MAX), ("PC_PATH_MAX", 4096)))
    longest = max(path.parts, key=lambda part: len(os.fsencode(part)), default="")
    if len(os.fsencode(longest)) > name_max:
        raise ValueError(f"{what}: the name {longest[:24]}... is {len(os.fsencode(longest))} bytes long; the system "
                         f"takes {name_max} at most in one folder or file name")
    whole = len(os.fsencode(os.path.abspath(path)))
    if whole >= path_max:
        raise ValueError(f"{what}: the path is {whole} bytes long; the system takes {path_max - 1} at most")


def named(option: str, path: Path) -> str:
    """How a message names an output: with its option where one is given (argparse names it otherwise)."""
    return f"{option} {path}" if option else str(path)

