"""What this machine's CPU can do fast (read once from /proc/cpuinfo)."""

from __future__ import annotations

from functools import cache


@cache
def cpu_has_fast_bf16() -> bool:
    """True where the CPU has native bf16 dot products (AVX512-BF16 or AMX). Elsewhere a bf16
    matmul is emulated and slower than fp32, so nothing should switch to bf16 for speed."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags
