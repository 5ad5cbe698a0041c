"""The next token from the model's logits: loop control, then greedy or temperature + nucleus
sampling.

Loop control acts on the answer's own tokens only, never the prompt's: a RAG answer should be
free to copy the words of its sources, and a penalty over the prompt would push it off them."""

from __future__ import annotations


def control_loops(logits, answer: list[int], params):
    """`logits` with the answer's repeats made less likely: CTRL's repetition penalty (a
    positive logit divided by it, a negative one multiplied, for every token the answer has
    used; HF's `repetition_penalty`, vLLM's and llama.cpp's `repeat_penalty`) and n-gram
    blocking (a token that would repeat an n-gram of the answer is ruled out; HF's
    `no_repeat_ngram_size`)."""
    import torch

    penalty, n = params.repetition_penalty, params.no_repeat_ngram
    if not answer or (penalty == 1.0 and (n < 2 or len(answer) < n)):
        return logits
    logits = logits.clone()
    if penalty != 1.0:
        used = torch.tensor(sorted(set(answer)), dtype=torch.long)
        seen = logits[used]
        logits[used] = torch.where(seen > 0, seen / penalty, seen * penalty)
    if n >= 2 and len(answer) >= n:
        tail = tuple(answer[len(answer) - n + 1:])
        banned = [answer[i + n - 1] for i in range(len(answer) - n + 1)
                  if answer[i] == tail[0] and tuple(answer[i:i + n - 1]) == tail]
        if banned:
            logits[torch.tensor(banned, dtype=torch.long)] = float("-inf")
    return logits


def sample(logits, params, generator=None, answer: list[int] | None = None) -> int:
    """Greedy when temperature is 0, else temperature + nucleus (top-p) sampling; `answer`
    (the tokens so far) feeds loop control."""
    import torch

    logits = control_loops(logits, answer or [], params)
    if params.temperature == 0:
        return int(torch.argmax(logits))
    probs = torch.softmax(logits / params.temperature, dim=-1)
    if params.top_p < 1.0:
        sorted_probs, order = torch.sort(probs, descending=True)
        keep = torch.cumsum(sorted_probs, dim=-1) - sorted_probs < params.top_p
        sorted_probs = sorted_probs * keep
        choice = torch.multinomial(sorted_probs / sorted_probs.sum(), 1, generator=generator)
        return int(order[choice])
    return int(torch.multinomial(probs, 1, generator=generator))
