"""Record and replay the inputs of :func:`bench.evaluation.evaluate_dataset`.

``python -m bench.regress --update`` records, for every dataset of the pinned
run, the exact arguments the runner passed to ``evaluate_dataset``: test and
train answers, golds, estimator scores and per-question costs. They are
committed as ``results/regress/answers.json``. Replaying them through the
current ``evaluate_dataset`` recomputes every metric, gate, curve and
reliability table of the run without the model, in seconds; this is what
``python -m bench.regress --offline`` and ``tests/test_regress.py`` do.

The file is plain JSON (no pickle). Values that JSON cannot hold are tagged
objects with a single ``$``-key: ``{"$array": [...], "dtype": "<f8"}``,
``{"$cost": {...}}``, ``{"$split": {...}}`` and ``{"$float": "nan"}``.
"""
from __future__ import annotations

import inspect
import json
import math
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import fields
from typing import Any

import numpy as np

import bench.evaluation as evaluation_module
import bench.runner as runner_module
from bench.evaluation import SplitAnswers
from bench.ledger import Cost
from bench.report import dumps

#: Cost fields that are not deterministic and never reach metrics.json.
UNRECORDED_COST_FIELDS = frozenset({"seconds"})


def _encode_float(value: float) -> float | dict:
    return value if math.isfinite(value) else {"$float": repr(value)}


def encode(value: Any) -> Any:
    """A JSON-able form of one ``evaluate_dataset`` argument (inverse: :func:`decode`)."""
    if isinstance(value, SplitAnswers):
        return {"$split": {f.name: encode(getattr(value, f.name)) for f in fields(value)}}
    if isinstance(value, Cost):
        # Zero fields are left out (Cost.from_dict restores them): most are zero.
        return {"$cost": {f.name: getattr(value, f.name) for f in fields(value)
                          if f.name not in UNRECORDED_COST_FIELDS and getattr(value, f.name)}}
    if isinstance(value, np.ndarray):
        items = [encode(v) for v in value.tolist()]
        return {"$array": items, "dtype": value.dtype.str}
    if isinstance(value, float):
        return _encode_float(value)
    if isinstance(value, np.generic):
        return encode(value.item())
    if isinstance(value, Mapping):
        return {str(k): encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [encode(v) for v in value]
    if value is None or isinstance(value, (str, int, bool)):
        return value
    raise TypeError(f"cannot record a {type(value).__name__} argument of evaluate_dataset")


def _decode_split(data: dict) -> SplitAnswers:
    return SplitAnswers(**{name: decode(v) for name, v in data.items()})


#: Tagged objects: the single ``$``-key → how to rebuild the value.
_DECODERS: dict[str, Callable[[dict], Any]] = {
    "$split": lambda tagged: _decode_split(tagged["$split"]),
    "$cost": lambda tagged: Cost.from_dict(tagged["$cost"]),
    "$array": lambda tagged: np.asarray([decode(v) for v in tagged["$array"]],
                                        dtype=np.dtype(tagged["dtype"])),
    "$float": lambda tagged: float(tagged["$float"]),
}


def decode(value: Any) -> Any:
    """Inverse of :func:`encode` (tuples come back as lists)."""
    if isinstance(value, dict):
        tag = next((k for k in value if k in _DECODERS), None)
        if tag is not None:
            return _DECODERS[tag](value)
        return {k: decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decode(v) for v in value]
    return value


@contextmanager
def recording_evaluations() -> Iterator[list[dict]]:
    """Record the arguments of every ``evaluate_dataset`` call made by :mod:`bench.runner`.

    Yields
    ------
    list of dict
        One ``{parameter: value}`` mapping per call, in call order (the
        runner evaluates datasets in the order of ``metrics["datasets"]``).

    Notes
    -----
    The runner keeps these inputs in local variables only; wrapping the
    function it calls is the one way to see them without changing the run.
    """
    calls: list[dict] = []
    original = runner_module.evaluate_dataset
    signature = inspect.signature(original)

    def recorder(*args, **kwargs):
        calls.append(dict(signature.bind(*args, **kwargs).arguments))
        return original(*args, **kwargs)

    runner_module.evaluate_dataset = recorder
    try:
        yield calls
    finally:
        runner_module.evaluate_dataset = original


def encode_calls(datasets: list[str], calls: list[dict]) -> dict:
    """``{dataset: encoded arguments}`` for one run (datasets in evaluation order)."""
    if len(datasets) != len(calls):
        raise RuntimeError(f"recorded {len(calls)} evaluations for {len(datasets)} datasets")
    return {name: encode(call) for name, call in zip(datasets, calls)}


def replay(recorded: Mapping[str, Any], expected_datasets: Mapping[str, dict]) -> dict:
    """Recompute each dataset's results from recorded arguments, as metrics.json would hold them.

    Parameters
    ----------
    recorded : mapping
        ``{dataset: encoded arguments}`` from :func:`encode_calls`.
    expected_datasets : mapping
        The committed ``metrics["datasets"]`` of the same run. Keys that the
        runner adds after ``evaluate_dataset`` (``statistics_ledger``) are
        taken from here, so the comparison covers what ``evaluate_dataset``
        computes and nothing else differs.

    Returns
    -------
    dict
        ``{dataset: results}`` after the same JSON conversion as metrics.json.
    """
    replayed = {}
    for dataset, arguments in recorded.items():
        # Looked up at call time, so a monkeypatched metric is the one replayed.
        result = evaluation_module.evaluate_dataset(**decode(arguments))
        replayed[dataset] = {**expected_datasets.get(dataset, {}), **result}
    return json.loads(dumps(replayed))
