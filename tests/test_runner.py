"""End-to-end runs of the real default model on a few demo questions: rerun, invalidation,
kill-and-resume."""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.cli import main

ARGS = ["--data-dir", "demo", "--limit", "4", "--samples", "3", "--max-new-tokens", "12",
        "--sample-max-new-tokens", "8", "--batch-size", "2", "--no-progress",
        "--estimators", "perplexity", "max_token_entropy", "lexical_similarity",
        "self_consistency"]


def fresh_cache(tmp_path: Path, model_cache: Path, name: str) -> Path:
    """An empty record cache that shares the converted model (saves ~20 s per run)."""
    cache = tmp_path / name
    cache.mkdir()
    (model_cache / "models").mkdir(exist_ok=True)
    (cache / "models").symlink_to(model_cache / "models")
    return cache


def run_cli(cache: Path, results: Path, *extra: str) -> dict:
    code = main(["run", *ARGS, "--cache-dir", str(cache), "--results-dir", str(results),
                 "--run-name", "t", *extra])
    assert code == 0
    return json.loads((results / "t" / "run_info.json").read_text())


def test_rerun_makes_no_lm_call_and_writes_identical_metrics(tmp_path, model_cache, capsys):
    cache = fresh_cache(tmp_path, model_cache, "cache")
    first = run_cli(cache, tmp_path / "a")
    # 4 test + 4 train greedy answers, 8 sample sets, 4 augmented answers.
    assert first["lm_generate_calls"] == 20
    second = run_cli(cache, tmp_path / "b")
    assert second["lm_generate_calls"] == 0 and second["retrieval_queries"] == 0
    assert "lm_work" not in second  # the model was never loaded
    a = (tmp_path / "a" / "t" / "metrics.json").read_bytes()
    assert a == (tmp_path / "b" / "t" / "metrics.json").read_bytes()
    metrics = json.loads(a)
    rows = metrics["datasets"]["demo"]["rows"]
    assert {"never", "always", "ideal", "perplexity", "lexical_similarity"} <= set(rows)
    assert rows["never"]["rc"] == 0 and rows["always"]["rc"] == 1
    out = capsys.readouterr().out
    assert "ideal" in out and "self_consistency" in out

    # Changing only the sample budget recomputes the 8 sample sets, nothing else.
    third = run_cli(cache, tmp_path / "c", "--sample-max-new-tokens", "6")
    assert third["lm_generate_calls"] == 8
    assert third["lm_work"]["sequences"] == 8 * 3


def _records(cache: Path) -> int:
    db = cache / "arbench.sqlite"
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db, timeout=1) as conn:
            return conn.execute("SELECT COUNT(*) FROM records WHERE kind != 'retrieval'"
                                ).fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def test_sigkill_then_resume_gives_the_uninterrupted_result(tmp_path, model_cache):
    reference_cache = fresh_cache(tmp_path, model_cache, "reference")
    run_cli(reference_cache, tmp_path / "reference")
    expected = (tmp_path / "reference" / "t" / "metrics.json").read_bytes()

    cache = fresh_cache(tmp_path, model_cache, "killed")
    command = [sys.executable, "-m", "bench.cli", "run", *ARGS, "--cache-dir", str(cache),
               "--results-dir", str(tmp_path / "killed"), "--run-name", "t"]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.time() + 300
    while _records(cache) < 2 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    kept = _records(cache)
    if proc.returncode != -signal.SIGKILL or kept >= 20:
        pytest.fail(f"the run was not interrupted mid-way (rc {proc.returncode}, {kept} records)")
    assert kept >= 2, "finished batches must survive SIGKILL"
    assert not (tmp_path / "killed" / "t" / "metrics.json").exists()

    resumed = run_cli(cache, tmp_path / "killed")
    assert resumed["lm_generate_calls"] == 20 - kept
    assert (tmp_path / "killed" / "t" / "metrics.json").read_bytes() == expected


def test_rescore_reuses_the_cache_and_refuses_to_run_the_model(tmp_path, model_cache, capsys):
    cache = fresh_cache(tmp_path, model_cache, "cache")
    run_cli(cache, tmp_path / "r")
    original = json.loads((tmp_path / "r" / "t" / "metrics.json").read_text())
    capsys.readouterr()

    assert main(["rescore", str(tmp_path / "r" / "t"), "--estimators", "perplexity",
                 "neg_mean_token_prob", "answer_entropy"]) == 0
    out = tmp_path / "r" / "t-rescored"
    info = json.loads((out / "run_info.json").read_text())
    assert info["lm_generate_calls"] == 0 and "lm_work" not in info
    rows = json.loads((out / "metrics.json").read_text())["datasets"]["demo"]["rows"]
    assert rows["perplexity"] == original["datasets"]["demo"]["rows"]["perplexity"]
    assert {"neg_mean_token_prob", "answer_entropy"} <= set(rows)

    # An estimator whose statistic was never computed: one line naming it, exit 2.
    capsys.readouterr()
    assert main(["rescore", str(tmp_path / "r" / "t"), "--estimators", "mean_pmi"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("arbench: error:") and "'unconditional' records" in err
    assert len(err.splitlines()) == 1
