"""Benchmarks with baselines measured in the same run: the serving path vs plain transformers.

`python launch.py bench gen|ttft|retrieval|train|swap|feedback|all [--json]`. Each bench returns
a flat dict; a key `X` with a partner `X_baseline` becomes one table row with their ratio.
"""

from __future__ import annotations

import importlib
import statistics
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from chat.errors import ChatError

NAMES = ("gen", "ttft", "retrieval", "train", "swap", "feedback")
GEN_PROMPT = [{"role": "system", "content": "You are a helpful assistant."},
              {"role": "user", "content": "Write a short story about a lighthouse keeper."}]


class BenchUnavailable(ChatError):
    """A benchmark whose part of the project is missing or cannot run here."""


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in [0, 100])."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


@contextmanager
def no_stop(engine):
    """Decode a fixed number of tokens: the end-of-turn token does not stop the loop."""
    saved, engine.stop_ids = engine.stop_ids, set()
    try:
        yield
    finally:
        engine.stop_ids = saved


# ---------------------------------------------------------------------------- gen


def bench_gen(cfg, n_tokens: int = 128, rounds: int = 2) -> dict:
    """Decode tok/s of the serving path (a LoRA adapter active) vs plain fp32 model.generate."""
    import torch

    from chat.bench.swap import make_adapter
    from chat.engine.engine import Engine, GenParams
    from chat.engine.loading import load_base_model

    engine = Engine.from_config(cfg)
    baseline, tok, _ = load_base_model(cfg)
    baseline.float()
    with tempfile.TemporaryDirectory() as tmp:
        engine.load_adapter("bench", make_adapter(cfg, Path(tmp) / "bench", seed=1))
    ids = engine.encode(GEN_PROMPT)
    params = GenParams(max_new_tokens=n_tokens)
    ours, theirs = [], []

    def run_ours() -> float:
        start = time.perf_counter()
        with no_stop(engine):
            count = sum(1 for _ in engine.generate_ids(ids, params, "bench"))
        return count / (time.perf_counter() - start)

    def run_theirs() -> float:
        x = torch.tensor([ids], device=engine.device)
        start = time.perf_counter()
        with torch.inference_mode():
            out = baseline.generate(x, attention_mask=torch.ones_like(x), do_sample=False,
                                    max_new_tokens=n_tokens, min_new_tokens=n_tokens,
                                    pad_token_id=tok.pad_token_id)
        return (out.shape[1] - x.shape[1]) / (time.perf_counter() - start)

    run_ours(), run_theirs()  # warm-up: first calls build the fast copy and allocate
    for _ in range(rounds):  # interleaved, so background load hits both alike
        ours.append(run_ours())
        theirs.append(run_theirs())
    tok_s, base = statistics.median(ours), statistics.median(theirs)
    return {"tok_s": round(tok_s, 1), "tok_s_baseline": round(base, 1),
            "ratio": round(tok_s / base, 2), "new_tokens": n_tokens,
            "fast_path": engine.fast_mode, "decode_kernel": engine.kernels("bench")["decode"],
            "threads": torch.get_num_threads()}



# ---------------------------------------------------------------------------- ttft

FOLLOWUP_TURNS = 5


def _ttft(engine, messages: list[dict], search=None, adapter=None, conversation=None) -> float:
    from chat.engine.engine import GenParams

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
    from chat.bench.corpus import QUESTIONS, canned_answer

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
    from chat.bench.corpus import QUESTIONS, retrieval_setup
    from chat.engine.engine import Engine

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


# ---------------------------------------------------------------------------- dispatch


def _lazy(module: str, func: str, needs: str):
    try:
        return getattr(importlib.import_module(module), func)
    except (ImportError, AttributeError):
        raise BenchUnavailable(f"this benchmark needs {module}.{func} ({needs})") from None


def run_bench(name: str, cfg) -> dict:
    """Run one benchmark by name and return its flat result dict."""
    if name == "gen":
        return bench_gen(cfg)
    if name == "ttft":
        return bench_ttft(cfg)
    if name == "swap":
        return _lazy("chat.bench.swap", "bench_swap", "the adapter pool, issue 5")(cfg)
    if name == "train":
        return _lazy("chat.bench.swap", "bench_train", "training/, issue 5")(cfg)
    if name == "retrieval":
        return _lazy("retrieval.bench", "bench_retrieval", "retrieval/, issue 3")()
    if name == "feedback":
        return _lazy("feedback.bench", "bench_feedback", "feedback/, issue 4")()
    raise BenchUnavailable(f"unknown benchmark {name!r}: choose from {', '.join(NAMES)} or all")


# bench -> (project key, baseline key, ratio key) where names do not follow X / X_baseline
PAIRS = {"retrieval": [("qps_hnsw", "qps_exact", "speedup")]}


def _pairs(bench: str, result: dict) -> list[tuple[str, str, str]]:
    pairs = [(k, f"{k}_baseline", "ratio") for k in result if f"{k}_baseline" in result]
    return PAIRS.get(bench, []) + pairs


def table(results: dict[str, dict]) -> str:
    """Rows: bench, metric, project figure, baseline figure (same run), ratio."""
    rows = [("bench", "metric", "project", "baseline", "ratio")]
    for bench, result in results.items():
        pairs = _pairs(bench, result)
        paired = {k for pair in pairs for k in pair}
        for key, base, ratio in pairs:
            rows.append((bench, key, str(result[key]), str(result[base]),
                         str(result.get(ratio, ""))))
        for key, value in result.items():
            if key not in paired and isinstance(value, (int, float, str, type(None))):
                rows.append((bench, key, str(value), "", ""))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
