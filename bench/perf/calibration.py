"""The machine: torch build and threads, load, and a GEMM calibration taken in the same run.

A model's tokens/s only mean something next to what the same process could
do at the time: the GEMM rate, measured with matrix shapes like the model's,
is the bound its matrix products cannot beat. ``benchmarks/conftest.py``
calibrates the pytest-benchmark suite with the same function.
"""
from __future__ import annotations

import os
import time

from bench.perf.figures import BenchReport, gemm_flops

#: (m, k, n) of the calibration products: 512 prompt tokens through SmolLM2-135M's
#: MLP up-projection (hidden 576 -> 1536), and the conventional square 1024.
GEMM_SHAPES: tuple[tuple[int, int, int], ...] = ((512, 576, 1536), (1024, 1024, 1024))
GEMM_DTYPES = ("bfloat16", "float32")


def gemm_gflops(dtype_name: str, size: int = 1024, repeats: int = 5,
                shape: tuple[int, int, int] | None = None) -> float:
    """Best-of-``repeats`` GFLOPS of one ``torch.matmul``.

    Parameters
    ----------
    dtype_name : str
        A torch dtype name, e.g. ``"bfloat16"``.
    size : int
        Side of the square product when ``shape`` is not given.
    repeats : int
        Timed products; the fastest is kept (least disturbed by other load).
    shape : (m, k, n), optional
        An ``(m, k) @ (k, n)`` product instead of the square one.
    """
    import torch

    m, k, n = shape if shape is not None else (size, size, size)
    if min(m, k, n, repeats) < 1:
        raise ValueError(f"GEMM shape {(m, k, n)} and repeats {repeats} must be positive")
    dtype = getattr(torch, dtype_name)
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(m, k, generator=generator).to(dtype)
    b = torch.randn(k, n, generator=generator).to(dtype)
    torch.matmul(a, b)  # first call pays for kernel selection and page faults
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.matmul(a, b)
        best = min(best, time.perf_counter() - start)
    return gemm_flops(m, k, n) / best / 1e9


def environment() -> dict[str, object]:
    """Torch version, intra-op threads, CPUs, and the load average now (1, 5, 15 min)."""
    import torch

    return {"torch_version": torch.__version__, "torch_threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
            "load_average_start": [round(x, 2) for x in os.getloadavg()]}


def shape_name(shape: tuple[int, int, int]) -> str:
    m, k, n = shape
    return f"{m}x{k}x{n}"


def measure_gemm(report: BenchReport, repeats: int) -> float:
    """Add one GFLOPS figure per dtype and shape; return the best bfloat16 rate (the bound)."""
    section = "GEMM calibration"
    report.methods[section] = (f"torch.matmul (m,k)@(k,n), best of {repeats} after one "
                               "untimed call; the model figures below divide by the best "
                               "bfloat16 rate")
    best_bf16 = 0.0
    for dtype in GEMM_DTYPES:
        for shape in GEMM_SHAPES:
            rate = gemm_gflops(dtype, repeats=repeats, shape=shape)
            short = "bf16" if dtype == "bfloat16" else "fp32"
            report.add(f"gemm_{short}_{shape_name(shape)}_gflops", rate, "GFLOPS",
                       f"{short} GEMM {shape_name(shape)}", section)
            if dtype == "bfloat16":
                best_bf16 = max(best_bf16, rate)
    report.add("gemm_bf16_bound_gflops", best_bf16, "GFLOPS", "bf16 GEMM bound (best above)",
               section)
    return best_bf16
