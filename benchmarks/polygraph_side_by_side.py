"""Side-by-side timing of arbench and LM-Polygraph: same model, questions and estimators.

Both tools get the default model (the safetensors copy arbench converts from the packaged
GGUF, loaded once per tool in the same dtype), the identical closed-book prompt strings
(arbench's template in the model's chat template), the same token budget for the greedy
answer and each sample, the same sampling (N samples, T = 1, top-k 50), batch size and torch
threads, and the estimators both implement that run offline (LM-Polygraph's NLI and
cross-encoder ones download hub models). Decoding stops at EOS or the budget in both:
LM-Polygraph cuts answers at EOS only, so arbench's newline stop is off.

A tool's clock runs from the prompt strings to one score per question and estimator; model
loading, GGUF conversion and imports are outside it. arbench runs in-process through its
statistics layer (``compute_statistics`` on a fresh cache in a temporary directory, SQLite
writes included) and its estimators, as ``arbench run`` does before gates; LM-Polygraph runs
through ``UEManager`` with no generation or UE metrics and its default stat calculators,
built without attention or hidden-state capture in the greedy pass. The tools take turns
slice by slice (``--slice``), so a change of background load falls on both alike. Each
tool has its own copy of the model: arbench's on its ``padded_sdpa`` attention,
LM-Polygraph's on transformers' ``sdpa``. arbench's malloc tuning
(:mod:`bench.models.allocator`) applies to the whole process, so LM-Polygraph runs with it
too, which makes the ratio smaller than between two separate processes.

Run ``python -m benchmarks.polygraph_side_by_side`` with lm-polygraph installed
(``tox -e peer`` installs it beside arbench and runs this).
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.polygraph_runs import ArbenchSide, PolygraphSide, ToolRun, load_model_copy, warm_up

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Pair:
    """One estimator in both tools.

    ``sign`` puts LM-Polygraph's score on arbench's scale (higher = more uncertain):
    arbench flips Rényi and Fisher-Rao, which LM-Polygraph returns with the sign of
    confidence.
    """

    arbench: str
    polygraph: str
    sign: int = 1
    sampling: bool = False


PAIRS = (
    Pair("maximum_sequence_probability", "MaximumSequenceProbability"),
    Pair("perplexity", "Perplexity"),
    Pair("mean_token_entropy", "MeanTokenEntropy"),
    Pair("self_certainty", "SelfCertainty"),
    Pair("renyi_neg", "RenyiNeg", sign=-1),
    Pair("fisher_rao", "FisherRao", sign=-1),
    Pair("mean_pmi", "MeanPointwiseMutualInformation"),
    Pair("mean_cpmi", "MeanConditionalPointwiseMutualInformation"),
    Pair("p_true", "PTrue"),
    Pair("lexical_similarity", "LexicalSimilarity", sampling=True),
    Pair("mc_sequence_entropy", "MonteCarloSequenceEntropy", sampling=True),
    Pair("mc_normalized_sequence_entropy", "MonteCarloNormalizedSequenceEntropy",
         sampling=True),
    Pair("eigenscore", "EigenScore", sampling=True),
)
PAIR_GROUPS = {
    "all": lambda pair: True,
    "single-pass": lambda pair: not pair.sampling,
    "sampling": lambda pair: pair.sampling,
}


def select_pairs(requested: Sequence[str]) -> list[Pair]:
    """Pairs for arbench names or groups (``all``, ``single-pass``, ``sampling``), in order.

    Raises
    ------
    ValueError
        On a name neither tool pair nor group.
    """
    by_name = {pair.arbench: pair for pair in PAIRS}
    chosen: list[Pair] = []
    for item in requested:
        if item in PAIR_GROUPS:
            chosen += [pair for pair in PAIRS if PAIR_GROUPS[item](pair)]
        elif item in by_name:
            chosen.append(by_name[item])
        else:
            raise ValueError(f"unknown estimator {item!r}; shared with LM-Polygraph: "
                             f"{', '.join(by_name)} (groups: {', '.join(PAIR_GROUPS)})")
    return list(dict.fromkeys(chosen))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="polygraph_side_by_side",
        description="Time arbench and LM-Polygraph on the same model, questions and "
                    "estimators; print both wall times, the ratio and score agreement.")
    parser.add_argument("--data-dir", default=os.environ.get(
        "ARBENCH_SHARED_DATA", str(REPO.parent / "shared" / "data")))
    parser.add_argument("--dataset", default="nq")
    parser.add_argument("--split", default="test", choices=("test", "train"))
    parser.add_argument("--limit", type=int, default=100, help="first N questions")
    parser.add_argument("--estimators", nargs="+", default=["all"],
                        help="arbench names or all / single-pass / sampling")
    parser.add_argument("--samples", type=int, default=10)
    parser.add_argument("--max-new-tokens", type=int, default=32,
                        help="budget of the greedy answer and of each sample, both tools")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float32"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model-cache", default=os.environ.get(
        "ARBENCH_TEST_CACHE", str(REPO / ".arbench-cache")),
                        help="where arbench keeps the converted model (not the timed cache)")
    parser.add_argument("--slice", type=int, default=16,
                        help="questions per turn: the tools take turns slice by slice")
    parser.add_argument("--order", default="polygraph-first",
                        choices=("polygraph-first", "arbench-first"),
                        help="which tool runs first on the first slice (then they swap)")
    parser.add_argument("--prefix-cache", action="store_true",
                        help="arbench prefills a batch's shared prompt prefix once")
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parsed and checked options; bad values exit with a one-line message."""
    parser = build_parser()
    args = parser.parse_args(argv)
    for name, least in (("limit", 1), ("batch_size", 1), ("threads", 1),
                        ("max_new_tokens", 2), ("slice", 1)):
        if getattr(args, name) < least:
            parser.error(f"--{name.replace('_', '-')} must be at least {least}")
    try:
        args.pairs = select_pairs(args.estimators)
    except ValueError as exc:
        parser.error(str(exc))
    if any(pair.sampling for pair in args.pairs) and args.samples < 2:
        parser.error("--samples must be at least 2 for sampling estimators")
    return args


