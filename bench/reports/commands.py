"""``arbench leaderboard`` and ``arbench compare``: parsers and handlers, wired in bench/cli.py."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from bench.leaderboard import DEFAULT_METRICS, RANK_METRICS, RRF_K


def add_parsers(sub) -> None:
    """Register both subcommands on the ``arbench`` sub-parser collection."""
    board = sub.add_parser(
        "leaderboard", help="cross-dataset RRF leaderboard (Markdown, CSV, JSON) and the HTML "
                            "report of a results folder")
    board.add_argument("run_dir", help="a results folder written by `arbench run`")
    board.add_argument("--out", default=None, help="output folder (default: run_dir)")
    board.add_argument("--metric", nargs="+", default=list(DEFAULT_METRICS),
                       choices=sorted(RANK_METRICS), metavar="METRIC",
                       help="metrics to rank by; the first orders the table (default: "
                            f"{' '.join(DEFAULT_METRICS)}; choices: "
                            f"{', '.join(sorted(RANK_METRICS))})")
    board.add_argument("--k", type=int, default=RRF_K,
                       help=f"RRF constant: score = sum_d 1/(k + rank_d) (default {RRF_K})")
    board.add_argument("--max-curves", type=int, default=8,
                       help="gates per figure, the top ones by ROC-AUC (default 8)")
    board.add_argument("--no-html", action="store_true", help="skip report.html")

    diff = sub.add_parser("compare", help="metric deltas (B - A) between two results folders")
    diff.add_argument("run_a", help="baseline results folder (or its metrics.json)")
    diff.add_argument("run_b", help="results folder compared against it")
    diff.add_argument("--tolerance", type=float, default=0.0,
                      help="flag |B - A| above this (default 0: any change)")
    diff.add_argument("--changed", action="store_true", help="print only values that differ")
    diff.add_argument("--json", action="store_true", help="machine-readable output")


def leaderboard_command(args: argparse.Namespace) -> int:
    """Write leaderboard.{md,csv,json} (and report.html) and print the Markdown."""
    from bench.compare import load_metrics
    from bench.leaderboard import build_leaderboard, to_markdown, write_leaderboard
    from bench.reports.page import write_report

    run_dir = Path(args.run_dir)
    metrics = load_metrics(run_dir)
    config_file = run_dir / "config.json"
    config = json.loads(config_file.read_text()) if config_file.is_file() else {}
    out = Path(args.out) if args.out else run_dir
    board = build_leaderboard(metrics, args.metric, args.k)
    written = write_leaderboard(out, board)
    if not args.no_html:
        written.append(write_report(out, metrics, config, metric_names=args.metric, k=args.k,
                                    max_estimators=args.max_curves))
    print(to_markdown(board))
    print("written: " + ", ".join(str(path) for path in written))
    return 0


def compare_command(args: argparse.Namespace) -> int:
    """Print the deltas; always exit 0 (a regression check reads ``compare_metrics`` itself)."""
    from bench.compare import compare, format_text, load_metrics, to_json

    result = compare(load_metrics(args.run_a), load_metrics(args.run_b), args.tolerance)
    if args.json:
        print(to_json(result, args.run_a, args.run_b), end="")
    else:
        print(format_text(result, changed_only=args.changed), end="")
    return 0
