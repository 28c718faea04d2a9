import itertools

import pytest
import torch

from seq2seq.config import parse_params
from seq2seq.model import Seq2Seq
from seq2seq.search import (
    beam_search,
    block_repeated_ngrams,
    greedy_search,
    length_normalized,
    max_output_lengths,
    search,
    translate_ids,
)
from seq2seq.tokenizer import BOS_ID, EOS_ID, PAD_ID, UNK_ID
from tests.conftest import padded

VOCAB = 7  # ids 0-3 are specials: outputs are sequences over {UNK, 4, 5, 6} ending in EOS
OUTPUT_ALPHABET = [UNK_ID, 4, 5, 6]  # PAD and BOS are never emitted


def random_model(seed: int, cell: str = "gru", **settings: object) -> Seq2Seq:
    torch.manual_seed(seed)
    config = parse_params({"model": {"embedding_size": 8, "encoder_hidden_size": 8, "decoder_hidden_size": 8,
                                     "dropout": 0.0, "cell": cell, **settings}}).model
    return Seq2Seq(config, VOCAB, VOCAB).eval()


# Bahdanau's additive attention and input feeding (the attentional vector fed to the next step)
# take other paths through the decoder's step than the default.
DECODERS = [{}, {"attention": "bahdanau"}, {"input_feeding": True}, {"attention": "bahdanau", "input_feeding": True}]


def sources() -> tuple[torch.Tensor, torch.Tensor]:
    return padded([[4, 5, 6], [6, 6], [5, 4, 4, 6]])


def sequence_log_prob(model: Seq2Seq, source: torch.Tensor, length: torch.Tensor, tokens: list[int]) -> float:
    """Teacher-forced log-probability of `tokens` + EOS."""
    with torch.no_grad():
        memory, state = model.encode(source, length)
        attentional, _ = model.decoder(torch.tensor([[BOS_ID, *tokens]]), memory, state)
        log_probs = torch.log_softmax(model.decoder.logits(attentional), dim=-1)[0]
    return float(sum(log_probs[t, token] for t, token in enumerate([*tokens, EOS_ID])))


