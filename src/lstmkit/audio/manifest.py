"""Manifests: CSV files with the columns `path,text` that list utterances and their transcripts.

A relative path is resolved against the manifest's folder, so a folder of recordings and its
manifests can move together. `fsdd_manifests` writes the manifests of the Free Spoken Digit
Dataset from its file names (`{digit}_{speaker}_{index}.wav`).
"""

from __future__ import annotations

import csv
import io
import json
import os
import random
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lstmkit.caller import warn_at_caller
from lstmkit.files import (
    as_path, atomic_path, check_nothing_overwritten, decoded_utf8, remove_tree, warn_unless_composed, write_json,
)

HEADER = ["path", "text"]
DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
FSDD_NAME = re.compile(r"(?P<digit>[0-9])_(?P<speaker>[A-Za-z]+)_(?P<index>[0-9]+)\.wav")
# The dataset's own split: recordings 0-4 of every speaker and digit test, 5-49 train.
FSDD_TEST_INDICES = range(5)
# The silence between joined digits, in seconds: drawn uniformly, short as in fluent speech.
JOIN_SILENCE = (0.05, 0.3)
# What `fsdd_manifests` writes in its folder, and the record of its split, which tells a later
# split there that they are its own to replace (any other such file there is the user's).
FSDD_FILES = ("train.csv", "test.csv", "test-connected.csv", "connected")
FSDD_SPLIT = "fsdd.json"


class ManifestError(ValueError):
    """A manifest that cannot be used; the message names the file, the line and what is wrong."""


@dataclass(frozen=True)
class Utterance:
    path: Path
    text: str


def tidy_transcript(text: str) -> str:
    """`text` with its white space tidied: none at either end, one space between words. A
    manifest's transcripts are read so, and a model's are written so, which makes an exact
    transcript score WER 0, CER 0 and accuracy 100 % alike."""
    return " ".join(text.split())


def read_manifest(manifest: str | Path) -> list[Utterance]:
    """The utterances of a manifest, their paths resolved against its folder. Every row is
    checked (two fields, a path to an existing file, a transcript) before any is used."""
    manifest = as_path(manifest, "a manifest, a CSV file of path,text rows")
    if not manifest.is_file():
        raise FileNotFoundError(f"manifest {manifest} does not exist")
    try:
        text = decoded_utf8(manifest.read_bytes(), manifest, "a CSV file with the header 'path,text'")
    except ValueError as error:
        raise ManifestError(str(error)) from None
    rows = list(csv.reader(io.StringIO(text, newline="")))
    if not rows or [cell.strip() for cell in rows[0]] != HEADER:
        found = "an empty file" if not rows else ",".join(rows[0])
        raise ManifestError(f"{manifest}: expected the header 'path,text' on line 1, got {found!r}")
    # transcripts: by line; listed: each recording's first line and transcript
    utterances, transcripts, listed, repeated = [], {}, {}, []
    for line, row in enumerate(rows[1:], start=2):
        if not row:  # a blank line
            continue
        if len(row) != 2:
            raise ManifestError(f"{manifest}, line {line}: expected 2 fields (path,text), got {len(row)}: {row!r}")
        path, text = row[0].strip(), tidy_transcript(row[1])
        if not path:
            raise ManifestError(f"{manifest}, line {line}: the path is empty")
        if not text:
            raise ManifestError(f"{manifest}, line {line}: the transcript of {path} is empty")
        # Spaces around a field are the CSV's padding, unless a file's name begins or ends with them.
        resolved, as_written = (Path(name) if os.path.isabs(name) else manifest.parent / name
                                for name in (path, row[0]))
        if not resolved.is_file() and as_written.is_file():
            resolved = as_written
        if not resolved.is_file():
            problem = "is a folder; expected an audio file" if resolved.is_dir() else "does not exist"
            raise ManifestError(f"{manifest}, line {line}: {resolved} {problem}")
        first = listed.setdefault(resolved.resolve(), (line, text, path))
        if first[0] != line:
            same = f"{path} is listed on line {first[0]} too" if first[2] == path else \
                f"{path} is the file {first[2]} of line {first[0]}"
            if first[1] != text:
                raise ManifestError(f"{manifest}, line {line}: {same}, with another transcript ({first[1]!r} there, "
                                    f"{text!r} here)")
            repeated.append(f"line {line}: {same}")
        utterances.append(Utterance(resolved, text))
        transcripts[line] = text
    if not utterances:
        raise ManifestError(f"{manifest} lists no utterances")
    warn_unless_composed(transcripts.items(), manifest)
    if repeated:
        warn_at_caller(f"{manifest} lists {len(repeated)} recording(s) again (the first, {repeated[0]}): each is used "
                       "as often as it is listed")
    return utterances


