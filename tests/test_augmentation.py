"""Augmentation: how far its warp stretches the bands, where its masks fall, how wide they are,
which speed of an utterance is drawn, and that an utterance's draws depend on the seed and the
utterance alone."""

from __future__ import annotations

import dataclasses
import json
import re
from collections import Counter

import pytest
import torch

from lstmkit.audio.augment import TIME_MASK_SHARE, Augmentation
from lstmkit.pipelines.configs import SpeechConfig

pytest.importorskip("jiwer", reason="the speech extra is not installed: pip install 'lstmkit[speech]'")
from lstmkit.pipelines.speech import Utterances  # noqa: E402

STEPS, BANDS = 50, 40


def frames(seed: int = 0) -> torch.Tensor:
    """Normalised-looking frames with no exact zero, so that a zero can only be a mask."""
    values = torch.randn(STEPS, BANDS, generator=torch.Generator().manual_seed(seed))
    return values + values.sign() * 0.01


def zero_runs(masked: torch.Tensor, original: torch.Tensor, dim: int) -> list[int]:
    """The indices along `dim` that are zero across the other dimension; every other value must
    be untouched."""
    zero = (masked == 0).all(1 - dim)
    keep = ~zero.unsqueeze(1 - dim).expand_as(masked)
    assert torch.equal(masked[keep & (masked != 0)], original[keep & (masked != 0)])
    return zero.nonzero().flatten().tolist()


def consecutive(indices: list[int]) -> bool:
    return not indices or indices == list(range(indices[0], indices[0] + len(indices)))


def test_one_frequency_mask_zeroes_consecutive_bands_of_at_most_its_width_and_nothing_else():
    policy = Augmentation(frequency_warp=0.0, frequency_masks=1, frequency_mask_width=8, time_masks=0, time_mask_width=0)
    original, widths, starts = frames(), [], set()
    for seed in range(400):
        masked = policy(original, torch.Generator().manual_seed(seed))
        bands = zero_runs(masked, original, dim=1)
        assert consecutive(bands)
        assert (masked != 0).sum() == STEPS * (BANDS - len(bands))  # the other bands are whole
        widths.append(len(bands))
        starts.update(bands[:1])
    assert set(widths) == set(range(9))  # f ~ U{0, ..., 8}
    assert sum(widths) / len(widths) == pytest.approx(4, abs=0.4)
    assert 0 in starts and BANDS - 8 in starts  # a mask can start at either end
    assert torch.equal(original, frames())  # the input is left as it was


def test_time_masks_cover_at_most_a_fifth_of_the_utterance():
    policy = Augmentation(frequency_warp=0.0, frequency_masks=0, frequency_mask_width=0, time_masks=1, time_mask_width=100)
    original, widths = frames(), set()
    for seed in range(300):
        masked = policy(original, torch.Generator().manual_seed(seed))
        steps = zero_runs(masked, original, dim=0)
        assert consecutive(steps)
        widths.add(len(steps))
    assert widths == set(range(int(TIME_MASK_SHARE * STEPS) + 1))  # 0 to 10 frames of 50, never the width 100


def test_the_same_generator_gives_the_same_masks_and_no_masks_change_nothing():
    policy = Augmentation(0.1, 2, 10, 2, 10)
    first = policy(frames(), torch.Generator().manual_seed(7))
    assert torch.equal(first, policy(frames(), torch.Generator().manual_seed(7)))
    assert not torch.equal(first, policy(frames(), torch.Generator().manual_seed(8)))
    off = Augmentation(0.0, 0, 10, 3, 0)
    assert not off.active
    assert torch.equal(off(frames(), torch.Generator().manual_seed(7)), frames())


def test_an_utterances_masks_do_not_depend_on_its_batch():
    utterances = Utterances(paths=[None] * 3, texts=["a"] * 3, frames=[frames(i) for i in range(3)], labels=[[1]] * 3,
                            versions=[()] * 3)
    policy = Augmentation(0.1, 2, 10, 2, 10)
    together, lengths, _, _ = utterances.batch([0, 2, 1], policy, seed=5)
    alone, _, _, _ = utterances.batch([2], policy, seed=5)
    assert torch.equal(together[:, 1], alone[:, 0]) and lengths.tolist() == [STEPS] * 3
    other_seed, _, _, _ = utterances.batch([2], policy, seed=6)
    assert not torch.equal(other_seed, alone)
    plain, _, _, _ = utterances.batch([2])
    assert torch.equal(plain[:, 0], frames(2))


