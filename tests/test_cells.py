import pytest
import torch
from torch import nn

from seq2seq.cells import unroll


@pytest.mark.parametrize("cell_class", [nn.RNN, nn.GRU, nn.LSTM])
def test_written_out_gates_equal_the_fused_cell(cell_class: type) -> None:
    torch.manual_seed(0)
    cell = cell_class(5, 7, batch_first=True)
    inputs = torch.randn(3, 6, 5)
    fused, _ = cell(inputs)
    assert torch.allclose(unroll(cell, inputs), fused, atol=1e-6)


def test_the_hidden_state_carries_earlier_inputs_forward() -> None:
    torch.manual_seed(0)
    cell = nn.GRU(4, 8, batch_first=True)
    inputs = torch.randn(1, 5, 4)
    changed = inputs.clone()
    changed[0, 0] += 1.0  # only the first input differs
    assert not torch.allclose(unroll(cell, inputs)[0, -1], unroll(cell, changed)[0, -1])
