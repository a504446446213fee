"""Adaptive-RAG pipelines on one backend, one retriever and one cost ledger.

Importing this package registers every built-in pipeline in
:data:`bench.pipelines.base.PIPELINES`.
"""
from __future__ import annotations

import importlib

from bench.pipelines.base import (
    PIPELINES,
    Outcome,
    Pipeline,
    PipelineContext,
    PipelineSettings,
    create_pipeline,
    register_pipeline,
)

__all__ = ["PIPELINES", "Outcome", "Pipeline", "PipelineContext", "PipelineSettings",
           "create_pipeline", "register_pipeline"]

for _module in ("ircot", "adaptive_rag", "flare", "dragin", "rowen", "seakr"):
    importlib.import_module(f"bench.pipelines.{_module}")
