"""An encoder-decoder with attention (Sutskever et al. 2014; Bahdanau et al. 2015; Luong et al.
2015): a bidirectional recurrent encoder and a decoder of cell modules stepped by hand.

    encoder   m_1..m_S = [h→_s ; h←_s]          a bidirectional stack over the source (packed)
    bridge    h_0^l = tanh(W_b [h→_S^l ; h←_1^l])  each decoder layer starts from its encoder layer
    decoder   h_t = cells([E y_{t-1} ; h̃_{t-1}], h_{t-1})   input feeding: the previous h̃ is fed back
    attention a_t = softmax(score(h_t, m_s)) over s < length (padding: weight exactly 0)
              luong (general):   score = h_tᵀ W_a m_s
              bahdanau (additive): score = vᵀ tanh(W_q h_t + W_k m_s)
    output    h̃_t = tanh(W_c [Σ_s a_ts m_s ; h_t])   (without attention: h̃_t = tanh(W_c h_t))
              p(y_t) = softmax(W_o h̃_t + b_o)      W_o tied to the target embedding if asked

Both attentions score the decoder's current state h_t, Luong's arrangement; Bahdanau's additive
score is the only part of his model taken. Decoding: `greedy` and a batched `beam_search`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from lstmkit.models.embedding import EmbeddingConfig
from lstmkit.cells import saved_cell_name
from lstmkit.nn import Recurrent, RecurrentCell

ATTENTIONS = ("bahdanau", "luong", "none")


@dataclass(frozen=True)
class Seq2SeqConfig(EmbeddingConfig):
    """Everything needed to rebuild a Seq2Seq (saved as JSON with its checkpoint). The defaults
    and their reasons live in TranslationConfig; `embedding_size` None means `hidden_size`."""

    tie_option: ClassVar[str] = "tie_embeddings"
    tie_shares: ClassVar[str] = "the target embedding with the output layer"

    cell: str
    source_vocabulary_size: int
    target_vocabulary_size: int
    hidden_size: int
    num_layers: int
    embedding_size: int | None
    attention: str
    dropout: float
    tie_embeddings: bool
    pad_id: int
    bos_id: int
    eos_id: int
    engine: str = "auto"
    # Keywords of lstmkit.Recurrent for the encoder: recurrent_dropout, zoneout, init, ...
    regularisers: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.attention not in ATTENTIONS:
            raise ValueError(f"attention must be one of {', '.join(ATTENTIONS)}, got {self.attention!r}")
        self.check_embedding()
        for name in ("pad_id", "bos_id", "eos_id"):  # an edited config: an IndexError in decoding, or no end
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < self.target_vocabulary_size:
                raise ValueError(f"{name} must be a token of the target vocabulary (0 to "
                                 f"{self.target_vocabulary_size - 1}), got {value!r}")


@dataclass
class Memory:
    """The encoded source of a batch: what every decoder step attends to."""

    values: Tensor  # (B, S, 2H) the encoder's outputs
    keys: Tensor | None  # (B, S, H) their projection for the score, computed once
    mask: Tensor  # (B, S) True on the source's tokens, False on padding

    def select(self, index: Tensor) -> Memory:
        """The memory of batch rows `index` (beams share their sentence's)."""
        return Memory(self.values[index], None if self.keys is None else self.keys[index], self.mask[index])


class Attention(nn.Module):
    """Luong's general score h_tᵀ W_a m_s or Bahdanau's additive vᵀ tanh(W_q h_t + W_k m_s),
    softmax over the source's tokens (padding masked to weight 0)."""

    def __init__(self, kind: str, hidden_size: int) -> None:
        super().__init__()
        self.kind = kind
        self.key = nn.Linear(2 * hidden_size, hidden_size, bias=False)
        if kind == "bahdanau":
            self.query = nn.Linear(hidden_size, hidden_size)
            self.score = nn.Linear(hidden_size, 1, bias=False)

    def forward(self, h: Tensor, memory: Memory) -> tuple[Tensor, Tensor]:
        """(context (B, 2H), weights (B, S)) for the decoder state h (B, H)."""
        if self.kind == "luong":
            scores = torch.bmm(memory.keys, h.unsqueeze(2)).squeeze(2)
        else:
            scores = self.score(torch.tanh(memory.keys + self.query(h).unsqueeze(1))).squeeze(2)
        weights = torch.softmax(scores.float().masked_fill(~memory.mask, -torch.inf), dim=1).to(h.dtype)
        return torch.bmm(weights.unsqueeze(1), memory.values).squeeze(1), weights


class Seq2Seq(nn.Module):
    """Translates a batch of token sequences; see the module docstring for the equations.

    Inputs are time-major and padded with `pad_id`: `source` (S, B) with `lengths` (B,),
    `target_in` (T, B) starting with `bos_id`. `forward` returns logits (T, B, V) and, with
    `return_attention`, the weights (T, B, S).
    """

    def __init__(self, config: Seq2SeqConfig) -> None:
        super().__init__()
        cell = saved_cell_name(config.cell, type(config).__name__)
        self.config = config
        hidden, embedding, layers = config.hidden_size, config.embedding_dim, config.num_layers
        self.source_embedding = nn.Embedding(config.source_vocabulary_size, embedding, padding_idx=config.pad_id)
        self.target_embedding = nn.Embedding(config.target_vocabulary_size, embedding, padding_idx=config.pad_id)
        self.encoder = Recurrent(cell, embedding, hidden, layers, dropout=config.dropout if layers > 1 else 0.0,
                                 bidirectional=True, engine=config.engine, **config.regularisers)
        self.bridge = nn.Linear(2 * hidden, hidden)
        self.decoder = nn.ModuleList(
            RecurrentCell(cell, embedding + hidden if layer == 0 else hidden, hidden) for layer in range(layers)
        )
        self.attention = None if config.attention == "none" else Attention(config.attention, hidden)
        self.combine = nn.Linear(hidden if self.attention is None else 3 * hidden, hidden)
        self.dropout = nn.Dropout(config.dropout)
        self.output = nn.Linear(hidden, config.target_vocabulary_size)
        if config.tie_embeddings:
            self.output.weight = self.target_embedding.weight

    @property
    def tied_weight(self) -> str | None:
        """The parameter that is another's tensor (saved once): the output layer's, when tied."""
        return "output.weight" if self.config.tie_embeddings else None

    @property
    def has_cell_state(self) -> bool:
        return self.decoder[0].cell.has_cell_state

    def encode(self, source: Tensor, lengths: Tensor) -> tuple[Memory, list]:
        """The memory of a padded source batch and the decoder's initial state (one per layer)."""
        steps, batch = source.shape
        embedded = self.dropout(self.source_embedding(source))
        packed = pack_padded_sequence(embedded, lengths.cpu(), enforce_sorted=False)
        output, final = self.encoder(packed)
        values, _ = pad_packed_sequence(output, total_length=steps)
        values = values.transpose(0, 1)
        h_n = final[0] if isinstance(final, tuple) else final  # (layers · 2, B, H)
        h_n = h_n.view(self.config.num_layers, 2, batch, -1).transpose(1, 2).flatten(2)
        h_0 = torch.tanh(self.bridge(h_n))
        mask = torch.arange(steps, device=source.device).unsqueeze(0) < lengths.to(source.device).unsqueeze(1)
        keys = None if self.attention is None else self.attention.key(values)
        state = [(h, torch.zeros_like(h)) if self.has_cell_state else h for h in h_0]
        return Memory(values, keys, mask), state

    def step(self, token: Tensor, state: list, feed: Tensor,
             memory: Memory) -> tuple[Tensor, list, Tensor, Tensor | None]:
        """One decoder step: (logits (B, V), new state, h̃ (B, H) to feed, attention weights (B, S))."""
        x = torch.cat([self.dropout(self.target_embedding(token)), feed], dim=1)
        new_state = []
        for layer, cell in enumerate(self.decoder):
            layer_state = cell(x, state[layer])
            new_state.append(layer_state)
            h = layer_state[0] if isinstance(layer_state, tuple) else layer_state
            x = self.dropout(h) if layer < len(self.decoder) - 1 else h
        if self.attention is None:
            weights, attended = None, torch.tanh(self.combine(x))
        else:
            context, weights = self.attention(x, memory)
            attended = torch.tanh(self.combine(torch.cat([context, x], dim=1)))
        return self.output(self.dropout(attended)), new_state, attended, weights

    def next_token(self, token: Tensor, state: list, feed: Tensor, memory: Memory) -> tuple[Tensor, list, Tensor]:
        """`step` for decoding: the logits of padding and of the start token, never a target in
        training, are -inf, so that neither is ever chosen (as fairseq never chooses padding);
        but for the end token, where a vocabulary makes it one of them (fairseq's bos = eos)."""
        logits, state, feed, _ = self.step(token, state, feed, memory)
        for never in {self.config.pad_id, self.config.bos_id} - {self.config.eos_id}:
            logits[:, never] = -torch.inf
        return logits, state, feed

    def forward(self, source: Tensor, lengths: Tensor, target_in: Tensor, return_attention: bool = False):
        """Teacher forcing: the logits of every target position given the reference before it."""
        memory, state = self.encode(source, lengths)
        feed = memory.values.new_zeros(source.shape[1], self.config.hidden_size)
        logits, attention = [], []
        for token in target_in:
            step_logits, state, feed, weights = self.step(token, state, feed, memory)
            logits.append(step_logits)
            attention.append(weights)
        logits = torch.stack(logits)
        if not return_attention:
            return logits
        return logits, None if self.attention is None else torch.stack(attention)

    def start(self, source: Tensor, lengths: Tensor) -> tuple[Memory, list, Tensor, Tensor]:
        memory, state = self.encode(source, lengths)
        batch = source.shape[1]
        feed = memory.values.new_zeros(batch, self.config.hidden_size)
        token = torch.full((batch,), self.config.bos_id, dtype=torch.long, device=source.device)
        return memory, state, feed, token

    @torch.no_grad()
    def greedy(self, source: Tensor, lengths: Tensor, max_length: int | Tensor) -> list[list[int]]:
        """The likeliest token at each step, until end of sentence or `max_length` tokens (one
        for the batch, or one per sentence (B,))."""
        memory, state, feed, token = self.start(source, lengths)
        limits = torch.as_tensor(max_length, device=source.device).expand(source.shape[1])
        finished = torch.zeros_like(token, dtype=torch.bool)
        tokens = []
        for step in range(int(limits.max())):
            logits, state, feed = self.next_token(token, state, feed, memory)
            token = logits.argmax(dim=1)
            tokens.append(token)
            finished |= (token == self.config.eos_id) | (limits <= step + 1)
            if finished.all():
                break
        rows = torch.stack(tokens, dim=1).tolist()
        return [cut_at(row[:limit], self.config.eos_id) for row, limit in zip(rows, limits.tolist(), strict=True)]

    @torch.no_grad()
    def beam_search(self, source: Tensor, lengths: Tensor, beam: int, max_length: int | Tensor,
                    length_penalty: float = 1.0) -> list[list[int]]:
        """Beam search over the batch at once (B · beam decoder rows). A hypothesis that ends
        is scored by its log-probability divided by its length (end token included) to the
        power `length_penalty` (0: raw log-probability; 1: per-token mean). A sentence is
        done when `beam` hypotheses ranked in the top `beam` have ended (fairseq's rule) and
        none of its live ones, scored as if it ended at its length now, beats the best ended
        one (Hugging Face's rule: fairseq's alone dropped a live hypothesis that scored ~0 one
        step before its end, for five unlikely ones), or at `max_length` (one for the batch,
        or one per sentence (B,)), where it may prefer a live hypothesis; beam 1 is greedy
        decoding (a live hypothesis ranked below an ended one at its length cannot beat it)."""
        eos, batch = self.config.eos_id, source.shape[1]
        memory, state, feed, token = self.start(source, lengths)
        rows = torch.arange(batch, device=source.device).repeat_interleave(beam)
        memory, state, feed, token = memory.select(rows), reorder(state, rows), feed[rows], token[rows]
        scores = torch.full((batch, beam), -torch.inf, device=source.device)
        scores[:, 0] = 0.0
        history = torch.empty(batch, beam, 0, dtype=torch.long, device=source.device)
        best_score = torch.full((batch,), -torch.inf, device=source.device)
        best: list[list[int]] = [[] for _ in range(batch)]
        ended = torch.zeros(batch, dtype=torch.long, device=source.device)
        finished = torch.zeros(batch, dtype=torch.bool, device=source.device)
        rank = torch.arange(2 * beam, device=source.device)
        limits = torch.as_tensor(max_length, device=source.device).expand(batch)
        for step in range(int(limits.max())):
            logits, state, feed = self.next_token(token, state, feed, memory)
            # in float32 at least (bfloat16 sums of log-probabilities lose the ranking), and in the
            # logits' own precision above it (a float64 model's near-ties, which greedy ranks)
            score_dtype = torch.promote_types(logits.dtype, torch.float32)
            log_probs = torch.log_softmax(logits.to(score_dtype), dim=1).view(batch, beam, -1)
            vocabulary = log_probs.shape[2]
            total = (scores.unsqueeze(2) + log_probs).view(batch, -1)
            top, index = top_ranked(total, min(2 * beam, total.shape[1]))
            origin, candidate = index // vocabulary, index % vocabulary
            is_eos = candidate == eos
            finishing = is_eos & (rank[: top.shape[1]] < beam) & torch.isfinite(top) & ~finished.unsqueeze(1)
            normalised = (top / (step + 1) ** length_penalty).masked_fill(~finishing, -torch.inf)
            candidate_best, position = normalised.max(dim=1)
            for row in torch.nonzero(candidate_best > best_score).flatten().tolist():
                best[row] = history[row, origin[row, position[row]]].tolist()
            best_score = torch.maximum(best_score, candidate_best)
            ended += finishing.sum(dim=1)
            live = (rank[: top.shape[1]] + is_eos * 2 * beam).argsort(dim=1)[:, :beam]
            origin, candidate, scores = origin.gather(1, live), candidate.gather(1, live), top.gather(1, live)
            history = torch.cat([history.gather(1, origin.unsqueeze(2).expand(-1, -1, step)),
                                 candidate.unsqueeze(2)], dim=2)
            live_score, live_best = (scores / (step + 1) ** length_penalty).max(dim=1)
            finished |= (ended >= beam) & ~(live_score > best_score)
            # a sentence at its limit, not finished, may prefer a live hypothesis
            limited = (limits <= step + 1) & ~finished
            for row in torch.nonzero(limited & (live_score > best_score)).flatten().tolist():
                best[row] = history[row, live_best[row]].tolist()
            finished |= limited
            if finished.all():
                break
            flat = (torch.arange(batch, device=source.device).unsqueeze(1) * beam + origin).flatten()
            state, feed, token = reorder(state, flat), feed[flat], candidate.flatten()
        return best


def top_ranked(scores: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """The k largest scores of each row and their indices, best first, exact ties lowest index
    first, as greedy decoding's argmax breaks them (topk breaks them in no set order: where two
    bfloat16 logits tied, beam 1 chose otherwise than greedy decoding)."""
    values, index = scores.topk(min(k + 1, scores.shape[1]), dim=1)
    index = index[:, :k].clone()
    if values.shape[1] > k:
        cut = values[:, k - 1]
        # rows tied across the k-th place, or with NaN there (topk ranks NaN first, in no set order
        # among them): every entry above the cut, then the lowest-index ones at it
        for row in torch.nonzero((cut == values[:, k]) | cut.isnan()).flatten().tolist():
            line = scores[row]
            if cut[row].isnan():  # nothing ranks above NaN
                above, level = torch.zeros_like(line, dtype=torch.bool), line.isnan()
            else:
                above, level = (line > cut[row]) | line.isnan(), line == cut[row]
            above = torch.nonzero(above).flatten()
            index[row] = torch.cat([above, torch.nonzero(level).flatten()[: k - len(above)]])
    index = index.sort(dim=1).values  # in increasing index, for the stable sort by score
    values = scores.gather(1, index)
    order = values.argsort(dim=1, descending=True, stable=True)
    return values.gather(1, order), index.gather(1, order)


def reorder(state: list, index: Tensor) -> list:
    """The decoder state of rows `index`, per layer."""
    return [tuple(part[index] for part in layer) if isinstance(layer, tuple) else layer[index] for layer in state]


def cut_at(tokens: list[int], eos: int) -> list[int]:
    """The tokens before the first end of sentence."""
    return tokens[: tokens.index(eos)] if eos in tokens else tokens
