"""Augmentation of the training utterances, drawn afresh each time one is drawn, so that the
model cannot lean on one band, one instant or one speaker's vocal tract:

    frequency warp   the bands stretched or squeezed by a ~ U[1 - frequency_warp, 1 + frequency_warp]:
                     band b takes the value at band a * b (linear interpolation, the top band
                     beyond the last): vocal tract length perturbation (VTLP; Jaitly & Hinton
                     2013), applied to the mel bands
    frequency masks  `frequency_masks` times: f ~ U{0, ..., frequency_mask_width} consecutive mel
                     bands, starting at f0 ~ U{0, ..., n_mels - f}, set to 0
    time masks       `time_masks` times: t ~ U{0, ..., min(time_mask_width, p * frames)}
                     consecutive frames, starting at t0 ~ U{0, ..., frames - t}, set to 0

The masks are SpecAugment's (Park et al. 2019). The frames are normalised (each band's mean
over the utterance is 0), so a masked patch holds the band's mean: no information, and nothing
the model has not seen. SpecAugment's time warping is left out: it gained the least there.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

# Park et al.'s upper bound p on a time mask's share of the utterance (their LibriSpeech
# double policy): a short word keeps most of its frames, so its transcript still fits CTC.
TIME_MASK_SHARE = 0.2


@dataclass(frozen=True)
class Augmentation:
    """How far the bands of each training utterance are warped, and how many masks of how many
    bands and frames it gets (0: none)."""

    frequency_warp: float
    frequency_masks: int
    frequency_mask_width: int
    time_masks: int
    time_mask_width: int

    def __post_init__(self) -> None:
        if isinstance(self.frequency_warp, bool) or not isinstance(self.frequency_warp, (int, float)) \
                or not 0 <= self.frequency_warp < 1:
            raise ValueError("frequency_warp (--frequency-warp) must be a number in [0, 1) (0: no warp), got "
                             f"{self.frequency_warp!r}")
        for name in ("frequency_masks", "frequency_mask_width", "time_masks", "time_mask_width"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} (--{name.replace('_', '-')}) must be a non-negative integer (0: no masks), "
                                 f"got {value!r}")

    @property
    def active(self) -> bool:
        return bool(self.frequency_warp or self.frequency_masks * self.frequency_mask_width
                    or self.time_masks * self.time_mask_width)

    def __call__(self, frames: Tensor, generator: torch.Generator) -> Tensor:
        """A copy of `frames` (frames, n_mels) warped and masked as drawn from `generator`."""
        steps, bands = frames.shape
        if self.frequency_warp:  # the interpolation makes the copy
            factor = 1 + self.frequency_warp * (2 * float(torch.rand((), generator=generator)) - 1)
            position = (torch.arange(bands, dtype=torch.float64) * factor).clamp(max=bands - 1)
            below = position.floor().long()
            above = (below + 1).clamp(max=bands - 1)
            share = (position - below).to(frames.dtype)
            masked = frames[:, below] * (1 - share) + frames[:, above] * share
        else:
            masked = frames.clone()

        def draw(high: int) -> int:
            return int(torch.randint(high + 1, (), generator=generator))

        for _ in range(self.frequency_masks):
            width = draw(min(self.frequency_mask_width, bands))
            start = draw(bands - width)
            masked[:, start:start + width] = 0
        longest = min(self.time_mask_width, int(TIME_MASK_SHARE * steps))
        for _ in range(self.time_masks):
            width = draw(longest)
            start = draw(steps - width)
            masked[start:start + width] = 0
        return masked
