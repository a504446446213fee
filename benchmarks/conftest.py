"""Shared fixtures of the benchmark suite and its throughput summary.

Every benchmark records what it processed per round (queries, tokens,
answers, ...) with the ``throughput`` fixture; the figures are printed at
the end of the session next to a GEMM calibration taken in the same process,
so numbers from different machines or loads can be put in proportion.
Nothing here asserts anything about time.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

import tests.conftest as shared_fixtures
from bench.perf.calibration import gemm_gflops

REPO = Path(__file__).resolve().parents[1]

# The test suite's fixtures, shared rather than copied.
shared_data = shared_fixtures.shared_data
model_cache = shared_fixtures.model_cache


@dataclass(frozen=True)
class Throughput:
    """One printed figure: ``amount`` units processed per round, timed over rounds.

    The best round is the machine's capacity (least disturbed by other load);
    the mean shows how much the load disturbed it.
    """

    label: str
    amount: float
    unit: str
    best_seconds: float
    mean_seconds: float

    def line(self) -> str:
        return (f"{self.label:<46} {self.amount / self.best_seconds:>12,.1f} {self.unit:<18}"
                f"best round; mean {self.amount / self.mean_seconds:,.1f} "
                f"({self.amount:g} per round)")


THROUGHPUTS: list[Throughput] = []
CALIBRATION: dict[str, float | int | str] = {}


def calibrate() -> dict[str, float | int | str]:
    """Torch version and threads, and the GEMM rate, measured once per session."""
    if not CALIBRATION:
        import torch

        CALIBRATION.update({
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "gemm_gflops_float32": round(gemm_gflops("float32"), 1),
            "gemm_gflops_bfloat16": round(gemm_gflops("bfloat16"), 1),
        })
    return CALIBRATION


def pytest_benchmark_update_machine_info(config, machine_info):
    """Store the calibration with pytest-benchmark's saved results (``--benchmark-save``)."""
    machine_info["arbench_calibration"] = calibrate()


def pytest_terminal_summary(terminalreporter):
    if not THROUGHPUTS and not CALIBRATION:
        return
    cal = calibrate()
    terminalreporter.section("arbench throughput")
    terminalreporter.write_line(
        f"torch {cal['torch']}, {cal['torch_threads']} threads, {os.cpu_count()} CPUs; "
        f"GEMM calibration (1024x1024 matmul, best of 5): {cal['gemm_gflops_float32']} GFLOPS "
        f"float32, {cal['gemm_gflops_bfloat16']} GFLOPS bfloat16")
    # Other processes on the same cores stall torch's thread team far more than
    # their share of CPU suggests: figures are comparable only at low load.
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    terminalreporter.write_line(f"load average (1, 5, 15 min) at the end: {load}")
    for figure in THROUGHPUTS:
        terminalreporter.write_line(figure.line())


@pytest.fixture(scope="session", autouse=True)
def _calibration():
    """Calibrate before the first benchmark, while the process is otherwise idle."""
    return calibrate()


@pytest.fixture
def throughput(benchmark):
    """``record(label, amount, unit)``: after ``benchmark(...)``, divide by its round times."""

    def record(label: str, amount: float, unit: str) -> None:
        stats = getattr(benchmark, "stats", None)
        if stats is None:  # --benchmark-disable: the function ran once, untimed
            return
        THROUGHPUTS.append(Throughput(label, amount, unit, stats.stats.min, stats.stats.mean))

    return record


@pytest.fixture(scope="session")
def default_model(model_cache):
    """(model, tokenizer, fingerprint) of the default model in bfloat16, as runs use it."""
    from bench.models.loading import DEFAULT_MODEL, load_model, resolve_model

    ref = resolve_model(DEFAULT_MODEL, model_cache)
    model, tokenizer = load_model(ref, model_cache, dtype="bfloat16")
    return model, tokenizer, ref.fingerprint
