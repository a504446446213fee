"""Figures of ``arbench bench``: named values with units, the GEMM-bound arithmetic, output.

Everything here is pure (no timing, no model) so the arithmetic and the
output format are unit-tested on their own.
"""
from __future__ import annotations

import json
import math
import textwrap
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

#: Identifies the layout of the ``--json`` file; bump it when a key changes meaning.
SCHEMA = "arbench-bench/1"


@dataclass(frozen=True)
class Figure:
    """One measured or derived number.

    Attributes
    ----------
    key : str
        Stable identifier (the ``--json`` key), e.g. ``decode_batch8_tokens_per_s``.
    value : float
    unit : str
        E.g. ``tokens/s``, ``GFLOPS``, ``s``, ``fraction``, ``count``.
    label : str
        Human-readable name printed in the table.
    section : str
        Table section the figure is printed under.
    note : str
        How it was measured (printed after the value; empty if obvious).
    """

    key: str
    value: float
    unit: str
    label: str
    section: str
    note: str = ""


@dataclass
class BenchReport:
    """Environment, figures in measurement order, per-section method notes, details."""

    environment: dict[str, Any] = field(default_factory=dict)
    figures: list[Figure] = field(default_factory=list)
    methods: dict[str, str] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)

    def add(self, key: str, value: float, unit: str, label: str, section: str,
            note: str = "") -> Figure:
        """Append a figure; a repeated key is a programming error."""
        if any(f.key == key for f in self.figures):
            raise ValueError(f"figure {key!r} recorded twice")
        figure = Figure(key, float(value), unit, label, section, note)
        self.figures.append(figure)
        return figure

    def value(self, key: str) -> float:
        for figure in self.figures:
            if figure.key == key:
                return figure.value
        raise KeyError(f"no figure {key!r}")


# -- arithmetic ---------------------------------------------------------------------
def gemm_flops(m: int, k: int, n: int) -> int:
    """Floating-point operations of an ``(m, k) @ (k, n)`` product (one multiply-add = 2)."""
    return 2 * m * k * n


def achieved_gflops(params_per_token: float, tokens_per_s: float,
                    params_per_sequence: float = 0.0, sequences_per_s: float = 0.0) -> float:
    """Matrix-multiply GFLOPS of a transformer pass: 2 FLOPs per parameter per token.

    ``params_per_sequence`` covers layers that run once per sequence rather than
    per token (the LM head of a prefill with ``logits_to_keep=1``). Attention's
    score and value products are not parameters and are left out.
    """
    flops = 2.0 * (params_per_token * tokens_per_s + params_per_sequence * sequences_per_s)
    return flops / 1e9


def gemm_fraction(model_gflops: float, gemm_bound_gflops: float) -> float:
    """Achieved GFLOPS as a fraction of the measured GEMM rate (the machine's bound)."""
    if not gemm_bound_gflops > 0:
        raise ValueError(f"GEMM bound must be positive, got {gemm_bound_gflops}")
    return model_gflops / gemm_bound_gflops


def per_thousand(seconds: float, items: int) -> float:
    """Seconds for 1,000 items at the rate of ``items`` in ``seconds``."""
    if items <= 0:
        raise ValueError(f"need at least one item, got {items}")
    return seconds / items * 1000.0


# -- output -------------------------------------------------------------------------
def format_value(value: float) -> str:
    """Whole numbers as integers, else three significant figures or more; thousands separated."""
    if not math.isfinite(value):
        return str(value)
    magnitude = abs(value)
    if magnitude >= 100 or value == int(value):
        return f"{value:,.0f}"
    if magnitude >= 1:
        return f"{value:,.2f}"
    if magnitude >= 1e-4:
        return f"{value:.4f}"
    return f"{value:.2e}"


#: Label column width: fixed, so sections printed as they finish line up.
LABEL_WIDTH = 40


def format_header(environment: Mapping[str, Any]) -> str:
    """Torch, threads, CPUs and the load at the start; then data, model and mode."""
    env = environment
    lines = [f"arbench bench  torch {env.get('torch_version')}, "
             f"{env.get('torch_threads')} threads, {env.get('cpu_count')} CPUs, "
             f"load average (1/5/15 min) {_load(env.get('load_average_start'))} at start"]
    lines += [f"{extra}: {env[extra]}" for extra in ("data", "model", "mode") if extra in env]
    return "\n".join(lines)


def format_section(report: BenchReport, section: str) -> str:
    """One block: a blank line, the title, the method, then one line per figure."""
    load = report.details.get("load_after_section", {}).get(section)
    lines = ["", f"== {section}" + (f"  (1-min load average {load:.2f} when done)"
                                    if load is not None else "")]
    if section in report.methods:
        lines += textwrap.wrap(report.methods[section], width=100,
                               initial_indent="   method: ", subsequent_indent=" " * 11)
    for figure in (f for f in report.figures if f.section == section):
        text = (f"   {figure.label:<{LABEL_WIDTH}} {format_value(figure.value):>12} "
                f"{figure.unit:<16}")
        lines.append((text + (f" {figure.note}" if figure.note else "")).rstrip())
    return "\n".join(lines)


def format_footer(environment: Mapping[str, Any]) -> str:
    """The load at the end and the wall time."""
    text = f"\nload average (1/5/15 min) {_load(environment.get('load_average_end'))} at end"
    if "wall_seconds" in environment:
        text += (f"; wall {environment['wall_seconds']} s (includes computing any statistics "
                 "not yet cached)")
    return text


def format_table(report: BenchReport) -> str:
    """The whole stdout table: header, one block per section, footer."""
    return "\n".join([format_header(report.environment),
                      *(format_section(report, s) for s in _sections(report.figures)),
                      format_footer(report.environment)])


def _load(values: Iterable[float] | None) -> str:
    return "?" if values is None else "/".join(f"{v:.2f}" for v in values)


def _sections(figures: Iterable[Figure]) -> list[str]:
    return list(dict.fromkeys(f.section for f in figures))


def to_json(report: BenchReport) -> dict[str, Any]:
    """The ``--json`` document: every figure keyed by name with its value and unit."""
    return {"schema": SCHEMA, "environment": report.environment,
            "figures": {f.key: {k: v for k, v in asdict(f).items() if k != "key"}
                        for f in report.figures},
            "methods": report.methods, "details": report.details}


def write_json(report: BenchReport, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(to_json(report), indent=1, sort_keys=False) + "\n")


def check_document(document: Mapping[str, Any]) -> list[str]:
    """Problems with a ``--json`` document (empty when it is well formed).

    Every figure must have a finite number ``value``, a non-empty ``unit``,
    ``label`` and ``section``.
    """
    problems = []
    if document.get("schema") != SCHEMA:
        problems.append(f"schema is {document.get('schema')!r}, expected {SCHEMA!r}")
    figures = document.get("figures")
    if not isinstance(figures, Mapping) or not figures:
        return problems + ["no figures"]
    for key, figure in figures.items():
        value = figure.get("value") if isinstance(figure, Mapping) else None
        if not isinstance(value, int | float) or isinstance(value, bool) \
                or not math.isfinite(value):
            problems.append(f"{key}: value {value!r} is not a finite number")
        for name in ("unit", "label", "section"):
            if not isinstance(figure, Mapping) or not figure.get(name):
                problems.append(f"{key}: missing {name}")
    return problems
