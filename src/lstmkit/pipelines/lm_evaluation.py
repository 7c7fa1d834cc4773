"""Scoring a text beyond the model's own next-token probabilities.

    cache pointer       (Grave et al. 2017) p(w) = (1 − λ) p_model(w) + λ p_cache(w), where
                        p_cache(w) ∝ Σ_{i < t, t − i ≤ window, x_{i+1} = w} exp(θ h_t · h_i)
                        over the model's own recent hidden states: a word seen a moment ago
                        is likely again.
    dynamic evaluation  (Krause et al. 2018) the text is scored a segment at a time, and after
                        each segment the model takes a gradient step on it,
                        θ ← θ − η ∇ℓ(segment) + λ (θ₀ − θ), so it adapts to the text it reads.

Both score every token after the first in one stream, as plain evaluation does, so the three
numbers compare directly.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from lstmkit.models.language import LanguageModel
from lstmkit.models.modes import evaluating
from lstmkit.training.progress import Progress


@dataclass(frozen=True)
class CachePointer:
    """The continuous cache's settings. Defaults: the window of Grave et al. (2017) on
    WikiText-2, θ and λ as Merity et al. (2018) tuned them for AWD-LSTM on WikiText-2."""

    window: int = 2000
    theta: float = 0.6625
    mixture: float = 0.1279

    def __post_init__(self) -> None:
        if isinstance(self.window, bool) or not isinstance(self.window, int) or self.window < 1:
            raise ValueError(f"the cache window (--cache-window) must be a positive number of tokens, got "
                             f"{self.window!r}")
        if not math.isfinite(self.theta) or self.theta < 0:
            raise ValueError(f"the cache's theta (--cache-theta) must be a non-negative number, got {self.theta!r}")
        if not 0 <= self.mixture <= 1:
            raise ValueError(f"the cache's mixture weight (--cache-lambda) must be in [0, 1], got {self.mixture!r}")


@dataclass(frozen=True)
class DynamicEvaluation:
    """Dynamic evaluation's settings: SGD on each scored segment with a decay towards the
    trained weights (Krause et al. 2018, "SGD with a global prior"). Defaults: segments of
    50 tokens, a rate small enough that one step moves a trained model little, no decay."""

    segment: int = 50
    lr: float = 0.01
    decay: float = 0.0

    def __post_init__(self) -> None:
        if isinstance(self.segment, bool) or not isinstance(self.segment, int) or self.segment < 1:
            raise ValueError(f"the dynamic evaluation segment (--dynamic-segment) must be a positive number of tokens, "
                             f"got {self.segment!r}")
        if not math.isfinite(self.lr) or self.lr <= 0:
            raise ValueError(f"the dynamic evaluation rate (--dynamic-lr) must be a positive number, got {self.lr!r}")
        if not 0 <= self.decay <= 1:
            raise ValueError(f"the dynamic evaluation decay (--dynamic-decay) must be in [0, 1], got {self.decay!r}")


def cache_log_probabilities(hidden: Tensor, target_log_probs: Tensor, targets: Tensor, cache: CachePointer,
                            scored_from: int = 0) -> Tensor:
    """log p(targets[t]) under the cache mixture for t ≥ `scored_from`, for hidden (N, H), the
    model's log probability of each target scored (N − scored_from,) and targets (N,), position
    t predicting targets[t] from hidden[t]; the cache of position t holds (hidden[i], targets[i])
    for t − window ≤ i < t. Only the targets' probabilities are formed, and only for the
    positions scored (the positions before them are the cache's history), so memory grows
    with (N − scored_from) × N, not N × vocabulary."""
    steps = targets.numel()
    scores = cache.theta * hidden[scored_from:] @ hidden.T                    # θ h_t · h_i
    positions = torch.arange(steps, device=hidden.device)
    age = positions[scored_from:].unsqueeze(1) - positions.unsqueeze(0)       # t − i
    in_cache = (age >= 1) & (age <= cache.window)
    weights = torch.softmax(scores.masked_fill(~in_cache, -math.inf), dim=1).nan_to_num(0.0)
    same_word = targets[scored_from:].unsqueeze(1) == targets.unsqueeze(0)    # x_{i+1} = x_{t+1}
    cache_probs = (weights * same_word).sum(1)                                # Σ over i with x_{i+1} = x_{t+1}
    mixture = torch.where(in_cache.any(1), cache.mixture, 0.0)                # no cache yet: the model alone
    return ((1 - mixture) * target_log_probs.exp() + mixture * cache_probs).log()


def score_with_cache(model: LanguageModel, tokens: Tensor, cache: CachePointer, window: int = 1000,
                     progress: Progress | None = None) -> tuple[float, int]:
    """(summed loss in nats, tokens scored) of `tokens` (N,) in one stream under the cache
    mixture; the cache spans window boundaries. The tokens scored go to `progress` after each
    window."""
    parameter = next(model.parameters())
    device, features = parameter.device, torch.promote_types(parameter.dtype, torch.float32)  # float32 at least
    kept_hidden = torch.empty(0, model.config.hidden_size, device=device, dtype=features)
    kept_targets = torch.empty(0, dtype=torch.long, device=device)
    total, state = 0.0, None
    with torch.no_grad(), evaluating(model):
        for start in range(0, tokens.numel() - 1, window):
            inputs = tokens[start:start + window].to(device)
            targets = tokens[start + 1:start + window + 1].to(device)
            inputs = inputs[: targets.numel()]
            hidden, state = model.hidden(inputs.unsqueeze(1), state)
            log_probs = F.log_softmax(model.scores(hidden)[:, 0].to(features), dim=-1)
            target_log_probs = log_probs.gather(1, targets.unsqueeze(1)).squeeze(1)
            hidden = hidden[:, 0].to(features)
            history = kept_hidden.shape[0]
            all_hidden, all_targets = torch.cat([kept_hidden, hidden]), torch.cat([kept_targets, targets])
            scored = cache_log_probabilities(all_hidden, target_log_probs, all_targets, cache, scored_from=history)
            total -= scored.sum().item()
            kept_hidden, kept_targets = all_hidden[-cache.window:], all_targets[-cache.window:]
            if progress is not None:
                progress.update(start + targets.numel(), None)
    if progress is not None:
        progress.close(tokens.numel() - 1, None)
    return total, tokens.numel() - 1


@torch.inference_mode(False)
@torch.enable_grad()  # its SGD steps need autograd, under a caller's no_grad or inference_mode too
def score_dynamically(model: LanguageModel, tokens: Tensor, dynamic: DynamicEvaluation,
                      progress: Progress | None = None) -> tuple[float, int]:
    """(summed loss in nats, tokens scored) of `tokens` (N,) in one stream, a segment at a
    time, the model (a copy: the caller's is untouched) updated after scoring each segment,
    and the tokens scored reported to `progress`."""
    tokens = tokens.clone()  # a plain tensor where the caller's inference mode made them
    adapted = copy.deepcopy(model)
    adapted.eval()  # no dropout: the gradient is that of the loss being reported
    adapted.requires_grad_(True)  # every weight adapts, one the caller froze too: the copy is this call's own
    trained = [parameter.detach().clone() for parameter in adapted.parameters()]
    if not all(torch.isfinite(parameter).all() for parameter in trained):  # no step's doing: the rate is not to blame
        raise ValueError("the model's weights hold values that are not finite (a damaged checkpoint?), before any "
                         "SGD step of dynamic evaluation")
    device = trained[0].device
    total, state = 0.0, None
    for start in range(0, tokens.numel() - 1, dynamic.segment):
        inputs = tokens[start:start + dynamic.segment].to(device)
        targets = tokens[start + 1:start + dynamic.segment + 1].to(device)
        inputs = inputs[: targets.numel()]
        logits, state = adapted(inputs.unsqueeze(1), state)
        loss = F.cross_entropy(logits[:, 0].float(), targets, reduction="sum")
        if not torch.isfinite(loss):  # its perplexity was reported as inf, of a loss of nan
            steps = start // dynamic.segment
            raise ValueError(f"dynamic evaluation diverged: the loss of the segment from token {start:,} is "
                             f"{loss.item()} after {steps:,} SGD step{'s' * (steps != 1)} at rate {dynamic.lr:g}; "
                             "lower the rate (--dynamic-lr)")
        total += loss.item()
        adapted.zero_grad(set_to_none=True)
        (loss / targets.numel()).backward()
        with torch.no_grad():
            for parameter, start_value in zip(adapted.parameters(), trained, strict=True):
                parameter.sub_(dynamic.lr * parameter.grad)                   # θ ← θ − η ∇ℓ
                parameter.add_(dynamic.decay * (start_value - parameter))     #     + λ (θ₀ − θ)
        state = tuple(part.detach() for part in state) if isinstance(state, tuple) else state.detach()
        if progress is not None:
            progress.update(start + targets.numel(), None)
    if progress is not None:
        progress.close(tokens.numel() - 1, None)
    return total, tokens.numel() - 1
