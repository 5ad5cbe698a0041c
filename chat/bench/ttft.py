"""`bench ttft`: time to first token with retrieved sources, and of a conversation's later
turns; baseline: the same engine with the fast path off."""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from chat.bench.common import percentile
from chat.bench.corpus import QUESTIONS, canned_answer, retrieval_setup
from chat.engine.engine import Engine, GenParams

FOLLOWUP_TURNS = 5


def _ttft(engine, messages: list[dict], search=None, adapter=None, conversation=None) -> float:
    start = time.perf_counter()
    if search is not None:
        messages = search()
    params = GenParams(max_new_tokens=8)
    next(iter(engine.generate(messages, params, adapter, conversation=conversation)))
    return (time.perf_counter() - start) * 1000


def _conversation_ttft(engine, searcher, users: int = 1) -> tuple[float, int]:
    """Time to first token of the last turn of `users` conversations taking turns (earlier
    answers canned), and that turn's prompt length: how a follow-up's wait grows with the
    history before it, and whether other people's questions in between cost it its cache."""
    histories: list[list[dict]] = [[] for _ in range(users)]
    for turn in range(FOLLOWUP_TURNS):
        for user, history in enumerate(histories):
            question = QUESTIONS[(turn + user) % len(QUESTIONS)]
            messages = searcher(question, history)()
            ms = _ttft(engine, messages, conversation=("bench", id(history)))
            history += [{"role": "user", "content": question},
                        {"role": "assistant", "content": canned_answer(question)}]
    return ms, len(engine.encode(messages))


def bench_ttft(cfg, runs: int = 20, baseline_runs: int = 5, followups: int = 3) -> dict:
    """Time to first token with 4 retrieved chunks, retrieval included; baseline: fast path off.
    Also the same wait for the 5th turn of a conversation (history in the prompt), alone and
    with a second conversation taking turns with it."""
    engine = Engine.from_config(cfg)
    plain = Engine(engine.model, engine.tokenizer, engine.device, engine.max_context_tokens,
                   fast_path="off")
    with tempfile.TemporaryDirectory() as tmp:
        searcher, retrieve = retrieval_setup(cfg, Path(tmp), engine)
        prompts = [searcher(q) for q in QUESTIONS]  # warm the embedder and index
        _ttft(engine, prompts[0]())
        ours = [_ttft(engine, None, prompts[i % len(prompts)]) for i in range(runs)]
        theirs = [_ttft(plain, None, prompts[i % len(prompts)]) for i in range(baseline_runs)]
        tokens = statistics.median(len(engine.encode(p())) for p in prompts)
        chunks = min(len(retrieve(q)) for q in QUESTIONS)
        later = [_conversation_ttft(engine, searcher) for _ in range(followups)]
        shared = [_conversation_ttft(engine, searcher, users=2) for _ in range(followups)]
    p50, base = percentile(ours, 50), percentile(theirs, 50)
    return {"ttft_p50_ms": round(p50, 1), "ttft_p90_ms": round(percentile(ours, 90), 1),
            "ttft_p50_ms_baseline": round(base, 1), "ratio": round(base / p50, 2),
            "runs": runs, "baseline_runs": baseline_runs, "prompt_tokens": int(tokens),
            "chunks": chunks, "source_tokens": cfg.source_tokens,
            "prompt_kernel": engine.kernels()["prompts"],
            f"ttft_turn{FOLLOWUP_TURNS}_p50_ms": round(statistics.median(m for m, _ in later), 1),
            f"turn{FOLLOWUP_TURNS}_prompt_tokens": later[0][1],
            f"ttft_turn{FOLLOWUP_TURNS}_2users_p50_ms":
                round(statistics.median(m for m, _ in shared), 1)}
