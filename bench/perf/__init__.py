"""``arbench bench``: throughput figures of this machine, measured in one run.

Modules: :mod:`~bench.perf.figures` (figures, GEMM-bound arithmetic, table and
JSON), :mod:`~bench.perf.calibration` (environment, GEMM calibration),
:mod:`~bench.perf.lm` and :mod:`~bench.perf.lm_figures` (prefill, decode,
samples, model load), :mod:`~bench.perf.estimators` (estimator suite and
rescoring over cached statistics), :mod:`~bench.perf.retrieval` (BM25) and
:mod:`~bench.perf.command` (the subcommand).
"""
