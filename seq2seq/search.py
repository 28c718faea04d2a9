"""Decoding: greedy search and batched beam search, shared by validation, evaluate and translate.

Both decode a whole batch of sentences at once, one decoder step per output position. Beam search
keeps `beam_size` hypotheses per sentence in one (B * K)-row batch; with beam size 1 it makes
exactly the greedy choices. Asked for an n-best list, it keeps the `n_best` best ended hypotheses
of each sentence (n_best <= beam size), the best one first.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch

from seq2seq.config import EvaluateConfig
from seq2seq.data import pad
from seq2seq.model import Seq2Seq
from seq2seq.tokenizer import BOS_ID, EOS_ID, PAD_ID

NEVER_EMITTED = (PAD_ID, BOS_ID)  # ids an output never holds (see `Tokenizer.never_emitted` for UNK)


@dataclass
class Hypothesis:
    """One output sentence: token ids without BOS/EOS, the summed log-probability (EOS included: an
    output that reaches its length limit is made to end there) and, when the search was asked for
    it, the attention weights (one row per decoding step, len(tokens) + 1; one column per source
    token), else None. An n-best search puts the next best ended hypotheses of the same sentence,
    in order, in the best one's `alternatives`."""

    tokens: list[int]
    score: float
    attention: torch.Tensor | None = None
    alternatives: list[Hypothesis] = field(default_factory=list)

    def n_best(self) -> list[Hypothesis]:
        """This hypothesis and its alternatives: the n-best list, best first."""
        return [self, *self.alternatives]

    def normalized_score(self, alpha: float) -> float:
        """The beam search's ranking score: the log-probability with the GNMT length penalty."""
        return length_normalized(self.score, len(self.tokens), alpha)


def max_output_lengths(source_lengths: torch.Tensor, ratio: float) -> torch.Tensor:
    """How many tokens each output may have (EOS not counted): `ratio` times its source length, plus 10."""
    return (source_lengths.float() * ratio).long() + 10


def allowed_next(log_probs: torch.Tensor, banned: torch.Tensor, must_end: torch.Tensor) -> torch.Tensor:
    """Mask what may not come next: the `banned` ids always, and every id but EOS in rows that
    `must_end` (they reached their length limit). The scores of what is allowed stay the model's
    own log-probabilities, so an output cut at its limit pays for its EOS like any other.

    log_probs: (R, V); banned: (V,) bool; must_end: (R,) bool. Returns (R, V).
    """
    not_eos = torch.ones_like(banned)
    not_eos[EOS_ID] = False
    forbidden = banned.unsqueeze(0) | (must_end.unsqueeze(1) & not_eos.unsqueeze(0))
    return log_probs.masked_fill(forbidden, float("-inf"))


