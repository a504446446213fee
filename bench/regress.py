"""``python -m bench.regress``: rerun a small pinned configuration and compare every metric.

The pinned configuration (:func:`pinned_configs`) is the built-in demo set
plus the first 10 test and 10 train questions of ``nq`` and ``hotpotqa`` from
the shared data, with five cheap estimators, four samples per question and
seed 0. Both runs go through :func:`bench.runner.run` into a temporary results
folder, reusing the model-output cache, and every value under
``metrics["datasets"]`` of each run's metrics.json is compared with
``results/regress/expected.json`` (:func:`compare`). Each difference is
printed; the exit status is 1 on any difference, missing or extra value, 0
otherwise. ``--update`` rewrites the expectation (only on purpose; say why in
the commit). ``--offline`` skips the model: it recomputes the metrics from the
recorded answers in ``results/regress/answers.json`` (:mod:`bench.regress_replay`).

Tolerances (:data:`TOLERANCES`): QA and self-knowledge metrics are ratios of
counts over at most 60 questions, so one changed answer or decision moves a
value by at least 1/60; they must match to 1e-6 absolute, which only absorbs
summation order. Gate parameters and gate probabilities are raw estimator
scores or functions of them and also allow 1e-5 relative.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.config import RunConfig, default_cache_dir
from bench.models.hf_backend import SamplingConfig
from bench.report import dumps, write_atomic

#: Cheap estimators of three kinds: logit statistics of the greedy answer (no
#: extra pass), one extra forward pass (p_true) and samples (lexical_similarity).
PINNED_ESTIMATORS = ("perplexity", "mean_token_entropy", "max_token_entropy",
                     "lexical_similarity", "p_true")
SHARED_DATASETS = ("nq", "hotpotqa")
SHARED_LIMIT = 10
#: Four samples of at most 16 tokens (the study: 10 of 32) keep the run short.
PINNED_SAMPLING = SamplingConfig(n=4, max_new_tokens=16)
EXPECTED_FILE = "expected.json"
ANSWERS_FILE = "answers.json"


@dataclass(frozen=True)
class Tolerance:
    """``|got - expected| <= absolute + relative * |expected|``."""

    absolute: float
    relative: float = 0.0

    def allows(self, expected: float, got: float) -> bool:
        if math.isnan(expected) or math.isnan(got):
            return math.isnan(expected) and math.isnan(got)
        return abs(got - expected) <= self.absolute + self.relative * abs(expected)


DEFAULT_TOLERANCE = Tolerance(absolute=1e-6)
#: Per top-level section of a dataset's results; anything else uses the default.
TOLERANCES = {
    # Thresholds and fitted parameters are raw score values (float noise).
    "gates": Tolerance(absolute=1e-6, relative=1e-5),
    # Mean predicted probability per bin of a fitted gate.
    "reliability": Tolerance(absolute=1e-6, relative=1e-5),
}


@dataclass(frozen=True)
class Difference:
    """One value that differs: where it is, what was expected and what the run gave."""

    dataset: str
    method: str
    metric: str
    expected: object
    got: object


#: Placeholder for a value present on one side only.
MISSING = "<missing>"


def flatten(value: object, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], object]]:
    """``(path, leaf)`` pairs of nested dicts and lists; list items as ``[i]``."""
    if isinstance(value, dict):
        for key in sorted(value):
            yield from flatten(value[key], path + (str(key),))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from flatten(item, path + (f"[{i}]",))
    else:
        yield path, value


def _join(parts: tuple[str, ...]) -> str:
    """``("rc", "[3]")`` → ``"rc[3]"``; other parts joined with dots."""
    text = ""
    for part in parts:
        text += part if part.startswith("[") or not text else "." + part
    return text


def _locate(path: tuple[str, ...]) -> tuple[str, str]:
    """(method, metric) for a path inside one dataset's results.

    ``rows.<method>.<metric>`` → (method, metric); other sections keyed by
    estimator (``gates``, ``curves``, ``reliability``) → ("section:estimator",
    rest); dataset-level values (``n_test``) → ("-", name).
    """
    if len(path) >= 3 and path[0] == "rows":
        return path[1], _join(path[2:])
    if len(path) >= 3:
        return f"{path[0]}:{path[1]}", _join(path[2:])
    return "-", _join(path)


def _same(expected: object, got: object, tolerance: Tolerance) -> bool:
    numbers = (int, float)
    if isinstance(expected, bool) or isinstance(got, bool):
        return type(expected) is type(got) and expected == got
    if isinstance(expected, numbers) and isinstance(got, numbers):
        return tolerance.allows(float(expected), float(got))
    return expected == got


def compare(expected: Mapping[str, dict], got: Mapping[str, dict]) -> list[Difference]:
    """Every value of ``expected`` absent from, or out of tolerance in, ``got``, and extras.

    Parameters
    ----------
    expected, got : mapping
        ``{dataset: results}`` as in ``metrics["datasets"]``.

    Returns
    -------
    list of Difference
        By dataset, then in the order of the expected file, extras last;
        empty when everything matches.
    """
    differences = []
    for dataset in sorted(set(expected) | set(got)):
        want = dict(flatten(expected.get(dataset, {})))
        have = dict(flatten(got.get(dataset, {})))
        # Expected values in file order (list items by index), then extra ones.
        for path in [*want, *(p for p in have if p not in want)]:
            left, right = want.get(path, MISSING), have.get(path, MISSING)
            tolerance = TOLERANCES.get(path[0], DEFAULT_TOLERANCE)
            if MISSING in (left, right) or not _same(left, right, tolerance):
                differences.append(Difference(dataset, *_locate(path), left, right))
    return differences


def format_differences(differences: list[Difference]) -> str:
    """A fixed-width table: dataset, method, metric, expected, got."""
    rows = [("dataset", "method", "metric", "expected", "got")]
    rows += [(d.dataset, d.method, d.metric, repr(d.expected), repr(d.got)) for d in differences]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r[:4], widths)) + "  " + r[4]
                     for r in rows)


def pinned_configs(shared_data: Path, cache_dir: str, results_dir: str) -> dict[str, RunConfig]:
    """The two runs of the check: the demo set, and the shared-data slice."""

    def pinned(**data: Any) -> RunConfig:
        # bfloat16 as runs use it; batch size and threads pinned because both can
        # change the last bits of bf16 arithmetic (results/regress/README.md).
        return RunConfig(estimators=list(PINNED_ESTIMATORS), sampling=PINNED_SAMPLING,
                         dtype="bfloat16", batch_size=16, threads=2, seed=0,
                         cache_dir=cache_dir, results_dir=results_dir, progress=False, **data)

    return {
        "demo": pinned(run_name="demo", data_dir="demo"),
        "shared": pinned(run_name="shared", data_dir=str(shared_data),
                         datasets=list(SHARED_DATASETS), limit=SHARED_LIMIT),
    }


#: Inputs compared for the notes printed on failure (paths and the config hash,
#: which includes the data path, vary between checkouts).
NOTED_INPUTS = ("model", "corpus_sha256", "questions", "retriever")


def run_pinned(shared_data: Path, cache_dir: str, results_dir: str) -> tuple[dict, dict]:
    """Run both pinned configurations; (runs for expected.json, recorded answers)."""
    from bench.regress_replay import encode_calls, recording_evaluations
    from bench.runner import run

    runs, answers = {}, {}
    for name, config in pinned_configs(shared_data, cache_dir, results_dir).items():
        with recording_evaluations() as calls:
            result = run(config)
        metrics = json.loads((result.directory / "metrics.json").read_text())
        runs[name] = {"inputs": {k: metrics["inputs"].get(k) for k in NOTED_INPUTS},
                      "datasets": metrics["datasets"]}
        # The in-memory dict keeps evaluation order; metrics.json sorts its keys.
        answers[name] = encode_calls(list(result.metrics["datasets"]), calls)
    return runs, answers


def replay_runs(expected: dict, answers: dict) -> dict:
    """The expected runs with every dataset recomputed from the recorded answers."""
    from bench.regress_replay import replay

    return {name: {"inputs": expected["runs"][name]["inputs"],
                   "datasets": replay(answers[name], expected["runs"][name]["datasets"])}
            for name in answers}


def check(expected: dict, runs: dict) -> tuple[list[Difference], list[str]]:
    """Differences over every run (dataset names prefixed by the run), and input notes."""
    differences, notes = [], []
    for name in sorted(set(expected["runs"]) | set(runs)):
        want, have = expected["runs"].get(name, {}), runs.get(name, {})
        differences += [Difference(f"{name}/{d.dataset}", d.method, d.metric, d.expected, d.got)
                        for d in compare(want.get("datasets", {}), have.get("datasets", {}))]
        for key in NOTED_INPUTS:
            old, new = want.get("inputs", {}).get(key), have.get("inputs", {}).get(key)
            if old != new:
                notes.append(f"note: {name} input {key!r} differs from the expectation's: "
                             f"{json.dumps(old)[:80]} -> {json.dumps(new)[:80]}")
    return differences, notes


def default_shared_data() -> Path:
    """``$ARBENCH_SHARED_DATA``, else ``../shared/data`` from the working directory."""
    return Path(os.environ.get("ARBENCH_SHARED_DATA", "../shared/data"))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options (``python -m bench.regress --help``)."""
    parser = argparse.ArgumentParser(prog="python -m bench.regress", description=__doc__.split(
        "\n")[0])
    parser.add_argument("--update", action="store_true",
                        help="rewrite the expectation from this run (only on purpose)")
    parser.add_argument("--offline", action="store_true",
                        help="no model: recompute metrics from the recorded answers")
    parser.add_argument("--expected-dir", type=Path, default=Path("results/regress"))
    parser.add_argument("--shared-data", type=Path, default=default_shared_data(),
                        help="shared data folder (default $ARBENCH_SHARED_DATA or ../shared/data)")
    parser.add_argument("--cache-dir", default=default_cache_dir(),
                        help="model and output cache (default $ARBENCH_CACHE or ~/.cache/arbench)")
    parser.add_argument("--results-dir", type=Path, default=None,
                        help="keep the run's results here (default: a temporary folder)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run (or replay, or update) the check; returns the exit status (0 ok, 1 differs, 2 error)."""
    args = parse_args(argv)
    # The runner's progress lines (model loading, index builds) as `arbench run` shows them.
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    expected_path = args.expected_dir / EXPECTED_FILE
    answers_path = args.expected_dir / ANSWERS_FILE
    if args.offline and args.update:
        print("regress: --offline and --update exclude each other", file=sys.stderr)
        return 2
    if not args.update and not expected_path.is_file():
        print(f"regress: no expectation at {expected_path}; create it with --update",
              file=sys.stderr)
        return 2
    expected = json.loads(expected_path.read_text()) if expected_path.is_file() else None
    if args.offline:
        assert expected is not None
        runs = replay_runs(expected, json.loads(answers_path.read_text())["runs"])
    else:
        if not (args.shared_data / "corpus" / "wiki_passages.jsonl").is_file():
            print(f"regress: shared data not found at {args.shared_data} "
                  "(set ARBENCH_SHARED_DATA or --shared-data)", file=sys.stderr)
            return 2
        with tempfile.TemporaryDirectory(prefix="arbench-regress-") as tmp:
            results_dir = str(args.results_dir or tmp)
            runs, answers = run_pinned(args.shared_data.resolve(), args.cache_dir, results_dir)
    if args.update:
        args.expected_dir.mkdir(parents=True, exist_ok=True)
        about = ("python -m bench.regress --update; pinned configuration, tolerances and "
                 "when to regenerate: results/regress/README.md")
        write_atomic(expected_path, dumps({"about": about, "runs": runs}))
        write_atomic(answers_path, dumps({"about": about, "runs": answers}))
        print(f"regress: wrote {expected_path} and {answers_path}")
        return 0
    assert expected is not None
    differences, notes = check(expected, runs)
    compared = sum(len(list(flatten(r.get("datasets", {})))) for r in expected["runs"].values())
    if differences:
        print(format_differences(differences))
        for note in notes:
            print(note)
        print(f"regress: FAILED: {len(differences)} of {compared} expected values differ "
              f"from {expected_path}")
        return 1
    mode = "recomputed from recorded answers" if args.offline else "rerun"
    print(f"regress: OK: {compared} values ({mode}) match {expected_path} "
          f"(tolerance {DEFAULT_TOLERANCE.absolute:g} absolute; gates and reliability "
          f"also {TOLERANCES['gates'].relative:g} relative)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