def write_manifest(manifest: str | Path, utterances: list[Utterance]) -> None:
    """Write `utterances`, their paths relative to the manifest's folder."""
    manifest = Path(manifest)
    with atomic_path(manifest) as temporary, open(temporary, "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(HEADER)
        for utterance in utterances:
            writer.writerow([os.path.relpath(utterance.path.resolve(), manifest.parent.resolve()), utterance.text])


@dataclass(frozen=True)
class Recording:
    path: Path
    digit: int
    speaker: str
    index: int


def fsdd_recordings(recordings: str | Path) -> list[Recording]:
    """The recordings of an FSDD folder, by digit, speaker and index, in a fixed order."""
    recordings = as_path(recordings, "the folder of FSDD's recordings")
    if not recordings.is_dir():
        raise FileNotFoundError(f"{recordings} is not a folder of FSDD recordings")
    found = []
    for path in sorted(recordings.glob("*.wav")):
        match = FSDD_NAME.fullmatch(path.name)
        if match is None:
            raise ValueError(f"{path} is not named like an FSDD recording ({{digit}}_{{speaker}}_{{index}}.wav)")
        found.append(Recording(path, int(match["digit"]), match["speaker"], int(match["index"])))
    if not found:
        raise ValueError(f"{recordings} holds no .wav files")
    return sorted(found, key=lambda r: (r.speaker, r.digit, r.index))


def fsdd_manifests(recordings: str | Path, out: str | Path, holdout_speaker: str | None = None,
                   connected: int = 0, seed: int = 0) -> dict[str, int]:
    """Write `train.csv` and `test.csv` in `out` for the FSDD recordings (transcript: the
    digit as a word) and return the number of utterances in each manifest written.

    The split is the dataset's own (indices 0-4 test, 5-49 train) or, with `holdout_speaker`,
    every recording of that speaker tests and every other one trains. With `connected` N
    (at least 2), each split also gets as many utterances of 2 to N digits as it has
    recordings of speakers with two or more, each made by joining recordings of one speaker from
    that split with silences of 50-300 ms (synthetic joins of real recordings, written to
    `out/connected/`); they are listed in train.csv / test.csv too, and the test ones alone in
    test-connected.csv. A split in which no speaker has two recordings is refused.
    """
    found = fsdd_recordings(recordings)
    speakers = sorted({recording.speaker for recording in found})
    if holdout_speaker is not None and holdout_speaker not in speakers:
        raise ValueError(f"holdout_speaker (--holdout-speaker) must be one of the speakers in {recordings} "
                         f"({', '.join(speakers)}), got {holdout_speaker!r}")
    if holdout_speaker is not None and len(speakers) == 1:
        raise ValueError(f"holding out {holdout_speaker!r}, the only speaker in {recordings}, leaves no recording to "
                         "train on; leave --holdout-speaker out for the dataset's own split")
    if connected and (isinstance(connected, bool) or not isinstance(connected, int) or connected < 2):
        raise ValueError(f"connected is the most digits joined in one utterance, at least 2, got {connected!r}")
    out = as_path(out, "the folder to write the manifests in")
    tests = [(r.speaker == holdout_speaker) if holdout_speaker else (r.index in FSDD_TEST_INDICES) for r in found]
    splits = {"train": [r for r, test in zip(found, tests) if not test],
              "test": [r for r, test in zip(found, tests) if test]}
    if connected:  # before an earlier split is cleared
        for split, chosen in splits.items():
            check_joinable(chosen)
            if max(Counter(recording.speaker for recording in chosen).values(), default=0) < 2:
                raise ValueError(f"--connected joins two or more recordings of one speaker, and no speaker has two in "
                                 f"the {split} split: leave --connected out, or hold out another speaker")
    clear_earlier_split(out)
    out.mkdir(parents=True, exist_ok=True)
    counts = {}
    record = {"written_by": "lstmkit speech fsdd", "recordings": str(recordings), "holdout_speaker": holdout_speaker,
              "connected": connected, "seed": seed, "utterances": counts}
    write_json(out / FSDD_SPLIT, record)  # first: a split cut short (a full disk) is then this command's to clear
    generator = random.Random(seed)
    for split, chosen in splits.items():
        utterances = [Utterance(r.path, DIGITS[r.digit]) for r in chosen]
        if connected:
            joined = join_recordings(chosen, out / "connected" / split, connected, generator)
            utterances += joined
            if split == "test":
                write_manifest(out / "test-connected.csv", joined)
                counts["test-connected.csv"] = len(joined)
        write_manifest(out / f"{split}.csv", utterances)
        counts[f"{split}.csv"] = len(utterances)
    write_json(out / FSDD_SPLIT, record)
    return counts


def clear_earlier_split(out: Path) -> None:
    """Remove what an earlier split wrote in `out` (its `fsdd.json` says so), so that none of
    it (a test-connected.csv, connected/) outlives it; refuse, before any work, a folder that
    holds such files of someone else's."""
    try:
        earlier = json.loads((out / FSDD_SPLIT).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        earlier = None
    if not (isinstance(earlier, dict) and earlier.get("written_by") == "lstmkit speech fsdd"):
        check_nothing_overwritten(out, (*FSDD_FILES, FSDD_SPLIT), f"no split of `lstmkit speech fsdd` (no "
                                  f"{FSDD_SPLIT} of one)")
        return
    for name in FSDD_FILES:
        path = out / name
        if path.is_dir():
            remove_tree(path)
        elif path.exists():
            path.unlink()


def check_joinable(recordings: list[Recording]) -> None:
    """Refuse recordings that `join_recordings` cannot join: unreadable, not mono, or of one
    speaker at several sample rates."""
    import soundfile

    rates: dict[str, set[int]] = {}
    for recording in recordings:
        try:
            info = soundfile.info(recording.path)
        except (soundfile.LibsndfileError, RuntimeError, TypeError) as error:
            raise ValueError(f"{recording.path}: not a readable audio file ({error})") from None
        if info.channels != 1:
            raise ValueError(f"{recording.path}: has {info.channels} channels; expected mono audio (mix it down "
                             "first, e.g. `sox IN OUT remix -`)")
        rates.setdefault(recording.speaker, set()).add(info.samplerate)
    for speaker, found in sorted(rates.items()):
        if len(found) != 1:
            raise ValueError(f"the recordings of {speaker} have several sample rates ({sorted(found)}): "
                             "they cannot be joined")


def join_recordings(recordings: list[Recording], folder: Path, most: int, generator: random.Random) -> list[Utterance]:
    """As many utterances as `recordings` of speakers with two or more (one recording has none
    to join), each 2 to `most` recordings of one speaker joined by short silences, written as
    16-bit WAVs in `folder` (`check_joinable` first)."""
    import soundfile

    by_speaker: dict[str, list[Recording]] = {}
    for recording in recordings:
        by_speaker.setdefault(recording.speaker, []).append(recording)
    folder.mkdir(parents=True, exist_ok=True)
    utterances = []
    for speaker, own in sorted(by_speaker.items()):
        for number in range(len(own) if len(own) > 1 else 0):
            parts = generator.sample(own, generator.randint(2, min(most, len(own))))
            audio = []
            for position, part in enumerate(parts):
                samples, rate = soundfile.read(part.path, dtype="int16")
                if position:
                    audio.append(np.zeros(int(rate * generator.uniform(*JOIN_SILENCE)), dtype=np.int16))
                audio.append(samples)
            path = folder / f"{speaker}_{number}.wav"
            wav = io.BytesIO()  # written by Python, whose errors name their cause (libsndfile's: "System error.")
            soundfile.write(wav, np.concatenate(audio), rate, subtype="PCM_16", format="WAV")
            with atomic_path(path) as temporary:
                temporary.write_bytes(wav.getvalue())
            utterances.append(Utterance(path, " ".join(DIGITS[part.digit] for part in parts)))
    return utterances
