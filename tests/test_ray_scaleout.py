"""``arbench run --ray``: the shared cache under concurrent writers, sharding at the store's
batch boundaries, and a two-worker local Ray run against a single-process run."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from bench.cache import Cache
from bench.cli import main
from bench.distributed import ReplayStore, _ReplayStop, shard_plan
from bench.models.hf_backend import GreedyConfig
from bench.stores import GenerationStore
from tests.conftest import REPO
from tests.scripted import ScriptedBackend
from tests.test_runner import fresh_cache

WRITERS, BATCHES, PER_BATCH = 4, 25, 6
# Each writer process imports only bench.cache (a spawned copy of this module would import
# torch and Ray) and opens the fresh cache as soon as the start file appears.
WRITER = """
import sys, time
from pathlib import Path
import numpy as np
from bench.cache import Cache, Record
directory, writer, writers, batches, per_batch = sys.argv[1], *map(int, sys.argv[2:])
(Path(directory) / f"ready-{writer}").touch()
while not (Path(directory) / "start").exists():
    time.sleep(0.001)
cache = Cache(directory)
for b in range(batches):
    cache.put_many("k", {f"{writer}-{b}-{i}": Record({"w": writer, "b": b},
                                                     {"x": np.full(64, writer, np.int32)})
                         for i in range(per_batch)})
    assert len(cache.get_many([f"{writer}-{b}-0", f"{(writer + 1) % writers}-0-0"])) >= 1
cache.close()
"""


def test_cache_takes_concurrent_writers_from_several_processes(tmp_path):
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), str(w), str(WRITERS),
                               str(BATCHES), str(PER_BATCH)], cwd=REPO, stderr=subprocess.PIPE)
             for w in range(WRITERS)]
    deadline = time.time() + 120
    while len(list(tmp_path.glob("ready-*"))) < WRITERS and time.time() < deadline:
        time.sleep(0.01)
    (tmp_path / "start").touch()
    errors = [proc.communicate(timeout=120)[1].decode() for proc in procs]
    assert [p.returncode for p in procs] == [0] * WRITERS, errors
    cache = Cache(tmp_path)
    assert cache.count() == WRITERS * BATCHES * PER_BATCH
    got = cache.get_many([f"{w}-{BATCHES - 1}-{PER_BATCH - 1}" for w in range(WRITERS)])
    assert [int(r.arrays["x"][0]) for r in got.values()] == list(range(WRITERS))
    assert cache.contains(["0-0-0", "absent", "3-24-5"]) == {"0-0-0", "3-24-5"}


class BatchLog(ScriptedBackend):
    """Records the prompts of every greedy batch."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[tuple[str, ...]] = []

    def greedy(self, prompts, config):
        self.batches.append(tuple(prompts))
        return super().greedy(prompts, config)


PROMPTS = [(("user", "q" * (1 + i % 4) + str(i)),) for i in range(11)]
CONFIG = GreedyConfig(max_new_tokens=4)


def _store(cls, directory: Path, backend) -> GenerationStore:
    return cls(Cache(directory), "m", lambda: backend, 2, progress=False)


def test_shards_compute_exactly_the_single_process_batches(tmp_path):
    single_backend = BatchLog()
    single = _store(GenerationStore, tmp_path / "single", single_backend)
    expected = single.greedy(PROMPTS, CONFIG, desc="t")

    planner = _store(ReplayStore, tmp_path / "shared", BatchLog())
    planner.begin("d")
    with pytest.raises(_ReplayStop) as stop:
        planner.greedy(PROMPTS, CONFIG, desc="t")
    plan = stop.value.plan
    assert plan is not None and plan.call == 0 and len(plan.batches) == 6
    tasks = shard_plan(plan, shards=2, shard_size=None, workers=5)
    assert [t.shard for t in tasks] == [0, 1]
    assert [len(t.batches) for t in tasks] == [3, 3]

    seen: list[tuple[str, ...]] = []
    for task in reversed(tasks):  # the order workers finish in does not matter
        backend = BatchLog()
        worker = _store(ReplayStore, tmp_path / "shared", backend)
        worker.begin("d", task)
        with pytest.raises(_ReplayStop):
            worker.greedy(PROMPTS, CONFIG, desc="t")
        assert backend.batches == [single_backend.batches[i] for i in range(task.shard, 6, 2)]
        seen += backend.batches
    assert sorted(seen) == sorted(single_backend.batches)

    # The fill is now complete: planning passes through it with the same records.
    planner.begin("d")
    replayed = planner.greedy(PROMPTS, CONFIG, desc="t")
    assert [g.text for g, _ in replayed] == [g.text for g, _ in expected]
    for (a, ca), (b, cb) in zip(replayed, expected):
        np.testing.assert_array_equal(a.token_logprobs, b.token_logprobs)
        assert ca.generate_calls == cb.generate_calls == 1


