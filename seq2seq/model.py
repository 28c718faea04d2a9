"""The recurrent encoder-decoder with attention.

    English ids ─► Encoder (embeddings, bidirectional GRU/LSTM/RNN) ─► one vector per source token
                                          │ final states, through a bridge
                                          ▼
    BOS + Korean ids ─► Decoder RNN ─► queries ─► Attention over the source vectors ─► contexts
                                     [query; context] ─► tanh layer ─► attentional vector ─► logits

Shapes use B for batch, S for source length, T for target length, V for vocabulary size.

Speed: without input feeding (the default) nothing the decoder RNN reads depends on attention,
so teacher-forced training runs the RNN over all T steps in one fused call and computes the
attention, output layer and loss for all steps at once. With `input_feeding: true` (Luong et al.
2015) each step also reads the previous attentional vector, so training must loop over steps;
that is the slower, classic variant, kept for comparison.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
from torch.utils.checkpoint import checkpoint

from seq2seq.config import ModelConfig
from seq2seq.tokenizer import PAD_ID

RNN_CLASSES = {"gru": nn.GRU, "lstm": nn.LSTM, "rnn": nn.RNN}
MAX_POSITIONS = 256  # learned position vectors; later positions share the last one

# A GRU/RNN state is one (layers, B, H) tensor; an LSTM state is a (hidden, cell) pair of them.
State = torch.Tensor | tuple[torch.Tensor, torch.Tensor]


def _map_state(function, state: State) -> State:
    return tuple(function(part) for part in state) if isinstance(state, tuple) else function(state)


def _make_rnn(cell: str, input_size: int, hidden_size: int, layers: int, dropout: float, bidirectional: bool = False):
    return RNN_CLASSES[cell](
        input_size,
        hidden_size,
        num_layers=layers,
        batch_first=True,
        dropout=dropout if layers > 1 else 0.0,
        bidirectional=bidirectional,
    )


class PositionIndex(nn.Module):
    """Tells the RNN where each token stands, as part of its input (`model.position_index`).

    An RNN knows a token's position only through what its hidden state has accumulated; this adds
    the position index to the input vector itself:

    learned:  a learned vector for each position 0, 1, 2, ... (up to MAX_POSITIONS - 1), added to
              the token's embedding
    relative: the position divided by the source length, appended as one more input number; for
              the decoder this says how far the output has come relative to the input's length
    none:     nothing added
    """

    def __init__(self, kind: str, embedding_size: int) -> None:
        super().__init__()
        self.kind = kind
        if kind == "learned":
            self.table = nn.Embedding(MAX_POSITIONS, embedding_size)
        self.extra_inputs = 1 if kind == "relative" else 0

    def forward(self, embedded: torch.Tensor, first_position: int, source_lengths: torch.Tensor) -> torch.Tensor:
        """embedded: (B, T, E), the tokens at positions first_position ... first_position + T - 1;
        source_lengths: (B,). Returns (B, T, E + extra_inputs)."""
        if self.kind == "none":
            return embedded
        positions = torch.arange(first_position, first_position + embedded.size(1), device=embedded.device)
        if self.kind == "learned":
            return embedded + self.table(positions.clamp(max=MAX_POSITIONS - 1))
        relative = positions.float().unsqueeze(0) / source_lengths.to(embedded.device).float().unsqueeze(1)
        return torch.cat([embedded, relative.unsqueeze(-1).to(embedded.dtype)], dim=-1)


def reversal_index(lengths: torch.Tensor, steps: int) -> torch.Tensor:
    """(B,) lengths -> (B, steps) positions that reverse each sentence within its length and leave
    the padding after it in place: [t0 t1 t2 pad] is read as [t2 t1 t0 pad]. Its own inverse."""
    positions = torch.arange(steps, device=lengths.device).unsqueeze(0)
    last = (lengths - 1).unsqueeze(1)
    return torch.where(positions <= last, last - positions, positions)


def gather_steps(sequence: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """sequence: (B, S, D); index: (B, S) -> (B, S, D), row b's step index[b, t] at step t."""
    return sequence.gather(1, index.unsqueeze(-1).expand_as(sequence))


