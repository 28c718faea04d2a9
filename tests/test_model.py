import itertools

import pytest
import torch

from seq2seq.checkpoint import upgrade_weights
from seq2seq.config import parse_params
from seq2seq.data import pad
from seq2seq.model import Seq2Seq, reversal_index
from seq2seq.search import greedy_search, max_output_lengths
from seq2seq.tokenizer import BOS_ID, EOS_ID
from tests.conftest import padded

VOCAB = 20


def model_config(**overrides):
    values = {"embedding_size": 16, "encoder_hidden_size": 12, "decoder_hidden_size": 24, "dropout": 0.0}
    return parse_params({"model": {**values, **overrides}}).model


@pytest.mark.parametrize(
    ("cell", "attention", "input_feeding", "layers"),
    [(c, a, f, 1) for c, a, f in itertools.product(["gru", "lstm", "rnn"], ["dot", "general", "bahdanau"],
                                                    [False, True])] + [("lstm", "general", False, 2)],
)
def test_shapes_for_every_cell_and_attention(cell: str, attention: str, input_feeding: bool, layers: int) -> None:
    config = model_config(cell=cell, attention=attention, input_feeding=input_feeding, encoder_layers=layers,
                          decoder_layers=layers)
    model = Seq2Seq(config, VOCAB, VOCAB + 3)
    source, lengths = padded([[5, 6, 7, 8], [9, 10]])
    memory, state = model.encode(source, lengths)
    assert memory.values.shape == (2, 4, 24)
    assert memory.keys.shape == (2, 4, 24)
    target = torch.tensor([[BOS_ID, 4, 5], [BOS_ID, 6, 0]])
    attentional, weights = model.decoder(target, memory, state)
    assert attentional.shape == (2, 3, 16)
    assert weights.shape == (2, 3, 4)
    assert torch.allclose(weights.sum(-1), torch.ones(2, 3))
    assert torch.all(weights[1, :, 2:] == 0)  # padding gets no attention
    assert model.decoder.logits(attentional).shape == (2, 3, VOCAB + 3)
    loss = model(source, lengths, target, torch.tensor([[4, 5, EOS_ID], [6, EOS_ID, 0]]))
    loss.backward()
    assert loss.ndim == 0 and torch.isfinite(loss)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
@pytest.mark.parametrize("attention", ["general", "bahdanau"])
def test_padding_changes_nothing(cell: str, attention: str) -> None:
    torch.manual_seed(0)
    model = Seq2Seq(model_config(cell=cell, attention=attention), VOCAB, VOCAB).eval()
    alone, alone_lengths = padded([[5, 6, 7]])
    with_pad, with_pad_lengths = padded([[5, 6, 7], [8, 9, 10, 11, 12, 13, 14]])
    target = torch.tensor([[BOS_ID, 4, 5, 6]])
    with torch.no_grad():
        out_alone, w_alone = model.decoder(target, *model.encode(alone, alone_lengths))
        out_padded, w_padded = model.decoder(target.repeat(2, 1), *model.encode(with_pad, with_pad_lengths))
        loss_alone = model(alone, alone_lengths, target, torch.tensor([[4, 5, 6, EOS_ID]]))
        with_pad_target = model(alone, alone_lengths, torch.tensor([[BOS_ID, 4, 5, 6, 0, 0]]),
                                torch.tensor([[4, 5, 6, EOS_ID, 0, 0]]))
    assert torch.allclose(out_alone[0], out_padded[0], atol=1e-6)
    assert torch.allclose(w_alone[0], w_padded[0, :, :3], atol=1e-6)
    assert torch.allclose(loss_alone, with_pad_target, atol=1e-6)


def test_tied_embeddings_share_one_matrix() -> None:
    model = Seq2Seq(model_config(tie_embeddings=True), VOCAB, VOCAB)
    assert model.decoder.output.weight is model.decoder.embedding.weight
    untied = Seq2Seq(model_config(tie_embeddings=False), VOCAB, VOCAB)
    assert model.parameter_count() < untied.parameter_count()


@pytest.mark.parametrize("input_feeding", [False, True])
def test_tiny_model_overfits_a_handful_of_pairs(input_feeding: bool) -> None:
    torch.manual_seed(0)
    pairs = [([5, 6, 7], [10, 11]), ([8, 9], [12, 13, 14]), ([5, 9, 6, 8], [15, 10, 16]), ([7], [17])]
    model = Seq2Seq(model_config(input_feeding=input_feeding), VOCAB, VOCAB)
    source, lengths = padded([s for s, _ in pairs])
    target_input = pad([torch.tensor(t) for _, t in pairs], prefix=[BOS_ID])
    target_output = pad([torch.tensor(t) for _, t in pairs], suffix=[EOS_ID])
    tokens = int((target_output != 0).sum())
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(150):
        loss = model(source, lengths, target_input, target_output) / tokens
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.05
    model.eval()
    outputs = greedy_search(model, source, lengths, max_output_lengths(lengths, 2.0))
    assert [h.tokens for h in outputs] == [t for _, t in pairs]


def _largest_saved_for_backward(function) -> int:
    """Run `function()` and return the element count of the largest tensor autograd kept for backward."""
    largest = 0

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        nonlocal largest
        largest = max(largest, tensor.numel())
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        function()
    return largest


