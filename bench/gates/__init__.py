"""Retrieval gates: turn an uncertainty score into a retrieve/skip decision.

Five decision makers (the study's): a threshold search in both directions
(:mod:`bench.gates.threshold`) and logistic regression, a depth-3 tree, kNN
and an MLP over the single score (:mod:`bench.gates.classifiers`), behind one
registry (:mod:`bench.gates.registry`). :func:`select_gate` fits each on the
fit part of train and keeps the best on the dev part; test labels are never
read.
"""
from bench.gates.classifiers import (
    ClassifierGate,
    FeatureMap,
    KnnGate,
    LogisticGate,
    MlpGate,
    TreeGate,
)
from bench.gates.registry import Gate, gate_kinds, register_gate
from bench.gates.selection import GateSelection, choose, fit_gates, select_gate
from bench.gates.threshold import ThresholdGate, split_dev

__all__ = [
    "ClassifierGate",
    "FeatureMap",
    "Gate",
    "GateSelection",
    "KnnGate",
    "LogisticGate",
    "MlpGate",
    "ThresholdGate",
    "TreeGate",
    "choose",
    "fit_gates",
    "gate_kinds",
    "register_gate",
    "select_gate",
    "split_dev",
]