class Encoder(nn.Module):
    """Embeds the source and runs a (bidirectional) RNN over it.

    Each direction of each layer is its own one-directional RNN. The right-to-left one reads every
    sentence reversed within its length (`reversal_index`), so in both directions the padding comes
    after the real tokens and cannot reach their states: a GRU or plain RNN then runs over the padded
    batch in one call, 1.5x as fast on a CPU as a packed sequence, whose kernel multiplies each step's
    inputs separately. An LSTM runs packed, because its final memory cell, which the decoder's
    bridge reads, is not among its outputs.
    """

    def __init__(self, config: ModelConfig, vocab_size: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, config.embedding_size, padding_idx=PAD_ID)
        self.position_index = PositionIndex(config.position_index, config.embedding_size)
        self.dropout = nn.Dropout(config.dropout)
        directions = 2 if config.bidirectional else 1
        input_size = config.embedding_size + self.position_index.extra_inputs
        # layers[k][0] reads left to right, layers[k][1] (bidirectional only) right to left.
        self.layers = nn.ModuleList()
        for _ in range(config.encoder_layers):
            self.layers.append(nn.ModuleList(
                _make_rnn(config.cell, input_size, config.encoder_hidden_size, 1, 0.0) for _ in range(directions)))
            input_size = config.encoder_hidden_size * directions
        self.packed = config.cell == "lstm"
        self.output_size = input_size

    def forward(self, source: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, State]:
        """source: (B, S) ids; lengths: (B,).

        Returns outputs (B, S, output_size), zero at padding, and the top layer's final state
        (B, output_size), both directions concatenated (a pair of them for an LSTM).
        """
        lengths = lengths.to(source.device)
        inputs = self.position_index(self.dropout(self.embedding(source)), 0, lengths)
        reverse = reversal_index(lengths, source.size(1))
        for number, directions in enumerate(self.layers):
            if number > 0:
                inputs = self.dropout(inputs)
            outputs, finals = [], []
            for direction, rnn in enumerate(directions):
                if direction == 0:
                    output, final = self._run(rnn, inputs, lengths)
                else:
                    output, final = self._run(rnn, gather_steps(inputs, reverse), lengths)
                    output = gather_steps(output, reverse)
                outputs.append(output)
                finals.append(final)
            inputs = torch.cat(outputs, dim=-1)
        if self.packed:  # outputs are zero at padding already
            return inputs, tuple(torch.cat(parts, dim=-1) for parts in zip(*finals, strict=True))
        real = torch.arange(source.size(1), device=source.device).unsqueeze(0) < lengths.unsqueeze(1)
        return inputs * real.unsqueeze(-1), torch.cat(finals, dim=-1)

    def _run(self, rnn: nn.RNNBase, inputs: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, State]:
        """One direction of one layer over (B, S, D) inputs, padding last -> outputs (B, S, H) and the
        final state at each sentence's last real token: (B, H), or an LSTM's (hidden, cell) pair."""
        if self.packed:
            packed = pack_padded_sequence(inputs, lengths.cpu(), batch_first=True, enforce_sorted=False)
            outputs, final = rnn(packed)
            outputs, _ = pad_packed_sequence(outputs, batch_first=True, total_length=inputs.size(1))
            return outputs, _map_state(lambda state: state[-1], final)
        outputs, _ = rnn(inputs)
        return outputs, outputs[torch.arange(inputs.size(0), device=inputs.device), lengths - 1]


