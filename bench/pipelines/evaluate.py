"""Run selected pipelines on a dataset and turn their traces into result rows.

Pipeline rows sit in the same table as gates and reference rows. QA metrics
come from the final answers; RC and LMC from the per-question ledger (RC =
retriever calls, LMC = LM invocations: a greedy answer or one sample batch
from one prefill counts 1, as the study counted calls to its LM server); the
full cost columns from the same ledger. Where a pipeline makes a first
retrieve/no-retrieve decision, the self-knowledge metrics of that decision are
computed against the need label of the run's own Never answers.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from bench.data.schema import Question
from bench.evaluation import COST_FIELDS
from bench.ledger import mean_cost
from bench.metrics import score_answers, self_knowledge
from bench.pipelines.base import Pipeline, Trace
from bench.pipelines.driver import Services, drive
from bench.report import dumps, write_atomic


def pipeline_row(traces: Sequence[Trace], golds: Sequence[Sequence[str]], need: np.ndarray
                 ) -> dict:
    """QA, cost and (where defined) self-knowledge metrics of one pipeline's traces."""
    qa = score_answers([t.outcome.answer for t in traces], [list(g) for g in golds])
    row: dict = {k: float(np.mean(v)) for k, v in qa.items()}
    cost = mean_cost([t.cost for t in traces])
    row["rc"] = cost.retrieval_calls
    row["lmc"] = cost.prefills
    row.update({f: round(getattr(cost, f), 6) for f in COST_FIELDS})
    row["retrieval_calls"] = round(cost.retrieval_calls, 6)
    decisions = [t.outcome.retrieve_first for t in traces]
    if all(d is not None for d in decisions):
        scores = [t.outcome.trigger_score for t in traces]
        graded = all(s is not None and np.isfinite(s) for s in scores)
        row.update(self_knowledge(need, np.asarray(decisions, dtype=bool),
                                  np.asarray(scores, dtype=np.float64) if graded else None))
    row["steps"] = float(np.mean([t.outcome.steps for t in traces]))
    row["kind"] = "pipeline"
    return row


def evaluate_pipelines(pipelines: Sequence[Pipeline], train: Sequence[Question],
                       test: Sequence[Question], need: np.ndarray, services: Services,
                       dataset: str, output_dir: Path) -> dict[str, dict]:
    """Prepare each pipeline on train, run it on test, write its traces, return rows.

    ``output_dir/<dataset>/<pipeline>.jsonl`` receives one line per test
    question (answer, retrieval queries, decision, cost) and
    ``<pipeline>.state.json`` whatever :meth:`Pipeline.prepare` fitted.
    """
    rows: dict[str, dict] = {}
    folder = output_dir / dataset
    folder.mkdir(parents=True, exist_ok=True)
    for pipeline in pipelines:
        state = pipeline.prepare(train, services)
        if state is not None:
            write_atomic(folder / f"{pipeline.name}.state.json", dumps(state))
        traces = drive(pipeline, test, services, dataset)
        write_atomic(folder / f"{pipeline.name}.jsonl",
                     "".join(json.dumps(t.to_dict(), ensure_ascii=False) + "\n"
                             for t in traces))
        row = pipeline_row(traces, [q.answers for q in test], need)
        row["settings"] = pipeline.settings.to_dict()
        rows[pipeline.name] = row
    return rows
