"""Greedy agreement and decode speed of serving paths against fp32 transformers.
9 prompts x 64 tokens (6 short ones, and 3 questions with 4 retrieved chunks, ~380 tokens,
as the ttft benchmark asks them); base model and a random LoRA (q/v) served per request.

Run from the checkout (docs/performance.md):
    `PYTHONPATH=. python tools/agreement.py [PATH ...]`
PATH: off (transformers/peft in the model's dtype), a fast-path mode (fp16, int8, bf16,
fp32), or a mode with `-noblocks` (CPU: no exact GGUF block kernels) or `-fp32prompts`
(block kernels for decoding only: prompts read fp32 weights, not int16 inputs x blocks).
Default: on a GPU `off bf16 fp32`, on a CPU `fp16 fp16-noblocks int8`.
"""
import sys
import tempfile
import time
from pathlib import Path

import torch

from chat.bench.corpus import QUESTIONS, retrieval_setup
from chat.bench.gen import GEN_PROMPT
from chat.bench.swap import make_adapter
from chat.config import load_config
from chat.engine.engine import Engine, GenParams
from chat.engine.loading import load_base_model
from chat.engine.prefix_cache import PrefixCache

cfg = load_config()


REFERENCE = "fp32 transformers (reference)"


def engine(path: str, fp32: bool = False) -> Engine:
    model, tok, device = load_base_model(cfg)  # one model each: peft wraps it in place
    mode, _, variant = path.partition("-")
    return Engine(model.float() if fp32 else model, tok, device, fast_path=mode,
                  block_kernels=variant != "noblocks", prompt_blocks=variant != "fp32prompts")


paths = sys.argv[1:] or (["off", "bf16", "fp32"] if torch.cuda.is_available()
                         else ["fp16", "fp16-noblocks", "int8"])
engines = {REFERENCE: engine("off", fp32=True), **{p: engine(p) for p in paths}}
prompts = [GEN_PROMPT] + [[{"role": "user", "content": q}] for q in QUESTIONS[:5]]
params = GenParams(temperature=0.0, max_new_tokens=64)
with tempfile.TemporaryDirectory() as tmp:
    folder = make_adapter(cfg, Path(tmp) / "a", seed=1)
    for e in engines.values():
        e.load_adapter("a", folder)
    searcher, _ = retrieval_setup(cfg, Path(tmp), engines[REFERENCE])
    prompts += [searcher(q)() for q in QUESTIONS[:3]]
for adapter in ("base", "a"):
    outs = {}
    for name, e in engines.items():
        e.complete(prompts[0], GenParams(temperature=0.0, max_new_tokens=8), adapter)  # warm
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start, n = time.perf_counter(), 0
        outs[name] = []
        for m in prompts:
            ids = list(e.generate_ids(e.encode(m), params, adapter))
            outs[name].append(ids)
            n += len(ids)
        dt = time.perf_counter() - start
        outs[name + "/speed"] = n / dt
    ref = outs[REFERENCE]
    for name in engines:
        same = sum(a == b for a, b in zip(outs[name], ref, strict=True))
        print(f"{adapter:4s} {name:32s} {outs[name + '/speed']:7.1f} tok/s (incl. prompts) "
              f"identical to fp32: {same}/{len(prompts)}")


def first_logits(e: Engine, ids: list[int], adapter: str) -> torch.Tensor:
    """The next-token logits after the whole prompt `ids`, computed whole (no cached prefix)."""
    fast = e.prepare(adapter)
    if fast is not None:
        fast.prefixes = PrefixCache()
        return fast.prefill(ids, len(ids) + 1)[1].float().cpu()
    with torch.no_grad(), e._adapter(adapter):
        return e.model(torch.tensor([ids], device=e.model.device)).logits[0, -1].float().cpu()


for adapter in ("base", "a"):
    long_ids = [engines[REFERENCE].encode(m) for m in prompts[6:]]
    ref = [first_logits(engines[REFERENCE], ids, adapter) for ids in long_ids]
    for name in paths:
        got = [first_logits(engines[name], ids, adapter) for ids in long_ids]
        gaps = [(g - want).abs().max().item() for g, want in zip(got, ref, strict=True)]
        kl = [torch.nn.functional.kl_div(g.double().log_softmax(-1), want.double().log_softmax(-1),
                                         log_target=True, reduction="sum").item()
              for g, want in zip(got, ref, strict=True)]
        print(f"{adapter:4s} {name:32s} first token of the 3 long prompts vs fp32: logits "
              f"max |diff| {max(gaps):.2e} (span {ref[0].max() - ref[0].min():.1f}), "
              f"KL max {max(kl):.1e} nats")
for label in paths:
    e2 = engines[label]
    times = []
    for i in range(12):
        ids = e2.encode([{"role": "user", "content": f"({i}) {QUESTIONS[0]}"}])
        fast = e2.prepare(None)
        if fast is not None:  # every prompt computed whole, as transformers does
            fast.prefixes = PrefixCache()
        start = time.perf_counter()
        next(iter(e2.generate_ids(ids, GenParams(temperature=0.0, max_new_tokens=1))))
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    print(f"first token, {len(ids)}-token prompt, {label}: p50 {times[6]:.1f} ms")