def spearman(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray
             ) -> tuple[float, int]:
    """Spearman rho over the positions where both are finite, and their count (NaN if < 3)."""
    from scipy.stats import spearmanr

    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    keep = np.isfinite(x) & np.isfinite(y)
    n = int(keep.sum())
    if n < 3 or np.ptp(x[keep]) == 0 or np.ptp(y[keep]) == 0:
        return math.nan, n
    return float(spearmanr(x[keep], y[keep]).statistic), n


def merge_runs(a: ToolRun, b: ToolRun) -> ToolRun:
    """Two consecutive slices of one tool as one run (times and tokens add up)."""
    phases = dict(a.phases)
    for name, seconds in b.phases.items():
        phases[name] = phases.get(name, 0.0) + seconds
    return ToolRun(a.wall_seconds + b.wall_seconds, a.cpu_seconds + b.cpu_seconds,
                   a.greedy_tokens + b.greedy_tokens, a.sample_tokens + b.sample_tokens,
                   a.greedy_texts + b.greedy_texts,
                   {k: np.concatenate([a.scores[k], b.scores[k]]) for k in a.scores}, phases)


def turns(n: int, size: int, first: str) -> list[tuple[int, int, tuple[str, str]]]:
    """Question slices ``[start, stop)`` and the order the two tools run each in.

    The tools alternate slice by slice, the one that goes first swapping every slice,
    so a change of background load falls on both alike.
    """
    other = {"polygraph": "arbench", "arbench": "polygraph"}[first]
    return [(start, min(start + size, n), (first, other) if k % 2 == 0 else (other, first))
            for k, start in enumerate(range(0, n, size))]


