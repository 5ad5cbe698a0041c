"""DPO on the tokens where a pair's answers differ.

Feedback pairs are often one answer and a small change of it: an opener added, a sign-off,
a word swapped, the answer cut after its first sentence. Their tokens before the first
difference and after the last one are the same text; training on them teaches nothing about
the preference, but the SFT term on chosen answers still pulls every one of them up, which
sharpens the model toward its own wording everywhere (measured: the reference answers' median
token KL from the base rose from ~0 to 0.22 nats on an opener-only preference). So each row's
loss mask keeps its span between the pair's common prefix and common suffix (at least one
token: where the answers part, an end-of-turn token against a second sentence, say). The
chosen answer also keeps its last tokens, its end of turn: a preference for a new format must
teach where such an answer ends (without them, bulleted answers learned the bullets but not to
stop, and looped). The rejected answer's end is not contrasted with it: both end the same
text, and pushing them apart slowed an opener's learning by half and drifted the model more.
Two answers with nothing in common keep every token, as before."""

from __future__ import annotations

import torch

TURN_END = 2  # a chat template closes a turn with an end-of-turn token and a newline


def _common_prefix(a: torch.Tensor, b: torch.Tensor) -> int:
    n = min(len(a), len(b))
    same = (a[:n] == b[:n]).long()
    return int(same.cumprod(0).sum())


def differing_spans(chosen: torch.Tensor, rejected: torch.Tensor,
                    keep_prefix: bool = False) -> tuple[slice, slice]:
    """For two answers' token ids, the span of each that is not shared at either end (with
    `keep_prefix`, from the start: only the shared end is left out)."""
    prefix = _common_prefix(chosen, rejected)
    room = min(len(chosen), len(rejected)) - prefix - 1  # each keeps at least one token
    suffix = max(0, min(_common_prefix(chosen.flip(0), rejected.flip(0)), room))
    start = 0 if keep_prefix else prefix
    return (slice(start, max(prefix + 1, len(chosen) - suffix)),
            slice(start, max(prefix + 1, len(rejected) - suffix)))


def focus_mask(input_ids: torch.Tensor, completion_mask: torch.Tensor,
               keep_prefix: bool = False) -> torch.Tensor:
    """TRL's DPO batch is [chosen rows; rejected rows], row i paired with row B+i: the
    completion mask with each row's tokens outside its differing span set to 0.

    `keep_prefix` keeps the shared start in both rows. DPO is unchanged by it (those tokens
    are the same text in the same context in both rows, so their log-probs cancel in the
    margin, gradients included); the SFT term then covers the chosen answer's shared start
    too, which teaches, e.g., that a sign-off follows the end of a whole answer and not of
    its first sentence."""
    if input_ids.shape[0] % 2:
        return completion_mask
    half = input_ids.shape[0] // 2
    out = torch.zeros_like(completion_mask)
    for i in range(half):
        rows = (i, half + i)
        where = [completion_mask[r].nonzero().flatten() for r in rows]
        if any(len(w) == 0 for w in where):
            return completion_mask
        spans = differing_spans(input_ids[rows[0], where[0]], input_ids[rows[1], where[1]],
                                keep_prefix)
        for r, w, span in zip(rows, where, spans, strict=True):
            out[r, w[span]] = 1
        out[i, where[0][-TURN_END:]] = 1  # the chosen answer's end of turn
    return out
