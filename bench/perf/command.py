"""``arbench bench``: the performance figures of one machine, measured in one run.

GEMM calibration, prefill and decode throughput of the default model (and
their fraction of the GEMM bound), the cost of N samples, model load time,
estimator and rescoring cost over cached statistics, and BM25 queries/s.
Timings are best-of-rounds; nothing here judges whether a figure is good.
"""
from __future__ import annotations

import argparse
import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench.models.hf_backend import GreedyConfig, SamplingConfig
from bench.perf.figures import BenchReport
from bench.prompts import DEFAULT_TEMPLATE

log = logging.getLogger("arbench")

#: The shared data beside a checkout, the default when it exists.
SHARED_DATA = Path("..") / "shared" / "data"
#: Estimator whose rescoring is timed (a run's most common cheap gate).
RESCORE_ESTIMATOR = "perplexity"
TOP_K = 5


@dataclass(frozen=True)
class BenchSettings:
    """Sizes and rounds of every measurement (``FULL`` or ``QUICK``).

    ``stat_greedy``/``stat_sampling`` decode the statistics the estimator and
    rescoring figures read; at their ``FULL`` values (a run's defaults) a cache
    filled by ``arbench run`` already holds them.
    """

    gemm_repeats: int
    prefill_prompts: int
    prefill_rounds: int
    decode_steps: int
    decode_rounds: int
    sample_rounds: int
    load_rounds: int
    suite_questions: int
    suite_rounds: int
    background_passages: int
    rescore_questions: int
    rescore_rounds: int
    bm25_queries_per_dataset: int
    bm25_rounds: dict[str, int]
    decode_batches: tuple[int, ...] = (1, 8, 32)
    #: RAG batch and decode steps of the attention and KV-cache comparison.
    kernel_batch: int = 8
    kernel_steps: int = 32
    #: Template of the decode batches' closed-book prompts.
    decode_template: str = DEFAULT_TEMPLATE
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    greedy: GreedyConfig = field(default_factory=GreedyConfig)
    stat_greedy: GreedyConfig = field(default_factory=GreedyConfig)
    stat_sampling: SamplingConfig = field(default_factory=SamplingConfig)


FULL = BenchSettings(
    gemm_repeats=10, prefill_prompts=8, prefill_rounds=3, decode_steps=32, decode_rounds=3,
    sample_rounds=3, load_rounds=3, suite_questions=16, suite_rounds=3,
    background_passages=200, rescore_questions=16, rescore_rounds=3,
    bm25_queries_per_dataset=10, bm25_rounds={"bm25s": 5, "rank_bm25": 2})

QUICK = BenchSettings(
    gemm_repeats=2, prefill_prompts=2, prefill_rounds=1, decode_steps=4, decode_rounds=1,
    sample_rounds=1, load_rounds=1, suite_questions=4, suite_rounds=1, background_passages=8,
    rescore_questions=4, rescore_rounds=1, bm25_queries_per_dataset=2,
    bm25_rounds={"bm25s": 1, "rank_bm25": 1}, kernel_batch=2, kernel_steps=4,
    decode_template="short_answer",
    sampling=SamplingConfig(max_new_tokens=8), greedy=GreedyConfig(max_new_tokens=8),
    stat_greedy=GreedyConfig(max_new_tokens=12), stat_sampling=SamplingConfig(n=3,
                                                                             max_new_tokens=8))


def add_parser(sub) -> None:
    """Register ``arbench bench`` on the CLI's subparsers."""
    from bench.config import default_cache_dir

    bench = sub.add_parser("bench", help="measure throughput on this machine (prints a table)")
    bench.add_argument("--data-dir", default=None,
                       help=f"data laid out like shared/data, or 'demo' (default: {SHARED_DATA} "
                            "if it exists, else the demo set)")
    bench.add_argument("--cache-dir", default=default_cache_dir(),
                       help="converted model, indexes and the output cache (as arbench run)")
    bench.add_argument("--threads", type=int, default=None, help="torch threads")
    bench.add_argument("--quick", action="store_true",
                       help="few rounds and small sizes (seconds, for tests)")
    bench.add_argument("--json", default=None, metavar="PATH",
                       help="also write every figure with its unit to PATH")


def default_data_dir() -> str:
    """``../shared/data`` when it holds a corpus, else the demo set."""
    return str(SHARED_DATA) if (SHARED_DATA / "corpus" / "wiki_passages.jsonl").is_file() \
        else "demo"