def test_shared_records_are_planned_by_the_first_dataset_and_plans_are_checked(tmp_path):
    planner = _store(ReplayStore, tmp_path, BatchLog())
    claimed: set[str] = set()
    planner.begin("first", claimed=claimed)
    with pytest.raises(_ReplayStop) as first:
        planner.greedy(PROMPTS[:4], CONFIG, desc="first")
    claimed.update(k for chunk in first.value.plan.batches for k, _ in chunk)
    planner.begin("second", claimed=claimed)
    with pytest.raises(_ReplayStop) as second:
        planner.greedy(PROMPTS[2:7], CONFIG, desc="second")
    assert sum(map(len, second.value.plan.batches)) == 3  # PROMPTS[2:4] are the first's
    planner.begin("third", claimed=claimed)
    with pytest.raises(_ReplayStop) as third:
        planner.greedy(PROMPTS[:2], CONFIG, desc="third")
    assert third.value.plan.batches == []  # waits a round for the first dataset's records

    # A worker whose fill differs from the plan (other data or code) refuses to compute.
    task = shard_plan(first.value.plan, None, None, workers=1)[0]
    worker = _store(ReplayStore, tmp_path, BatchLog())
    worker.begin("first", task)
    with pytest.raises(RuntimeError, match="differs from the driver's plan"):
        worker.greedy(PROMPTS[:5], CONFIG, desc="first")


ARGS = ["--data-dir", "demo", "--limit", "3", "--samples", "3", "--max-new-tokens", "12",
        "--sample-max-new-tokens", "8", "--batch-size", "2", "--no-progress", "--run-name", "t",
        "--estimators", "perplexity", "max_token_entropy", "lexical_similarity",
        "self_consistency", "mean_pmi"]


def _run(cache: Path, results: Path, *extra: str) -> tuple[dict, float]:
    started = time.perf_counter()
    assert main(["run", *ARGS, "--cache-dir", str(cache), "--results-dir", str(results),
                 *extra]) == 0
    return json.loads((results / "t" / "run_info.json").read_text()), \
        time.perf_counter() - started


def test_ray_run_matches_the_single_process_run(tmp_path, model_cache, capsys):
    pytest.importorskip("ray")
    single, single_seconds = _run(fresh_cache(tmp_path, model_cache, "single"), tmp_path / "a")
    ray_cache = fresh_cache(tmp_path, model_cache, "ray")
    ray_info, ray_seconds = _run(ray_cache, tmp_path / "b", "--ray", "local",
                                 "--ray-workers", "2", "--shards", "2")
    with capsys.disabled():
        print(f"\nsingle process {single_seconds:.1f} s; ray (2 workers) {ray_seconds:.1f} s "
              f"(phase 1 {ray_info['distributed']['seconds']} s, of which Ray start "
              f"{ray_info['distributed']['ray_start_seconds']} s)")
    # metrics.json holds nothing run-specific (wall time lives in run_info.json).
    expected = (tmp_path / "a" / "t" / "metrics.json").read_bytes()
    assert (tmp_path / "b" / "t" / "metrics.json").read_bytes() == expected

    phase_one = ray_info["distributed"]
    assert phase_one["workers"] == 2 and phase_one["threads_per_worker"] == 1
    # The workers made every model call of the single-process run; phase 2 made none.
    # 3 test + 3 train greedy answers, 6 sample sets, 3 augmented answers.
    assert single["lm_generate_calls"] == 15
    assert phase_one["lm_generate_calls"] == 15 and ray_info["lm_generate_calls"] == 0
    assert "lm_work" not in ray_info  # phase 2 never loaded the model
    fills = {f["fill"]: f for f in phase_one["fills"]}
    assert list(fills) == ["demo greedy", "demo samples", "demo unconditional", "demo rag"]
    assert fills["demo greedy"]["batches"] == 3 and fills["demo greedy"]["shards"] == 2
    assert fills["demo unconditional"]["batches"] == 1  # a batch is never split
    assert fills["demo unconditional"]["shards"] == 1

    # A rerun finds every output cached and does not start Ray.
    again, _ = _run(ray_cache, tmp_path / "c", "--ray", "local", "--ray-workers", "2")
    assert again["distributed"]["rounds"] == 0 and again["distributed"]["workers"] == 0
    assert (tmp_path / "c" / "t" / "metrics.json").read_bytes() == expected


@pytest.mark.parametrize("extra, message", [
    (["--shards", "2"], "need --ray"),
    (["--ray", "local", "--shards", "0"], "--shards must be at least 1"),
    (["--ray", "local", "--shards", "2", "--shard-size", "8"], "not both"),
    (["--ray", "local", "--prefix-cache"], "cannot be combined"),
])
def test_ray_options_are_checked(tmp_path, extra, message, capsys):
    assert main(["run", *ARGS, "--cache-dir", str(tmp_path), "--results-dir",
                 str(tmp_path / "r"), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("arbench: error:") and message in err
