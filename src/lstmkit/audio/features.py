"""The acoustic front end: audio files -> normalised log-mel frames.

    read     soundfile (WAV, FLAC, OGG, ...); mono only; resampled (soxr, through librosa)
             when the file's rate differs from the front end's
    log-mel  librosa's mel filterbank over a Hann-windowed STFT: `n_mels` bands, one frame
             every `hop_ms` over `window_ms`, centred (a file of n samples gives
             1 + n // hop frames), log(mel power + 1e-6)
    speed    for speed perturbation, the samples resampled as if played `speed` times as fast
             (above 1 shorter and higher, below 1 longer and lower; Ko et al. 2015)
    normalise each band's mean over the utterance removed (cepstral mean normalisation: the
             channel's colouring and the recording's gain cancel, except where the power nears
             the floor: a much quieter recording's silences and weak bands), then the utterance
             scaled to variance 1

A file that cannot be used (missing, unreadable, empty, stereo, shorter than one window)
raises AudioError naming it.
"""

from __future__ import annotations

import importlib.util
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from lstmkit.warning_filters import warnings_filtered
from lstmkit.training.config import check_positive_integers

# Added to the mel power before the log: silence (digital zeros) stays finite.
LOG_FLOOR = 1e-6
SILENT_SCALE = 1e-5  # below this spread of log-mel energies an utterance is silent
# The speeds perturbation may play a file at: beyond half or twice, speech stops sounding like
# the same words said by another voice.
MIN_SPEED, MAX_SPEED = 0.5, 2.0
# The front end's largest settings: a window of 200 ms holds several phonemes (speech front ends
# use 20-40 ms), 384 kHz is above common studio rates (up to 192 kHz), and 512 bands are 4 x the
# most that speech front ends use. They bound the mel filter bank (at most 512 x 65,537 values),
# which a crafted model's configuration could otherwise make gigabytes.
MAX_WINDOW_MS, MAX_SAMPLE_RATE, MAX_MELS = 200.0, 384_000, 512


def empty_mel_bands(sample_rate: int, n_fft: int, n_mels: int) -> int:
    """How many of librosa's `n_mels` mel filters over an `n_fft`-point FFT hold no frequency
    bin (the low bands, narrower than a bin, once there are too many); 0 without librosa, which
    every use of the front end needs."""
    if importlib.util.find_spec("librosa") is None:
        return 0
    import librosa

    with warnings_filtered("ignore", UserWarning):  # librosa's own "Empty filters detected"
        filters = librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels)
    return int((filters.max(axis=1) == 0).sum())


def most_mel_bands(sample_rate: int, n_fft: int, n_mels: int) -> int:
    """The most bands below `n_mels` with none empty (0 where even one is), by bisection."""
    low, high = 0, n_mels  # empty_mel_bands(.., low) == 0 (or low == 0), empty_mel_bands(.., high) > 0
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if not empty_mel_bands(sample_rate, n_fft, middle) else (low, middle)
    return low


class AudioError(ValueError):
    """An audio file the front end cannot use; the message names it and says why."""