def test_bahdanau_scores_in_bounded_chunks_with_the_same_results(monkeypatch: pytest.MonkeyPatch) -> None:
    """Training keeps no (B, T, S, H) tensor for backward; chunked scores and gradients equal the whole."""
    from seq2seq.model import Attention

    torch.manual_seed(0)
    batch, steps, sources, hidden = 3, 20, 15, 24
    attention = Attention("bahdanau", hidden, 10)
    queries = torch.randn(batch, steps, hidden, requires_grad=True)
    keys = torch.randn(batch, sources, 10, requires_grad=True)
    mask = torch.ones(batch, sources, dtype=torch.bool)
    mask[1, 9:] = False

    def run() -> tuple[torch.Tensor, ...]:
        contexts, weights = attention(queries, attention.project_keys(keys), keys, mask)
        (contexts.square().sum() + weights[:, :, 0].sum()).backward()
        gradients = (queries.grad.clone(), keys.grad.clone(), attention.energy.weight.grad.clone())
        queries.grad = keys.grad = None
        attention.zero_grad()
        return contexts.detach(), weights.detach(), *gradients

    whole = run()
    budget = batch * sources * hidden * 2  # two target steps a chunk
    monkeypatch.setattr(Attention, "score_chunk_elements", budget, raising=False)
    chunked = run()
    for a, b in zip(whole, chunked, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    largest = _largest_saved_for_backward(lambda: attention(queries, attention.project_keys(keys), keys, mask))
    assert largest <= budget < batch * steps * sources * hidden
    with torch.no_grad():  # search: chunks too, nothing recomputed
        torch.testing.assert_close(attention(queries, attention.project_keys(keys), keys, mask)[1], whole[1])


@pytest.mark.parametrize("position_index", ["none", "learned", "relative"])
@pytest.mark.parametrize("input_feeding", [False, True])
def test_position_index_shapes_and_training(position_index: str, input_feeding: bool) -> None:
    torch.manual_seed(0)
    model = Seq2Seq(model_config(position_index=position_index, input_feeding=input_feeding), VOCAB, VOCAB)
    inputs = model.encoder.layers[0][0].input_size, model.decoder.rnn.input_size
    extra = 1 if position_index == "relative" else 0
    assert inputs == (16 + extra, 16 * (2 if input_feeding else 1) + extra)
    source, lengths = padded([[5, 6, 7, 8], [9, 10]])
    target = torch.tensor([[BOS_ID, 11, 12, 13], [BOS_ID, 14, 0, 0]])
    output = torch.tensor([[11, 12, 13, EOS_ID], [14, EOS_ID, 0, 0]])
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    losses = []
    for _ in range(30):
        loss = model(source, lengths, target, output)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0]
    # The step-by-step decoder sees the same positions as the fused teacher-forced pass.
    model.eval()
    with torch.no_grad():
        memory, state = model.encode(source, lengths)
        fused, _ = model.decoder(target, memory, state)
        for t in range(target.size(1)):
            attentional, state, _ = model.decoder.step(target[:, t], memory, state)
            assert torch.allclose(attentional, fused[:, t], atol=1e-5), t


def test_learned_positions_change_the_encoding() -> None:
    torch.manual_seed(0)
    model = Seq2Seq(model_config(position_index="learned"), VOCAB, VOCAB).eval()
    source, lengths = padded([[5, 5, 5]])
    outputs, _ = model.encoder(source, lengths)
    with torch.no_grad():
        model.encoder.position_index.table.weight.zero_()
    plain, _ = model.encoder(source, lengths)
    assert not torch.allclose(outputs, plain)


def test_reversal_index_reverses_each_sentence_within_its_length() -> None:
    index = reversal_index(torch.tensor([3, 1, 4]), 4)
    assert index.tolist() == [[2, 1, 0, 3], [0, 1, 2, 3], [3, 2, 1, 0]]
    assert torch.equal(index.gather(1, index), torch.arange(4).expand(3, 4))  # its own inverse


@pytest.mark.parametrize("cell", ["gru", "lstm", "rnn"])
@pytest.mark.parametrize(("layers", "bidirectional"), [(1, True), (2, True), (2, False)])
def test_encoder_equals_a_packed_multilayer_rnn(cell: str, layers: int, bidirectional: bool) -> None:
    """The encoder (padded GRU/RNN runs, one RNN per layer and direction) computes exactly what
    PyTorch's packed multi-layer (bidirectional) RNN computes with the same weights."""
    torch.manual_seed(0)
    model = Seq2Seq(model_config(cell=cell, encoder_layers=layers, bidirectional=bidirectional,
                                 position_index="none"), VOCAB, VOCAB).eval()
    pytorch_class = {"gru": torch.nn.GRU, "lstm": torch.nn.LSTM, "rnn": torch.nn.RNN}[cell]
    reference = pytorch_class(16, 12, num_layers=layers, batch_first=True, bidirectional=bidirectional)
    model.encoder.load_state_dict(
        {name.removeprefix("encoder."): tensor for name, tensor in upgrade_weights(
            {**{f"encoder.rnn.{name}": tensor for name, tensor in reference.state_dict().items()},
             "encoder.embedding.weight": model.encoder.embedding.weight}).items()})
    source, lengths = padded([[5, 6, 7, 8, 9], [9, 10], [11, 12, 13]])
    with torch.no_grad():
        outputs, final = model.encoder(source, lengths)
        packed = torch.nn.utils.rnn.pack_padded_sequence(model.encoder.embedding(source), lengths, batch_first=True,
                                                         enforce_sorted=False)
        expected, expected_final = reference(packed)
        expected, _ = torch.nn.utils.rnn.pad_packed_sequence(expected, batch_first=True, total_length=5)
    torch.testing.assert_close(outputs, expected)
    assert torch.all(outputs[1, 2:] == 0)
    directions = 2 if bidirectional else 1
    pairs = zip(final, expected_final, strict=True) if cell == "lstm" else [(final, expected_final)]
    for got, want in pairs:  # the top layer's final state, both directions
        torch.testing.assert_close(got, torch.cat(list(want[-directions:]), dim=-1))
