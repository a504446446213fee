"""Command line: ``arbench run | rescore | score | estimators | pipelines | leaderboard |
compare | bench``."""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys

from bench.report import console_table, dumps


def _add_data_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", default=None,
                        help="directory laid out like shared/data, or 'demo' (default: "
                             "$ARBENCH_DATA, else the built-in demo set)")
    parser.add_argument("--hub", action="store_true",
                        help="load the study's tables VityaVitalich/adaptive_rag_<name> "
                             "through `datasets` (needs a network)")
    parser.add_argument("--corpus", default=None, help="corpus JSONL overriding the source's")


def build_parser() -> argparse.ArgumentParser:
    from bench.config import RunConfig, default_cache_dir
    from bench.prompts import TEMPLATES

    defaults = RunConfig()
    parser = argparse.ArgumentParser(prog="arbench", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the benchmark and write results/<run-name>/")
    _add_data_args(run)
    run.add_argument("--datasets", nargs="+", default=["all"], help="names or 'all'")
    run.add_argument("--limit", type=int, default=None, help="first N questions of each split")
    run.add_argument("--model", default=defaults.model,
                     help="packaged name (smollm2), .gguf path, model directory or hub id")
    run.add_argument("--dtype", default=defaults.dtype, choices=["bfloat16", "float32"])
    run.add_argument("--trust-remote-code", action="store_true")
    run.add_argument("--retriever", default=defaults.retriever)
    run.add_argument("--top-k", type=int, default=defaults.top_k)
    run.add_argument("--template", default=defaults.template, choices=sorted(TEMPLATES),
                     help="prompt template (bench/prompts.py)")
    run.add_argument("--estimators", nargs="+", default=None,
                     help="estimator names or groups (all, study, single-pass); default: all")
    run.add_argument("--pipelines", nargs="+", default=None,
                     help="adaptive-RAG pipelines (names or 'all'; `arbench pipelines` lists "
                          "them); default: none")
    run.add_argument("--methods", nargs="+", default=None,
                     help="estimators and pipelines together; 'all' = every estimator and "
                          "every pipeline (overrides --estimators/--pipelines)")
    run.add_argument("--pipeline-setting", action="append", default=[], metavar="P.KEY=VALUE",
                     help="override a pipeline setting, VALUE as JSON (repeatable), e.g. "
                          "ircot.max_steps=3")
    run.add_argument("--verifier-model", default=defaults.verifier_model,
                     help="second model of Rowen-CM / Rowen-Hybrid")
    run.add_argument("--judge", default=defaults.judge,
                     help="similarity/entailment judge: minilm (offline default), lm, "
                          "nli or nli:<hub id or directory>")
    run.add_argument("--background-passages", type=int, default=defaults.background_passages,
                     help="corpus passages embedded for relative Mahalanobis")
    run.add_argument("--samples", type=int, default=defaults.sampling.n)
    run.add_argument("--temperature", type=float, default=defaults.sampling.temperature)
    run.add_argument("--sample-top-k", type=int, default=defaults.sampling.top_k)
    run.add_argument("--max-new-tokens", type=int, default=defaults.greedy.max_new_tokens,
                     help="token budget of greedy answers")
    run.add_argument("--sample-max-new-tokens", type=int,
                     default=defaults.sampling.max_new_tokens, help="token budget of samples")
    run.add_argument("--hidden-layers", type=int, nargs="+", default=None,
                     help="hidden-state indices to record (0 = embeddings; default: middle "
                          "and last layer)")
    run.add_argument("--exclude-stop-token", action="store_true",
                     help="token-level estimators ignore the EOS/newline step")
    run.add_argument("--seed", type=int, default=defaults.seed)
    run.add_argument("--dev-fraction", type=float, default=defaults.dev_fraction)
    run.add_argument("--batch-size", type=int, default=defaults.batch_size)
    run.add_argument("--prefix-cache", action="store_true",
                     help="prefill the prompt prefix a batch shares (system turn, "
                          "demonstrations) once; outputs are cached apart from full prefills")
    run.add_argument("--threads", type=int, default=None)
    run.add_argument("--ray", default=None, metavar="ADDRESS",
                     help="compute model outputs on a Ray cluster first (its address, or "
                          "'local' to start one); results are identical to one process")
    run.add_argument("--ray-workers", type=int, default=None,
                     help="Ray worker processes (default: the machine's or cluster's CPUs)")
    run.add_argument("--shards", type=int, default=None,
                     help="shards per dataset and fill (default: one per Ray worker)")
    run.add_argument("--shard-size", type=int, default=None,
                     help="questions per shard instead of --shards (whole batches)")
    run.add_argument("--run-name", default=None)
    run.add_argument("--cache-dir", default=default_cache_dir())
    run.add_argument("--results-dir", default=defaults.results_dir)
    run.add_argument("--no-progress", action="store_true")
    run.add_argument("--json", action="store_true", help="print metrics JSON instead of tables")

    score = sub.add_parser("score", help="score answers produced elsewhere")
    _add_data_args(score)
    score.add_argument("--dataset", required=True)
    score.add_argument("--split", default="test", choices=["test", "train"])
    score.add_argument("--predictions", required=True)
    score.add_argument("--train-predictions", default=None)
    score.add_argument("--dev-fraction", type=float, default=defaults.dev_fraction)
    score.add_argument("--seed", type=int, default=defaults.seed)
    score.add_argument("--json", action="store_true")

    est = sub.add_parser("estimators", help="list registered estimators")
    est.add_argument("--json", action="store_true")
    est.add_argument("--markdown", action="store_true", help="the README's table")

    pipes = sub.add_parser("pipelines", help="list registered adaptive-RAG pipelines")
    pipes.add_argument("--json", action="store_true")

    rescore = sub.add_parser(
        "rescore", help="re-evaluate estimators over a previous run's cached statistics "
                        "without any LM call (fails naming what is not cached)")
    rescore.add_argument("run_dir", help="a results folder written by `arbench run`")
    rescore.add_argument("--estimators", nargs="+", default=None,
                         help="estimators to evaluate (default: the run's own)")
    rescore.add_argument("--run-name", default=None,
                         help="output folder name (default: <run>-rescored)")
    rescore.add_argument("--cache-dir", default=None, help="default: the run's cache")
    rescore.add_argument("--results-dir", default=None,
                         help="default: the folder holding run_dir")
    rescore.add_argument("--json", action="store_true")

    from bench.reports.commands import add_parsers as add_report_parsers

    add_report_parsers(sub)  # leaderboard, compare
    from bench.perf.command import add_parser as add_bench_parser

    add_bench_parser(sub)
    return parser


def _layers(values: list[int] | None) -> tuple[int, ...] | None:
    return tuple(values) if values else None


def _run(args) -> int:
    from bench.config import RunConfig
    from bench.runner import run

    base = RunConfig()
    estimators, pipelines = split_methods(args.methods, args.estimators, args.pipelines)
    config = RunConfig(
        run_name=args.run_name, data_dir=args.data_dir, hub=args.hub, corpus=args.corpus,
        datasets=args.datasets, limit=args.limit, model=args.model, dtype=args.dtype,
        trust_remote_code=args.trust_remote_code, retriever=args.retriever, top_k=args.top_k,
        estimators=estimators, pipelines=pipelines,
        pipeline_settings=parse_pipeline_settings(args.pipeline_setting),
        verifier_model=args.verifier_model, judge=args.judge,
        background_passages=args.background_passages, template=args.template,
        greedy=dataclasses.replace(base.greedy, max_new_tokens=args.max_new_tokens,
                                   layers=_layers(args.hidden_layers)),
        sampling=dataclasses.replace(base.sampling, n=args.samples,
                                     temperature=args.temperature, top_k=args.sample_top_k,
                                     max_new_tokens=args.sample_max_new_tokens,
                                     layers=_layers(args.hidden_layers)),
        include_stop_token=not args.exclude_stop_token, seed=args.seed,
        dev_fraction=args.dev_fraction, batch_size=args.batch_size, threads=args.threads,
        prefix_cache=args.prefix_cache,
        ray=args.ray, ray_workers=args.ray_workers, shards=args.shards,
        shard_size=args.shard_size,
        cache_dir=args.cache_dir, results_dir=args.results_dir, progress=not args.no_progress)
    if config.ray or config.ray_workers or config.shards or config.shard_size:
        from bench.distributed import run_distributed

        return _report(run_distributed(config), args.json)
    return _report(run(config), args.json)


def split_methods(methods: list[str] | None, estimators: list[str] | None,
                  pipelines: list[str] | None) -> tuple[list[str], list[str]]:
    """``--methods`` (or ``--estimators``/``--pipelines``) → (estimators, pipelines).

    Pipeline names and ``pipelines`` go to the second list, ``all`` to both,
    anything else (estimator names, groups ``all``/``study``/``single-pass``) to the first.
    """
    from bench.pipelines import PIPELINES

    if methods is None:
        return (estimators if estimators is not None else ["all"]), list(pipelines or [])
    chosen_estimators: list[str] = []
    chosen_pipelines: list[str] = []
    for item in methods:
        if item == "all":
            chosen_estimators.append("all")
            chosen_pipelines.append("all")
        elif item in PIPELINES or item == "pipelines":
            chosen_pipelines.append("all" if item == "pipelines" else item)
        else:
            chosen_estimators.append(item)
    return chosen_estimators, chosen_pipelines


def parse_pipeline_settings(items: list[str]) -> dict[str, dict]:
    """``["ircot.max_steps=3", ...]`` → ``{"ircot": {"max_steps": 3}}`` (values JSON)."""
    settings: dict[str, dict] = {}
    for item in items:
        target, sep, raw = item.partition("=")
        pipeline, dot, key = target.partition(".")
        if not sep or not dot or not pipeline or not key:
            raise ValueError(f"--pipeline-setting {item!r}: expected PIPELINE.KEY=VALUE")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        settings.setdefault(pipeline, {})[key] = value
    return settings


def _pipelines(args) -> int:
    from bench.pipelines import PIPELINES

    listing = [{"name": name, "study_name": cls.study_name, "models": list(cls.models),
                "settings": cls.Settings().to_dict(),
                "summary": (cls.__doc__ or "").strip().splitlines()[0]}
               for name, cls in sorted(PIPELINES.items())]
    if args.json:
        print(json.dumps(listing, indent=2))
    else:
        for item in listing:
            print(f"{item['name']:<14} {item['study_name'] or '':<14} {item['summary']}")
    return 0


def _rescore(args) -> int:
    from pathlib import Path

    from bench.config import RunConfig
    from bench.runner import run

    run_dir = Path(args.run_dir)
    saved = run_dir / "config.json"
    if not saved.exists():
        raise ValueError(f"{saved}: not found; rescore needs a folder written by arbench run")
    config = RunConfig.from_dict(json.loads(saved.read_text()))
    config.run_name = args.run_name or f"{run_dir.name}-rescored"
    config.results_dir = args.results_dir or str(run_dir.parent)
    config.cache_dir = args.cache_dir or config.cache_dir
    config.estimators = args.estimators or config.estimators
    # Rescoring re-evaluates estimators; pipelines are rerun with `arbench run`.
    config.pipelines = []
    config.progress = False
    return _report(run(config, allow_model=False), args.json)


def _report(result, as_json: bool) -> int:
    if as_json:
        print(dumps(result.metrics), end="")
    else:
        print(console_table(result.metrics))
        info = result.run_info
        print(f"results: {result.directory}/  wall {info['wall_seconds']} s, "
              f"LM generate calls this run: {info['lm_generate_calls']}, "
              f"peak RSS {info['peak_rss_mib']} MiB")
    return 0


def _score(args) -> int:
    from bench.data import resolve_source
    from bench.scoring import score_predictions

    source = resolve_source(args.data_dir, hub=args.hub, corpus=args.corpus)
    test = source.questions(args.dataset, args.split)
    train = source.questions(args.dataset, "train") if args.train_predictions else None
    result = score_predictions(test, args.predictions, train, args.train_predictions,
                               args.dev_fraction, args.seed)
    metrics = {"datasets": {args.dataset: result}}
    if args.json:
        print(dumps({"rows": result["rows"], "gates": result["gates"]}), end="")
    else:
        print(console_table(metrics))
    return 0


def estimator_listing() -> list[dict]:
    """Every registered estimator with family, training, statistics and extra LM cost."""
    import estimators
    from estimators.base import TrainedEstimator, lm_cost

    listing = []
    for name in sorted(estimators.ESTIMATORS):
        cls = estimators.ESTIMATORS[name]
        listing.append({"name": name, "family": cls.family, "study_name": cls.study_name,
                        "training": cls.training if issubclass(cls, TrainedEstimator)
                        else "untrained",
                        "requires": [s.name for s in cls.requires],
                        "lm_cost": lm_cost(cls.requires), "summary": cls.summary})
    return listing


def _cost_text(cost: dict) -> str:
    parts = [f"+{cost['generate_calls']} gen" if cost["generate_calls"] != "0" else "",
             f"+{cost['forward_passes']} fwd" if cost["forward_passes"] != "0" else "",
             cost["aux"]]
    return ", ".join(p for p in parts if p) or "0"


def estimator_table_markdown() -> str:
    """The README's estimator table, generated from the registry."""
    lines = ["| name | family | training | statistics | extra cost per question | "
             "study column | definition |", "|---|---|---|---|---|---|---|"]
    for item in estimator_listing():
        cells = [f"`{item['name']}`", item["family"], item["training"],
                 ", ".join(item["requires"]), _cost_text(item["lm_cost"]),
                 item["study_name"] or "", item["summary"]]
        lines.append("| " + " | ".join(c.replace("|", "&#124;") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def _estimators(args) -> int:
    listing = estimator_listing()
    if args.json:
        print(json.dumps(listing, indent=2))
    elif args.markdown:
        print(estimator_table_markdown(), end="")
    else:
        for item in listing:
            print(f"{item['name']:<32} {item['family']:<18} {_cost_text(item['lm_cost']):<28} "
                  f"{item['summary']}")
    return 0


def main(argv: list[str] | None = None) -> int:
    from bench.data.schema import DataError
    from bench.models.loading import ModelError
    from retrievers.base import CorpusError

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from bench.perf.command import bench_command
    from bench.reports.commands import compare_command, leaderboard_command

    handlers = {"run": _run, "score": _score, "estimators": _estimators, "rescore": _rescore,
                "pipelines": _pipelines, "leaderboard": leaderboard_command,
                "compare": compare_command, "bench": bench_command}
    try:
        return handlers[args.command](args)
    except (DataError, CorpusError, ModelError, KeyError, ValueError) as exc:
        if os.environ.get("ARBENCH_DEBUG"):
            raise
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"arbench: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("arbench: interrupted; finished batches are cached, rerun to resume",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
