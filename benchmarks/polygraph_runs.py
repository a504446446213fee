"""The two timed sides of the LM-Polygraph comparison: arbench and LM-Polygraph's UEManager.

Each side takes a slice of questions (arbench) or prompt strings (LM-Polygraph) and returns
a :class:`ToolRun`; :mod:`benchmarks.polygraph_side_by_side` loads the models, alternates
the slices and reports. torch, transformers and lm-polygraph are imported inside the
functions, so the report helpers stay importable without them.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np


@dataclass
class ToolRun:
    """One tool's figures: wall and CPU seconds, answer tokens, scores by arbench name.

    ``phases`` holds the wall seconds of each statistic's computation (arbench: its
    calculators' recorded costs; LM-Polygraph: its stat calculators, timed one call each).
    """

    wall_seconds: float
    cpu_seconds: float
    greedy_tokens: int
    sample_tokens: int
    greedy_texts: list[str]
    scores: dict[str, np.ndarray]
    phases: dict[str, float]


def load_model_copy(model_cache: str, dtype: str):
    from bench.models.loading import DEFAULT_MODEL, load_model, resolve_model

    ref = resolve_model(DEFAULT_MODEL, model_cache)
    model, tokenizer = load_model(ref, model_cache, dtype=dtype)
    return model, tokenizer, ref


def warm_up(model, tokenizer, prompt: str) -> None:
    """One forward pass, so one-time kernel set-up is paid outside either clock."""
    import torch

    with torch.inference_mode():
        model(**tokenizer([prompt], return_tensors="pt", add_special_tokens=False))


class ArbenchSide:
    """arbench's statistics and estimators on one fresh cache, a slice at a time.

    Backend, cache and store are built inside the first slice's clock.
    """

    def __init__(self, args, model, tokenizer, fingerprint: str, cache_dir: str) -> None:
        self.args, self.model, self.tokenizer = args, model, tokenizer
        self.fingerprint, self.cache_dir = fingerprint, cache_dir
        self.ctx = None

    def _build(self) -> None:
        import estimators as registry
        from bench.cache import Cache
        from bench.models.hf_backend import GreedyConfig, HFBackend, SamplingConfig
        from bench.prompts import DEFAULT_TEMPLATE, TEMPLATES
        from bench.statistics import StatContext
        from bench.stores import GenerationStore
        from estimators.base import GREEDY, EstimatorOptions

        args = self.args
        extra = {"prefix_cache": True} if args.prefix_cache else {}
        backend = HFBackend(self.model, self.tokenizer, self.fingerprint, args.batch_size,
                            **extra)
        self.cache = Cache(self.cache_dir)
        store = GenerationStore(self.cache, f"{self.fingerprint}|{args.dtype}",
                                lambda: backend, args.batch_size, progress=False)
        greedy = GreedyConfig(max_new_tokens=args.max_new_tokens, stop_at_newline=False)
        sampling = SamplingConfig(n=args.samples, max_new_tokens=args.max_new_tokens,
                                  stop_at_newline=False)
        self.ctx = StatContext(store, TEMPLATES[DEFAULT_TEMPLATE], greedy, sampling, args.seed)
        self.chosen = [registry.create(p.arbench, EstimatorOptions()) for p in args.pairs]
        self.needed = {GREEDY} | {stat for e in self.chosen for stat in e.requires}

    def run(self, questions) -> ToolRun:
        from bench.estimation import score_all
        from bench.statistics import compute_statistics
        from estimators.base import GREEDY, SAMPLES

        wall, cpu = time.perf_counter(), time.process_time()
        if self.ctx is None:
            self._build()
        bundles, costs = compute_statistics(questions, self.needed, self.ctx,
                                            desc=self.args.dataset)
        scores = {e.name: score_all(e, bundles) for e in self.chosen}
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        samples = [b[SAMPLES].samples for b in bundles] if SAMPLES in self.needed else []
        phases = {stat.name: sum(c.seconds for c in stat_costs)
                  for stat, stat_costs in costs.items()}
        return ToolRun(wall, cpu, sum(b[GREEDY].n_tokens for b in bundles),
                       sum(s.n_text_tokens for sets in samples for s in sets),
                       [b[GREEDY].text for b in bundles], scores, phases)


class _Timed:
    """Forwards calls to an LM-Polygraph stat calculator and adds their wall time to totals."""

    def __init__(self, inner, totals: dict[str, float]) -> None:
        self.inner, self.totals = inner, totals

    def __call__(self, *args, **kwargs):
        start = time.perf_counter()
        try:
            return self.inner(*args, **kwargs)
        finally:
            name = type(self.inner).__name__
            self.totals[name] = self.totals.get(name, 0.0) + time.perf_counter() - start

    def __str__(self) -> str:
        return str(self.inner)


class PolygraphSide:
    """LM-Polygraph's UEManager over the same prompt strings (no generation or UE metrics)."""

    def __init__(self, args, model, tokenizer, model_dir: str) -> None:
        import torch
        from lm_polygraph.utils.generation_parameters import GenerationParameters
        from lm_polygraph.utils.model import WhiteboxModel

        self.args = args
        # T = 1 and top-k 50 as arbench; allow_newlines keeps every token allowed.
        params = GenerationParameters(temperature=1.0, top_k=50, top_p=1.0, do_sample=False,
                                      allow_newlines=True)
        self.whitebox = WhiteboxModel(model, tokenizer, model_dir, "CausalLM", params)
        torch.manual_seed(args.seed)

    def run(self, prompts: list[str]) -> ToolRun:
        from lm_polygraph import estimators as poly_estimators
        from lm_polygraph.defaults.register_default_stat_calculators import (
            register_default_stat_calculators,
        )
        from lm_polygraph.stat_calculators import SamplingGenerationCalculator
        from lm_polygraph.utils.builder_enviroment_stat_calculator import (
            BuilderEnvironmentStatCalculator,
        )
        from lm_polygraph.utils.dataset import Dataset
        from lm_polygraph.utils.manager import UEManager

        args = self.args
        wall, cpu = time.perf_counter(), time.process_time()
        estimators = [getattr(poly_estimators, p.polygraph)() for p in args.pairs]
        calculators = register_default_stat_calculators(
            "Whitebox", output_attentions=False, output_hidden_states=False)
        manager = UEManager(Dataset(prompts, [""] * len(prompts), args.batch_size),
                            self.whitebox, estimators,
                            BuilderEnvironmentStatCalculator(self.whitebox), calculators,
                            [], [], [], ignore_exceptions=False, verbose=False,
                            max_new_tokens=args.max_new_tokens, save_stats=["sample_tokens"])
        phases: dict[str, float] = {}
        for calculator in manager.stat_calculators:
            # The default builder makes 10 samples; samples_n is the calculator's own setting.
            if isinstance(calculator, SamplingGenerationCalculator):
                calculator.samples_n = args.samples
        manager.stat_calculators = [_Timed(c, phases) for c in manager.stat_calculators]
        manager()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        scores = {p.arbench: np.asarray(manager.estimations["sequence", str(e)],
                                        dtype=np.float64)
                  for p, e in zip(args.pairs, estimators)}
        sample_tokens = sum(len(t) for sets in manager.stats.get("sample_tokens", [])
                            for t in sets)
        return ToolRun(wall, cpu, sum(len(t) for t in manager.stats["greedy_tokens"]),
                       sample_tokens, list(manager.stats["greedy_texts"]), scores, phases)
