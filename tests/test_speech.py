"""Speech recognition: CTC decoding, the front end, manifests, bad files, and a tiny task learned."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import os
import re
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("librosa", reason="the speech extra is not installed: pip install 'lstmkit[speech]'")
soundfile = pytest.importorskip("soundfile")

from lstmkit.audio import AudioError, FrontEnd, ManifestError, fsdd_manifests, read_manifest  # noqa: E402
from lstmkit.audio.features import LOG_FLOOR  # noqa: E402
from lstmkit.checkpoint import CheckpointError  # noqa: E402
from helpers import Killed, assert_keeps_random_state, dies_at_step, run_cli  # noqa: E402
from lstmkit.models.acoustic import Lexicon, greedy_decode, prefix_beam_search, stack_frames  # noqa: E402
from lstmkit.pipelines.configs import SpeechConfig  # noqa: E402
from lstmkit.pipelines.speech import (  # noqa: E402
    confusion_table, load_speech_model, load_utterances, score_transcripts, train_speech_model,
)

RATE = 8000


def tone(seconds: float, frequency: float, rate: int = RATE, seed: int = 0) -> np.ndarray:
    """A sine with a little noise."""
    time = np.arange(int(seconds * rate)) / rate
    return 0.5 * np.sin(2 * np.pi * frequency * time) + np.random.default_rng(seed).normal(0, 0.01, len(time))


def write_wav(path, seconds: float = 0.3, frequency: float = 440.0, rate: int = RATE, channels: int = 1,
              seed: int = 0):
    """A tone, 16-bit PCM."""
    samples = tone(seconds, frequency, rate, seed)
    soundfile.write(path, np.repeat(samples[:, None], channels, 1), rate, subtype="PCM_16")
    return path


def write_manifest_text(path, rows: str):
    path.write_text(rows)
    return path


def one_hot_path(labels: list[int], vocabulary: int = 4, peak: float = 0.9) -> torch.Tensor:
    """(T, V) log-probabilities whose likeliest label at step t is labels[t]."""
    probabilities = torch.full((len(labels), vocabulary), (1 - peak) / (vocabulary - 1))
    probabilities[torch.arange(len(labels)), torch.tensor(labels)] = peak
    return probabilities.log()


# --- decoding ---------------------------------------------------------------------------------

@pytest.mark.parametrize("path, expected", [
    ([0, 0, 0], []),  # only blanks
    ([1, 1, 1], [1]),  # a repeat collapses
    ([1, 0, 1], [1, 1]),  # a blank separates two equal labels
    ([0, 2, 2, 0, 3, 3, 1, 0], [2, 3, 1]),
    ([3, 0, 0, 3, 3, 0, 3], [3, 3, 3]),
])
def test_greedy_decoding_merges_repeats_then_drops_blanks(path, expected):
    assert greedy_decode(one_hot_path(path)) == expected
    assert prefix_beam_search(one_hot_path(path), 4) == expected


def confident_matrix(seed: int, steps: int = 20, vocabulary: int = 5) -> torch.Tensor:
    """Random (T, V) log-probabilities whose likeliest label has probability in [0.6, 1) at
    each step, the rest spread at random."""
    generator = torch.Generator().manual_seed(seed)
    rest = torch.rand(steps, vocabulary, generator=generator)
    best = torch.randint(0, vocabulary, (steps,), generator=generator)
    top = 0.6 + 0.4 * torch.rand(steps, generator=generator)
    rest[torch.arange(steps), best] = 0
    probabilities = rest / rest.sum(1, keepdim=True) * (1 - top[:, None])
    probabilities[torch.arange(steps), best] = top
    return probabilities.log()


def test_prefix_beam_search_with_beam_1_is_greedy_on_random_matrices():
    for seed in range(200):
        matrix = confident_matrix(seed)
        assert prefix_beam_search(matrix, 1) == greedy_decode(matrix), seed


def labelling_probability(log_probs: torch.Tensor, labels: list[int]) -> float:
    """P(labels | x): the sum over every CTC path of the labelling (torch's CTC loss)."""
    if not labels:
        return math.exp(log_probs[:, 0].sum().item())
    loss = torch.nn.functional.ctc_loss(log_probs[:, None].double(), torch.tensor([labels]),
                                        torch.tensor([len(log_probs)]), torch.tensor([len(labels)]), reduction="sum")
    return math.exp(-loss.item())


def test_prefix_beam_search_finds_the_labelling_greedy_misses():
    # Each step: blank 0.4, "a" 0.35, "b" 0.25. The best path is blank-blank, so greedy says "";
    # but P("a") = .35·.35 + 2·.4·.35 = 0.4025 > P("") = 0.16.
    log_probs = torch.tensor([[0.4, 0.35, 0.25]] * 2).log()
    assert greedy_decode(log_probs) == []
    assert prefix_beam_search(log_probs, 3) == [1]
    assert labelling_probability(log_probs, [1]) == pytest.approx(0.4025)
    assert labelling_probability(log_probs, []) == pytest.approx(0.16)


def test_a_wide_beam_finds_the_likeliest_labelling_of_small_random_matrices():
    for seed in range(30):
        log_probs = torch.randn(4, 3, generator=torch.Generator().manual_seed(seed)).log_softmax(-1)
        every = [list(labels) for length in range(5) for labels in itertools.product((1, 2), repeat=length)]
        best = max(every, key=lambda labels: labelling_probability(log_probs, labels))
        assert prefix_beam_search(log_probs, 50) == best, seed


def test_a_held_prefix_keeps_the_paths_that_stay_on_its_last_label_at_a_step_it_is_not_among_the_likeliest():
    """Blank, a, b, c, d. "a" at step 1, then a flat step where "a" is not among the four
    likeliest labels: P(a) = .996·(.22 + .16) + .001·.16 = 0.379 beats P(a b) = P(a c) = 0.229, but the
    search, trying only the likeliest labels, dropped a→a and returned "a c" with beams 1-3."""
    log_probs = torch.tensor([[.001, .996, .001, .001, .001], [.22, .16, .23, .23, .16]]).log()
    assert labelling_probability(log_probs, [1]) == pytest.approx(0.996 * 0.38 + 0.001 * 0.16)
    assert labelling_probability(log_probs, [1, 3]) == pytest.approx(0.996 * 0.23)
    for beam in (1, 2, 3, 4, 8):
        assert prefix_beam_search(log_probs, beam) == [1], beam


def test_beam_search_breaks_an_exact_tie_as_greedy_decoding_does_lowest_label_first():
    log_probs = torch.tensor([[0.1, 0.45, 0.45]] * 2).log()
    assert greedy_decode(log_probs) == [1]
    for beam in (1, 2, 4):
        assert prefix_beam_search(log_probs, beam) == [1], beam


def test_beam_must_be_a_positive_integer():
    with pytest.raises(ValueError, match=r"^beam must be a positive integer, got 0$"):
        prefix_beam_search(torch.zeros(2, 3), 0)


def test_frame_stacking_concatenates_neighbours_and_shortens_lengths():
    frames = torch.arange(5 * 1 * 2, dtype=torch.float32).view(5, 1, 2)
    stacked, lengths = stack_frames(frames, torch.tensor([5]), 2)
    assert stacked[:, 0].tolist() == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 0, 0]]
    assert lengths.tolist() == [3]


# --- the front end ----------------------------------------------------------------------------

def test_features_have_one_frame_every_10_ms_and_40_bands(tmp_path):
    front_end = FrontEnd()
    frames, resampled = front_end.features(write_wav(tmp_path / "a.wav", seconds=1.0))
    assert front_end.frame_rate == 100.0
    assert tuple(frames.shape) == (101, 40)  # centred frames: 1 + 8000 // 80
    assert resampled is None
    assert frames.mean(0).abs().max() < 1e-4 and frames.std(unbiased=False).item() == pytest.approx(1, abs=1e-4)