@pytest.mark.parametrize("cell", ["gru", "lstm"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_beam_size_one_is_greedy(seed: int, cell: str) -> None:
    model = random_model(seed, cell)
    source, lengths = sources()
    limits = max_output_lengths(lengths, 2.0)
    greedy = greedy_search(model, source, lengths, limits)
    beam = beam_search(model, source, lengths, limits, beam_size=1)
    assert [h.tokens for h in beam] == [h.tokens for h in greedy]
    for g, b in zip(greedy, beam, strict=True):
        assert b.score == pytest.approx(g.score, abs=1e-5)


@pytest.mark.parametrize("length_penalty", [0.0, 1.0])
@pytest.mark.parametrize(("seed", "cell", "decoder"), [(0, "gru", {}), (4, "gru", {}), (1, "lstm", {}), (3, "lstm", {}),
                                                       *((5 + i, "gru", d) for i, d in enumerate(DECODERS[1:])),
                                                       (9, "lstm", DECODERS[3])])
def test_wide_beam_finds_the_most_likely_sequence(seed: int, cell: str, decoder: dict, length_penalty: float
                                                  ) -> None:
    """A beam wider than the search space makes beam search exhaustive: compare with brute force.

    With a limit of 3 tokens, the candidates are every sequence of at most 3 tokens followed by EOS
    (at the limit EOS is forced, and its log-probability counts like any other), ranked by the
    length-normalised score. The models are sharpened and EOS made less likely, so that the winners
    have every length from 0 to the limit across these cases.
    """
    model = random_model(seed, cell, **decoder)
    with torch.no_grad():
        model.decoder.output.weight.mul_(4.0)
        model.decoder.output.bias[EOS_ID] -= 3.0
    source, lengths = sources()
    limits = torch.full_like(lengths, 3)
    beam = beam_search(model, source, lengths, limits, beam_size=300, length_penalty=length_penalty,
                       no_repeat_ngram_size=0)
    for row, hypothesis in enumerate(beam):
        src, length = source[row : row + 1, : lengths[row]], lengths[row : row + 1]
        scores = {c: sequence_log_prob(model, src, length, list(c))
                  for n in range(4) for c in itertools.product(OUTPUT_ALPHABET, repeat=n)}
        best = max(scores, key=lambda c: length_normalized(scores[c], len(c), length_penalty))
        assert hypothesis.tokens == list(best)
        assert hypothesis.score == pytest.approx(scores[best], abs=1e-4)


def plain_beam_search(model: Seq2Seq, source: torch.Tensor, length: torch.Tensor, limit: int, beam_size: int,
                      alpha: float) -> list[tuple[list[int], float]]:
    """Beam search for one sentence as the textbook runs it, to the length limit whatever has ended:
    at each step the `beam_size` best of all one-token continuations (EOS included, scored by
    teacher forcing); those that end leave the beam. All the ended ones, best normalised score first."""
    live: list[tuple[list[int], float]] = [([], 0.0)]
    ended: list[tuple[list[int], float]] = []
    with torch.no_grad():
        memory, state = model.encode(source, length)
        for t in range(limit + 1):
            candidates = []
            for tokens, score in live:
                attentional, _ = model.decoder(torch.tensor([[BOS_ID, *tokens]]), memory, state)
                log_probs = torch.log_softmax(model.decoder.logits(attentional)[0, -1], dim=-1)
                for token in [EOS_ID] if t >= limit else [*OUTPUT_ALPHABET, EOS_ID]:
                    candidates.append(([*tokens, token], score + float(log_probs[token])))
            best = sorted(candidates, key=lambda candidate: candidate[1], reverse=True)[:beam_size]
            ended += [(tokens[:-1], score) for tokens, score in best if tokens[-1] == EOS_ID]
            live = [(tokens, score) for tokens, score in best if tokens[-1] != EOS_ID]
    return sorted(ended, key=lambda option: -length_normalized(option[1], len(option[0]), alpha))


@pytest.mark.parametrize("length_penalty", [0.6, 1.7])
@pytest.mark.parametrize("beam_size", [2, 3])
@pytest.mark.parametrize("seed", range(6))
def test_narrow_beam_stops_only_when_no_live_hypothesis_can_win(seed: int, beam_size: int, length_penalty: float
                                                                ) -> None:
    """With a beam narrower than the search space and a length penalty, the search may end early
    only where going on to the length limit could not change its result: compared with a plain
    beam search that always goes on. Outputs of every length up to the limit come out across these cases."""
    model = random_model(seed)
    with torch.no_grad():
        model.decoder.output.weight.mul_(3.0)
        model.decoder.output.bias[EOS_ID] += 1.0  # ends come early and compete with longer outputs
    source, lengths = sources()
    limits = torch.full_like(lengths, 6)
    beam = beam_search(model, source, lengths, limits, beam_size, length_penalty, no_repeat_ngram_size=0)
    for row, hypothesis in enumerate(beam):
        src, length = source[row : row + 1, : lengths[row]], lengths[row : row + 1]
        tokens, score = plain_beam_search(model, src, length, 6, beam_size, length_penalty)[0]
        assert hypothesis.tokens == tokens
        assert hypothesis.score == pytest.approx(score, abs=1e-4)


@pytest.mark.parametrize("length_penalty", [0.6, 1.7])
@pytest.mark.parametrize(("beam_size", "n_best"), [(3, 2), (3, 3), (5, 4)])
@pytest.mark.parametrize("seed", range(4))
def test_n_best_lists_are_the_best_ended_hypotheses_of_a_search_to_the_limit(seed: int, beam_size: int, n_best: int,
                                                                            length_penalty: float) -> None:
    """An n-best search may stop early only where no live hypothesis could still enter the n best:
    its lists equal the n best ended hypotheses of a plain beam search that always goes on."""
    model = random_model(seed)
    with torch.no_grad():
        model.decoder.output.weight.mul_(3.0)
        model.decoder.output.bias[EOS_ID] += 1.0
    source, lengths = sources()
    limits = torch.full_like(lengths, 6)
    beam = beam_search(model, source, lengths, limits, beam_size, length_penalty, no_repeat_ngram_size=0,
                       n_best=n_best)
    for row, hypothesis in enumerate(beam):
        src, length = source[row : row + 1, : lengths[row]], lengths[row : row + 1]
        expected = plain_beam_search(model, src, length, 6, beam_size, length_penalty)[:n_best]
        assert [h.tokens for h in hypothesis.n_best()] == [tokens for tokens, _ in expected]
        assert [h.score for h in hypothesis.n_best()] == pytest.approx([score for _, score in expected], abs=1e-4)


@pytest.mark.parametrize("length_penalty", [0.0, 1.0])
def test_a_wide_n_best_list_is_the_exhaustive_ranking(length_penalty: float) -> None:
    """With a beam wider than the search space, the n-best list is the n best of every possible
    output, each with its teacher-forced log-probability, ranked by length-normalised score."""
    model = random_model(4)
    with torch.no_grad():
        model.decoder.output.weight.mul_(4.0)
    source, lengths = sources()
    limits = torch.full_like(lengths, 3)
    beam = beam_search(model, source, lengths, limits, beam_size=300, length_penalty=length_penalty,
                       no_repeat_ngram_size=0, n_best=6)
    for row, hypothesis in enumerate(beam):
        src, length = source[row : row + 1, : lengths[row]], lengths[row : row + 1]
        scores = {c: sequence_log_prob(model, src, length, list(c))
                  for n in range(4) for c in itertools.product(OUTPUT_ALPHABET, repeat=n)}
        ranked = sorted(scores, key=lambda c: -length_normalized(scores[c], len(c), length_penalty))[:6]
        found = hypothesis.n_best()
        assert [h.tokens for h in found] == [list(c) for c in ranked]
        assert [h.score for h in found] == pytest.approx([scores[c] for c in ranked], abs=1e-4)
        normalized = [h.normalized_score(length_penalty) for h in found]
        assert normalized == sorted(normalized, reverse=True)


@pytest.mark.parametrize("decoder", DECODERS[:2])
def test_n_best_keeps_the_best_output_and_gives_distinct_alternatives(decoder: dict) -> None:
    model = random_model(10, **decoder)
    sentences = [[4, 5, 6, 4, 5, 6, 4], [6], [5, 5, 4], [4, 6], [6, 5, 4, 4, 5]]
    plain = search(model, *padded(sentences), 5, 1.0)
    listed = translate_ids(model, sentences, batch_size=2, beam_size=5, length_penalty=1.0, n_best=5)
    for sentence, best, hypothesis in zip(sentences, plain, listed, strict=True):
        assert (hypothesis.tokens, hypothesis.score) == (best.tokens, pytest.approx(best.score, abs=1e-5))
        assert best.alternatives == []
        found = hypothesis.n_best()
        assert len(found) == 5 and len({tuple(h.tokens) for h in found}) == 5
        normalized = [h.normalized_score(1.0) for h in found]
        assert normalized == sorted(normalized, reverse=True)
        src, length = padded([sentence])
        for option in found:
            assert option.score == pytest.approx(sequence_log_prob(model, src, length, option.tokens), abs=1e-4)


def test_n_best_must_fit_the_beam() -> None:
    model = random_model(1)
    source, lengths = sources()
    for beam_size, n_best in ((3, 4), (1, 2), (3, 0)):
        with pytest.raises(ValueError, match="n.best"):
            search(model, source, lengths, beam_size, n_best=n_best)


def test_an_output_cut_at_its_limit_pays_for_its_eos() -> None:
    model = random_model(8)
    with torch.no_grad():
        model.decoder.output.bias[EOS_ID] -= 8.0  # the model would rather go on: every output hits the limit
    source, lengths = sources()
    limits = torch.tensor([4, 2, 3])
    for beam_size in (1, 3):
        for row, hypothesis in enumerate(search_with(model, source, lengths, limits, beam_size, 0)):
            assert len(hypothesis.tokens) == int(limits[row])
            src, length = source[row : row + 1, : lengths[row]], lengths[row : row + 1]
            assert hypothesis.score == pytest.approx(sequence_log_prob(model, src, length, hypothesis.tokens),
                                                     abs=1e-4)


@pytest.mark.parametrize("beam_size", [1, 4])
def test_special_ids_are_never_emitted(beam_size: int) -> None:
    model = random_model(9)
    with torch.no_grad():
        model.decoder.output.bias[[PAD_ID, BOS_ID, UNK_ID]] += 6.0  # the likeliest pieces, left alone
    source, lengths = sources()
    limits = max_output_lengths(lengths, 2.0)
    default = [h.tokens for h in search_with(model, source, lengths, limits, beam_size, 0)]
    assert all(PAD_ID not in tokens and BOS_ID not in tokens for tokens in default)
    assert any(UNK_ID in tokens for tokens in default)  # UNK is allowed unless the caller bans it
    no_unk = search_with(model, source, lengths, limits, beam_size, 0, never_emitted=(PAD_ID, BOS_ID, UNK_ID))
    assert all({PAD_ID, BOS_ID, UNK_ID}.isdisjoint(h.tokens) for h in no_unk)


def test_beam_score_matches_rescoring_and_beats_greedy() -> None:
    model = random_model(7)
    source, lengths = sources()
    limits = max_output_lengths(lengths, 2.0)
    greedy = greedy_search(model, source, lengths, limits)
    beam = beam_search(model, source, lengths, limits, beam_size=4, length_penalty=0.0)
    for row, (g, b) in enumerate(zip(greedy, beam, strict=True)):
        src, length = source[row : row + 1, : lengths[row]], lengths[row : row + 1]
        for hypothesis in (g, b):
            assert hypothesis.score == pytest.approx(sequence_log_prob(model, src, length, hypothesis.tokens),
                                                     abs=1e-4)
        assert b.score >= g.score - 1e-5
    assert any(b.score > g.score + 1e-3 for g, b in zip(greedy, beam, strict=True))  # the beam found better


@pytest.mark.parametrize(("beam_size", "length_penalty", "ngram"), [(2, 1.0, 0), (4, 1.7, 2), (5, 0.6, 3)])
@pytest.mark.parametrize("decoder", DECODERS)
def test_batched_beam_search_equals_one_sentence_at_a_time(beam_size: int, length_penalty: float, ngram: int,
                                                           decoder: dict) -> None:
    model = random_model(10, **decoder)
    sentences = [[4, 5, 6, 4, 5, 6, 4], [6], [5, 5, 4], [4, 6], [6, 5, 4, 4, 5]]
    batched = search(model, *padded(sentences), beam_size, length_penalty, no_repeat_ngram_size=ngram)
    for sentence, hypothesis in zip(sentences, batched, strict=True):
        (alone,) = search(model, *padded([sentence]), beam_size, length_penalty, no_repeat_ngram_size=ngram)
        assert hypothesis.tokens == alone.tokens
        assert hypothesis.score == pytest.approx(alone.score, abs=1e-4)


def test_translate_ids_keeps_order_and_batches_by_length() -> None:
    model = random_model(5)
    sequences = [[4], [5, 6, 4, 5, 6], [6, 6], [4, 5, 6]]
    one_by_one = [search(model, *padded([s]))[0].tokens for s in sequences]
    batched = [h.tokens for h in translate_ids(model, sequences, batch_size=2)]
    assert batched == one_by_one


def test_output_length_is_bounded() -> None:
    model = random_model(6)
    source, lengths = sources()
    for beam_size in (1, 3):
        for hypothesis, limit, length in zip(search(model, source, lengths, beam_size, max_output_ratio=0.5,
                                                    attention=True),
                                             max_output_lengths(lengths, 0.5), lengths, strict=True):
            assert hypothesis.attention.shape[1] == int(length)
            assert len(hypothesis.tokens) <= int(limit)
            assert hypothesis.attention.shape[0] == len(hypothesis.tokens) + 1  # a row per output, EOS too


def test_ngram_blocking_forbids_exactly_the_repeating_tokens() -> None:
    history = torch.tensor([[4, 5, 4, 6, 4], [4, 5, 6, 7, 8]])
    blocked = block_repeated_ngrams(torch.zeros(2, VOCAB), history, 2)
    # Row 0 ends in 4, and "4 5" and "4 6" occurred: 5 and 6 are banned. Row 1's "8" never led anywhere.
    assert torch.isinf(blocked[0]).nonzero().flatten().tolist() == [5, 6]
    assert not torch.isinf(blocked[1]).any()
    assert torch.equal(block_repeated_ngrams(torch.zeros(2, VOCAB), history, 0), torch.zeros(2, VOCAB))


@pytest.mark.parametrize("beam_size", [1, 4])
def test_ngram_blocking_never_emits_a_repeated_ngram(beam_size: int) -> None:
    model = random_model(3)
    with torch.no_grad():
        model.decoder.output.bias[EOS_ID] -= 5.0  # long outputs, where loops show
    source, lengths = sources()
    long_outputs = torch.full_like(lengths, 30)
    plain = search_with(model, source, lengths, long_outputs, beam_size, 0)
    assert any(has_repeated_ngram(h.tokens, 2) for h in plain)  # the random model does loop
    for n in (2, 3):
        for hypothesis in search_with(model, source, lengths, long_outputs, beam_size, n):
            assert not has_repeated_ngram(hypothesis.tokens, n), hypothesis.tokens


def search_with(model, source, lengths, max_lengths, beam_size: int, n: int, **options):
    if beam_size == 1:
        return greedy_search(model, source, lengths, max_lengths, no_repeat_ngram_size=n, **options)
    return beam_search(model, source, lengths, max_lengths, beam_size, no_repeat_ngram_size=n, **options)


def has_repeated_ngram(tokens: list[int], n: int) -> bool:
    ngrams = [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
    return len(ngrams) != len(set(ngrams))


@pytest.mark.parametrize("beam_size", [1, 3])
def test_attention_is_kept_only_when_asked_and_changes_no_output(beam_size: int) -> None:
    model = random_model(7)
    source, lengths = padded([[4, 5, 6, 4], [6], [5, 5, 4], [4, 6]])
    plain = search(model, source, lengths, beam_size)
    with_attention = search(model, source, lengths, beam_size, attention=True)
    assert all(h.attention is None for h in plain)
    assert [(h.tokens, h.score) for h in plain] == [(h.tokens, h.score) for h in with_attention]
    one_by_one = [search(model, *padded([s]), beam_size)[0].tokens for s in ([4, 5, 6, 4], [6], [5, 5, 4], [4, 6])]
    assert [h.tokens for h in plain] == one_by_one  # sentences leaving the batch early change nothing for the rest


def test_sampling_is_seeded_and_scores_what_it_draws() -> None:
    model = random_model(3)
    source, lengths = sources()
    limits = max_output_lengths(lengths, 2.0)
    draws = [greedy_search(model, source, lengths, limits, sample_with=torch.Generator().manual_seed(seed))
             for seed in (0, 0, 1)]
    assert [h.tokens for h in draws[0]] == [h.tokens for h in draws[1]]
    assert [h.tokens for h in draws[0]] != [h.tokens for h in draws[2]]
    for row, hypothesis in enumerate(draws[2]):
        src, length = source[row : row + 1, : lengths[row]], lengths[row : row + 1]
        assert hypothesis.score == pytest.approx(sequence_log_prob(model, src, length, hypothesis.tokens), abs=1e-4)
        assert len(hypothesis.tokens) <= int(limits[row])
