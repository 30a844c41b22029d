"""Device and dtype choice. On CPU, bf16 is fast on some processors (AMX: ~4x fp32) and
~100x slower on others (AVX2-only), so the dtype is picked by measuring, never assumed."""
from __future__ import annotations

import functools
import time

import torch


def _matmul_rate(dtype: torch.dtype, n: int = 512, reps: int = 5) -> float:
    """Dense matmul FLOP/s for `dtype` on the CPU (best of `reps`)."""
    a = torch.randn(n, n, dtype=dtype)
    b = torch.randn(n, n, dtype=dtype)
    torch.mm(a, b)  # warm-up
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best


@functools.lru_cache(maxsize=None)
def cpu_matmul_rates(n: int = 512) -> dict[str, float]:
    return {"fp32": _matmul_rate(torch.float32, n), "bf16": _matmul_rate(torch.bfloat16, n)}


def pick_dtype(requested: str = "auto") -> str:
    """'fp32' or 'bf16'. On GPU, auto means bf16 where supported. On CPU, auto means bf16 only
    if a quick probe finds bf16 matmul at least 1.3x faster than fp32 (~50 ms)."""
    if requested != "auto":
        return requested
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    rates = cpu_matmul_rates()
    return "bf16" if rates["bf16"] >= 1.3 * rates["fp32"] else "fp32"