class Attention(nn.Module):
    """Scores each source position against a decoder query and averages the source vectors.

    dot:      score(q, k) = q · k
    general:  score(q, k) = q · W k                       (Luong et al., 2015)
    bahdanau: score(q, k) = v · tanh(W_q q + W_k k)       (additive, Bahdanau et al., 2015)

    The key-side projection (W k or W_k k) depends only on the source, so `project_keys` computes it
    once per batch; every decoder step reuses it.

    Additive scoring needs a (B, T, S, H) tensor, 0.8 GB in float32 for the longest batch of the
    default params (40 x 100 tokens, 512 units). It is built over chunks of target steps of at most
    `score_chunk_elements` elements, and in training each chunk's tanh is recomputed in the backward
    pass rather than kept, so memory stays bounded whatever the batch.
    """

    score_chunk_elements = 2**22  # 16 MiB in float32

    def __init__(self, kind: str, query_size: int, key_size: int) -> None:
        super().__init__()
        self.kind = kind
        if kind == "general":
            self.key_projection = nn.Linear(key_size, query_size, bias=False)
        elif kind == "bahdanau":
            self.key_projection = nn.Linear(key_size, query_size, bias=False)
            self.query_projection = nn.Linear(query_size, query_size, bias=False)
            self.energy = nn.Linear(query_size, 1, bias=False)

    def project_keys(self, keys: torch.Tensor) -> torch.Tensor:
        """keys: (B, S, key_size) -> (B, S, query_size), or the keys themselves for `dot`."""
        return keys if self.kind == "dot" else self.key_projection(keys)

    def forward(
        self, queries: torch.Tensor, projected_keys: torch.Tensor, values: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """queries: (B, T, query_size); projected_keys: (B, S, query_size); values: (B, S, key_size);
        mask: (B, S), True at real tokens.

        Returns contexts (B, T, key_size) and weights (B, T, S), zero at padding, summing to 1 over S.
        """
        if self.kind == "bahdanau":
            scores = self._additive_scores(self.query_projection(queries), projected_keys)
        else:
            scores = torch.bmm(queries, projected_keys.transpose(1, 2))
        scores = scores.float().masked_fill(~mask.unsqueeze(1), float("-inf"))
        weights = torch.softmax(scores, dim=-1)
        return torch.bmm(weights.to(values.dtype), values), weights

    def _additive_scores(self, projected_queries: torch.Tensor, projected_keys: torch.Tensor) -> torch.Tensor:
        """projected_queries: (B, T, H); projected_keys: (B, S, H) -> scores (B, T, S), chunk by chunk over T."""
        batch, steps, hidden_size = projected_queries.shape
        steps_per_chunk = max(1, self.score_chunk_elements // (batch * projected_keys.size(1) * hidden_size))
        if steps_per_chunk >= steps:
            return self._chunk_scores(projected_queries, projected_keys)
        recompute = torch.is_grad_enabled() and (projected_queries.requires_grad or projected_keys.requires_grad)
        chunks = []
        for start in range(0, steps, steps_per_chunk):
            queries = projected_queries[:, start : start + steps_per_chunk]
            if recompute:
                chunks.append(checkpoint(self._chunk_scores, queries, projected_keys, use_reentrant=False))
            else:
                chunks.append(self._chunk_scores(queries, projected_keys))
        return torch.cat(chunks, dim=1)

    def _chunk_scores(self, projected_queries: torch.Tensor, projected_keys: torch.Tensor) -> torch.Tensor:
        """(B, t, H) and (B, S, H) -> v · tanh(q + k), (B, t, S)."""
        hidden = torch.tanh(projected_queries.unsqueeze(2) + projected_keys.unsqueeze(1))
        return self.energy(hidden).squeeze(-1)


@dataclass
class Memory:
    """What the decoder needs from the encoder; `index_select` picks (and repeats) rows for beam search.

    values: (B, S, encoder output size); keys: (B, S, decoder hidden size); mask: (B, S)
    """

    values: torch.Tensor
    keys: torch.Tensor
    mask: torch.Tensor

    @property
    def lengths(self) -> torch.Tensor:
        """(B,) source lengths."""
        return self.mask.sum(dim=1)

    def index_select(self, index: torch.Tensor) -> Memory:
        return Memory(self.values.index_select(0, index), self.keys.index_select(0, index),
                      self.mask.index_select(0, index))


@dataclass
class DecoderState:
    """The recurrent state between decoder steps.

    hidden: (layers, B, H) per tensor of the RNN state; attentional: (B, E), the last attentional
    vector, read by the next step only with input feeding; position: the index of the next output
    token (the same for every row).
    """

    hidden: State
    attentional: torch.Tensor
    position: int = 0

    def index_select(self, index: torch.Tensor) -> DecoderState:
        return DecoderState(
            _map_state(lambda part: part.index_select(1, index), self.hidden),
            self.attentional.index_select(0, index),
            self.position,
        )


class Decoder(nn.Module):
    """A Luong-style attentional decoder: RNN first, then attention on its output."""

    def __init__(self, config: ModelConfig, vocab_size: int, encoder_output_size: int) -> None:
        super().__init__()
        self.config = config
        self.embedding = nn.Embedding(vocab_size, config.embedding_size, padding_idx=PAD_ID)
        self.position_index = PositionIndex(config.position_index, config.embedding_size)
        self.dropout = nn.Dropout(config.dropout)
        rnn_input_size = config.embedding_size * (2 if config.input_feeding else 1) + self.position_index.extra_inputs
        self.rnn = _make_rnn(config.cell, rnn_input_size, config.decoder_hidden_size, config.decoder_layers,
                             config.dropout)
        self.bridge = nn.Linear(encoder_output_size, config.decoder_hidden_size * config.decoder_layers)
        self.attention = Attention(config.attention, config.decoder_hidden_size, encoder_output_size)
        # The attentional vector has the embedding's width, so the output layer can share its matrix.
        self.combine = nn.Linear(config.decoder_hidden_size + encoder_output_size, config.embedding_size)
        # A bias lets the output layer learn how common each piece is within the first few steps.
        self.output = nn.Linear(config.embedding_size, vocab_size)
        if config.tie_embeddings:
            self.output.weight = self.embedding.weight

    def memory(self, encoder_outputs: torch.Tensor, source_mask: torch.Tensor) -> Memory:
        return Memory(encoder_outputs, self.attention.project_keys(encoder_outputs), source_mask)

    def initial_state(self, encoder_final: State) -> DecoderState:
        """Each decoder layer starts from tanh(W · encoder final state); for an LSTM the same W maps
        the final cell state to the initial cell state."""
        layers = self.config.decoder_layers

        def bridge(final: torch.Tensor) -> torch.Tensor:  # (B, encoder output) -> (layers, B, H)
            state = torch.tanh(self.bridge(final))
            return state.view(final.size(0), layers, -1).transpose(0, 1).contiguous()

        hidden = _map_state(bridge, encoder_final)
        some_hidden = hidden[0] if isinstance(hidden, tuple) else hidden
        attentional = some_hidden.new_zeros(some_hidden.size(1), self.config.embedding_size)
        return DecoderState(hidden, attentional)

    def _attend(self, queries: torch.Tensor, memory: Memory) -> tuple[torch.Tensor, torch.Tensor]:
        """queries: (B, T, H) -> attentional vectors (B, T, E) and attention weights (B, T, S)."""
        contexts, weights = self.attention(queries, memory.keys, memory.values, memory.mask)
        attentional = torch.tanh(self.combine(torch.cat([queries, contexts], dim=-1)))
        return self.dropout(attentional), weights

    def forward(
        self, target_input: torch.Tensor, memory: Memory, state: DecoderState
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher-forced decoding. target_input: (B, T) ids, BOS first.

        Returns attentional vectors (B, T, E) and attention weights (B, T, S).
        """
        if self.config.input_feeding:
            attentionals, all_weights = [], []
            for t in range(target_input.size(1)):
                attentional, state, weights = self.step(target_input[:, t], memory, state)
                attentionals.append(attentional)
                all_weights.append(weights)
            return torch.stack(attentionals, dim=1), torch.stack(all_weights, dim=1)
        embedded = self.position_index(self.dropout(self.embedding(target_input)), 0, memory.lengths)
        queries, _ = self.rnn(embedded, state.hidden)
        return self._attend(queries, memory)

    def step(
        self, previous: torch.Tensor, memory: Memory, state: DecoderState
    ) -> tuple[torch.Tensor, DecoderState, torch.Tensor]:
        """One decoding step. previous: (B,) ids of the last output (BOS at the start).

        Returns the attentional vector (B, E), the new state, and attention weights (B, S).
        """
        embedded = self.position_index(self.dropout(self.embedding(previous)).unsqueeze(1), state.position,
                                       memory.lengths)
        if self.config.input_feeding:
            embedded = torch.cat([embedded, state.attentional.unsqueeze(1).to(embedded.dtype)], dim=-1)
        query, hidden = self.rnn(embedded, state.hidden)
        attentional, weights = self._attend(query, memory)
        next_state = DecoderState(hidden, attentional.squeeze(1), state.position + 1)
        return attentional.squeeze(1), next_state, weights.squeeze(1)

    def logits(self, attentional: torch.Tensor) -> torch.Tensor:
        """(..., E) -> (..., V)."""
        return self.output(attentional)


class Seq2Seq(nn.Module):
    """Encoder + decoder. `forward` returns the training loss so that DDP can wrap the whole model."""

    def __init__(self, config: ModelConfig, source_vocab_size: int, target_vocab_size: int) -> None:
        super().__init__()
        self.config = config
        self.source_vocab_size = source_vocab_size
        self.target_vocab_size = target_vocab_size
        self.encoder = Encoder(config, source_vocab_size)
        self.decoder = Decoder(config, target_vocab_size, self.encoder.output_size)

    def encode(self, source: torch.Tensor, lengths: torch.Tensor) -> tuple[Memory, DecoderState]:
        """source: (B, S) ids, lengths: (B,) -> the decoder's memory and initial state."""
        outputs, final = self.encoder(source, lengths)
        return self.decoder.memory(outputs, source != PAD_ID), self.decoder.initial_state(final)

    def forward(
        self,
        source: torch.Tensor,
        source_lengths: torch.Tensor,
        target_input: torch.Tensor,
        target_output: torch.Tensor,
        label_smoothing: float = 0.0,
    ) -> torch.Tensor:
        """Summed label-smoothed cross entropy over the real (non-pad) target tokens.

        source: (B, S); source_lengths: (B,); target_input, target_output: (B, T).
        """
        memory, state = self.encode(source, source_lengths)
        attentional, _ = self.decoder(target_input, memory, state)
        real = target_output != PAD_ID
        # Only real positions reach the (large) output layer: no work is spent on padding.
        logits = self.decoder.logits(attentional[real])
        return F.cross_entropy(logits.float(), target_output[real], label_smoothing=label_smoothing, reduction="sum")

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())