def banned_mask(vocab_size: int, never_emitted: Sequence[int], device: torch.device) -> torch.Tensor:
    """(V,) bool, True at the ids in `never_emitted`."""
    mask = torch.zeros(vocab_size, dtype=torch.bool, device=device)
    mask[list(never_emitted)] = True
    return mask


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
                  no_repeat_ngram_size: int = EvaluateConfig.no_repeat_ngram_size, attention: bool = False,
                  never_emitted: Sequence[int] = NEVER_EMITTED, sample_with: torch.Generator | None = None
                  ) -> list[Hypothesis]:
    """source: (B, S) ids; lengths, max_lengths: (B,). Picks the most likely token at every step
    (with `sample_with`, a generator: draws it from the model's distribution instead), never one in
    `never_emitted` nor one that would repeat an n-gram of `no_repeat_ngram_size` tokens; an output
    ends with EOS, at the latest after max_lengths tokens.

    A sentence leaves the batch as soon as it ends, so the last steps only pay for the sentences
    still running. With `attention`, each hypothesis carries its (steps, S) attention weights.
    """
    memory, state = model.encode(source, lengths)
    batch, device = source.size(0), source.device
    max_lengths = max_lengths.to(device)
    steps = int(max_lengths.max()) + 1  # the last one for EOS
    banned = banned_mask(model.target_vocab_size, never_emitted, device)
    alive = torch.arange(batch, device=device)  # (A,): the original row of each running sentence
    previous = torch.full((batch,), BOS_ID, dtype=torch.long, device=device)
    scores = torch.zeros(batch, device=device)
    outputs = torch.full((batch, steps), EOS_ID, dtype=torch.long, device=device)  # EOS after each end
    weights_kept = torch.zeros(batch, steps, source.size(1), device=device) if attention else None
    for t in range(steps):
        attentional, state, weights = model.decoder.step(previous, memory, state)
        log_probs = torch.log_softmax(model.decoder.logits(attentional).float(), dim=-1)
        log_probs = block_repeated_ngrams(log_probs, outputs[alive, :t], no_repeat_ngram_size)
        log_probs = allowed_next(log_probs, banned, t >= max_lengths.index_select(0, alive))
        if sample_with is None:
            best_log_prob, best = log_probs.max(dim=-1)  # (A,)
        else:
            best = torch.multinomial(log_probs.exp(), 1, generator=sample_with).squeeze(1)
            best_log_prob = log_probs.gather(1, best.unsqueeze(1)).squeeze(1)
        scores.index_add_(0, alive, best_log_prob)
        outputs[alive, t] = best
        if weights_kept is not None:
            weights_kept[alive, t] = weights.float()
        running = best != EOS_ID
        if not bool(running.any()):
            break
        if not bool(running.all()):
            keep = running.nonzero().flatten()
            alive, best = alive.index_select(0, keep), best.index_select(0, keep)
            memory, state = memory.index_select(keep), state.index_select(keep)
        previous = best
    hypotheses = []
    for row, tokens in enumerate(outputs.tolist()):
        output = tokens[: tokens.index(EOS_ID)]
        weights = None
        if weights_kept is not None:
            weights = weights_kept[row, : len(output) + 1, : int(lengths[row])].cpu()
        hypotheses.append(Hypothesis(output, float(scores[row]), weights))
    return hypotheses


def can_still_win(live_best: torch.Tensor, limits: torch.Tensor, best_finished: torch.Tensor, alpha: float
                  ) -> torch.Tensor:
    """Whether a sentence's live hypotheses may still beat `best_finished`, the length-normalised
    score of an ended one (-inf: none yet); an n-best search passes its n-th best ended one.

    A live score (a log-probability, <= 0) only falls as tokens are added, and the GNMT penalty's
    divisor grows with the length, so no continuation ends above live score / ((5 + limit) / 6) ** alpha.
    live_best, limits, best_finished: (A,). Returns (A,) bool.
    """
    return live_best / ((5 + limits.float()) / 6) ** alpha > best_finished


def n_best_list(finished: list[tuple[float, Hypothesis]], n_best: int) -> Hypothesis:
    """The best of a sentence's (length-normalised score, hypothesis) pairs, with the next `n_best` - 1
    as its alternatives, best first (of equal scores, the one that ended first)."""
    ranked = [hypothesis for _, hypothesis in sorted(finished, key=lambda option: -option[0])[:n_best]]
    best = ranked[0]
    best.alternatives = ranked[1:]
    return best


