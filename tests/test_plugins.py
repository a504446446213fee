"""A third-party estimator package, installed for real, runs through `arbench run`."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PYPROJECT = """
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "arbench-answer-length"
version = "0.1.0"

[tool.setuptools]
py-modules = ["arbench_answer_length"]

[project.entry-points."arbench.estimators"]
answer_length = "arbench_answer_length"
"""

MODULE = '''
"""Longer closed-book answers are taken as less certain."""
from estimators import GREEDY, Estimator, StatBundle, register


@register
class AnswerLength(Estimator):
    name = "answer_length"
    family = "plugin"
    requires = (GREEDY,)
    summary = "number of generated tokens"

    def score(self, stats: StatBundle) -> float:
        return float(stats[GREEDY].n_tokens)
'''


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory) -> Path:
    pytest.importorskip("setuptools")
    source = tmp_path_factory.mktemp("plugin-src")
    (source / "pyproject.toml").write_text(PYPROJECT)
    (source / "arbench_answer_length.py").write_text(textwrap.dedent(MODULE))
    site = tmp_path_factory.mktemp("plugin-site")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--no-build-isolation", "--no-index", "--target", str(site), str(source)],
                   check=True)
    assert list(site.glob("arbench_answer_length-0.1.0.dist-info/entry_points.txt"))
    return site


def arbench(site: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(site), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "bench.cli", *args], env=env,
                          capture_output=True, text=True, check=False)


def test_installed_plugin_is_listed(plugin_site):
    listed = arbench(plugin_site, "estimators", "--json")
    assert listed.returncode == 0, listed.stderr
    entry = {e["name"]: e for e in json.loads(listed.stdout)}["answer_length"]
    assert entry["family"] == "plugin" and entry["requires"] == ["greedy"]


def test_installed_plugin_runs_through_arbench_run(plugin_site, tmp_path, model_cache):
    cache = tmp_path / "cache"
    cache.mkdir()
    (model_cache / "models").mkdir(exist_ok=True)
    (cache / "models").symlink_to(model_cache / "models")
    done = arbench(plugin_site, "run", "--data-dir", "demo", "--limit", "4",
                   "--max-new-tokens", "12", "--batch-size", "4", "--no-progress",
                   "--estimators", "answer_length", "maximum_sequence_probability",
                   "--cache-dir", str(cache), "--results-dir", str(tmp_path / "results"),
                   "--run-name", "plugin")
    assert done.returncode == 0, done.stderr
    rows = json.loads((tmp_path / "results" / "plugin" / "metrics.json").read_text())[
        "datasets"]["demo"]["rows"]
    assert rows["answer_length"]["kind"] == "gate"
    assert rows["answer_length"]["nan_scores"] == 0
    # Only the closed-book pass is needed: 1 sequence per question, plus the
    # augmented answer where the gate retrieves.
    assert rows["answer_length"]["generate_calls"] == pytest.approx(
        1 + rows["answer_length"]["rc"])


def test_a_broken_plugin_fails_loudly(tmp_path):
    site = tmp_path / "site"
    dist = site / "broken_plugin-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[arbench.estimators]\nbroken = no_such_module\n")
    listed = arbench(site, "estimators")
    assert listed.returncode != 0
    assert "estimator plugin 'broken' (no_such_module) failed to load" in listed.stderr