def test_each_speed_of_an_utterance_is_drawn_alike_and_its_length_follows():
    # Utterance 0: its original (50 frames) and two perturbed versions (40 and 60 frames);
    # utterance 1: only its original.
    versions = (frames(0)[:40] + 1, frames(0).repeat(2, 1)[:60] + 2)
    utterances = Utterances(paths=[None] * 2, texts=["a"] * 2, frames=[frames(0), frames(1)], labels=[[1]] * 2,
                            versions=[versions, ()])
    no_masks, counts = Augmentation(0.0, 0, 0, 0, 0), Counter()
    for seed in range(600):
        batch, lengths, _, _ = utterances.batch([0, 1], no_masks, seed=seed)
        length = int(lengths[0])
        counts[length] += 1
        assert torch.equal(batch[:length, 0], {STEPS: frames(0), 40: versions[0], 60: versions[1]}[length])
        assert int(lengths[1]) == STEPS and torch.equal(batch[:STEPS, 1], frames(1))
    assert sorted(counts) == [40, STEPS, 60] and all(160 <= count <= 240 for count in counts.values()), counts
    (alone, alone_lengths, _, _), (paired, paired_lengths, _, _) = (utterances.batch([0], no_masks, seed=3),
                                                                    utterances.batch([1, 0], no_masks, seed=3))
    length = int(alone_lengths[0])
    assert int(paired_lengths[1]) == length and torch.equal(alone[:length, 0], paired[:length, 1]), "not the batch"
    plain, lengths, _, _ = utterances.batch([0])
    assert lengths.tolist() == [STEPS] and torch.equal(plain[:, 0], frames(0)), "evaluation hears the original"


@pytest.mark.parametrize("settings, message", [
    ({"frequency_masks": -1},
     "frequency_masks (--frequency-masks) must be a non-negative integer (0: no masks), got -1"),
    ({"time_mask_width": 2.5},
     "time_mask_width (--time-mask-width) must be a non-negative integer (0: no masks), got 2.5"),
    ({"frequency_mask_width": 41},
     "frequency_mask_width (--frequency-mask-width) must be at most n_mels (--n-mels, 40), got 41"),
    ({"frequency_warp": 1.0}, "frequency_warp (--frequency-warp) must be a number in [0, 1) (0: no warp), got 1.0"),
    ({"frequency_warp": -0.1}, "frequency_warp (--frequency-warp) must be a number in [0, 1) (0: no warp), got -0.1"),
    ({"speed_perturbation": (0.9, 1.0)}, "speed_perturbation (--speed-perturbation) must be a tuple of speeds in "
                                         "[0.5, 2.0] other than 1 (the original is always used), e.g. (0.9, 1.1), or "
                                         "0.9,1.1 on the command line, got (0.9, 1.0)"),
    ({"speed_perturbation": (3,)}, "speeds in [0.5, 2.0] other than 1 (the original is always used), e.g. (0.9, 1.1), "
                                   "or 0.9,1.1 on the command line, got (3,)"),
    ({"speed_perturbation": (0.9, 1.1, 0.9)}, "speed_perturbation (--speed-perturbation) gives a speed twice, which "
                                              "would weigh it double; give each once, got (0.9, 1.1, 0.9)"),
    ({"speed_perturbation": [0.9, 3.0]}, "speed_perturbation (--speed-perturbation) must be a tuple of speeds in "
                                         "[0.5, 2.0] other than 1 (the original is always used), e.g. (0.9, 1.1), or "
                                         "0.9,1.1 on the command line, got [0.9, 3.0]"),
    ({"speed_perturbation": 0.9}, "speed_perturbation (--speed-perturbation) must be a tuple of speeds in [0.5, "
                                  "2.0] other than 1 (the original is always used), e.g. (0.9, 1.1), or 0.9,1.1 on "
                                  "the command line, got 0.9"),
])
def test_the_speech_config_checks_its_augmentation(settings, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        SpeechConfig(**settings)


@pytest.mark.parametrize("speeds", [(), (0.9, 1.1)])
def test_the_speech_config_comes_back_from_json(speeds):
    """results.json writes the speeds as a list, which the config refused: the run's own config
    could not be built again from it."""
    config = SpeechConfig(speed_perturbation=speeds, time_budget=60.0)
    assert SpeechConfig(**json.loads(json.dumps(dataclasses.asdict(config)))) == config


def test_the_frequency_warp_reads_band_b_at_band_a_times_b():
    # Bands 0..4 hold the values 0, 10, 20, 30, 40: a warp by a reads band b at a·b, linearly
    # interpolated, so band b becomes 10·a·b up to the top band's 40.
    ramp = torch.arange(5, dtype=torch.float32).mul(10).expand(3, 5)
    for seed in range(20):
        generator = torch.Generator().manual_seed(seed)
        factor = 1 + 0.2 * (2 * float(torch.rand((), generator=torch.Generator().manual_seed(seed))) - 1)
        warped = Augmentation(0.2, 0, 0, 0, 0)(ramp, generator)
        expected = (torch.arange(5) * 10 * factor).clamp(max=40).float()
        assert torch.allclose(warped, expected.expand(3, 5), atol=1e-4), seed
        assert 0.8 <= factor <= 1.2
    assert Augmentation(0.2, 0, 0, 0, 0).active and not Augmentation(0.0, 0, 0, 0, 0).active
