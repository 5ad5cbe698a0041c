"""Scoring a model with and without a LoRA adapter: answer log-probs and greedy answers in
one batch. Shared by the gate's checks (training/gate.py, training/damage.py)."""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path

REFERENCE_SET = Path(__file__).with_name("reference.jsonl")


def shipped_set(path: Path, system_prompt: str | None) -> list[tuple[list[dict], dict]]:
    """(prompt, item) for each line of a shipped JSONL set of questions, each question framed
    as the served prompt profile frames it."""
    out = []
    for line in path.read_text().splitlines():
        item = json.loads(line)
        prompt = [{"role": "user", "content": item["question"]}]
        if system_prompt:
            prompt = [{"role": "system", "content": system_prompt}] + prompt
        out.append((prompt, item))
    return out


def reference_messages(system_prompt: str | None) -> list[tuple[list[dict], str]]:
    """The fixed general-chat reference set shipped with the project, as (prompt, answer)."""
    return [(prompt, item["answer"]) for prompt, item in shipped_set(REFERENCE_SET,
                                                                     system_prompt)]


@contextmanager
def using(model, adapter: str | None):
    """Run `model` as the base (adapter None) or with one named LoRA adapter."""
    if adapter is None:
        with model.disable_adapter():
            yield
        return
    model.set_adapter(adapter)
    yield


def encode(tok, prompt: list[dict], answer: str, max_length: int) -> tuple[list[int], int]:
    """Token ids of prompt + answer and where the answer starts (answer kept, prompt cut)."""
    p = tok.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True,
                                return_dict=True)["input_ids"]
    full = tok.apply_chat_template(prompt + [{"role": "assistant", "content": answer}],
                                   tokenize=True, return_dict=True)["input_ids"]
    p, full = list(p), list(full)
    if full[:len(p)] != p:  # templates that rewrite earlier turns: fall back to plain concat
        full = p + list(tok(answer, add_special_tokens=False)["input_ids"])
    excess = max(0, len(full) - max_length)
    return full[excess:], max(1, len(p) - excess)


def answer_batches(model, tok, items: list[tuple[list[dict], str]], max_length: int,
                   batch: int):
    """Batches of (prompt, answer) items, right-padded: yields (chunk, ids, first), where
    chunk is [(token ids, answer start)], and `logits(adapter)` gives float logits at the
    answer positions only (position `first` onward, each predicting the next token): a batch
    of long prompts over a 49k vocabulary would otherwise hold ~1 GB of floats."""
    import torch

    encoded = [encode(tok, p, a, max_length) for p, a in items]
    device = next(model.parameters()).device
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    for i in range(0, len(encoded), batch):
        chunk = encoded[i:i + batch]
        width = max(len(ids) for ids, _ in chunk)
        ids = torch.tensor([x + [pad] * (width - len(x)) for x, _ in chunk], device=device)
        mask = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x, _ in chunk],
                            device=device)
        first = min(start for _, start in chunk) - 1  # the first position scoring an answer

        def logits(adapter: str | None, ids=ids, mask=mask, first=first, width=width):
            with using(model, adapter):
                return model(input_ids=ids, attention_mask=mask,
                             logits_to_keep=width - first).logits[:, :-1].float()

        yield chunk, ids, first, logits


def answer_logps(model, tok, items: list[tuple[list[dict], str]], adapter: str | None,
                 max_length: int = 512, batch: int = 4) -> list[tuple[float, int]]:
    """(sum of answer-token log-probs, answer token count) for each (prompt, answer); no
    vocabulary-wide log-softmax is kept (a log-sum-exp instead)."""
    import torch

    out: list[tuple[float, int]] = []
    with torch.inference_mode():
        for chunk, ids, first, logits in answer_batches(model, tok, items, max_length, batch):
            scores = logits(adapter)
            tok_logp = scores.gather(-1, ids[:, first + 1:, None])[..., 0] \
                - torch.logsumexp(scores, -1)
            for row, (x, start) in enumerate(chunk):
                span = tok_logp[row, start - 1 - first:len(x) - 1 - first]
                out.append((float(span.sum()), int(span.numel())))
    return out


def paired_logps(model, tok, firsts: list[tuple[list[dict], str]],
                 seconds: list[tuple[list[dict], str]], adapter: str | None,
                 max_length: int = 512, pairs: int = 2) -> tuple[list[float], list[float]]:
    """Answer log-probs of two aligned lists whose i-th items share a prompt (a pair's two
    answers, a fact's right and wrong one). Each batch holds `pairs` firsts, then their
    seconds, so every pair's common start (the prompt, often much of the answer too) runs
    once (training/shared_prefix.py): the same numbers as answer_logps, up to rounding."""
    from training.shared_prefix import sharing_prefixes

    if len(firsts) != len(seconds):
        raise ValueError("paired_logps needs two lists of the same length")
    order = []  # (which list, index) in batch order
    for i in range(0, len(firsts), pairs):
        group = range(i, min(len(firsts), i + pairs))
        order += [(0, j) for j in group] + [(1, j) for j in group]
    lists = (firsts, seconds)
    with sharing_prefixes(model):
        scored = answer_logps(model, tok, [lists[side][j] for side, j in order], adapter,
                              max_length, batch=2 * pairs)
    out: tuple[list, list] = ([0.0] * len(firsts), [0.0] * len(firsts))
    for (side, j), (logp, _) in zip(order, scored, strict=True):
        out[side][j] = logp
    return out


BASE = "__base__"  # PEFT's name for "no adapter" in a mixed-adapter batch


def greedy_answers(model, tok, prompts: list[list[dict]], adapters: list[str | None],
                   max_new_tokens: int) -> list[list[str]]:
    """Greedy answers of each version (adapter name, None for the base) to the same prompts,
    all in one left-padded batch (PEFT's mixed-adapter batch): the base weights are read once
    a step for both (8 prompts, two versions: 17.5 s apart, 14.1 s together on the AVX-512
    CPU in fp32; no gain where fp32 decoding is compute-bound, with AVX2 only)."""
    import torch

    texts = [tok.apply_chat_template(p, add_generation_prompt=True, tokenize=False)
             for p in prompts] * len(adapters)
    names = [a or BASE for a in adapters for _ in prompts]
    side, tok.padding_side = tok.padding_side, "left"
    try:
        batch = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    finally:
        tok.padding_side = side
    batch = batch.to(next(model.parameters()).device)
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    with torch.inference_mode():
        out = model.generate(**batch, do_sample=False, max_new_tokens=max_new_tokens,
                             pad_token_id=pad, adapter_names=names)
    width = batch["input_ids"].shape[1]
    answers = [tok.decode(row[width:], skip_special_tokens=True).strip() for row in out]
    return [answers[i:i + len(prompts)] for i in range(0, len(answers), len(prompts))]
