"""Every pipeline with the real default model on real questions, end to end through
``arbench run``: rows land in the results table next to the gates, per-question
traces are written, and a rerun is served entirely from the cache."""
from __future__ import annotations

import json

from bench.cli import main
from bench.pipelines import PIPELINES
from tests.test_runner import fresh_cache

# Small budgets keep this a smoke test: the control flow runs every branch it
# reaches on real model outputs, not the study's full settings.
SMOKE = ["--data-dir", "demo", "--limit", "2", "--batch-size", "4", "--no-progress",
         "--max-new-tokens", "16", "--samples", "3", "--sample-max-new-tokens", "8",
         "--methods", "perplexity", "pipelines",
         # The cross-model role is served by the same small model here: the code path is
         # what is tested; the default verifier is Qwen2.5-Coder-0.5B.
         "--verifier-model", "smollm2",
         *[arg for setting in ("ircot.max_steps=2", "adaptive_rag.ircot_max_steps=2",
                               "flare.max_new_tokens=24", "flare.reasoning_token_budget=24",
                               "dragin.max_new_tokens=24", "dragin.reasoning_token_budget=24",
                               "rowen_cl.n_perturbations=2", "rowen_cm.n_perturbations=2",
                               "rowen_hybrid.n_perturbations=2", "seakr.samples=3",
                               "seakr.max_reasoning_steps=2")
           for arg in ("--pipeline-setting", setting)]]


def test_every_pipeline_runs_on_the_real_model_and_reruns_from_the_cache(tmp_path,
                                                                          model_cache):
    cache = fresh_cache(tmp_path, model_cache, "cache")
    args = [*SMOKE, "--cache-dir", str(cache), "--results-dir", str(tmp_path / "r")]
    assert main(["run", *args, "--run-name", "a"]) == 0
    metrics = json.loads((tmp_path / "r" / "a" / "metrics.json").read_text())
    rows = metrics["datasets"]["demo"]["rows"]
    assert set(PIPELINES) <= set(rows) and "perplexity" in rows
    for name in PIPELINES:
        row = rows[name]
        assert row["kind"] == "pipeline"
        assert 0.0 <= row["in_accuracy"] <= 1.0
        assert row["lmc"] >= 1.0  # every pipeline calls the LM at least once per question
        traces = (tmp_path / "r" / "a" / "pipelines" / "demo" / f"{name}.jsonl")
        lines = [json.loads(line) for line in traces.read_text().splitlines()]
        assert len(lines) == 2
        # RC is the mean number of retrieval queries the traces record.
        assert row["rc"] == sum(len(t["queries"]) for t in lines) / 2
        assert row["settings"] == json.loads(json.dumps({
            **PIPELINES[name].Settings().to_dict(), **{
            key.split(".")[1].split("=")[0]: json.loads(key.split("=")[1])
            for key in SMOKE if key.startswith(f"{name}.")}}))
    assert rows["ircot"]["rc"] >= 1.0  # IRCoT always retrieves with the question first
    state = json.loads((tmp_path / "r" / "a" / "pipelines" / "demo" / "seakr.state.json")
                       .read_text())
    assert state["train_questions"] == 2  # SeaKR's threshold was calibrated on train

    assert main(["run", *args, "--run-name", "b"]) == 0
    info = json.loads((tmp_path / "r" / "b" / "run_info.json").read_text())
    assert info["lm_generate_calls"] == 0 and info["retrieval_queries"] == 0
    again = json.loads((tmp_path / "r" / "b" / "metrics.json").read_text())
    assert again["datasets"] == metrics["datasets"]
