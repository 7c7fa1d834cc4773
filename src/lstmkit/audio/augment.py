"""SpecAugment (Park et al. 2019): masks drawn afresh over the frames of each training
utterance, so that the model cannot lean on one band or one instant of a speaker's voice.

    frequency masks  `frequency_masks` times: f ~ U{0, ..., frequency_mask_width} consecutive mel
                     bands, starting at f0 ~ U{0, ..., n_mels - f}, set to 0
    time masks       `time_masks` times: t ~ U{0, ..., min(time_mask_width, p * frames)}
                     consecutive frames, starting at t0 ~ U{0, ..., frames - t}, set to 0

The frames are normalised (each band's mean over the utterance is 0), so a masked patch holds
the band's mean: no information, and nothing the model has not seen. Time warping, the paper's
third transformation, is left out: it gained the least there.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

# Park et al.'s upper bound p on a time mask's share of the utterance (their LibriSpeech
# double policy): a short word keeps most of its frames, so its transcript still fits CTC.
TIME_MASK_SHARE = 0.2


@dataclass(frozen=True)
class SpecAugment:
    """How many masks of how many bands and frames each training utterance gets (0: none)."""

    frequency_masks: int
    frequency_mask_width: int
    time_masks: int
    time_mask_width: int

    def __post_init__(self) -> None:
        for name in ("frequency_masks", "frequency_mask_width", "time_masks", "time_mask_width"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer (0: no masks), got {value!r}")

    @property
    def active(self) -> bool:
        return bool(self.frequency_masks * self.frequency_mask_width or self.time_masks * self.time_mask_width)

    def __call__(self, frames: Tensor, generator: torch.Generator) -> Tensor:
        """A copy of `frames` (frames, n_mels) with this policy's masks, drawn from `generator`."""
        masked = frames.clone()
        steps, bands = frames.shape

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
