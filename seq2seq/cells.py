"""The recurrent cells written out, gate by gate, for reading.

The model uses PyTorch's fused `nn.RNN`, `nn.GRU` and `nn.LSTM` (one optimised call runs every
time step). This module computes the same thing one step at a time from the same weights, so
that the lesson's equations can be read next to the code; `tests/test_cells.py` checks that
`unroll` gives exactly what the fused modules give.

Every step reads the input vector x_t and the previous hidden state h_{t-1}, and returns h_t:
the hidden state is what carries the sentence so far from one step to the next. The same weight
matrices serve every step (parameter sharing), which is why one cell handles sentences of any length.
"""

from __future__ import annotations

import torch
from torch import nn


def rnn_step(x: torch.Tensor, h: torch.Tensor, cell: nn.RNN) -> torch.Tensor:
    """Elman RNN: h_t = tanh(W x_t + U h_{t-1} + b). x: (B, input), h: (B, H) -> (B, H)."""
    return torch.tanh(x @ cell.weight_ih_l0.T + cell.bias_ih_l0 + h @ cell.weight_hh_l0.T + cell.bias_hh_l0)


def gru_step(x: torch.Tensor, h: torch.Tensor, cell: nn.GRU) -> torch.Tensor:
    """GRU (Cho et al., 2014). x: (B, input), h: (B, H) -> (B, H).

    r = σ(W_r x + U_r h)             reset gate: how much of the past feeds the candidate
    z = σ(W_z x + U_z h)             update gate: how much of the state is replaced
    ĥ = tanh(W_n x + r ⊙ (U_n h))    candidate state
    h' = (1 - z) ⊙ ĥ + z ⊙ h
    """
    input_r, input_z, input_n = (x @ cell.weight_ih_l0.T + cell.bias_ih_l0).chunk(3, dim=-1)
    hidden_r, hidden_z, hidden_n = (h @ cell.weight_hh_l0.T + cell.bias_hh_l0).chunk(3, dim=-1)
    reset = torch.sigmoid(input_r + hidden_r)
    update = torch.sigmoid(input_z + hidden_z)
    candidate = torch.tanh(input_n + reset * hidden_n)
    return (1 - update) * candidate + update * h


def lstm_step(x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor], cell: nn.LSTM
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """LSTM (Hochreiter & Schmidhuber, 1997). x: (B, input), state: (h, c), each (B, H).

    i = σ(W_i x + U_i h)    input gate: how much of the candidate enters the memory cell
    f = σ(W_f x + U_f h)    forget gate: how much of the memory cell is kept
    g = tanh(W_g x + U_g h) candidate
    o = σ(W_o x + U_o h)    output gate: how much of the memory cell is shown as h
    c' = f ⊙ c + i ⊙ g;  h' = o ⊙ tanh(c')
    """
    h, c = state
    gates = x @ cell.weight_ih_l0.T + cell.bias_ih_l0 + h @ cell.weight_hh_l0.T + cell.bias_hh_l0
    input_gate, forget_gate, candidate, output_gate = gates.chunk(4, dim=-1)
    c = torch.sigmoid(forget_gate) * c + torch.sigmoid(input_gate) * torch.tanh(candidate)
    return torch.sigmoid(output_gate) * torch.tanh(c), c


def unroll(cell: nn.RNN | nn.GRU | nn.LSTM, inputs: torch.Tensor) -> torch.Tensor:
    """Run a one-layer, one-direction, batch-first cell over `inputs` (B, T, input) step by step,
    from a zero state; returns every step's hidden state (B, T, H), as the fused module does
    (many-to-many: one output per input position)."""
    batch, hidden_size = inputs.size(0), cell.hidden_size
    h = inputs.new_zeros(batch, hidden_size)
    c = inputs.new_zeros(batch, hidden_size)
    outputs = []
    for t in range(inputs.size(1)):  # the same `cell` weights at every t
        if isinstance(cell, nn.LSTM):
            h, c = lstm_step(inputs[:, t], (h, c), cell)
        elif isinstance(cell, nn.GRU):
            h = gru_step(inputs[:, t], h, cell)
        else:
            h = rnn_step(inputs[:, t], h, cell)
        outputs.append(h)
    return torch.stack(outputs, dim=1)
