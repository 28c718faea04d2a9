"""Decoding: greedy search and batched beam search, shared by validation, evaluate and translate.

Both decode a whole batch of sentences at once, one decoder step per output position. Beam search
keeps `beam_size` hypotheses per sentence in one (B * K)-row batch; with beam size 1 it makes
exactly the greedy choices.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from seq2seq.config import EvaluateConfig
from seq2seq.data import pad
from seq2seq.model import Seq2Seq
from seq2seq.tokenizer import BOS_ID, EOS_ID


@dataclass
class Hypothesis:
    """One output sentence: token ids without BOS/EOS, the summed log-probability (EOS included
    when it ended with EOS) and the attention weights (one row per decoding step, up to
    len(tokens) + 1; one column per source token)."""

    tokens: list[int]
    score: float
    attention: torch.Tensor


def max_output_lengths(source_lengths: torch.Tensor, ratio: float) -> torch.Tensor:
    """How many tokens each output may have: `ratio` times its source length, plus 10."""
    return (source_lengths.float() * ratio).long() + 10


def length_normalized(score: float, length: int, alpha: float) -> float:
    """GNMT length penalty (Wu et al., 2016): score / ((5 + length) / 6) ** alpha."""
    return score / (((5 + length) / 6) ** alpha)


def block_repeated_ngrams(log_probs: torch.Tensor, history: torch.Tensor, n: int) -> torch.Tensor:
    """Forbid every token that would repeat an n-gram already in `history` (fairseq's
    `--no-repeat-ngram-size`): undertrained models loop ("the the the ..."), and this stops them.

    log_probs: (R, V); history: (R, t) tokens so far. Returns log_probs with -inf at banned tokens.
    """
    if n <= 0 or history.size(1) < n:
        return log_probs
    windows = history.unfold(1, n, 1)  # (R, t - n + 1, n): every n-gram so far
    prefix = history[:, history.size(1) - n + 1 :].unsqueeze(1)  # (R, 1, n - 1): the last n - 1 tokens
    repeats = (windows[:, :, :-1] == prefix).all(dim=-1)  # (R, t - n + 1): n-grams that start like the next one
    rows, starts = repeats.nonzero(as_tuple=True)
    return log_probs.index_put((rows, windows[rows, starts, -1]), torch.tensor(float("-inf"), device=log_probs.device))


@torch.no_grad()
def greedy_search(model: Seq2Seq, source: torch.Tensor, lengths: torch.Tensor, max_lengths: torch.Tensor,
                  no_repeat_ngram_size: int = 0) -> list[Hypothesis]:
    """source: (B, S) ids; lengths, max_lengths: (B,). Picks the most likely token at every step."""
    memory, state = model.encode(source, lengths)
    batch = source.size(0)
    device = source.device
    previous = torch.full((batch,), BOS_ID, dtype=torch.long, device=device)
    finished = torch.zeros(batch, dtype=torch.bool, device=device)
    scores = torch.zeros(batch, device=device)
    history = torch.empty(batch, 0, dtype=torch.long, device=device)
    weights_per_step = []
    max_lengths = max_lengths.to(device)
    for t in range(int(max_lengths.max())):
        attentional, state, weights = model.decoder.step(previous, memory, state)
        log_probs = torch.log_softmax(model.decoder.logits(attentional).float(), dim=-1)
        log_probs = block_repeated_ngrams(log_probs, history, no_repeat_ngram_size)
        best_log_prob, best = log_probs.max(dim=-1)
        scores += best_log_prob.masked_fill(finished, 0.0)
        history = torch.cat([history, best.masked_fill(finished, EOS_ID).unsqueeze(1)], dim=1)
        weights_per_step.append(weights.float())
        finished |= (best == EOS_ID) | (t + 1 >= max_lengths)
        if finished.all():
            break
        previous = best
    tokens = history.tolist()
    attention = torch.stack(weights_per_step, dim=1).cpu()
    hypotheses = []
    for row in range(batch):
        output = tokens[row][: tokens[row].index(EOS_ID)] if EOS_ID in tokens[row] else tokens[row]
        steps_taken = min(len(output) + 1, len(tokens[row]))
        hypotheses.append(Hypothesis(output, float(scores[row]), attention[row, :steps_taken, : int(lengths[row])]))
    return hypotheses


@torch.no_grad()
def beam_search(
    model: Seq2Seq,
    source: torch.Tensor,
    lengths: torch.Tensor,
    max_lengths: torch.Tensor,
    beam_size: int,
    length_penalty: float = EvaluateConfig.length_penalty,
    no_repeat_ngram_size: int = EvaluateConfig.no_repeat_ngram_size,
) -> list[Hypothesis]:
    """source: (B, S) ids; lengths, max_lengths: (B,). Returns each sentence's best hypothesis
    by length-normalised score among the first `beam_size` that end (or the best one alive at its
    length limit)."""
    batch, k = source.size(0), beam_size
    device = source.device
    memory, state = model.encode(source, lengths)
    rows = torch.arange(batch, device=device).repeat_interleave(k)  # (B*K): the sentence of each row
    memory, state = memory.index_select(rows), state.index_select(rows)
    max_lengths = max_lengths.to(device)

    scores = torch.full((batch, k), float("-inf"), device=device)
    scores[:, 0] = 0.0  # all beams start identical: let only the first one expand
    previous = torch.full((batch * k,), BOS_ID, dtype=torch.long, device=device)
    history = torch.empty(batch * k, 0, dtype=torch.long, device=device)
    attention = torch.empty(batch * k, 0, source.size(1), device=device)
    finished: list[list[tuple[float, Hypothesis]]] = [[] for _ in range(batch)]
    done = torch.zeros(batch, dtype=torch.bool, device=device)
    beam_offsets = (torch.arange(batch, device=device) * k).unsqueeze(1)

    for t in range(int(max_lengths.max())):
        attentional, state, weights = model.decoder.step(previous, memory, state)
        log_probs = torch.log_softmax(model.decoder.logits(attentional).float(), dim=-1)  # (B*K, V)
        log_probs = block_repeated_ngrams(log_probs, history, no_repeat_ngram_size)
        vocab = log_probs.size(-1)
        candidates = (scores.view(-1, 1) + log_probs).view(batch, k * vocab)
        scores, flat = candidates.topk(k, dim=1)  # (B, K)
        origin = (beam_offsets + flat // vocab).view(-1)
        tokens = (flat % vocab).view(-1)
        history = torch.cat([history.index_select(0, origin), tokens.unsqueeze(1)], dim=1)
        step_weights = weights.float().index_select(0, origin).unsqueeze(1)
        attention = torch.cat([attention.index_select(0, origin), step_weights], dim=1)
        state = state.index_select(origin)

        at_limit = (t + 1 >= max_lengths).repeat_interleave(k)
        ending = ((tokens == EOS_ID) | at_limit) & torch.isfinite(scores.view(-1)) & ~done.repeat_interleave(k)
        for row in ending.nonzero().flatten().tolist():
            sentence = row // k
            output = history[row].tolist()
            if output[-1] == EOS_ID:
                output = output[:-1]
            hypothesis = Hypothesis(output, float(scores.view(-1)[row]),
                                    attention[row, :, : int(lengths[sentence])].cpu())
            finished[sentence].append((length_normalized(hypothesis.score, len(output), length_penalty), hypothesis))
        scores = scores.masked_fill(ending.view(batch, k), float("-inf"))
        done |= torch.tensor([len(f) >= k for f in finished], device=device) | (t + 1 >= max_lengths)
        if done.all():
            break
        previous = tokens
    return [max(options, key=lambda option: option[0])[1] for options in finished]


def search(
    model: Seq2Seq,
    source: torch.Tensor,
    lengths: torch.Tensor,
    beam_size: int = 1,
    length_penalty: float = EvaluateConfig.length_penalty,
    max_output_ratio: float = EvaluateConfig.max_output_ratio,
    no_repeat_ngram_size: int = EvaluateConfig.no_repeat_ngram_size,
) -> list[Hypothesis]:
    """Greedy search for beam size 1, else beam search."""
    max_lengths = max_output_lengths(lengths, max_output_ratio)
    if beam_size == 1:
        return greedy_search(model, source, lengths, max_lengths, no_repeat_ngram_size)
    return beam_search(model, source, lengths, max_lengths, beam_size, length_penalty, no_repeat_ngram_size)


def translate_ids(
    model: Seq2Seq,
    sequences: Sequence[Sequence[int]],
    batch_size: int = EvaluateConfig.batch_size,
    beam_size: int = 1,
    length_penalty: float = EvaluateConfig.length_penalty,
    max_output_ratio: float = EvaluateConfig.max_output_ratio,
    device: torch.device | str = "cpu",
    no_repeat_ngram_size: int = EvaluateConfig.no_repeat_ngram_size,
) -> list[Hypothesis]:
    """Decode many source id sequences, batched by similar length; results keep the input order.

    Each sequence must be non-empty (callers map empty input to empty output themselves).
    """
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]), reverse=True)
    results: list[Hypothesis | None] = [None] * len(sequences)
    model.eval()
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        source = pad([sequences[i] for i in chunk]).to(device)
        lengths = torch.tensor([len(sequences[i]) for i in chunk])
        found = search(model, source, lengths.to(device), beam_size, length_penalty, max_output_ratio,
                       no_repeat_ngram_size)
        for index, hypothesis in zip(chunk, found, strict=True):
            results[index] = hypothesis
    return results