@dataclass(frozen=True)
class FrontEnd:
    """How audio becomes frames (saved with a model, so that it hears as it was trained)."""

    sample_rate: int = 8000
    n_mels: int = 40
    window_ms: float = 25.0
    hop_ms: float = 10.0

    def __post_init__(self) -> None:
        check_positive_integers(self, ("sample_rate", "n_mels"))
        if self.sample_rate > MAX_SAMPLE_RATE:
            raise ValueError(f"sample_rate must be at most {MAX_SAMPLE_RATE} Hz, got {self.sample_rate}")
        if self.n_mels > MAX_MELS:
            raise ValueError(f"n_mels must be at most {MAX_MELS}, got {self.n_mels}")
        if not 0 < self.window_ms <= MAX_WINDOW_MS:
            raise ValueError(f"window_ms must be a positive number of milliseconds, at most {MAX_WINDOW_MS:g}, got "
                             f"{self.window_ms!r}")
        if not 0 < self.hop_ms <= self.window_ms:
            raise ValueError(f"hop_ms must be positive and at most window_ms ({self.window_ms!r}), got {self.hop_ms!r}")
        if self.hop < 1:
            raise ValueError(f"hop_ms {self.hop_ms!r} is less than one sample at {self.sample_rate} Hz")
        empty = empty_mel_bands(self.sample_rate, self.n_fft, self.n_mels)
        if empty:
            fitting = most_mel_bands(self.sample_rate, self.n_fft, self.n_mels)
            fewer = f"at most {fitting} bands (--n-mels), " if fitting else ""
            raise ValueError(
                f"n_mels {self.n_mels} at {self.sample_rate} Hz with a {self.window_ms:g} ms window (a {self.n_fft}-point "
                f"FFT, {self.n_fft // 2 + 1} frequency bins) leaves {empty} mel band(s) without a bin: give {fewer}a "
                "longer window (--window-ms) or a higher rate (--sample-rate)")

    @property
    def hop(self) -> int:
        return round(self.sample_rate * self.hop_ms / 1000)

    @property
    def window(self) -> int:
        return round(self.sample_rate * self.window_ms / 1000)

    @property
    def n_fft(self) -> int:
        """The STFT's length: the window's, up to the next power of two."""
        return 1 << (max(self.window, 1) - 1).bit_length()

    @property
    def frame_rate(self) -> float:
        """Frames per second."""
        return self.sample_rate / self.hop

    def to_dict(self) -> dict:
        return asdict(self)

    def read(self, path: str | Path) -> tuple[np.ndarray, int | None]:
        """The samples of a mono file at this front end's rate (float32 in [-1, 1]) and the
        file's own rate when it had to be resampled (None when it did not)."""
        import librosa
        import soundfile

        path = Path(path)
        if path.is_dir():
            raise AudioError(f"{path}: is a folder; expected an audio file")
        if not path.is_file():
            raise AudioError(f"{path}: no such file")
        try:
            samples, rate = soundfile.read(path, dtype="float32", always_2d=True)
        except (soundfile.LibsndfileError, RuntimeError, TypeError) as error:
            raise AudioError(f"{path}: not a readable audio file ({error})") from None
        if samples.shape[1] != 1:
            raise AudioError(f"{path}: has {samples.shape[1]} channels; expected mono audio "
                             "(mix it down first, e.g. `sox IN OUT remix -`)")
        if samples.shape[0] == 0:
            raise AudioError(f"{path}: holds no samples")
        not_finite = int((~np.isfinite(samples)).sum())
        if not_finite:
            raise AudioError(f"{path}: {not_finite} of its {samples.shape[0]} samples are not finite (NaN or inf)")
        samples, resampled_from = samples[:, 0], None
        if rate != self.sample_rate:
            constant = samples.min() == samples.max()
            samples = librosa.resample(samples, orig_sr=rate, target_sr=self.sample_rate)
            if constant:  # one value throughout: the resampler's ringing at its ends is not the file's
                samples = np.full_like(samples, samples[len(samples) // 2])
            resampled_from = rate
        if len(samples) < self.window:
            raise AudioError(f"{path}: lasts {len(samples) / self.sample_rate * 1000:.1f} ms; "
                             f"at least one {self.window_ms:g} ms window is needed")
        return samples, resampled_from

    def log_mel(self, samples: np.ndarray) -> Tensor:
        """(frames, n_mels) log-mel energies of samples at this front end's rate, unnormalised."""
        import librosa

        # "n_fft=256 is too large for input signal of length=210": a recording of one window at
        # least, its frames as librosa's (the filters changed only then: each change makes Python
        # forget the warnings shown once)
        with warnings_filtered("ignore", UserWarning, "n_fft=") if samples.shape[-1] < self.n_fft else nullcontext():
            mel = librosa.feature.melspectrogram(
                y=samples, sr=self.sample_rate, n_fft=self.n_fft, hop_length=self.hop, win_length=self.window,
                n_mels=self.n_mels, center=True, power=2.0,
            )
        return torch.from_numpy(np.log(mel + LOG_FLOOR).T.astype(np.float32))

    def features(self, path: str | Path, speed: float = 1.0) -> tuple[Tensor, int | None]:
        """(frames, n_mels) normalised log-mel frames of a file played `speed` times as fast, and
        its own rate when it was resampled."""
        import librosa

        samples, resampled_from = self.read(path)
        # One value throughout (digital silence, or a DC offset) is silent: the edge frames, padded
        # with zeros, differ from the rest, and normalised a DC offset's read as a word.
        silent = samples.min() == samples.max()
        if speed != 1:
            samples = librosa.resample(samples, orig_sr=self.sample_rate * speed, target_sr=self.sample_rate)
        with np.errstate(over="ignore", invalid="ignore"):  # said below, by the file's name
            frames = self.log_mel(samples)
        if not torch.isfinite(frames).all():  # finite samples of a float file, whose power overflowed: all NaN
            raise AudioError(f"{path}: its samples reach {np.abs(samples).max():.3g}, whose energies overflow "
                             "float32; expected audio in [-1, 1] (scale the file so)")
        return (torch.zeros_like(frames) if silent else normalise(frames)), resampled_from


def normalise(frames: Tensor) -> Tensor:
    """Each band's mean over the frames removed, then the whole utterance scaled to variance 1
    (one scale for every band: a band that holds only noise stays small rather than being
    blown up to the size of the bands that hold speech). An utterance whose energies do not
    change (digital silence) becomes zeros."""
    centred = frames - frames.mean(0, keepdim=True)
    scale = centred.std(unbiased=False)
    if scale < SILENT_SCALE:  # the same energies in every frame (silence): what is left is rounding
        return torch.zeros_like(frames)
    return centred / scale
