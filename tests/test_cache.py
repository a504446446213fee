"""Content-addressed cache and the generation/retrieval stores (scripted model)."""
from __future__ import annotations

import dataclasses
import sqlite3
import threading

import numpy as np
import pytest

from bench.cache import Cache, Record, content_key
from bench.models.hf_backend import GreedyConfig, SamplingConfig
from bench.stores import GenerationStore, RetrievalStore
from retrievers.base import Corpus, Hit, Passage, Retriever
from tests.scripted import ScriptedBackend


def chat(system, user):
    return (("system", system), ("user", user))


PROMPTS = [chat("sys", "alpha"), chat("sys", "beta"), chat("sys", "gamma"), chat("sys", "delta")]


def make_store(tmp_path, backend, model_key="model-A", batch_size=2):
    loads = []

    def load():
        loads.append(1)
        return backend

    store = GenerationStore(Cache(tmp_path), model_key, load, batch_size, progress=False)
    return store, loads


def test_record_round_trip_and_persistence(tmp_path):
    cache = Cache(tmp_path)
    arrays = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.array([7], np.int64)}
    cache.put_many("kind", {"k1": Record({"text": "héllo", "n": 3}, arrays)})
    cache.close()
    reopened = Cache(tmp_path)
    got = reopened.get_many(["k1", "absent"])
    assert list(got) == ["k1"]
    assert got["k1"].meta == {"text": "héllo", "n": 3}
    np.testing.assert_array_equal(got["k1"].arrays["a"], arrays["a"])
    assert got["k1"].arrays["a"].dtype == np.float32
    assert (reopened.hits, reopened.misses) == (1, 1)


def test_cache_opens_while_another_connection_writes_to_a_new_file(tmp_path):
    # A write lock held on a rollback-mode file makes SQLite refuse the switch to WAL at
    # once, busy timeout or not: what a second process sees when two open a new cache.
    holder = sqlite3.connect(tmp_path / "arbench.sqlite", isolation_level=None,
                             check_same_thread=False)
    holder.execute("CREATE TABLE scratch (x)")
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("INSERT INTO scratch VALUES (1)")
    release = threading.Timer(0.3, holder.execute, ("COMMIT",))
    release.start()
    cache = Cache(tmp_path)
    release.join()
    assert cache._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    cache.put_many("kind", {"k": Record({}, {"x": np.arange(3)})})
    assert cache.count() == 1
    holder.close()


def test_cache_that_stays_locked_fails_naming_the_file(tmp_path, monkeypatch):
    monkeypatch.setattr("bench.cache.BUSY_TIMEOUT_S", 0.2)
    holder = sqlite3.connect(tmp_path / "arbench.sqlite", isolation_level=None)
    holder.execute("CREATE TABLE scratch (x)")
    holder.execute("BEGIN IMMEDIATE")
    with pytest.raises(sqlite3.OperationalError, match=r"arbench\.sqlite: cannot open the cache"):
        Cache(tmp_path)
    holder.close()


def test_cache_refuses_object_arrays(tmp_path):
    with pytest.raises(TypeError, match="pickle"):
        Cache(tmp_path).put_many("kind", {"k": Record({}, {"x": np.array([{"a": 1}])})})


def test_content_key_depends_on_every_part():
    base = {"model": "m", "prompt": "p", "config": {"t": 1}}
    keys = {content_key("greedy", base),
            content_key("samples", base),
            content_key("greedy", {**base, "model": "m2"}),
            content_key("greedy", {**base, "config": {"t": 2}})}
    assert len(keys) == 4
    assert content_key("greedy", dict(reversed(base.items()))) == content_key("greedy", base)