def bench_command(args: argparse.Namespace) -> int:
    """Entry point of ``arbench bench``."""
    from bench.perf.figures import format_footer, write_json

    if args.threads is not None and args.threads < 1:
        raise ValueError(f"--threads must be at least 1, got {args.threads}")
    report = run_bench(args.data_dir or default_data_dir(), args.cache_dir,
                       QUICK if args.quick else FULL, args.threads,
                       stream=lambda text: print(text, flush=True))
    print(format_footer(report.environment))
    if args.json:
        write_json(report, args.json)
        print(f"figures written to {args.json}")
    return 0


def run_bench(data_dir: str, cache_dir: str | Path, settings: BenchSettings,
              threads: int | None = None,
              stream: Callable[[str], None] | None = None) -> BenchReport:
    """Measure everything; returns the :class:`~bench.perf.figures.BenchReport`.

    ``stream`` receives the table's header, then each section as soon as it is
    measured (a full run takes minutes), but not the footer.
    """
    import torch

    from bench.data import DataError, resolve_source
    from bench.models.hf_backend import HFBackend
    from bench.models.loading import DEFAULT_MODEL, load_model, resolve_model
    from bench.perf import calibration, lm, lm_figures
    from bench.perf.figures import format_header, format_section
    from bench.perf.retrieval import add_retrieval_figures, benchmark_queries
    from bench.prompts import TEMPLATES
    from retrievers import build_retriever

    started = time.perf_counter()
    printed: list[str] = []

    def emit() -> None:
        """Stream the sections measured since the last call."""
        for section in dict.fromkeys(f.section for f in report.figures):
            if section not in printed:
                printed.append(section)
                # Other processes stall torch's thread team far more than their share
                # of CPU suggests: each section's figures go with the load they met.
                report.details.setdefault("load_after_section", {})[section] = round(
                    os.getloadavg()[0], 2)
                if stream is not None:
                    stream(format_section(report, section))

    if threads:
        torch.set_num_threads(threads)
    # Bad data fails here, before minutes of measurement.
    source = resolve_source(data_dir)
    if not source.dataset_names():
        raise DataError(f"{source.description}: no dataset folder with a test.jsonl")
    dataset = source.dataset_names()[0]
    corpus = source.corpus()
    report = BenchReport(environment=calibration.environment())
    log.info("bench: GEMM calibration")
    bound = calibration.measure_gemm(report, settings.gemm_repeats)

    index_dir = Path(cache_dir) / "indexes"
    log.info("bench: BM25 index of %s passages", f"{len(corpus):,}")
    bm25s = build_retriever("bm25s", corpus, index_dir)
    ref = resolve_model(DEFAULT_MODEL, cache_dir)
    log.info("bench: loading %s", ref.location)
    model, tokenizer = load_model(ref, cache_dir, "bfloat16")  # converts on the first use
    report.environment.update(
        data=f"{source.description} (prompts and statistics from '{dataset}', corpus "
             f"{len(corpus):,} passages)",
        model=f"{DEFAULT_MODEL} bfloat16 ({ref.fingerprint[:23]}...)",
        mode="quick (few rounds, small sizes)" if settings is QUICK else "full")
    if stream is not None:
        stream(format_header(report.environment))
    emit()
    params = lm.matmul_parameters(model)
    lm_figures.add_model_figures(report, params, ref, cache_dir, "bfloat16",
                                 settings.load_rounds)
    emit()

    backend = HFBackend(model, tokenizer, ref.fingerprint)
    questions = source.questions(dataset, "test")
    texts = [q.question for q in questions[:settings.prefill_prompts]]
    log.info("bench: prefill")
    sets = lm.prompt_sets(backend, texts, corpus, bm25s, TOP_K)
    lm_figures.add_prefill_figures(report, model, tokenizer, sets, params, bound,
                                   settings.prefill_rounds,
                                   f"first test questions of {dataset}")
    emit()
    log.info("bench: decode")
    template = TEMPLATES[settings.decode_template]
    decode_texts = [backend.chat_prompt(template.closed(q.question))
                    for q in questions[:max(settings.decode_batches)]]
    lm_figures.add_decode_figures(report, model, tokenizer, decode_texts,
                                  settings.decode_batches, settings.decode_steps, params, bound,
                                  settings.decode_rounds, f"closed-book prompts, "
                                  f"{settings.decode_template} template")
    emit()
    log.info("bench: attention and KV cache")
    lm_figures.add_kernel_figures(report, model, tokenizer, sets[-1], settings.kernel_batch,
                                  settings.kernel_steps, settings.decode_rounds)
    lm_figures.add_prefix_figures(report, backend, sets[1], settings.prefill_rounds)
    emit()
    log.info("bench: samples")
    lm_figures.add_sampling_figures(report, backend, sets[1].texts[0], questions[0].id,
                                    settings.greedy, settings.sampling, settings.sample_rounds)
    emit()

    add_estimator_figures(report, source, dataset, corpus, bm25s, model, tokenizer,
                          ref.fingerprint, cache_dir, settings)
    emit()

    log.info("bench: BM25")
    add_retrieval_figures(report, corpus, benchmark_queries(source,
                                                            settings.bm25_queries_per_dataset),
                          index_dir, TOP_K, settings.bm25_rounds, {"bm25s": bm25s})
    emit()
    report.environment["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    report.environment["wall_seconds"] = round(time.perf_counter() - started, 1)
    report.details["settings"] = asdict(settings)
    return report


def add_estimator_figures(report: BenchReport, source, dataset: str, corpus, retriever, model,
                          tokenizer, fingerprint: str, cache_dir: str | Path,
                          settings: BenchSettings) -> None:
    """Estimator-suite overhead per question and rescoring seconds per 1,000 questions."""
    import estimators as estimator_registry
    from bench.cache import Cache
    from bench.perf import estimators as perf
    from bench.perf.figures import per_thousand
    from bench.stores import RetrievalStore
    from estimators.base import TrainedEstimator

    section = "Estimators and rescoring"
    cache = Cache(str(cache_dir))
    try:
        ctx = perf.stat_context(model, tokenizer, fingerprint, cache, settings.stat_greedy,
                                settings.stat_sampling, progress=settings is not QUICK)
        suite = [estimator_registry.create(name) for name in sorted(estimator_registry.ESTIMATORS)]
        n = settings.suite_questions
        train, test = (source.questions(dataset, "train")[:n],
                       source.questions(dataset, "test")[:n])
        log.info("bench: statistics of %d estimators for %d questions (cached after the "
                 "first time)", len(suite), len(train) + len(test))
        split = perf.statistics(ctx, train, test, suite, "bench")
        embeddings = perf.background(ctx, corpus, split, settings.background_passages, 0)
        log.info("bench: estimator scoring")
        seconds = perf.suite_seconds(suite, split, embeddings, settings.suite_rounds)
        slowest = sorted(seconds, key=seconds.__getitem__, reverse=True)[:3]
        untrained = [e.name for e in suite if not isinstance(e, TrainedEstimator)]
        report.methods[section] = (
            f"every registered estimator ({len(suite)}) scoring {len(train)} train + "
            f"{len(test)} test questions of '{dataset}' from statistics already in memory "
            "(trained ones: 5-fold cross-fitting, fit on train, test scoring), best of "
            f"{settings.suite_rounds} per estimator, divided by the questions. Rescoring: "
            f"'{RESCORE_ESTIMATOR}' as arbench rescore does it, cached statistics and RAG "
            "answers read back with the model forbidden -> scores -> gates fit on train -> "
            "metrics rows")
        report.add("estimator_suite_ms_per_question",
                   sum(seconds.values()) / split.size * 1000, "ms/question",
                   f"all {len(suite)} estimators", section,
                   "slowest: " + ", ".join(f"{k} {seconds[k] / split.size * 1000:.2f}"
                                           for k in slowest))
        report.add("estimator_untrained_ms_per_question",
                   sum(seconds[k] for k in untrained) / split.size * 1000, "ms/question",
                   f"  of which the {len(untrained)} untrained", section)
        report.details["estimator_seconds"] = {k: round(v, 6) for k, v in seconds.items()}

        m = settings.rescore_questions
        rescoring = perf.Rescoring(ctx, RetrievalStore(cache, retriever), corpus,
                                   source.questions(dataset, "train")[:m],
                                   source.questions(dataset, "test")[:m], TOP_K)
        log.info("bench: rescoring %d questions", 2 * m)
        rescore = rescoring.seconds(RESCORE_ESTIMATOR, settings.rescore_rounds)
        size = len(rescoring.train) + len(rescoring.test)
        report.add("rescore_seconds_per_1000_questions", per_thousand(rescore, size),
                   "s/1000 questions", f"rescore ({RESCORE_ESTIMATOR})", section,
                   f"{len(rescoring.train)} train + {len(rescoring.test)} test questions, "
                   f"{rescore:.3f} s")
    finally:
        cache.close()
