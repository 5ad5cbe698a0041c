"""What this machine's CPU does fast, decided once per process.

A CPU flag is not enough to choose bf16: one 2-core CPU with AVX512-BF16 ran a prompt's
bf16 GEMM at 2x fp32, another with the same flag (no AMX) at 0.55x. So the flag only rules
bf16 out; where it is present, a ~35 ms timing of a prompt-sized GEMM decides.
"""

from __future__ import annotations

import logging
import time
from functools import cache

log = logging.getLogger(__name__)

MIN_SPEEDUP = 1.2  # below this, bf16's rounding is not worth it


def cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def _best_ms(fn, repeats: int = 5) -> float:
    fn()  # warm-up: first calls create oneDNN primitives
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best * 1000


def bf16_matmul_speedup(rows: int = 256, inner: int = 576, out: int = 1536) -> float:
    """fp32 time / bf16 time of one prompt-sized GEMM (SmolLM2's MLP shape) on this CPU."""
    import torch
    import torch.nn.functional as F

    x, w = torch.randn(rows, inner), torch.randn(out, inner)
    xb, wb = x.to(torch.bfloat16), w.to(torch.bfloat16)
    with torch.inference_mode():
        fp32 = _best_ms(lambda: F.linear(x, w))
        bf16 = _best_ms(lambda: F.linear(xb, wb))
    return fp32 / bf16


@cache
def cpu_has_fast_bf16() -> bool:
    """True where a bf16 matmul runs at least MIN_SPEEDUP x fp32 here (native bf16 dot
    products, measured). Elsewhere nothing should switch to bf16 for speed."""
    if not cpu_flags() & {"avx512_bf16", "amx_bf16"}:
        return False
    speedup = bf16_matmul_speedup()
    log.info("bf16 matmul runs %.2fx fp32 on this CPU", speedup)
    return speedup >= MIN_SPEEDUP
