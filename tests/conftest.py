"""Shared fixtures: the shared data folder, a persistent model cache, the real model."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` beside the checkout (or ``$ARBENCH_SHARED_DATA``)."""
    path = Path(os.environ.get("ARBENCH_SHARED_DATA", REPO.parent / "shared" / "data"))
    if not (path / "corpus" / "wiki_passages.jsonl").exists():
        pytest.skip(f"shared data not found at {path}")
    return path


@pytest.fixture(scope="session")
def model_cache() -> Path:
    """Cache for the converted model, reused across test sessions (gitignored)."""
    path = Path(os.environ.get("ARBENCH_TEST_CACHE", REPO / ".arbench-cache"))
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def fp32_backend(model_cache):
    """The default model in float32, so numerical checks can be tight."""
    from bench.models.hf_backend import HFBackend
    from bench.models.loading import load_model, resolve_model

    ref = resolve_model("smollm2", model_cache)
    model, tokenizer = load_model(ref, model_cache, dtype="float32")
    return HFBackend(model, tokenizer, ref.fingerprint, batch_size=4)
