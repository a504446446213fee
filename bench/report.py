"""Write a run's results (JSON, CSV, Markdown, config) and render the console table."""
from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path

QA_COLUMNS = ("in_accuracy", "em", "f1", "rc", "lmc")
SK_COLUMNS = ("roc_auc", "spearman", "accuracy", "over_confidence", "under_confidence")
COST_COLUMNS = ("generate_calls", "prompt_tokens", "generated_tokens")
TABLE_COLUMNS = QA_COLUMNS + SK_COLUMNS + COST_COLUMNS


def json_safe(value):
    """NaN/inf → None recursively, so the file is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def dumps(obj) -> str:
    return json.dumps(json_safe(obj), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 100 else f"{value:.1f}"
    return str(value)


def table_rows(metrics: dict) -> list[dict]:
    """One flat row per (dataset, method) in display order."""
    flat = []
    for dataset, result in metrics["datasets"].items():
        for method, row in result["rows"].items():
            flat.append({"dataset": dataset, "method": method, "kind": row.get("kind", ""),
                         **{c: row.get(c) for c in TABLE_COLUMNS}})
    return flat


def markdown_table(metrics: dict, columns=TABLE_COLUMNS) -> str:
    header = ["dataset", "method", *columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in table_rows(metrics):
        lines.append("| " + " | ".join(_fmt(row[c]) for c in header) + " |")
    return "\n".join(lines) + "\n"


def console_table(metrics: dict, columns=QA_COLUMNS + ("roc_auc", "accuracy",
                                                    "generate_calls")) -> str:
    """Fixed-width table for the terminal (one block per dataset)."""
    header = ["method", *columns]
    out = io.StringIO()
    for dataset, result in metrics["datasets"].items():
        rows = [[m] + [_fmt(r.get(c)) for c in columns] for m, r in result["rows"].items()]
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
        out.write(f"\n{dataset}  (test n={result['n_test']}, train n={result['n_train']}, "
                  f"need-retrieval rate {result['need_rate_test']:.3f})\n")
        out.write("  ".join(h.ljust(w) for h, w in zip(header, widths)) + "\n")
        for r in rows:
            out.write("  ".join(v.ljust(w) for v, w in zip(r, widths)) + "\n")
    return out.getvalue()


def write_results(directory: Path, metrics: dict, config: dict, run_info: dict) -> list[Path]:
    """metrics.json (deterministic), metrics.csv, metrics.md, config.json, run_info.json,
    leaderboard.{md,csv,json} (RRF over datasets; ~20 ms). report.html is left to
    ``arbench leaderboard`` because its figures take seconds."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["dataset", "method", "kind", *TABLE_COLUMNS])
    writer.writeheader()
    for row in table_rows(metrics):
        writer.writerow({k: ("" if v is None else v) for k, v in json_safe(row).items()})
    for name, text in (("metrics.json", dumps(metrics)), ("metrics.csv", buf.getvalue()),
                       ("metrics.md", markdown_table(metrics)), ("config.json", dumps(config)),
                       ("run_info.json", dumps(run_info))):
        write_atomic(directory / name, text)
        written.append(directory / name)
    from bench.leaderboard import build_leaderboard, write_leaderboard  # imports this module

    written += write_leaderboard(directory, build_leaderboard(metrics))
    return written