@torch.no_grad()
def beam_search(
    model: Seq2Seq,
    source: torch.Tensor,
    lengths: torch.Tensor,
    max_lengths: torch.Tensor,
    beam_size: int,
    length_penalty: float = EvaluateConfig.length_penalty,
    no_repeat_ngram_size: int = EvaluateConfig.no_repeat_ngram_size,
    attention: bool = False,
    never_emitted: Sequence[int] = NEVER_EMITTED,
    n_best: int = 1,
) -> list[Hypothesis]:
    """source: (B, S) ids; lengths, max_lengths: (B,). Returns each sentence's best hypothesis by
    length-normalised score among all that end with EOS, with the next `n_best` - 1 in its
    `alternatives`; at its length limit (max_lengths tokens) every hypothesis still alive must end.
    Ids in `never_emitted` are never chosen.

    A hypothesis that ends leaves the beam, which goes on with the live ones. A sentence's search
    ends when no live hypothesis can beat its `n_best`-th best ended one any more (`can_still_win`),
    which gives the same n-best list as going on to the length limit; ending after the first
    `beam_size` ended hypotheses instead would favour short outputs, as a longer one could still
    overtake them.

    The batch holds K rows per running sentence; a sentence whose search is over leaves it. The
    attention history (B*K, t, S), copied at every step to follow the beams, is kept only when
    `attention` asks for it.
    """
    if not 1 <= n_best <= beam_size:
        raise ValueError(f"n_best must be from 1 to the beam size {beam_size}, not {n_best}")
    k = beam_size
    device = source.device
    memory, state = model.encode(source, lengths)
    expand = torch.arange(source.size(0), device=device).repeat_interleave(k)
    memory, state = memory.index_select(expand), state.index_select(expand)
    max_lengths = max_lengths.to(device)
    banned = banned_mask(model.target_vocab_size, never_emitted, device)

    alive = torch.arange(source.size(0), device=device)  # (A,): the original index of each running sentence
    scores = torch.full((alive.numel(), k), float("-inf"), device=device)
    scores[:, 0] = 0.0  # all beams start identical: let only the first one expand
    previous = torch.full((alive.numel() * k,), BOS_ID, dtype=torch.long, device=device)
    history = torch.empty(alive.numel() * k, 0, dtype=torch.long, device=device)
    attention_history = torch.empty(alive.numel() * k, 0, source.size(1), device=device) if attention else None
    finished: list[list[tuple[float, Hypothesis]]] = [[] for _ in range(source.size(0))]
    # (B,) the n_best-th best length-normalised score of the ended hypotheses (-inf: fewer have ended)
    nth_best_finished = torch.full((source.size(0),), float("-inf"), device=device)

    for t in range(int(max_lengths.max()) + 1):  # the last step for EOS
        count = alive.numel()
        attentional, state, weights = model.decoder.step(previous, memory, state)
        log_probs = torch.log_softmax(model.decoder.logits(attentional).float(), dim=-1)  # (A*K, V)
        log_probs = block_repeated_ngrams(log_probs, history, no_repeat_ngram_size)
        at_limit = t >= max_lengths.index_select(0, alive)  # (A,): only EOS may come now
        log_probs = allowed_next(log_probs, banned, at_limit.repeat_interleave(k))
        vocab = log_probs.size(-1)
        candidates = (scores.view(-1, 1) + log_probs).view(count, k * vocab)
        scores, flat = candidates.topk(k, dim=1)  # (A, K)
        origin = ((torch.arange(count, device=device) * k).unsqueeze(1) + flat // vocab).view(-1)
        tokens = (flat % vocab).view(-1)
        history = torch.cat([history.index_select(0, origin), tokens.unsqueeze(1)], dim=1)
        if attention_history is not None:
            step_weights = weights.float().index_select(0, origin).unsqueeze(1)
            attention_history = torch.cat([attention_history.index_select(0, origin), step_weights], dim=1)
        state = state.index_select(origin)

        ending = (tokens == EOS_ID) & torch.isfinite(scores.view(-1))
        for row in ending.nonzero().flatten().tolist():
            sentence = int(alive[row // k])
            output = history[row, :-1].tolist()
            weights_kept = None
            if attention_history is not None:
                weights_kept = attention_history[row, :, : int(lengths[sentence])].cpu()
            hypothesis = Hypothesis(output, float(scores.view(-1)[row]), weights_kept)
            normalized = length_normalized(hypothesis.score, len(output), length_penalty)
            finished[sentence].append((normalized, hypothesis))
            if len(finished[sentence]) >= n_best:
                nth_best_finished[sentence] = sorted(option[0] for option in finished[sentence])[-n_best]
        scores = scores.masked_fill(ending.view(count, k), float("-inf"))
        live_best = scores.max(dim=1).values  # (A,)
        limits = max_lengths.index_select(0, alive)
        done = at_limit | ~can_still_win(live_best, limits, nth_best_finished.index_select(0, alive), length_penalty)
        if bool(done.all()):
            break
        if bool(done.any()):
            keep = (~done).nonzero().flatten()
            keep_rows = ((keep * k).unsqueeze(1) + torch.arange(k, device=device)).view(-1)
            alive, scores = alive.index_select(0, keep), scores.index_select(0, keep)
            tokens, history = tokens.index_select(0, keep_rows), history.index_select(0, keep_rows)
            memory, state = memory.index_select(keep_rows), state.index_select(keep_rows)
            if attention_history is not None:
                attention_history = attention_history.index_select(0, keep_rows)
        previous = tokens
    return [n_best_list(options, n_best) for options in finished]


def search(
    model: Seq2Seq,
    source: torch.Tensor,
    lengths: torch.Tensor,
    beam_size: int = 1,
    length_penalty: float = EvaluateConfig.length_penalty,
    max_output_ratio: float = EvaluateConfig.max_output_ratio,
    no_repeat_ngram_size: int = EvaluateConfig.no_repeat_ngram_size,
    attention: bool = False,
    never_emitted: Sequence[int] = NEVER_EMITTED,
    sample_with: torch.Generator | None = None,
    n_best: int = 1,
) -> list[Hypothesis]:
    """Greedy search for beam size 1, else beam search; `attention`: keep each output's weights.
    `sample_with` (a generator): sample each output token instead (beam size is then ignored).
    `n_best` > 1 (a beam search's only): the next best hypotheses go in each one's `alternatives`."""
    max_lengths = max_output_lengths(lengths, max_output_ratio)
    if beam_size == 1 or sample_with is not None:
        if n_best != 1:
            raise ValueError("an n-best list needs a beam search: beam size > 1 and no sampling")
        return greedy_search(model, source, lengths, max_lengths, no_repeat_ngram_size, attention, never_emitted,
                             sample_with)
    return beam_search(model, source, lengths, max_lengths, beam_size, length_penalty, no_repeat_ngram_size,
                       attention, never_emitted, n_best)


def batches_by_length(lengths: Sequence[int], batch_size: int) -> Iterator[list[int]]:
    """The indices of `lengths`, longest first, in batches of at most `batch_size`: each batch holds
    similar lengths, so little of it is padding."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i], reverse=True)
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]


def translate_ids(
    model: Seq2Seq,
    sequences: Sequence[Sequence[int]],
    batch_size: int = EvaluateConfig.batch_size,
    beam_size: int = 1,
    length_penalty: float = EvaluateConfig.length_penalty,
    max_output_ratio: float = EvaluateConfig.max_output_ratio,
    device: torch.device | str = "cpu",
    no_repeat_ngram_size: int = EvaluateConfig.no_repeat_ngram_size,
    attention: bool = False,
    never_emitted: Sequence[int] = NEVER_EMITTED,
    sample_with: torch.Generator | None = None,
    n_best: int = 1,
) -> list[Hypothesis]:
    """Decode many source id sequences, batched by similar length; results keep the input order.
    With `n_best` > 1, each best hypothesis holds the next best in its `alternatives`.

    Each sequence must be non-empty (callers map empty input to empty output themselves).
    """
    results: list[Hypothesis | None] = [None] * len(sequences)
    model.eval()
    for chunk in batches_by_length([len(sequence) for sequence in sequences], batch_size):
        source = pad([sequences[i] for i in chunk]).to(device)
        lengths = torch.tensor([len(sequences[i]) for i in chunk])
        found = search(model, source, lengths.to(device), beam_size, length_penalty, max_output_ratio,
                       no_repeat_ngram_size, attention, never_emitted, sample_with, n_best)
        for index, hypothesis in zip(chunk, found, strict=True):
            results[index] = hypothesis
    return results
