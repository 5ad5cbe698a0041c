"""`bench gen`: decode tok/s of the serving path vs plain fp32 transformers, same run."""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from chat.bench.common import no_stop
from chat.bench.swap import make_adapter
from chat.engine.engine import Engine, GenParams
from chat.engine.loading import load_base_model

GEN_PROMPT = [{"role": "system", "content": "You are a helpful assistant."},
              {"role": "user", "content": "Write a short story about a lighthouse keeper."}]


def bench_gen(cfg, n_tokens: int = 128, rounds: int = 2) -> dict:
    """Decode tok/s of the serving path (a LoRA adapter active) vs plain fp32 model.generate."""
    import torch

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