def format_report(setup: dict, arbench: ToolRun, polygraph: ToolRun,
                  pairs: Sequence[Pair], load: Mapping[str, tuple[float, ...]]) -> str:
    """The printed comparison: setup, per-tool figures, ratio, per-estimator agreement."""
    same = sum(a.strip() == p.strip() for a, p in zip(arbench.greedy_texts,
                                                         polygraph.greedy_texts))
    lines = [", ".join(f"{k}={v}" for k, v in setup.items()),
             f"{'tool':<14}{'wall s':>10}{'cpu s':>10}{'greedy tok':>12}{'sample tok':>12}"]
    for name, run in (("lm-polygraph", polygraph), ("arbench", arbench)):
        lines.append(f"{name:<14}{run.wall_seconds:>10.2f}{run.cpu_seconds:>10.2f}"
                     f"{run.greedy_tokens:>12d}{run.sample_tokens:>12d}")
    lines.append(f"speed-up (lm-polygraph wall / arbench wall): "
                 f"{polygraph.wall_seconds / arbench.wall_seconds:.2f}x "
                 f"(cpu: {polygraph.cpu_seconds / arbench.cpu_seconds:.2f}x)")
    for name, run in (("lm-polygraph", polygraph), ("arbench", arbench)):
        rest = run.wall_seconds - sum(run.phases.values())
        parts = [f"{k} {v:.1f}" for k, v in sorted(run.phases.items(), key=lambda kv: -kv[1])]
        lines.append(f"{name} seconds by statistic: {', '.join(parts)}; "
                     f"everything else (estimators, bookkeeping) {rest:.1f}")
    lines.append(f"identical greedy answers: {same}/{len(arbench.greedy_texts)}")
    lines.append(f"{'estimator':<32}{'lm-polygraph class':<44}{'sign':>5}{'spearman':>10}{'n':>5}")
    for pair in pairs:
        rho, n = spearman(arbench.scores[pair.arbench],
                          pair.sign * polygraph.scores[pair.arbench])
        lines.append(f"{pair.arbench:<32}{pair.polygraph:<44}{pair.sign:>+5d}{rho:>10.3f}{n:>5d}")
    lines += [f"load average (1, 5, 15 min) {when}: {', '.join(f'{x:.2f}' for x in values)}"
              for when, values in load.items()]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # No hub access in either tool: every model comes from the local converted copy.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch
    from transformers.utils import logging as hf_logging

    from bench.data import resolve_source
    from bench.models.hf_backend import HFBackend
    from bench.prompts import DEFAULT_TEMPLATE, TEMPLATES

    try:
        import lm_polygraph  # noqa: F401
    except ImportError as exc:
        raise SystemExit(f"lm-polygraph is not importable ({exc}); see tox.ini "
                         "[testenv:peer]") from None
    hf_logging.set_verbosity_error()
    torch.set_num_threads(args.threads)
    try:
        questions = resolve_source(args.data_dir).questions(args.dataset, args.split)
    except (OSError, ValueError, KeyError) as exc:
        raise SystemExit(f"error: {exc}") from None
    questions = questions[:args.limit]
    model_a, tokenizer_a, ref = load_model_copy(args.model_cache, args.dtype)
    model_p, tokenizer_p, _ = load_model_copy(args.model_cache, args.dtype)
    # LM-Polygraph gets transformers' own attention; the malloc tuning of load_model is
    # process-wide, so it runs with that (and is faster than in a process of its own).
    model_p.set_attn_implementation("sdpa")
    model_dir = str(Path(args.model_cache) / "models" / ref.fingerprint.replace(":", "-"))
    template = TEMPLATES[DEFAULT_TEMPLATE]
    render = HFBackend(model_a, tokenizer_a, ref.fingerprint).chat_prompt
    prompts = [render(template.closed(q.question)) for q in questions]
    warm_up(model_a, tokenizer_a, prompts[0])
    warm_up(model_p, tokenizer_p, prompts[0])

    load = {"at start": os.getloadavg()}
    runs: dict[str, ToolRun] = {}
    first = "polygraph" if args.order == "polygraph-first" else "arbench"
    with tempfile.TemporaryDirectory(prefix="arbench-side-by-side-") as cache_dir:
        arbench = ArbenchSide(args, model_a, tokenizer_a, ref.fingerprint, cache_dir)
        polygraph = PolygraphSide(args, model_p, tokenizer_p, model_dir)
        for start, stop, tools in turns(len(questions), args.slice, first):
            for tool in tools:
                done = arbench.run(questions[start:stop]) if tool == "arbench" else \
                    polygraph.run(prompts[start:stop])
                runs[tool] = merge_runs(runs[tool], done) if tool in runs else done
        arbench.cache.close()
        load["at the end"] = os.getloadavg()
    setup = {"model": Path(model_dir).name[:24], "dtype": args.dtype,
             "data": f"{args.dataset}/{args.split}", "questions": len(questions),
             "max_new_tokens": args.max_new_tokens, "samples": args.samples,
             "batch": args.batch_size, "threads": torch.get_num_threads(),
             "template": DEFAULT_TEMPLATE, "slice": args.slice, "first": args.order,
             "prefix_cache": args.prefix_cache, "cpus": os.cpu_count()}
    print(format_report(setup, runs["arbench"], runs["polygraph"], args.pairs, load))
    return 0


if __name__ == "__main__":
    sys.exit(main())
