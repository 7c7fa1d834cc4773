"""Parallel text: two files, plain or gzip, UTF-8, one sentence per line, line k of each a pair.

Every check names the file and what was found in it, so that a wrong file stops the run before
any work is done:

    train.de.gz has 29,000 lines and train.en has 28,999: line k of each must be a pair
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lstmkit.caller import warn_at_caller
from lstmkit.files import check_input_file, decoded_utf8, fingerprint, gunzipped, warn_unless_composed

def read_lines(path: str | Path, what: str = "sentences", blank_lines: bool = False) -> tuple[list[str], dict]:
    """The lines of a plain or gzip UTF-8 text file (gzip recognised by its first two bytes,
    whatever the name), each without its line break and surrounding white space, and the
    file's fingerprint (size and SHA-256 of the bytes it holds, decompressed: the same text
    gzipped or not is the same data to --resume). A missing, empty, binary or non-UTF-8 file
    stops with a message naming it (`blank_lines`: see `text_lines`)."""
    path = check_input_file(path, f"a UTF-8 text file of {what}, plain or gzip")
    data = gunzipped(path.read_bytes(), path)
    return text_lines(data, str(path), blank_lines), fingerprint(data)


def text_lines(data: bytes, name: str, blank_lines: bool = False) -> list[str]:
    """The lines of UTF-8 `data` (a file's or stdin's, called `name` in messages, gzip already
    decompressed: `gunzipped`), split at line feeds (CR LF's carriage return dropped; at carriage
    returns in a text that has no line feed), each without surrounding white space: an empty,
    binary or non-UTF-8 text stops with a message. A carriage return inside a line stays part of
    it, as sacrebleu and `wc -l` read it (a web-crawled corpus holds such), with a warning naming
    the first: a file edited on several systems, its lines ending in LF or CR, is read as fewer,
    longer lines. With `blank_lines` (sentences to translate, each line's translation
    on its own line), only a text of no bytes is empty: one of blank lines is those lines."""
    if not (data if blank_lines else data.strip()):
        raise ValueError(f"{name} is empty: expected one sentence per line")
    text = decoded_utf8(data, name, "UTF-8 text, plain or gzip")
    if "\r" in text and "\n" not in text:  # old Mac line endings, a carriage return alone: one line else
        text = text.replace("\r", "\n")
    lines = [line.strip() for line in text.removesuffix("\n").split("\n")]
    inner = [number for number, line in enumerate(lines, start=1) if "\r" in line]
    if inner:
        warn_at_caller(f"{name}: {len(inner):,} line(s) hold a carriage return inside them (the first: line "
                       f"{inner[0]}), read as part of the line as sacrebleu reads it; where they end lines (a file "
                       "edited on several systems), make them line feeds")
    warn_unless_composed(enumerate(lines, start=1), name)
    return lines


@dataclass(frozen=True)
class ParallelText:
    """Sentence pairs read from two files: `sources[k]` translates to `targets[k]`."""

    sources: list[str]
    targets: list[str]
    fingerprints: dict[str, dict]

    def __len__(self) -> int:
        return len(self.sources)


def read_parallel(source: str | Path, target: str | Path, names: tuple[str, str] = ("source", "target"),
                  what: str = "target") -> ParallelText:
    """The pairs of two files of equal line counts (`names`: the fingerprints' keys; `what`:
    how the second file is called in the message of unequal counts)."""
    sources, source_print = read_lines(source)
    targets, target_print = read_lines(target)
    if len(sources) != len(targets):
        raise ValueError(f"{source} has {len(sources):,} line{'s' * (len(sources) != 1)} and its {what} {target} has "
                         f"{len(targets):,}: line k of each must be a pair")
    return ParallelText(sources, targets, {names[0]: source_print, names[1]: target_print})


def sentence_list(sentences, name: str) -> list[str]:
    """`sentences` as a list, refusing one string (it would be read character by character) and
    anything but a list or tuple of strings."""
    if isinstance(sentences, str):
        raise TypeError(f"{name} must be a list of strings, got one string ({sentences[:40]!r}); pass [sentence]")
    if not isinstance(sentences, (list, tuple)):
        raise TypeError(f"{name} must be a list of strings, got {type(sentences).__name__}")
    if not all(isinstance(sentence, str) for sentence in sentences):
        raise TypeError(f"{name} must be a list of strings, got {type(sentences).__name__} holding other objects")
    return list(sentences)