def test_a_recording_shorter_than_the_fft_but_a_window_long_gives_librosas_frames_without_its_warning(tmp_path):
    """librosa's "n_fft=256 is too large for input signal of length=210" came out as lstmkit's
    own warning, naming no file, for a recording the front end takes (one 25 ms window)."""
    import librosa

    path = write_wav(tmp_path / "short.wav", seconds=0.02625)  # 210 samples: a 200-sample window, not 256
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        frames = FrontEnd().log_mel(soundfile.read(path, dtype="float32")[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = librosa.feature.melspectrogram(y=soundfile.read(path, dtype="float32")[0], sr=RATE, n_fft=256,
                                                  hop_length=80, win_length=200, n_mels=40, center=True, power=2.0)
    assert torch.equal(frames, torch.from_numpy(np.log(expected + LOG_FLOOR).T.astype(np.float32)))


def test_a_file_at_another_rate_is_resampled_and_says_so(tmp_path):
    frames, resampled = FrontEnd().features(write_wav(tmp_path / "a.wav", seconds=0.5, rate=16000))
    assert resampled == 16000
    assert tuple(frames.shape) == (51, 40)


def test_transcripts_are_scored_by_hand_and_strings_are_refused():
    # "one two" heard as "one too": 1 of the 3 reference words wrong, 1 of its 10 characters (w for o)
    assert score_transcripts(["one two", "six"], ["one too", "six"]) == {
        "wer": 1 / 3, "cer": 1 / 10, "utterances": 2, "accuracy": 0.5}
    with pytest.raises(TypeError, match=re.escape("references must be a list of strings, got one string ('ab')")):
        score_transcripts("ab", "ab")  # it scored two one-letter utterances
    with pytest.raises(ValueError, match=re.escape("expected one hypothesis per reference, at least one of each; "
                                                   "got 1 reference(s) and 2 hypothesis(es)")):
        score_transcripts(["a b"], ["a", "b"])


def test_a_stray_space_counts_against_no_score_and_a_model_writes_none():
    """A transcript ' two' or 'one  two' scored WER 0 but CER > 0 and accuracy 0 (jiwer's WER
    splits words, its CER and the exact match did not tidy), and a model wrote such spaces."""
    from lstmkit.pipelines.speech import Alphabet

    assert score_transcripts(["two", "one two"], [" two", "one  two "]) == {
        "wer": 0.0, "cer": 0.0, "utterances": 2, "accuracy": 1.0}
    alphabet = Alphabet(" enotw")  # label i + 1 is character i: 1 is the space
    assert alphabet.decode([1, 5, 6, 4, 1, 1, 4, 3, 2, 1]) == "two one"


@pytest.mark.parametrize("rate, speed", [(RATE, 1.0), (RATE, 1.25), (2 * RATE, 1.0)])
def test_one_value_throughout_a_dc_offset_is_silent_as_digital_zeros(tmp_path, rate, speed):
    """The edge frames, padded with zeros, differ from the rest: normalised, a DC offset's
    (a cheap recorder's silence) reached 5.8 there against 0.36 inside, and read as a word."""
    path = tmp_path / "dc.wav"
    soundfile.write(path, np.full(rate // 2, 0.2), rate, subtype="PCM_16")
    frames, _ = FrontEnd().features(path, speed)
    assert len(frames) == 1 + int(RATE / 2 / speed) // 80 and not frames.any()


def test_speed_perturbation_plays_a_file_faster_and_higher_or_slower_and_lower(tmp_path):
    # Half a second of near silence, then half a second of 1000 Hz: at speed 1.25 the file lasts
    # 0.8 s (6,400 samples: 1 + 6400 // 80 frames) and the tone is at 1250 Hz; at 0.8 it lasts
    # 1.25 s (10,000 samples) at 800 Hz. The band that rises most from the silence to the tone
    # is the one whose centre frequency is nearest the tone's.
    import librosa

    path = tmp_path / "a.wav"
    soundfile.write(path, np.concatenate([tone(0.5, 1000.0) * 0.001, tone(0.5, 1000.0)]), RATE, subtype="PCM_16")
    centres = librosa.mel_frequencies(n_mels=42, fmax=RATE / 2)[1:-1]
    for speed, length in ((1.0, 101), (1.25, 81), (0.8, 126)):
        frames, _ = FrontEnd().features(path, speed)
        rise = frames[length * 3 // 4] - frames[length // 4]
        assert len(frames) == length
        assert int(rise.argmax()) == int(np.abs(centres - 1000 * speed).argmin()), speed


def test_speed_perturbed_versions_too_short_for_their_transcript_are_left_out(tmp_path):
    # 50 ms give 1 + 400 // 80 = 6 frames, 3 steps at stack 2: enough for "abc". At speed 2 its
    # 200 samples give 3 frames, 2 steps: too few; at 0.8, 500 samples give 7 frames: kept.
    write_wav(tmp_path / "a.wav", seconds=0.05)
    manifest = write_manifest_text(tmp_path / "m.csv", "path,text\na.wav,abc\n")
    utterances, _ = load_utterances(manifest, FrontEnd(), None, 2, speeds=(0.8, 2.0))
    assert len(utterances.frames[0]) == 6 and [len(version) for version in utterances.versions[0]] == [7]
    assert load_utterances(manifest, FrontEnd(), None, 2)[0].versions == [()]


def test_a_bad_speed_perturbation_flag_names_what_it_got(tmp_path, capsys):
    (tmp_path / "m.csv").write_text("path,text\n")
    code, _, err = run_cli(["speech", "train", str(tmp_path / "m.csv"), "--speed-perturbation", "0.9,fast"], capsys)
    assert code == 2 and "expected positive numbers, comma-separated, got '0.9,fast'" in err


@pytest.mark.parametrize("make, message", [
    (lambda path: path.write_bytes(b"this is not audio"), "{path}: not a readable audio file"),
    (lambda path: soundfile.write(path, np.zeros((0, 1)), RATE), "{path}: holds no samples"),
    (lambda path: write_wav(path, channels=2),
     "{path}: has 2 channels; expected mono audio (mix it down first, e.g. `sox IN OUT remix -`)"),
    (lambda path: write_wav(path, seconds=0.01), "{path}: lasts 10.0 ms; at least one 25 ms window is needed"),
    (lambda path: None, "{path}: no such file"),
    (lambda path: path.mkdir(), "{path}: is a folder; expected an audio file"),
    (lambda path: soundfile.write(path, np.tile([0.1, np.nan, np.inf, 0.2], 1000)[:, None], RATE, subtype="FLOAT"),
     "{path}: 2000 of its 4000 samples are not finite (NaN or inf)"),
    # finite, but their power overflowed float32: every feature NaN, read as silence by the model
    (lambda path: soundfile.write(path, np.tile([0.1, -0.2, 3.4e38, 0.2], 1000)[:, None], RATE, subtype="FLOAT"),
     "{path}: its samples reach 3.4e+38, whose energies overflow float32; expected audio in [-1, 1] (scale the file "
     "so)"),
])
def test_bad_audio_files_are_named_with_what_is_wrong(tmp_path, make, message):
    path = tmp_path / "bad.wav"
    make(path)
    with pytest.raises(AudioError) as error:
        FrontEnd().features(path)
    assert str(error.value).startswith(message.format(path=path))


def test_a_file_too_short_for_its_transcript_stops_training_before_it_starts(tmp_path, capsys):
    write_wav(tmp_path / "short.wav", seconds=0.05)
    manifest = write_manifest_text(tmp_path / "train.csv", "path,text\nshort.wav,seventeen\n")
    code, _, err = run_cli(["speech", "train", str(manifest), "--out", str(tmp_path / "run"), "--steps", "1"], capsys)
    assert code == 2
    assert err.splitlines(keepends=True)[-1] == (f"lstmkit: error: {tmp_path / 'short.wav'}: too short for its "
                                                 "transcript 'seventeen': its 6 frames (one per 10 ms) give 3 "
                                                 "model steps (frames / stack 2), and the transcript needs 10\n")
    assert not (tmp_path / "run").exists()


# --- manifests --------------------------------------------------------------------------------

@pytest.mark.parametrize("rows, message", [
    ("", "{m}: expected the header 'path,text' on line 1, got 'an empty file'"),
    ("file,words\na.wav,one\n", "{m}: expected the header 'path,text' on line 1, got 'file,words'"),
    ("path,text\na.wav,one,two\n", "{m}, line 2: expected 2 fields (path,text), got 3: ['a.wav', 'one', 'two']"),
    ("path,text\n,one\n", "{m}, line 2: the path is empty"),
    ("path,text\na.wav,one\na.wav,  \n", "{m}, line 3: the transcript of a.wav is empty"),
    ("path,text\nmissing.wav,one\n", "{m}, line 2: {d}/missing.wav does not exist"),
    ("path,text\n\n", "{m} lists no utterances"),
    ("path,text\nsub,one\n", "{m}, line 2: {d}/sub is a folder; expected an audio file"),
    ("path,text\na.wav,caf\xe9\n".encode("latin-1"), "{m} is not UTF-8 text: byte 0xe9 at offset 19 (line 2) does "
                                                     "not decode"),
    # Found in the whole file: the reader's position counted from its last 8 KiB chunk
    (("path,text\n" + "a.wav,one\n" * 2000 + "a.wav,caf\xe9\n").encode("latin-1"),
     "{m} is not UTF-8 text: byte 0xe9 at offset 20019 (line 2002) does not decode"),
    ("path,text\na.wav,one\n".encode("utf-16-le"),
     "{m} looks like UTF-16LE text without a byte-order mark (a NUL byte in every other place), not UTF-8: convert it "
     "with iconv -f UTF-16LE -t UTF-8"),
    ("path,text\na.wav,o\x00ne\n", "{m} is not text: it contains NUL bytes (the first at offset 17, on line 2); "
                                    "expected a CSV file with the header 'path,text'"),
    ("path,text\na.wav,one\n".encode("utf-16"), "{m} is UTF-16 text (its byte-order mark is FF FE), not UTF-8: save "
                                              "it as UTF-8, or convert it with iconv -f UTF-16 -t UTF-8"),
    ("path,text\na.wav,zero\n./a.wav,nine\n", "{m}, line 3: ./a.wav is the file a.wav of line 2, with another "
                                             "transcript ('zero' there, 'nine' here)"),  # both trained on, unsaid
])
def test_manifests_with_bad_rows_are_refused_naming_the_line(tmp_path, rows, message):
    write_wav(tmp_path / "a.wav")
    (tmp_path / "sub").mkdir()
    manifest = tmp_path / "m.csv"
    manifest.write_bytes(rows if isinstance(rows, bytes) else rows.encode())
    with pytest.raises(ManifestError) as error:
        read_manifest(manifest)
    assert str(error.value) == message.format(m=manifest, d=tmp_path)


def test_a_recording_listed_again_with_its_transcript_is_warned_of(tmp_path):
    write_wav(tmp_path / "a.wav")
    manifest = write_manifest_text(tmp_path / "m.csv", "path,text\na.wav,one\nb.wav,two\na.wav,one\n")
    write_wav(tmp_path / "b.wav")
    with pytest.warns(UserWarning, match=re.escape(f"{manifest} lists 1 recording(s) again (the first, line 4: a.wav "
                                                   "is listed on line 2 too): each is used as often as it is listed")):
        assert [utterance.text for utterance in read_manifest(manifest)] == ["one", "two", "one"]


def test_manifest_paths_are_relative_to_the_manifest_and_transcripts_are_tidied(tmp_path):
    (tmp_path / "audio").mkdir()
    write_wav(tmp_path / "audio" / "a.wav")
    manifest = write_manifest_text(tmp_path / "m.csv", 'path,text\naudio/a.wav," one   two "\n')
    (utterance,) = read_manifest(manifest)
    assert utterance.path == tmp_path / "audio" / "a.wav" and utterance.text == "one two"
    write_wav(tmp_path / " lead.wav")  # a name that begins with a space: refused as "lead.wav does not exist"
    manifest = write_manifest_text(tmp_path / "m.csv", 'path,text\n" lead.wav",one\n audio/a.wav ,two\n')
    assert [utterance.path for utterance in read_manifest(manifest)] == [tmp_path / " lead.wav",
                                                                         tmp_path / "audio" / "a.wav"]


def test_a_transcript_with_characters_the_model_does_not_know_is_named(tmp_path):
    write_wav(tmp_path / "a.wav")
    manifest = write_manifest_text(tmp_path / "m.csv", "path,text\na.wav,one!\n")
    from lstmkit.pipelines.speech import Alphabet

    with pytest.raises(ManifestError) as error:
        load_utterances(manifest, FrontEnd(), Alphabet("enot"), 2)
    assert str(error.value) == (f"{manifest}, {tmp_path / 'a.wav'}: the transcript 'one!' has characters the model "
                                "does not know ('!'; it knows 'enot')")


def fake_fsdd(folder, speakers=("anna", "bob"), digits=(3, 7), indices=range(7)):
    folder.mkdir()
    for speaker, digit, index in itertools.product(speakers, digits, indices):
        write_wav(folder / f"{digit}_{speaker}_{index}.wav", seconds=0.1 + 0.01 * index, frequency=300 + 100 * digit)
    return folder


def test_fsdd_manifests_follow_the_dataset_split_and_hold_out_a_speaker(tmp_path):
    recordings = fake_fsdd(tmp_path / "recordings")
    assert fsdd_manifests(recordings, tmp_path / "split") == {"train.csv": 8, "test.csv": 20}
    test = read_manifest(tmp_path / "split" / "test.csv")
    assert {int(u.path.stem.split("_")[2]) for u in test} == set(range(5))
    assert {u.text for u in test} == {"three", "seven"}
    assert (tmp_path / "split" / "test.csv").read_text().splitlines()[1] == "../recordings/3_anna_0.wav,three"
    assert fsdd_manifests(recordings, tmp_path / "bob", holdout_speaker="bob") == {"train.csv": 14, "test.csv": 14}
    assert {u.path.stem.split("_")[1] for u in read_manifest(tmp_path / "bob" / "test.csv")} == {"bob"}
    with pytest.raises(ValueError, match=r"^holdout_speaker \(--holdout-speaker\) must be one of the speakers in .* "
                                         r"\(anna, bob\), "
                                         r"got 'carol'$"):
        fsdd_manifests(recordings, tmp_path / "x", holdout_speaker="carol")
    for recording in recordings.glob("*_bob_*.wav"):  # anna alone: holding her out leaves nothing to train on
        recording.unlink()
    with pytest.raises(ValueError, match=r"^holding out 'anna', the only speaker in .*, leaves no recording to train "
                                         r"on; leave --holdout-speaker out for the dataset's own split$"):
        fsdd_manifests(recordings, tmp_path / "anna", holdout_speaker="anna")
    assert not (tmp_path / "anna").exists()


def test_connected_digits_join_one_speakers_recordings_with_short_silences(tmp_path):
    recordings = fake_fsdd(tmp_path / "recordings")
    counts = fsdd_manifests(recordings, tmp_path / "out", connected=3)
    assert counts == {"train.csv": 16, "test-connected.csv": 20, "test.csv": 40}
    joined = read_manifest(tmp_path / "out" / "test-connected.csv")
    for utterance in joined:
        words = utterance.text.split()
        assert 2 <= len(words) <= 3 and set(words) <= {"three", "seven"}
        seconds = soundfile.info(utterance.path).duration
        parts = 0.1 + 0.01 * 4  # the longest test recording
        assert 2 * 0.1 + 0.05 * (len(words) - 1) <= seconds <= len(words) * parts + 0.3 * (len(words) - 1)
    assert "connected/test/anna_0.wav" in (tmp_path / "out" / "test-connected.csv").read_text()


def test_a_joined_recording_that_cannot_be_written_is_named_and_not_left_half_written(tmp_path, monkeypatch):
    """On a full disk `speech fsdd --connected` ended in libsndfile's traceback ("System error.")
    and left a 0-byte WAV where the write stopped."""
    import errno

    recordings = fake_fsdd(tmp_path / "recordings")
    write_bytes, writes = Path.write_bytes, []

    def full_disk_at_the_third(path, data):
        writes.append(path)
        if len(writes) == 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return write_bytes(path, data)

    monkeypatch.setattr(Path, "write_bytes", full_disk_at_the_third)
    with pytest.raises(OSError, match=re.escape(f"cannot write {tmp_path / 'out' / 'connected'}/") +
                       r"(train|test)/\w+_\d+\.wav \(No space left on device\)"):
        fsdd_manifests(recordings, tmp_path / "out", connected=3)
    left = list((tmp_path / "out" / "connected").rglob("*.wav"))
    assert len(left) == 2 and all(soundfile.info(path).frames > 0 for path in left)


def test_a_split_replaces_an_earlier_splits_files_and_refuses_a_users(tmp_path):
    """`speech fsdd --out DIR` overwrote a train.csv of the user's, and a split without
    --connected left an earlier split's test-connected.csv and connected/ in place."""
    recordings = fake_fsdd(tmp_path / "recordings")
    fsdd_manifests(recordings, tmp_path / "out", connected=3)
    assert fsdd_manifests(recordings, tmp_path / "out", holdout_speaker="bob") == {"train.csv": 14, "test.csv": 14}
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == ["fsdd.json", "test.csv", "train.csv"]
    split = json.loads((tmp_path / "out" / "fsdd.json").read_text())
    assert (split["holdout_speaker"], split["connected"], split["utterances"]) == ("bob", 0, {"train.csv": 14,
                                                                                             "test.csv": 14})
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "test.csv").write_text("path,text\nmy.wav,my words\n")
    with pytest.raises(ValueError, match=re.escape(
            f"{mine} holds test.csv but no split of `lstmkit speech fsdd` (no fsdd.json of one); a run there would "
            "overwrite it: choose another folder")):
        fsdd_manifests(recordings, mine)
    assert sorted(path.name for path in mine.iterdir()) == ["test.csv"]
    assert (mine / "test.csv").read_text() == "path,text\nmy.wav,my words\n"
    (mine / "test.csv").unlink()
    (mine / "fsdd.json").write_text("my notes")  # a file of that name is lstmkit's only when it says so
    with pytest.raises(ValueError, match=re.escape(f"{mine} holds fsdd.json but no split of")):
        fsdd_manifests(recordings, mine)
    assert (mine / "fsdd.json").read_text() == "my notes"


def test_a_connected_split_of_recordings_it_cannot_join_is_refused_before_an_earlier_split_is_touched(tmp_path):
    """A stereo recording stopped `--connected` with NumPy's "all the input arrays must have same
    number of dimensions", naming no file, after the earlier split's manifests were deleted and
    with a partial connected/ that the rerun then refused as someone else's."""
    recordings = fake_fsdd(tmp_path / "recordings")
    first = fsdd_manifests(recordings, tmp_path / "out")
    before = {path.name: path.read_bytes() for path in (tmp_path / "out").iterdir()}
    stereo = recordings / "3_bob_6.wav"
    samples, rate = soundfile.read(stereo)
    soundfile.write(stereo, np.stack([samples, samples], axis=1), rate)
    with pytest.raises(ValueError, match=re.escape(f"{stereo}: has 2 channels; expected mono audio (mix it down")):
        fsdd_manifests(recordings, tmp_path / "out", connected=3)
    assert {path.name: path.read_bytes() for path in (tmp_path / "out").iterdir()} == before
    soundfile.write(stereo, samples, rate)
    assert fsdd_manifests(recordings, tmp_path / "out", connected=3) != first
    assert (tmp_path / "out" / "connected").is_dir()
    for recording in recordings.glob("*_bob_*.wav"):  # bob keeps one test recording: nothing of his to join there
        if recording.name != "3_bob_0.wav" and int(recording.stem.split("_")[2]) < 5:
            recording.unlink()
    counts = fsdd_manifests(recordings, tmp_path / "out", connected=3)  # it failed: "empty range for randrange()"
    assert counts["test-connected.csv"] == 10 and counts["test.csv"] == 11 + 10
    before = {path.name: path.read_bytes() for path in (tmp_path / "out").iterdir() if path.is_file()}
    for recording in recordings.glob("*_bob_*.wav"):
        if recording.name != "3_bob_0.wav":
            recording.unlink()
    with pytest.raises(ValueError, match=re.escape("--connected joins two or more recordings of one speaker, and no "
                                                   "speaker has two in the test split: leave --connected out, or "
                                                   "hold out another speaker")):
        fsdd_manifests(recordings, tmp_path / "out", holdout_speaker="bob", connected=3)  # bob: one test recording
    assert {path.name: path.read_bytes() for path in (tmp_path / "out").iterdir() if path.is_file()} == before


def test_a_split_cut_short_is_cleared_by_the_next(tmp_path, monkeypatch):
    """A split that failed part way (a full disk) left connected/ without fsdd.json, and the
    rerun refused the folder as holding someone else's files."""
    from lstmkit.audio import manifest

    recordings = fake_fsdd(tmp_path / "recordings")
    writes = manifest.write_manifest

    def disk_full(path, utterances):
        if path.name == "test.csv":
            raise OSError(28, "No space left on device")
        writes(path, utterances)

    monkeypatch.setattr(manifest, "write_manifest", disk_full)
    with pytest.raises(OSError, match="No space left"):
        fsdd_manifests(recordings, tmp_path / "out", connected=3)
    monkeypatch.setattr(manifest, "write_manifest", writes)
    assert fsdd_manifests(recordings, tmp_path / "out") == {"train.csv": 8, "test.csv": 20}
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == ["fsdd.json", "test.csv", "train.csv"]


def test_the_confusion_table_counts_each_word_as_each_transcript():
    table = confusion_table(["one", "two", "one", "two", "one"], ["one", "one", "one", "tw", "one"])
    assert table.splitlines() == ["    | one two (other)",
                                  "one |   3   .       .",
                                  "two |   1   .       1"]
    # a reference word "other" once shared the catch-all column: each miss counted twice
    table = confusion_table(["zero", "other", "zero"], ["three", "other", "other"])
    assert table.splitlines() == ["      |  zero other (other)",
                                  " zero |     .     1       1",
                                  "other |     .     1       ."]
    # columns as a terminal shows them: a mark takes none (anusvara too), a Chinese character two
    from lstmkit.pipelines.speech import shown_width

    assert [shown_width(word) for word in ("fu\u0308nf", "五", "हिंदी")] == [4, 2, 4]  # as wcwidth counts them
    table = confusion_table(["fu\u0308nf", "五", "vier"], ["fu\u0308nf", "五", "五"])
    assert table.splitlines() == ["     | fu\u0308nf   五 vier (other)",
                                  "fu\u0308nf |    1    .    .       .",
                                  "  五 |    .    1    .       .",
                                  "vier |    .    1    .       ."]
    with pytest.raises(ValueError, match="^a confusion table needs one word per reference"):
        confusion_table(["one two"], ["one"])


# --- the config -------------------------------------------------------------------------------

@pytest.mark.parametrize("settings, message", [
    ({"stack": 0}, "stack must be a positive integer, got 0"),
    ({"hidden_size": 2.5}, "hidden_size must be a positive integer, got 2.5"),
    ({"cell": "lstn"}, "cell must be one of "),
    ({"hop_ms": 30.0}, "hop_ms must be positive and at most window_ms (25.0), got 30.0"),
    ({"window_ms": -5}, "window_ms must be a positive number of milliseconds, at most 200, got -5"),
    # bounded before the mel filter bank is made: a crafted model's 1e7 ms asked numpy for 10 GiB
    ({"window_ms": 1e7}, "window_ms must be a positive number of milliseconds, at most 200, got 10000000.0"),
    ({"sample_rate": 10**9}, "sample_rate must be at most 384000 Hz, got 1000000000"),
    ({"n_mels": 10**6}, "n_mels must be at most 512, got 1000000"),
    ({"dropout": 1.0}, "dropout is a probability in [0, 1), got 1.0"),
    ({"n_mels": 200}, "n_mels 200 at 8000 Hz with a 25 ms window (a 256-point FFT, 129 frequency bins) leaves 25 mel "
                      "band(s) without a bin: give at most 149 bands (--n-mels), a longer window (--window-ms) or a "
                      "higher rate (--sample-rate)"),
    ({"sample_rate": 100}, "n_mels 40 at 100 Hz with a 25 ms window (a 2-point FFT, 2 frequency bins) leaves 40 mel "
                           "band(s) without a bin: give a longer window (--window-ms) or a higher rate (--sample-rate)"),
])
def test_speech_config_checks_its_settings(settings, message):
    with pytest.raises(ValueError) as error:
        SpeechConfig(**settings)
    assert str(error.value).startswith(message)


# --- a tiny task, learned ---------------------------------------------------------------------

TONES = {"a": 400.0, "b": 1600.0}
WORDS = ("ab", "ba")


def tone_manifest(folder, name: str, seed: int):
    """Four utterances of each word, each letter a tone ("a" 400 Hz, "b" 1600 Hz) of 150-250 ms."""
    folder.mkdir(exist_ok=True)
    rows, rng = ["path,text"], np.random.default_rng(seed)
    for word in WORDS:
        for index in range(4):
            path = folder / f"{name}-{word}-{index}.wav"
            soundfile.write(path, np.concatenate([tone(rng.uniform(0.15, 0.25), TONES[letter], seed=seed * 10 + index)
                                                  for letter in word]), RATE, subtype="PCM_16")
            rows.append(f"{path.name},{word}")
    return write_manifest_text(folder / f"{name}.csv", "\n".join(rows) + "\n")


TINY = dict(hidden_size=16, num_layers=1, n_mels=16, batch_size=4, lr=1e-2, warmup=0, dropout=0.0, eval_every=20,
            seed=0)


@pytest.fixture(scope="module")
def one_thread():
    """Tiny products: threads only wait on each other (on a busy machine, for long)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tone_run(tmp_path_factory, one_thread):
    folder = tmp_path_factory.mktemp("tones")
    train, valid = tone_manifest(folder, "train", 0), tone_manifest(folder, "valid", 1)
    run = train_speech_model(train, folder / "run", SpeechConfig(**TINY, steps=400, stop_when_perfect=True), valid)
    return folder, run


def test_training_without_a_validation_manifest_scores_the_training_utterances_and_says_so(tmp_path, one_thread,
                                                                                           capsys):
    train = tone_manifest(tmp_path, "train", 0)
    with pytest.warns(UserWarning, match=re.escape(
            f"no validation manifest: the validation scores and the best checkpoint are those of the training "
            f"utterances ({train}), which measure fit, not recognition of new speech; give one (--valid)")):
        train_speech_model(train, tmp_path / "quiet", SpeechConfig(**{**TINY, "eval_every": 2}, steps=2))
    code, out, _ = run_cli(["speech", "train", str(train), "--steps", "1", "--hidden-size", "8", "--out",
                            str(tmp_path / "run")], capsys)
    assert code == 0 and "best on the training utterances (step 1): WER" in out


def test_a_batch_larger_than_the_training_utterances_says_so(tmp_path, one_thread):
    train = tone_manifest(tmp_path, "train", 0)
    with pytest.warns(UserWarning, match=re.escape(
            "batch_size 16 is more than the 8 training utterances: every step takes all 8, one step an epoch "
            "(--batch-size)")):
        run = train_speech_model(train, tmp_path / "run", SpeechConfig(**{**TINY, "batch_size": 16}, epochs=2), train)
    assert run.steps == 2


def test_posteriors_hand_out_a_copy_and_the_frame_cache_keeps_to_its_budget(tone_run, monkeypatch):
    """Editing the frames posteriors() returned once changed every later transcript of that
    file; the cache once grew with every file a process read."""
    from lstmkit.pipelines import speech as speech_pipeline

    folder, _ = tone_run
    recognizer = load_speech_model(folder / "run")
    path = folder / "valid-ab-3.wav"
    frames, before, _ = recognizer.posteriors(path)
    frames.mul_(0).add_(1.0)
    again, after, _ = recognizer.posteriors(path)
    assert torch.equal(before, after) and not torch.equal(frames, again)
    files = sorted(folder.glob("valid-*.wav"))[:5]
    size = {file: recognizer.posteriors(file)[0].nbytes for file in files}
    cache = speech_pipeline.FrameCache(limit=size[files[3]] + size[files[4]] + size[files[2]])
    monkeypatch.setattr(speech_pipeline, "FRAMES", cache)
    for file in [*files, files[2]]:  # files[2] used again: the most recent, and kept
        recognizer.posteriors(file)
    assert [key[0] for key in cache.entries] == [str(files[k].resolve()) for k in (3, 4, 2)]
    assert cache.bytes == cache.limit


def test_a_tiny_tone_task_is_learned_to_100_percent(tone_run):
    folder, run = tone_run
    assert run.best["val_accuracy"] == 1.0 and run.best["val_wer"] == 0.0 and run.best["val_cer"] == 0.0
    assert run.steps < 400  # stopped when every validation utterance was exact
    recognizer = load_speech_model(folder / "run")
    assert recognizer.alphabet.characters == "ab"
    assert [recognizer.transcribe(folder / f"valid-{word}-2.wav", beam=4) for word in WORDS] == ["ab", "ba"]


def test_a_model_moved_to_another_dtype_transcribes_and_evaluates(tone_run):
    """model.double() or .bfloat16() stopped every transcribe() and evaluate() with "convert the
    input with input.to(...)", which the pipeline, not the caller, builds."""
    folder, _ = tone_run
    recognizer = load_speech_model(folder / "run")
    path = folder / "valid-ab-2.wav"
    expected, log_probs = recognizer.transcribe(path, beam=4), recognizer.posteriors(path)[1]
    for dtype in (torch.float64, torch.bfloat16):
        recognizer.model.to(dtype)
        moved = recognizer.posteriors(path)[1]
        assert (moved.exp() - log_probs.exp()).abs().max() < (1e-6 if dtype == torch.float64 else 0.05)
        assert recognizer.transcribe(path, beam=4) == expected
        assert recognizer.evaluate(folder / "valid.csv")[0]["accuracy"] == 1.0


def test_eval_checks_the_references_for_a_confusion_table_before_decoding(tone_run, tmp_path, capsys):
    folder, _ = tone_run
    rows = (folder / "valid.csv").read_text().splitlines()
    joined = write_manifest_text(folder / "joined.csv", f"{rows[0]}\n{rows[1].split(',')[0]},ab ba\n")
    code, out, err = run_cli(["speech", "eval", str(folder / "run"), str(joined), "--confusion", "--json",
                              str(tmp_path / "s.json")], capsys)
    assert (code, out) == (2, "")  # stopped before decoding: no scores printed or written
    assert err.endswith("a confusion table needs one word per reference; this manifest has utterances of several "
                        "(e.g. 'ab ba')\n")
    assert not (tmp_path / "s.json").exists()


def test_eval_and_transcribe_commands_print_and_write_the_scores(tone_run, capsys):
    folder, _ = tone_run
    scores = folder / "scores.json"
    code, out, _ = run_cli(["speech", "eval", str(folder / "run"), str(folder / "valid.csv"), "--json", str(scores),
                            "--beam", "3"], capsys)
    assert code == 0
    assert out.splitlines()[0] == "WER 0.00%, CER 0.00%, accuracy 100.00% over 8 utterances"
    assert json.loads(scores.read_text()) == {"wer": 0.0, "cer": 0.0, "utterances": 8, "accuracy": 1.0, "beam": 3,
                                              "lexicon": False}
    mislabelled = write_manifest_text(folder / "mislabelled.csv", "path,text\nvalid-ab-3.wav,ab\nvalid-ba-0.wav,ab\n")
    transcripts = folder / "transcripts.csv"
    again = write_manifest_text(folder / "again.csv", "path,text\nvalid-ab-3.wav,ab\nvalid-ab-3.wav,ab\n")
    code, _, err = run_cli(["speech", "eval", str(folder / "run"), str(again)], capsys)
    assert code == 0 and err.count("lists 1 recording(s) again") == 1  # said twice before: the command read it too
    code, out, _ = run_cli(["speech", "eval", str(folder / "run"), str(mislabelled), "--errors", "--out",
                            str(transcripts)], capsys)
    assert out.splitlines()[1:] == [f"  {folder / 'valid-ba-0.wav'}: 'ab' -> 'ba'",  # the file, not only the words
                                    f"wrote {transcripts}"]
    assert transcripts.read_text().splitlines() == [
        "path,reference,transcript", f"{folder / 'valid-ab-3.wav'},ab,ab", f"{folder / 'valid-ba-0.wav'},ab,ba"]
    code, out, _ = run_cli(["speech", "eval", str(folder / "run"), str(folder / "valid.csv"), "--confusion"], capsys)
    assert out.splitlines()[1:] == ["   | ab ba (other)", "ab |  4  .       .", "ba |  .  4       ."]
    files = [str(folder / "valid-ba-0.wav"), str(folder / "valid-ab-3.wav")]
    code, out, _ = run_cli(["speech", "transcribe", str(folder / "run"), *files], capsys)
    assert code == 0 and out.splitlines() == [f"{files[0]}\tba", f"{files[1]}\tab"]
    image = folder / "show.png"
    code, out, err = run_cli(["speech", "transcribe", str(folder / "run"), files[1], "--show", str(image)], capsys)
    assert code == 0 and out == f"{files[1]}\tab\n" and image.read_bytes()[:4] == b"\x89PNG"
    samples, _ = soundfile.read(files[0])
    faster = folder / "ba-16k.wav"
    soundfile.write(faster, np.interp(np.arange(2 * len(samples)) / 2, np.arange(len(samples)), samples), 16000)
    code, out, err = run_cli(["speech", "transcribe", str(folder / "run"), str(faster)], capsys)
    assert (code, out) == (0, f"{faster}\tba\n")
    assert err == f"lstmkit: {faster} resampled from 16000 Hz to 8000 Hz, the model's rate\n"
    recognizer = load_speech_model(folder / "run")
    with pytest.warns(UserWarning, match=re.escape(f"{faster} resampled from 16000 Hz to 8000 Hz, the model's rate")):
        assert recognizer.transcribe(faster) == "ba"  # from Python too
    silent = folder / "silent.wav"
    soundfile.write(silent, np.zeros(len(samples)), soundfile.info(files[0]).samplerate, subtype="PCM_16")
    code, out, err = run_cli(["speech", "transcribe", str(folder / "run"), str(silent)], capsys)
    assert code == 0 and out.startswith(f"{silent}\t")
    assert err == (f"lstmkit: warning: {silent} is silent (its spectrogram is the same in every frame): the transcript is "
                   "what the model makes of silence\n")
    shown = folder / "silent.png"  # the figure decodes the file again: the warning was said twice
    code, _, err = run_cli(["speech", "transcribe", str(folder / "run"), str(silent), "--show", str(shown)], capsys)
    assert code == 0 and err.count("is silent") == 1 and err.endswith(f"wrote {shown}\n")
    with pytest.raises(TypeError, match=re.escape("expected the path of one audio file, got list; for several, call "
                                                  "once per file: [recognizer.transcribe(path) for path in paths]")):
        recognizer.transcribe(files)
    with pytest.raises(TypeError, match=re.escape("expected the path of one audio file, got ndarray; samples or a "
                                                  "file object: write them to a file (soundfile.write) and give its "
                                                  "path")):
        recognizer.transcribe(np.zeros(8000))
    code, _, err = run_cli(["speech", "transcribe", str(folder / "run"), str(folder / "none.wav")], capsys)
    assert code == 2 and err.endswith(
        f"error: argument files: {folder / 'none.wav'} does not exist (expected an audio file)\n")


def test_eval_scores_a_transcript_the_model_cannot_write_as_an_error_not_a_stop(tone_run, tmp_path):
    """Training needs labels in the model's alphabet; scoring only compares text. The manifest
    here also starts with a spreadsheet's byte-order mark."""
    folder, _ = tone_run
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"\ufeffpath,text\n{folder / 'valid-ab-0.wav'},ab!\n{folder / 'valid-ba-0.wav'},ba\n",
                        encoding="utf-8")
    with pytest.warns(UserWarning, match=re.escape(
            f"1 transcript(s) of {manifest} hold characters the model never writes ('!', e.g. 'ab!'), so they count "
            "as errors; it writes 'ab'")):
        scores, references, transcripts = load_speech_model(folder / "run").evaluate(manifest, beam=3)
    assert (references, transcripts) == (["ab!", "ba"], ["ab", "ba"])
    assert scores == {"wer": 0.5, "cer": 0.2, "utterances": 2, "accuracy": 0.5}


def test_a_resumed_run_computes_what_the_uninterrupted_run_computes(tone_run, tmp_path, monkeypatch):
    folder, _ = tone_run
    train, valid = folder / "train.csv", folder / "valid.csv"
    # dropout and SpecAugment: the random state and the masks too
    config = SpeechConfig(**{**TINY, "dropout": 0.3, "num_layers": 2}, frequency_masks=2, frequency_mask_width=4,
                          time_masks=1, time_mask_width=5, steps=30)
    whole = train_speech_model(train, tmp_path / "whole", config, valid)
    dies_at_step(monkeypatch, 25)  # mid-epoch (4 steps each), after the evaluation at step 20
    with pytest.raises(Killed):
        train_speech_model(train, tmp_path / "parts", config, valid)
    monkeypatch.undo()
    resumed = train_speech_model(train, tmp_path / "parts", config, valid, resume=True)
    timeless = [[{k: v for k, v in row.items() if k != "seconds"} for row in run.history] for run in (resumed, whole)]
    assert timeless[0] == timeless[1] and len(timeless[0]) == 2
    with pytest.raises(ValueError, match="was trained with other settings; --resume needs the same ones "
                                         r"\(hidden_size: 16 in the run, 8 now\)"):
        train_speech_model(train, tmp_path / "parts", dataclasses.replace(config, hidden_size=8), valid, resume=True)


def test_a_run_stopped_when_perfect_says_so_and_resumes_without_the_goal(tone_run, tmp_path, capsys):
    """It stopped in silence, and --resume refused it with the flag and without it alike."""
    folder, run = tone_run
    shutil.copytree(folder / "run", tmp_path / "run")
    config = SpeechConfig(**TINY, steps=400, stop_when_perfect=True)
    goal = (f"ended at step {run.steps}: its last evaluation transcribed every validation utterance exactly, which "
            "ends a run under --stop-when-perfect; resume without --stop-when-perfect to continue")
    with pytest.raises(ValueError, match=re.escape(goal)):
        train_speech_model(folder / "train.csv", tmp_path / "run", config, folder / "valid.csv", resume=True)
    resumed = train_speech_model(folder / "train.csv", tmp_path / "run",
                                 dataclasses.replace(config, stop_when_perfect=False, steps=run.steps + 20),
                                 folder / "valid.csv", resume=True)
    assert resumed.steps == run.steps + 20 and resumed.history[:len(run.history)] == run.history
    capsys.readouterr()
    train_speech_model(folder / "train.csv", tmp_path / "again", config, folder / "valid.csv")
    assert (f"step {run.steps}: stopping before the budget is spent: its last evaluation transcribed every "
            "validation utterance exactly, which ends a run under --stop-when-perfect\n") in capsys.readouterr().err


def test_the_train_command_says_where_the_run_trained(tone_run, tmp_path, capsys):
    folder, _ = tone_run
    code, out, _ = run_cli(["speech", "train", str(folder / "train.csv"), "--valid", str(folder / "valid.csv"),
                            "--out", str(tmp_path / "run"), "--steps", "2", "--eval-every", "2", "--hidden-size", "16",
                            "--num-layers", "1", "--n-mels", "16", "--batch-size", "4"], capsys)
    assert code == 0 and "utterances/s (cpu, precision 32, 1 process)\nwrote" in out, out
    code, out, err = run_cli(["speech", "train", str(folder / "train.csv"), "--out", str(tmp_path / "run"), "--resume",
                              "--steps", "4", "--hidden-size", "8", "--num-layers", "1", "--n-mels", "16",
                              "--batch-size", "4"], capsys)  # refused before its manifest is read, or a word said
    assert (code, out) == (2, "") and err.startswith(f"lstmkit: error: {tmp_path / 'run'} was trained with other "
                                                     "settings; --resume needs the same ones (hidden_size: 16 in the "
                                                     "run, 8 now")


def test_a_resume_over_the_same_manifest_of_other_recordings_is_refused(tone_run, tmp_path):
    folder, _ = tone_run
    copy = tmp_path / "tones"
    shutil.copytree(folder, copy, ignore=shutil.ignore_patterns("run"))
    config = SpeechConfig(**TINY, steps=4)
    train_speech_model(copy / "train.csv", tmp_path / "run", config, copy / "valid.csv")
    soundfile.write(copy / "train-ab-0.wav", np.concatenate([tone(0.2, 1600.0), tone(0.2, 400.0)]), RATE,
                    subtype="PCM_16")  # the manifest's bytes unchanged
    with pytest.raises(ValueError, match=r"was trained on other data; --resume needs the same \(train audio: "):
        train_speech_model(copy / "train.csv", tmp_path / "run", dataclasses.replace(config, steps=8),
                           copy / "valid.csv", resume=True)


def test_no_process_is_handed_an_empty_share_of_an_epochs_last_batch(tone_run):
    from lstmkit.pipelines.speech import SpeechJob
    from lstmkit.training import Processes

    folder, _ = tone_run
    front_end = SpeechConfig(**TINY).front_end()
    utterances, alphabet = load_utterances(folder / "train.csv", front_end, None, 1)
    config = SpeechConfig(**{**TINY, "batch_size": 6})
    sizes = {}
    for processes in (Processes(), Processes(1, 3)):
        job = SpeechJob(utterances, utterances, alphabet, config, {}, processes, torch.device("cpu"))
        batches = job.epoch_batches(0)
        assert sorted(index for batch in batches for index in batch.tolist()) == list(range(8))
        assert len(batches) == job.steps_per_epoch()
        sizes[processes.world_size] = sorted(len(batch) for batch in batches)
    assert sizes == {1: [2, 6], 3: [8]}, "8 utterances in 6s: the two left over join the batch before under 3"
    with pytest.raises(ValueError, match=re.escape("batch_size (--batch-size, utterances) is 1, which 2 processes "
                                                   "cannot share evenly: give a multiple of 2 (a new run), or run a "
                                                   "number of processes that divides 1")):
        SpeechJob(utterances, utterances, alphabet, SpeechConfig(**{**TINY, "batch_size": 1}), {}, Processes(1, 2),
                  torch.device("cpu"))


# --- decoding held to a lexicon ---------------------------------------------------------------

def test_a_lexicon_allows_word_starts_and_completes_on_whole_words():
    lexicon = Lexicon([[1, 2], [2]], separator=3)  # "ab", "b"; 3 is the space
    assert lexicon.allows([]) and lexicon.allows([1]) and lexicon.allows([1, 2]) and lexicon.allows([2])
    assert not lexicon.allows([2, 1]) and not lexicon.allows([1, 1])
    assert lexicon.allows([1, 2, 3]) and lexicon.allows([2, 3, 1]) and lexicon.allows([2, 3, 1, 2])
    assert not lexicon.allows([1, 3]) and not lexicon.allows([3]) and not lexicon.allows([2, 3, 3])
    assert lexicon.complete([1, 2]) and lexicon.complete([2, 3, 1, 2])
    assert not lexicon.complete([]) and not lexicon.complete([1]) and not lexicon.complete([2, 3])
    single = Lexicon([[1, 2]], separator=None)
    assert single.allows([1]) and not single.allows([1, 2, 1]) and single.complete([1, 2])


@pytest.mark.parametrize("words, separator, message", [
    ([], None, "a lexicon needs at least one word, and no empty one"),
    ([[1], []], None, "a lexicon needs at least one word, and no empty one"),
    ([[1, 3]], 3, r"a lexicon's words cannot hold its separator \(label 3\)"),
])
def test_a_lexicon_refuses_empty_words_and_words_with_the_separator(words, separator, message):
    with pytest.raises(ValueError, match=message):
        Lexicon(words, separator)


def test_the_lexicon_turns_a_likelier_non_word_into_the_likeliest_word():
    # Blank, "a", "b" at two steps. Unconstrained, "a" wins: P("a") = .6·.7 + .6·.1 + .3·.1 = 0.51.
    # Only "ab" is a word, and its one path (a, b) has P = .6·.2 = 0.12.
    log_probs = torch.tensor([[0.3, 0.6, 0.1], [0.7, 0.1, 0.2]]).log()
    assert labelling_probability(log_probs, [1]) == pytest.approx(0.51)
    assert labelling_probability(log_probs, [1, 2]) == pytest.approx(0.12)
    assert prefix_beam_search(log_probs, 4) == [1]
    assert prefix_beam_search(log_probs, 4, lexicon=Lexicon([[1, 2]], None)) == [1, 2]


def test_a_lexicon_word_is_found_where_the_beam_held_only_word_starts():
    # After the first step blank dominates: the beam keeps "" and "a" and never spells a word, yet
    # both words fit in the 5 steps; the likelier under CTC wins, "cb" (0.0069 against 0.0019).
    log_probs = torch.tensor([[0.5, 0.4, 0.05, 0.05]] + [[0.9, 0.04, 0.03, 0.03]] * 4).log()
    lexicon = Lexicon([[1, 2, 3], [3, 2]], None)
    assert labelling_probability(log_probs, [3, 2]) == pytest.approx(0.006861, rel=1e-3)
    assert labelling_probability(log_probs, [1, 2, 3]) == pytest.approx(0.001916, rel=1e-3)
    for beam in (1, 2, 4):
        assert prefix_beam_search(log_probs, beam, lexicon=lexicon) == [3, 2]
    # One step holds no word: the likeliest prefix, as it is.
    assert prefix_beam_search(log_probs[:1], 1, lexicon=lexicon) == prefix_beam_search(log_probs[:1], 1) == []


def test_a_short_word_completed_early_does_not_beat_a_likelier_one_the_beam_left_unfinished():
    # Words "a" and "bca". With beam 1 the beam ends on a start of "bca", with the complete "a"
    # kept beside it; finished, "bca" is five times likelier under CTC (0.0314 against 0.0062).
    log_probs = torch.tensor([[0.2, 0.02, 0.6, 0.18], [0.02, 0.11, 0.67, 0.2], [0.02, 0.48, 0.48, 0.02],
                              [0.1, 0.35, 0.45, 0.1]]).log()
    assert labelling_probability(log_probs, [2, 3, 1]) == pytest.approx(0.031436, rel=1e-4)
    assert labelling_probability(log_probs, [1]) == pytest.approx(0.006168, rel=1e-3)
    for beam in (1, 2, 3):
        assert prefix_beam_search(log_probs, beam, lexicon=Lexicon([[1], [2, 3, 1]], None)) == [2, 3, 1]


def test_every_transcript_held_to_a_lexicon_is_made_of_its_words():
    lexicon = Lexicon([[1, 2], [2], [1, 1, 2]], separator=3)
    for seed in range(40):
        matrix = confident_matrix(seed, steps=12, vocabulary=4)
        labels = prefix_beam_search(matrix, 6, lexicon=lexicon)
        words, word = [], []
        for label in labels:
            if label == 3:
                words.append(tuple(word))
                word = []
            else:
                word.append(label)
        assert all(word in lexicon.words for word in [*words, tuple(word)]), (seed, labels)
    assert any(3 in prefix_beam_search(confident_matrix(seed, 12, 4), 6, lexicon=lexicon) for seed in range(40))


def test_the_checkpoint_keeps_the_training_words_for_decoding_with_the_lexicon(tone_run, tmp_path, capsys):
    folder, _ = tone_run
    saved = json.loads((folder / "run" / "best" / "config.json").read_text())
    assert saved["words"] == ["ab", "ba"]
    code, out, _ = run_cli(["speech", "eval", str(folder / "run"), str(folder / "valid.csv"), "--lexicon"], capsys)
    assert (code, out.splitlines()[0]) == (0, "WER 0.00%, CER 0.00%, accuracy 100.00% over 8 utterances")
    recognizer = load_speech_model(folder / "run")
    assert recognizer.words == ("ab", "ba")
    assert recognizer.transcribe(folder / "valid-ba-0.wav", beam=3, lexicon=True) == "ba"
    older = tmp_path / "older"
    shutil.copytree(folder / "run" / "best", older)
    (older / "config.json").write_text(json.dumps({key: value for key, value in saved.items() if key != "words"}))
    code, _, err = run_cli(["speech", "eval", str(older), str(folder / "valid.csv"), "--lexicon"], capsys)
    assert code != 0 and "saved without the words of its training transcripts, which the lexicon needs" in err
    (older / "config.json").write_text(json.dumps({**saved, "words": ["ab", ""]}))
    with pytest.raises(CheckpointError, match=r"words must be a list of non-empty strings, got \['ab', ''\]"):
        load_speech_model(older)
    n_mels = saved["front_end"]["n_mels"]
    (older / "config.json").write_text(json.dumps({**saved, "front_end": {**saved["front_end"], "n_mels": n_mels - 1}}))
    with pytest.raises(CheckpointError, match=f"the front_end's n_mels is {n_mels - 1}, but the model reads frames of "
                                              f"input_size {n_mels}"):
        load_speech_model(older)


def test_training_keeps_the_callers_random_state(tmp_path, one_thread):
    train, valid = tone_manifest(tmp_path, "train", 0), tone_manifest(tmp_path, "valid", 1)
    assert_keeps_random_state(lambda: train_speech_model(train, tmp_path / "run", SpeechConfig(**TINY, steps=2), valid))


def test_training_needs_a_run_folder(tmp_path, one_thread):
    """`out=None` trained a model that nothing kept: the run object holds none."""
    train = tone_manifest(tmp_path, "train", 0)
    with pytest.raises(TypeError, match="expected the run's folder, as a path .* got NoneType"):
        train_speech_model(train, None, SpeechConfig(**TINY, steps=1))


def test_decoding_takes_a_numpy_beam_and_refuses_a_lexicon_that_is_not_a_bool(tone_run):
    """np.int64 beams were refused as not positive integers; lexicon="yes" (or "no") was taken as True."""
    folder, _ = tone_run
    recognizer = load_speech_model(folder / "run")
    path = folder / f"valid-{WORDS[0]}-2.wav"
    assert recognizer.transcribe(path, beam=np.int64(4)) == recognizer.transcribe(path, beam=4) == WORDS[0]
    with pytest.raises(TypeError, match=re.escape("lexicon must be True or False, got 'no' (str)")):
        recognizer.transcribe(path, lexicon="no")
    with pytest.raises(ValueError, match=re.escape("beam must be a positive integer, got True")):  # greedy took it
        recognizer.transcribe(path, beam=True)
    _, log_probs, _ = recognizer.posteriors(path)
    labels = len(recognizer.alphabet)
    for given, error, message in (
        (log_probs[:, None], ValueError, f"expected one utterance's log-probabilities of shape (steps, {labels}), got "
                                         f"shape ({len(log_probs)}, 1, {labels}); the model's own output is (steps, "
                                         "batch, labels): give one utterance's, log_probs[:, 0]"),
        (log_probs[0], ValueError, f"of shape (steps, {labels}), got shape ({labels},)"),
        (log_probs.argmax(-1), TypeError, f"a floating-point tensor of shape (steps, {labels}), got a tensor of "
                                          "torch.int64"),
        ([[0.0] * labels], TypeError, f"of shape (steps, {labels}), got [[0.0, 0.0, 0.0]] (list)"),
    ):
        with pytest.raises(error, match=re.escape(message)):
            recognizer.decode(given, beam=4)
    assert recognizer.decode(log_probs.bfloat16(), beam=4) == recognizer.decode(log_probs.bfloat16().float(), beam=4)
    assert recognizer.decode(log_probs.numpy(), beam=4) == recognizer.decode(log_probs, beam=4) == WORDS[0]
    assert recognizer.decode(log_probs[:0], beam=4, lexicon=True) == recognizer.decode(log_probs[:0]) == ""
    # NumPy's bool and int are taken by the figure's title too (a list times np.True_ failed there)
    assert recognizer.show(path, folder / "shown.png", beam=np.int64(4), lexicon=np.False_) == WORDS[0]
    recording = path.read_bytes()  # checked as `transcribe --show` is: the recording was overwritten with a PNG
    with pytest.raises(ValueError, match="^" + re.escape(f"{path}: expected a file ending in .png, .pdf, .svg")):
        recognizer.show(path, path)
    assert path.read_bytes() == recording


def test_errors_that_look_alike_are_escaped_and_decomposed_transcripts_are_warned_of(tmp_path):
    from lstmkit.cli.speech import error_line

    assert error_line("a.wav", "fünf", "fu\u0308nf") == "  a.wav: 'f\\xfcnf' -> 'fu\\u0308nf'"
    assert error_line("a.wav", "fünf", "funf") == "  a.wav: 'fünf' -> 'funf'"
    write_wav(tmp_path / "a.wav")
    write_wav(tmp_path / "b.wav")
    manifest = write_manifest_text(tmp_path / "m.csv", "path,text\na.wav,fünf\n\nb.wav,zwei fu\u0308nf\n")
    with pytest.warns(UserWarning) as warned:
        read_manifest(manifest)
    assert [str(warning.message) for warning in warned][0] == (
        f"{manifest}: 1 line(s) write a letter otherwise than in Unicode's composed form, NFC, which the text also "
        "writes (the first: line 4, 'fu\\u0308nf', whose 'u\\u0308' is written '\\xfc' too): one letter written both "
        "ways counts as two different characters, to the model and its scores alike; normalise the text to NFC "
        "(Python: unicodedata.normalize('NFC', text))")


def test_a_model_in_training_mode_transcribes_in_evaluation_mode_and_stays_in_training_mode(tone_run):
    """transcribe(), posteriors() and evaluate() ran a model the caller had put in training
    mode with its dropout on, as translate did; lm and forecast always evaluate."""
    folder, _ = tone_run
    recognizer = load_speech_model(folder / "run")
    modes = []
    recognizer.model.register_forward_pre_hook(lambda module, arguments: modes.append(module.training))
    path = sorted(folder.glob("valid-*.wav"))[0]
    expected = recognizer.posteriors(path)[1]
    recognizer.model.train()
    assert torch.equal(recognizer.posteriors(path)[1], expected)
    recognizer.evaluate(folder / "valid.csv")
    assert recognizer.model.training and all(module.training for module in recognizer.model.modules())
    assert modes and not any(modes)
