"""Uncertainty estimators: one small module each, registered by decorator.

Importing this package registers the built-in estimators; third-party
packages add theirs with the same :func:`register` decorator.
"""
from estimators import (  # noqa: F401  (imports register the estimators)
    answer_entropy,
    ccp,
    density,
    divergence,
    dragin,
    eigenscore,
    energy,
    graph_uncertainty,
    hybrid,
    icm,
    introspection,
    lexical_similarity,
    monte_carlo_entropy,
    pmi,
    probes,
    reflective,
    sar,
    self_certainty,
    self_consistency,
    semantic,
    sequence_probability,
    token_entropy,
    token_probability,
    token_sar,
    verbalized,
)
from estimators.base import (
    ESTIMATORS,
    GREEDY,
    SAMPLES,
    Estimator,
    EstimatorOptions,
    StatBundle,
    Statistic,
    create,
    register,
)

__all__ = ["ESTIMATORS", "GREEDY", "SAMPLES", "Estimator", "EstimatorOptions", "StatBundle",
           "Statistic", "create", "register"]

from estimators.plugins import load_plugins  # noqa: E402  (after the built-ins: plugins may import them)

PLUGINS = load_plugins()