def test_greedy_store_hit_miss_and_invalidation(tmp_path):
    backend = ScriptedBackend()
    store, loads = make_store(tmp_path, backend)
    config = GreedyConfig(max_new_tokens=8)
    first = store.greedy(PROMPTS, config, desc="t")
    assert [g.text for g, _ in first] == ["ahpla", "ateb", "ammag", "atled"]
    assert backend.counter.generate_calls == 4
    assert first[0][1].generate_calls == 1 and first[0][1].prompt_tokens == 7

    # Same inputs: a new store (new process) on the same cache makes no LM call
    # and never loads the model.
    again_backend = ScriptedBackend()
    again, again_loads = make_store(tmp_path, again_backend)
    second = again.greedy(PROMPTS, config, desc="t")
    assert again_loads == [] and again.lm_calls == 0
    assert [g.text for g, _ in second] == [g.text for g, _ in first]
    np.testing.assert_array_equal(second[2][0].token_logprobs, first[2][0].token_logprobs)

    # One prompt changed: only that one is recomputed.
    changed = PROMPTS[:3] + [chat("sys", "epsilon")]
    again.greedy(changed, config, desc="t")
    assert again_backend.prompts_seen == ["sys|epsilon"]

    # A decoding parameter or the model identity changes every key.
    again.greedy(PROMPTS, dataclasses.replace(config, max_new_tokens=9), desc="t")
    assert again_backend.counter.generate_calls == 1 + 4
    other_model, _ = make_store(tmp_path, ScriptedBackend(), model_key="model-B")
    other_model.greedy(PROMPTS, config, desc="t")
    assert other_model.lm_calls == 4


def test_batches_are_ordered_by_prompt_length_then_key(tmp_path):
    backend = ScriptedBackend()
    store, _ = make_store(tmp_path, backend, batch_size=2)
    store.greedy([chat("s", "ccc"), chat("s", "a"), chat("s", "bb")], GreedyConfig(), desc="t")
    assert backend.prompts_seen == ["s|a", "s|bb", "s|ccc"]


def test_samples_store_caches_by_seed(tmp_path):
    backend = ScriptedBackend()
    store, _ = make_store(tmp_path, backend)
    config = SamplingConfig(n=3)
    sets = store.samples(PROMPTS[:2], config, seed=0, desc="t")
    assert sets[0][0].texts == ["ahpla#0", "ahpla#1", "ahpla#0"]
    assert sets[0][1].generate_calls == 3 and sets[0][1].prefills == 1
    store.samples(PROMPTS[:2], config, seed=0, desc="t")
    assert backend.counter.generate_calls == 2
    store.samples(PROMPTS[:2], config, seed=1, desc="t")
    assert backend.counter.generate_calls == 4


class CountingRetriever(Retriever):
    name = "counting"

    def __init__(self, corpus):
        super().__init__(corpus)
        self.asked: list[str] = []

    def fingerprint(self):
        return "counting-v1"

    def search(self, queries, k):
        self.asked.extend(queries)
        return [[Hit(p.id, float(len(q))) for p in self.corpus.passages[:k]] for q in queries]


def test_retrieval_store_caches_queries(tmp_path):
    corpus = Corpus.from_rows([Passage("p1", "T1", "one"), Passage("p2", "T2", "two")], "t")
    retriever = CountingRetriever(corpus)
    store = RetrievalStore(Cache(tmp_path), retriever)
    first = store.search(["q one", "q two"], k=1)
    assert first == [[Hit("p1", 5.0)], [Hit("p1", 5.0)]]
    store.search(["q two", "q three"], k=1)
    # Missing queries go out in key order; the second call asks only the new one.
    assert sorted(retriever.asked[:2]) == ["q one", "q two"]
    assert retriever.asked[2:] == ["q three"]
    store.search(["q two"], k=2)
    assert retriever.asked[-1] == "q two"


@pytest.mark.parametrize("array", [
    np.arange(12, dtype=np.float32).reshape(3, 4), np.array(3.5), np.zeros((0, 5), np.int64),
    np.array([True, False]), np.asfortranarray(np.arange(6.0).reshape(2, 3)),
    np.array([1, 2], dtype=">i4"), np.array(["ab", "c"])])
def test_array_blobs_round_trip_every_layout(tmp_path, array):
    cache = Cache(tmp_path)
    cache.put_many("kind", {"k": Record({}, {"a": array, "b": np.arange(3)})})
    got = Cache(tmp_path).get_many(["k"])["k"].arrays
    np.testing.assert_array_equal(got["a"], array)
    assert got["a"].dtype == array.dtype and got["a"].shape == array.shape
    np.testing.assert_array_equal(got["b"], np.arange(3))
    assert got["a"].flags.writeable  # estimators may modify what they read
